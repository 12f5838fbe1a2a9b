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
    let out = env.run(&["run", "--rm", "busybox", "no-such-command"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("executable file not found in $PATH"), "{out:?}");
    assert_eq!(env.run(&["run", "--rm", "busybox", "/no/such/file"]).status.code(), Some(127));
    let out = env.run(&["run", "--rm", "busybox", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"), "{out:?}");
    assert_eq!(env.run(&["run", "--rm", "busybox", "/etc"]).status.code(), Some(126), "a directory");
    // The container's own codes pass through, 125 to 127 included.
    for code in ["0", "3", "125", "126", "127", "255"] {
        let status = env.run(&["run", "--rm", "busybox", "sh", "-c", &format!("exit {code}")]).status;
        assert_eq!(status.code(), Some(code.parse().unwrap()));
    }
    assert_eq!(env.run(&["run", "--rm", "busybox", "sh", "-c", "kill -9 $$"]).status.code(), Some(137));
    assert_eq!(env.run(&["run", "--rm", "busybox", "sh", "-c", "kill -TERM $$"]).status.code(), Some(143));
    let out = env.ok(&["run", "--rm", "-u", "nobody", "busybox", "sh", "-c", "id -u; id -g"]);
    assert_eq!(out, "65534\n65534\n");
}

/// `docker run` exits 125 when the failure is its own: the container never ran.
#[test]
fn exit_125_when_builder_run_itself_fails() {
    let Some(env) = env("run_exit_125") else { return };
    let env = env.with_busybox();
    let expect_125 = |args: &[&str], message: &str| {
        let out = env.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "builder {args:?}: {stderr}");
        assert!(stderr.contains(message), "builder {args:?}: {stderr}");
    };
    expect_125(&["run", "--rm", "no-such-image", "true"], "no such image");
    expect_125(&["run", "--bogus", "busybox", "true"], "unexpected argument '--bogus'");
    expect_125(&["run"], "<IMAGE>");
    expect_125(&["run", "--network", "bogus", "busybox", "true"], "unknown network mode");
    expect_125(&["run", "-v", "nocolon", "busybox", "true"], "invalid volume spec");
    expect_125(&["run", "-v", "/no/such/dir:/x", "busybox", "true"], "/no/such/dir");
    expect_125(&["run", "-u", "nosuchuser", "busybox", "true"], "unable to find user nosuchuser");
    expect_125(&["run", "-it", "busybox", "true"], "the input device is not a TTY");
    // Flags are read before the image is looked up (or its layers unpacked).
    expect_125(&["run", "--memory", "lots", "no-such-image", "true"], "invalid size \"lots\"");
    expect_125(&["run", "--ulimit", "nofile", "no-such-image", "true"], "invalid --ulimit \"nofile\"");
    expect_125(&["run", "--security-opt", "apparmor=x", "no-such-image", "true"], "unsupported --security-opt");
    // Only `run` answers with 125; the other commands keep their codes.
    assert_eq!(env.run(&["images", "--bogus"]).status.code(), Some(2));
    assert_eq!(env.run(&["inspect", "no-such-image"]).status.code(), Some(1));
    // --help is still help (and -h is --hostname).
    let out = env.run(&["run", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("--hostname"), "{out:?}");
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

    // Without -i the container reads /dev/null, even when our stdin stays open with
    // data in it: the end of file comes at once.
    let out = run_with_open_stdin(&env, &["run", "--rm", "busybox", "sh", "-c", "read -t 5 x; echo \"$? [$x]\""]);
    assert_eq!(out, "1 []\n");
    let out = run_with_open_stdin(&env, &["run", "--rm", "busybox", "sh", "-c", "cat; echo done"]);
    assert_eq!(out, "done\n");
}

/// Runs `builder args` with `data` waiting on its stdin, a pipe that stays open until
/// it exits; returns its stdout.
fn run_with_open_stdin(env: &crate::util::Env, args: &[&str]) -> String {
    use std::io::Write;
    let mut child =
        env.cmd(args).stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"data\n").unwrap();
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    assert!(out.status.success(), "builder {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// `-t` alone: a pty, as `docker run -t` gives, that nothing is typed into; our stdin
/// is not read (a terminal never ends its input, so the read times out).
#[test]
fn tty_without_interactive_does_not_read_stdin() {
    let Some(env) = env("run_tty_only") else { return };
    let env = env.with_busybox();
    let script = "test -t 0 && test -t 1 && echo tty $TERM; read -t 1 x; echo \"[$x]\"";
    let out = run_with_open_stdin(&env, &["run", "--rm", "-t", "busybox", "sh", "-c", script]);
    // The pty's line discipline turns \n into \r\n.
    assert_eq!(out.replace("\r\n", "\n"), "tty xterm\n[]\n");
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
        "busybox",
        "sh",
        "-c",
        "echo $A $B",
    ]);
    assert_eq!(out, "from-file flag\n");

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

/// As Docker: the hostname is the container id's first 12 hex digits, whatever the
/// `--name`, unless `--hostname`/`-h` says otherwise; `HOSTNAME` and `/etc/hosts` agree.
#[test]
fn hostname_is_a_short_container_id_unless_given() {
    let Some(env) = env("run_hostname") else { return };
    let env = env.with_busybox();
    let script = "hostname; echo $HOSTNAME; grep -c \"127.0.0.1.*$(hostname)\" /etc/hosts";
    let out = env.ok(&["run", "--rm", "--name", "web", "busybox", "sh", "-c", script]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0].len(), 12, "{out}");
    assert!(lines[0].bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "{out}");
    assert_eq!(lines[1], lines[0], "{out}");
    assert_eq!(lines[2], "1", "{out}");
    let again = env.ok(&["run", "--rm", "busybox", "hostname"]);
    assert_ne!(again.trim(), lines[0], "each container has an id of its own");

    let out = env.ok(&["run", "--rm", "--name", "web", "--hostname", "box", "busybox", "sh", "-c", script]);
    assert_eq!(out, "box\nbox\n1\n");
    assert_eq!(env.ok(&["run", "--rm", "-h", "box2", "busybox", "hostname"]), "box2\n");
}
