//! `builder run`: container layers die, volumes persist, exit codes propagate.

use crate::util::env;

#[test]
fn container_layer_is_discarded_but_named_volume_persists() {
    let Some(env) = env("run_volumes") else { return };
    let env = env.with_busybox();
    env.ok(&["run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo layer > /written; echo vol > /data/v"]);
    let out = env.run(&["run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "cat /data/v; test -e /written"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "vol\n");
    assert_eq!(out.status.code(), Some(1), "the container layer of the first run was visible");
    assert!(env.ok(&["volume", "ls"]).contains("data"));
}

#[test]
fn exit_code_env_workdir_and_user_flags() {
    let Some(env) = env("run_flags") else { return };
    let env = env.with_busybox();
    let out = env.run(&["run", "--rm", "busybox", "sh", "-c", "exit 42"]);
    assert_eq!(out.status.code(), Some(42));
    let out =
        env.ok(&["run", "-e", "A=b", "-w", "/tmp/x", "-u", "nobody", "busybox", "sh", "-c", "echo $A; pwd; id -u"]);
    assert_eq!(out, "b\n/tmp/x\n65534\n");
    let out = env.run(&["run", "busybox", "/no/such/binary"]);
    assert_eq!(out.status.code(), Some(127));
}

#[test]
fn bind_mount_of_a_host_directory() {
    let Some(env) = env("run_bind") else { return };
    let env = env.with_busybox();
    let dir = env.context("host", &[("in.txt", "from host\n")]);
    let spec = format!("{}:/host", dir.display());
    let out = env.ok(&["run", "-v", &spec, "busybox", "sh", "-c", "cat /host/in.txt; echo back > /host/out.txt"]);
    assert_eq!(out, "from host\n");
    assert_eq!(std::fs::read_to_string(dir.join("out.txt")).unwrap(), "back\n");
}

#[test]
fn read_only_rootfs_rejects_writes_but_volumes_take_them() {
    let Some(env) = env("run_read_only") else { return };
    let env = env.with_busybox();
    let out = env.run(&["run", "--rm", "--read-only", "busybox", "sh", "-c", "echo x > /f"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Read-only file system"), "{out:?}");
    let out = env.ok(&[
        "run",
        "--rm",
        "--read-only",
        "-v",
        "rw:/data",
        "busybox",
        "sh",
        "-c",
        "echo x > /data/f && cat /data/f",
    ]);
    assert_eq!(out, "x\n");
}

#[test]
fn exit_codes_for_exec_failures_and_signals() {
    let Some(env) = env("run_exit_codes") else { return };
    let env = env.with_busybox();
    assert_eq!(env.run(&["run", "--rm", "busybox", "no-such-command"]).status.code(), Some(127));
    assert_eq!(env.run(&["run", "--rm", "busybox", "/etc/passwd"]).status.code(), Some(126));
    assert_eq!(env.run(&["run", "--rm", "busybox", "sh", "-c", "kill -9 $$"]).status.code(), Some(137));
    assert_eq!(env.run(&["run", "--rm", "busybox", "sh", "-c", "kill -TERM $$"]).status.code(), Some(143));
    let out = env.ok(&["run", "--rm", "-u", "nobody", "busybox", "sh", "-c", "id -u; id -g"]);
    assert_eq!(out, "65534\n65534\n");
}

/// Starts `builder run` with a container that prints `ready` once its trap is set.
fn start_trapping(
    env: &crate::util::Env,
    script: &str,
) -> (std::process::Child, std::io::BufReader<std::process::ChildStdout>) {
    use std::io::BufRead;
    let mut child =
        env.cmd(&["run", "--rm", "busybox", "sh", "-c", script]).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n");
    (child, stdout)
}

fn send(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

#[test]
fn signals_to_builder_run_reach_the_container() {
    use std::io::Read;
    let Some(env) = env("run_signals") else { return };
    let env = env.with_busybox();
    let (mut child, mut stdout) =
        start_trapping(&env, "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done");
    send(child.id(), "TERM");
    assert_eq!(child.wait().unwrap().code(), Some(7), "the trap's exit code");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-term\n");

    // Without a trap, SIGINT kills the process: 128 + 2.
    let (mut child, _stdout) = start_trapping(&env, "echo ready; while true; do sleep 0.05; done");
    send(child.id(), "INT");
    assert_eq!(child.wait().unwrap().code(), Some(130));
}

#[test]
fn stdin_only_with_interactive() {
    use std::io::Write;
    let Some(env) = env("run_stdin") else { return };
    let env = env.with_busybox();
    let mut child = env
        .cmd(&["run", "--rm", "-i", "busybox", "cat"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert!(out.status.success());

    // Without -i the container reads /dev/null, even when our stdin stays open.
    let mut child = env
        .cmd(&["run", "--rm", "busybox", "sh", "-c", "cat; echo done"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _open = child.stdin.take();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n");
}

#[test]
fn tty_gives_the_process_a_terminal() {
    let Some(env) = env("run_tty") else { return };
    if std::process::Command::new("script").arg("--version").output().is_err() {
        eprintln!("SKIPPED run_tty: needs script(1) from util-linux for a terminal");
        return;
    }
    let env = env.with_busybox();
    let builder = env!("CARGO_BIN_EXE_builder");
    let command = format!(
        "{builder} --root {} run --rm -it busybox sh -c 'test -t 0 && test -t 1 && echo is-a-tty; stty size'",
        env.root.path().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("COLUMNS", "100")
        .env("LINES", "30")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("is-a-tty"), "{text}");
    // Without a terminal on stdin, -t falls back to plain pipes.
    let out = env.ok(&["run", "--rm", "-t", "busybox", "sh", "-c", "test -t 1 || echo no-tty"]);
    assert_eq!(out, "no-tty\n");
}

#[test]
fn env_file_name_and_volume_inspect() {
    let Some(env) = env("run_env_file") else { return };
    let env = env.with_busybox();
    let file = env.work.path().join("vars.env");
    std::fs::write(&file, "# settings\nA=from-file\nB=file\n").unwrap();
    let out = env.ok(&[
        "run",
        "--rm",
        "--env-file",
        file.to_str().unwrap(),
        "-e",
        "B=flag",
        "--name",
        "web",
        "busybox",
        "sh",
        "-c",
        "echo $A $B; hostname",
    ]);
    assert_eq!(out, "from-file flag\nweb\n");

    env.ok(&["volume", "create", "vol1"]);
    let info: serde_json::Value = serde_json::from_str(&env.ok(&["volume", "inspect", "vol1"])).unwrap();
    assert_eq!(info[0]["Name"], "vol1");
    let mountpoint = info[0]["Mountpoint"].as_str().unwrap();
    assert!(std::path::Path::new(mountpoint).is_dir(), "{info}");
    assert!(info[0]["CreatedAt"].as_str().unwrap().ends_with('Z'), "{info}");
    assert!(!env.run(&["volume", "inspect", "nope"]).status.success());
    env.ok(&["volume", "rm", "vol1"]);
    assert!(!env.ok(&["volume", "ls"]).contains("vol1"));
}
