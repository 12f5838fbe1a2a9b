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
    let out = env.ok(&["run", "-e", "A=b", "-w", "/tmp/x", "-u", "nobody", "busybox", "sh", "-c", "echo $A; pwd; id -u"]);
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
