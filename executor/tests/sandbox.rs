//! Real sandboxes, as root. A binary of its own (`harness = false`): the sandbox init
//! is this very executable, re-executed, so it must never meet libtest's `main`.
//! Skips (with the reason) where it cannot run: not root, or no namespaces.

mod common;
mod limits;
mod rootless;

use common::*;
use executor::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn main() {
    executor::maybe_run_init();
    if std::env::args().any(|a| a == INHERIT_CHILD) {
        std::process::exit(inherit_child());
    }
    if std::env::args().any(|a| a == TERMINAL_CHILD) {
        std::process::exit(terminal_child());
    }
    if std::env::args().any(|a| a == limits::V2_CHILD) {
        std::process::exit(limits::v2_child());
    }
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == rootless::CHILD) {
        std::process::exit(rootless::child(args.get(i + 1).map_or("", String::as_str)));
    }
    if let Some(reason) = skip_reason() {
        println!("skipping sandbox tests: {reason}");
        println!("0 passed, 0 failed, 1 skipped");
        return;
    }
    rootless::restore_after_a_crash();
    // A private temp dir: leftovers of this process (and only this one) show up there.
    let tmp = tempfile::tempdir().expect("tempdir");
    // SAFETY: single-threaded at this point; nothing else reads the environment yet.
    unsafe { std::env::set_var("TMPDIR", tmp.path()) };
    let before = Snapshot::take();

    let tests: &[(&str, fn())] = &[
        ("capture_and_exit_code", capture_and_exit_code),
        ("inherit_passes_stdio_through", inherit_passes_stdio_through),
        ("own_pid_namespace", own_pid_namespace),
        ("own_hostname", own_hostname),
        ("no_host_mounts_visible", no_host_mounts_visible),
        ("network_none_has_only_lo", network_none_has_only_lo),
        ("network_host_shares_interfaces", network_host_shares_interfaces),
        ("network_private_is_a_nat_without_host_loopback", network_private_is_a_nat_without_host_loopback),
        ("device_nodes_in_layers_cannot_be_opened", device_nodes_in_layers_cannot_be_opened),
        ("a_step_cannot_mknod", a_step_cannot_mknod),
        ("deleting_a_lower_file_makes_a_whiteout", deleting_a_lower_file_makes_a_whiteout),
        ("writes_land_in_the_upperdir_only", writes_land_in_the_upperdir_only),
        ("mount_stubs_never_reach_the_layer", mount_stubs_never_reach_the_layer),
        ("user_by_name_gets_groups", user_by_name_gets_groups),
        ("user_by_uid_and_gid", user_by_uid_and_gid),
        ("unknown_user_is_an_error", unknown_user_is_an_error),
        ("cwd_is_created_for_the_user", cwd_is_created_for_the_user),
        ("exit_codes_127_126_and_signals", exit_codes_127_126_and_signals),
        ("init_forwards_sigterm", init_forwards_sigterm),
        ("init_reaps_orphans", init_reaps_orphans),
        ("overlay_mount_keeps_writes_out_of_the_source", overlay_mount_keeps_writes_out_of_the_source),
        ("overlay_subpath_is_resolved_in_the_merged_view", overlay_subpath_is_resolved_in_the_merged_view),
        ("forwarded_signals_reach_the_process", forwarded_signals_reach_the_process),
        ("inherit_output_reads_dev_null", inherit_output_reads_dev_null),
        ("terminal_is_the_controlling_tty", terminal_is_the_controlling_tty),
        ("cancel_kills_the_sandbox", cancel_kills_the_sandbox),
        ("capabilities_are_dockers_default", capabilities_are_dockers_default),
        ("seccomp_filters_steps_and_containers", seccomp_filters_steps_and_containers),
        ("seccomp_is_off_when_insecure", seccomp_is_off_when_insecure),
        ("dev_has_the_usual_nodes", dev_has_the_usual_nodes),
        ("spec_mounts_bind_tmpfs_and_secret", spec_mounts_bind_tmpfs_and_secret),
        ("scratch_rootfs", scratch_rootfs),
        ("readonly_rootfs", readonly_rootfs),
        ("many_layers_with_long_paths", many_layers_with_long_paths),
        ("view_writes_through_overlay", view_writes_through_overlay),
        ("view_readonly_lowers", view_readonly_lowers),
        ("view_panic_is_reraised_and_unmounted", view_panic_is_reraised_and_unmounted),
        ("parent_panic_kills_the_sandbox", parent_panic_kills_the_sandbox),
        ("many_runs_leave_nothing_behind", many_runs_leave_nothing_behind),
        ("probe_describes_this_host", limits::probe_describes_this_host),
        ("pids_limit_stops_a_fork_bomb", limits::pids_limit_stops_a_fork_bomb),
        ("memory_limit_kills_a_hog", limits::memory_limit_kills_a_hog),
        ("cpu_quota_throttles_a_busy_loop", limits::cpu_quota_throttles_a_busy_loop),
        ("sandbox_cgroups_are_removed", limits::sandbox_cgroups_are_removed),
        ("stale_cgroups_of_dead_builders_are_removed", limits::stale_cgroups_of_dead_builders_are_removed),
        ("device_cgroup_denies_host_block_devices", limits::device_cgroup_denies_host_block_devices),
        ("v2_device_filter_is_a_bpf_program", limits::v2_device_filter_is_a_bpf_program),
        ("rlimits_apply_before_the_user_switch", limits::rlimits_apply_before_the_user_switch),
        ("private_user_namespace_as_root", rootless::private_user_namespace_as_root),
        ("rootless_with_subordinate_ids", rootless::with_subordinate_ids),
        ("rootless_without_subordinate_ids", rootless::without_subordinate_ids),
        ("rootless_with_user_namespaces_disabled", rootless::with_user_namespaces_disabled),
        ("startup_cost", startup_cost),
    ];
    let filter: Vec<String> = args.iter().skip(1).filter(|a| !a.starts_with('-')).cloned().collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let start = Instant::now();
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                passed += 1;
                println!("test {name} ... ok ({:.2}s)", start.elapsed().as_secs_f64());
            }
            Err(_) => {
                failed += 1;
                println!("test {name} ... FAILED");
            }
        }
    }
    let after = Snapshot::take();
    if let Err(diff) = before.same_as(&after) {
        failed += 1;
        println!("test leaves_no_mounts_processes_or_temp_dirs ... FAILED\n{diff}");
    } else {
        passed += 1;
        println!("test leaves_no_mounts_processes_or_temp_dirs ... ok");
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(1);
    }
}

fn capture_and_exit_code() {
    let img = Image::busybox();
    let out = img.run(&["sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status, Ok(ExitStatus::Code(3)));
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
}

const INHERIT_CHILD: &str = "--inherit-child";

/// This binary, re-run as a child: a sandbox on its own stdio.
fn inherit_child() -> i32 {
    let img = Image::busybox();
    let spec = img.spec(&["sh", "-c", "read x; echo got $x; echo err >&2; exit 5"]);
    let stdio = if std::env::args().any(|a| a == "--no-stdin") { Stdio::InheritOutput } else { Stdio::Inherit };
    run(&spec, stdio, None).map(|s| s.code()).unwrap_or(99)
}

fn inherit_passes_stdio_through() {
    use std::io::Write;
    use std::process::{Command, Stdio as P};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg(INHERIT_CHILD)
        .stdin(P::piped())
        .stdout(P::piped())
        .stderr(P::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"from-stdin\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got from-stdin\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("err\n"));
}

fn own_pid_namespace() {
    let img = Image::busybox();
    let out = img.run(&["sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'; ps -o pid,comm"]);
    assert!(out.status == Ok(ExitStatus::Code(0)), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "2", "the process is PID 2 under its init: {out:?}");
    let pids: usize = lines[1].parse().unwrap();
    assert!(pids <= 4, "only the sandbox's processes are visible: {out:?}");
    assert!(out.stdout.contains("builder-init"), "{out:?}");
}

fn own_hostname() {
    let img = Image::busybox();
    let mut spec = img.spec(&["sh", "-c", "hostname; cat /etc/hosts"]);
    spec.hostname = "box42".into();
    let out = run_captured(&spec);
    assert!(out.stdout.starts_with("box42\n"), "{out:?}");
    assert!(out.stdout.contains("localhost box42"), "{out:?}");
}

fn no_host_mounts_visible() {
    let img = Image::busybox();
    let out = img.run(&["cat", "/proc/self/mountinfo"]);
    let allowed = ["/", "/proc", "/sys", "/dev", "/etc/hosts", "/etc/resolv.conf"];
    for line in out.stdout.lines() {
        let mountpoint = line.split(' ').nth(4).unwrap();
        assert!(
            allowed.contains(&mountpoint)
                || mountpoint.starts_with("/dev/")
                || mountpoint.starts_with("/proc/")
                || mountpoint.starts_with("/sys/"),
            "unexpected mount {mountpoint}: {}",
            out.stdout
        );
    }
    let host = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(out.stdout.lines().count() < host.lines().count() + 25);
}

fn network_none_has_only_lo() {
    let img = Image::busybox();
    let mut spec = img.spec(&["sh", "-c", "ls /sys/class/net; cat /proc/net/dev | tail -n +3 | cut -d: -f1"]);
    spec.network = Network::None;
    let out = run_captured(&spec);
    assert_eq!(out.stdout.split_whitespace().collect::<Vec<_>>(), ["lo", "lo"], "{out:?}");
    let mut spec = img.spec(&["sh", "-c", "ping -c 1 -W 1 127.0.0.1 >/dev/null && echo up"]);
    spec.network = Network::None;
    // busybox ping opens a raw socket: a container's capabilities, not a build step's.
    spec.security = Security::container();
    assert_eq!(run_captured(&spec).stdout, "up\n");
}

fn network_host_shares_interfaces() {
    let img = Image::busybox();
    let out = img.run(&["cat", "/proc/net/dev"]);
    let host = fs::read_to_string("/proc/net/dev").unwrap();
    assert_eq!(out.stdout.lines().count(), host.lines().count(), "{out:?}");
}

/// `Network::Private`: `lo` and `tap0` behind slirp4netns; a service on the host's
/// loopback is out of reach (through the gateway too); the helper goes with the sandbox.
fn network_private_is_a_nat_without_host_loopback() {
    if executor::nat_helper().is_none() {
        println!("    skipped: slirp4netns is not installed");
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let img = Image::busybox();
    let script = format!(
        "ls /sys/class/net | tr '\\n' ' '; echo; grep nameserver /etc/resolv.conf; \
         ip -4 addr show tap0 | grep -o 'inet [0-9./]*'; \
         for a in 127.0.0.1 10.0.2.2; do nc -w 2 $a {port} </dev/null && echo reached-$a || echo refused-$a; done"
    );
    let mut spec = img.spec(&["sh", "-c", &script]);
    spec.network = Network::Private;
    let out = run_captured(&spec);
    assert!(out.status == Ok(ExitStatus::Code(0)), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["lo", "tap0"], "{out:?}");
    assert_eq!(lines[1], "nameserver 10.0.2.3", "{out:?}");
    assert_eq!(lines[2], "inet 10.0.2.100/24", "{out:?}");
    assert_eq!(lines[3..], ["refused-127.0.0.1", "refused-10.0.2.2"], "{out:?}");
    assert!(listener.accept().is_err(), "the host's loopback service was reached");
    // The namespace waits in the pool for the next sandbox, which reuses it...
    assert_eq!(children_matching("slirp4netns"), 1);
    let mut spec = img.spec(&["ip", "-4", "addr", "show", "tap0"]);
    spec.network = Network::Private;
    assert!(run_captured(&spec).stdout.contains("10.0.2.100/24"));
    assert_eq!(children_matching("slirp4netns"), 1, "the pooled namespace was not reused");
    // ...unless the sandbox could have changed it (CAP_NET_ADMIN): then it is dropped.
    spec.security = Security::insecure();
    assert!(run_captured(&spec).stdout.contains("10.0.2.100/24"));
    assert_eq!(children_matching("slirp4netns"), 0, "a namespace used with CAP_NET_ADMIN went back to the pool");
    executor::close_networks();
    assert_eq!(children_matching("slirp4netns"), 0);
}

/// A layer may carry any device node (here the host's null device, 1:3, world
/// writable): with the default device policy it cannot be opened, even by root.
fn device_nodes_in_layers_cannot_be_opened() {
    let img = Image::busybox();
    let node = img.data_layer.join("data/node");
    let made = std::process::Command::new("mknod").arg(&node).args(["c", "1", "3"]).status().unwrap();
    assert!(made.success());
    fs::set_permissions(&node, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let script = "echo x > /data/node && echo opened || echo refused; echo x > /dev/null && echo dev-null-ok";
    let out = img.run(&["sh", "-c", script]);
    assert_eq!(out.stdout, "refused\ndev-null-ok\n", "{out:?}");
    let mut spec = img.spec(&["sh", "-c", script]);
    spec.security = Security::insecure();
    assert_eq!(run_captured(&spec).stdout, "opened\ndev-null-ok\n");
}

/// A build step has no CAP_MKNOD, and what it could make in `/dev` or `/tmp` would be nodev.
fn a_step_cannot_mknod() {
    let img = Image::busybox();
    let out = img.run(&["sh", "-c", "mknod /tmp/n c 1 3 2>&1 || echo failed; mknod /dev/n c 1 3 2>&1 || echo failed"]);
    assert_eq!(out.stdout.matches("failed").count(), 2, "{out:?}");
    assert!(out.stdout.contains("Operation not permitted"), "{out:?}");
    // A container keeps CAP_MKNOD (Docker's default set), yet its nodes stay unopenable.
    let mut spec = img.spec(&["sh", "-c", "mknod /dev/n c 1 3 && (echo x > /dev/n && echo opened || echo refused)"]);
    spec.security = Security::container();
    assert_eq!(run_captured(&spec).stdout, "refused\n");
}

fn deleting_a_lower_file_makes_a_whiteout() {
    let img = Image::busybox();
    let out = img.run(&["sh", "-c", "rm /data/file && rm -r /data/dir && mkdir /data/dir && ls /data"]);
    assert!(out.status == Ok(ExitStatus::Code(0)), "{out:?}");
    let wh = fs::symlink_metadata(img.upper.join("data/file")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "whiteout is a 0/0 char device");
    assert!(img.data_layer.join("data/file").exists(), "the lower is untouched");
    assert_eq!(xattr(&img.upper.join("data/dir"), "trusted.overlay.opaque").as_deref(), Some(&b"y"[..]));
}

fn writes_land_in_the_upperdir_only() {
    let img = Image::busybox();
    let out = img.run(&["sh", "-c", "echo new > /new && echo more >> /data/file"]);
    assert!(out.status == Ok(ExitStatus::Code(0)), "{out:?}");
    assert_eq!(fs::read_to_string(img.upper.join("new")).unwrap(), "new\n");
    assert_eq!(fs::read_to_string(img.upper.join("data/file")).unwrap(), "lower\nmore\n");
    assert_eq!(fs::read_to_string(img.data_layer.join("data/file")).unwrap(), "lower\n");
    assert!(!img.base.join("new").exists());
}

fn mount_stubs_never_reach_the_layer() {
    // The base has no /proc, /dev, /sys, /etc/hosts or /etc/resolv.conf.
    let img = Image::busybox();
    let mut spec = img.spec(&["true"]);
    spec.mounts.push(Mount { target: "/etc/ssl/deep/secret".into(), source: secret(b"s3") });
    spec.mounts.push(Mount { target: "/cache".into(), source: MountSource::Tmpfs { size: None } });
    let out = run_captured(&spec);
    assert_eq!(out.status, Ok(ExitStatus::Code(0)), "{out:?}");
    assert_eq!(list(&img.upper), Vec::<String>::new(), "upperdir must stay empty");
    // Stubs the process used stay.
    let mut spec = img.spec(&["sh", "-c", "echo hi > /etc/ssl/mine"]);
    spec.mounts.push(Mount { target: "/etc/ssl/deep/secret".into(), source: secret(b"s3") });
    run_captured(&spec);
    assert_eq!(list(&img.upper), ["etc", "etc/ssl", "etc/ssl/mine"]);
}

fn user_by_name_gets_groups() {
    let img = Image::busybox();
    let mut spec = img.spec(&["sh", "-c", "id -u; id -g; id -G; echo $HOME"]);
    spec.process.user = "app".into();
    let out = run_captured(&spec);
    assert_eq!(out.stdout, "1000\n1000\n1000 2000\n/home/app\n", "{out:?}");
}

fn user_by_uid_and_gid() {
    let img = Image::busybox();
    let mut spec = img.spec(&["sh", "-c", "id -u; id -g; touch /tmp/f; stat -c %u:%g /tmp/f"]);
    spec.process.user = "1234:5678".into();
    let out = run_captured(&spec);
    assert_eq!(out.stdout, "1234\n5678\n1234:5678\n", "{out:?}");
}

fn unknown_user_is_an_error() {
    let img = Image::busybox();
    let mut spec = img.spec(&["true"]);
    spec.process.user = "nobody-here".into();
    let out = run_captured(&spec);
    assert!(matches!(out.status, Err(ref e) if e.starts_with("unable to find user nobody-here")), "{out:?}");
    assert_eq!(list(&img.upper), Vec::<String>::new());
}

fn cwd_is_created_for_the_user() {
    let img = Image::busybox();
    let mut spec = img.spec(&["sh", "-c", "pwd; touch x"]);
    spec.process.user = "app".into();
    spec.process.cwd = "/work/dir".into();
    let out = run_captured(&spec);
    assert_eq!(out.stdout, "/work/dir\n", "{out:?}");
    assert_eq!(fs::metadata(img.upper.join("work/dir/x")).unwrap().uid(), 1000);
    assert_eq!(fs::metadata(img.upper.join("work")).unwrap().uid(), 1000);
}

fn exit_codes_127_126_and_signals() {
    let img = Image::busybox();
    let out = img.run(&["no-such-command"]);
    assert_eq!(out.status, Ok(ExitStatus::Code(127)));
    assert!(out.stderr.contains("no-such-command") && out.stderr.contains("not found"), "{out:?}");
    let out = img.run(&["/no/such/file"]);
    assert_eq!(out.status, Ok(ExitStatus::Code(127)), "{out:?}");
    let out = img.run(&["/etc/passwd"]);
    assert_eq!(out.status, Ok(ExitStatus::Code(126)), "{out:?}");
    assert!(out.stderr.contains("permission denied"), "{out:?}");
    let out = img.run(&["sh", "-c", "kill -9 $$"]);
    assert_eq!(out.status, Ok(ExitStatus::Signal(9)));
    assert_eq!(out.status.clone().unwrap().code(), 137);
}

fn init_forwards_sigterm() {
    let img = Image::busybox();
    let out = img.run(&["sh", "-c", "trap 'echo got; exit 7' TERM; kill -TERM 1; sleep 5 & wait"]);
    assert_eq!(out.status, Ok(ExitStatus::Code(7)), "{out:?}");
}

fn init_reaps_orphans() {
    let img = Image::busybox();
    let out = img.run(&["sh", "-c", "(sleep 0.1 &); (true &); sleep 0.6; ps -o stat,comm | grep -c '^Z' || true"]);
    assert_eq!(out.stdout, "0\n", "no zombies: {out:?}");
}

fn overlay_mount_keeps_writes_out_of_the_source() {
    let img = Image::busybox();
    let src = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    fs::write(src.path().join("f"), "orig").unwrap();
    fs::create_dir(scratch.path().join("u")).unwrap();
    fs::create_dir(scratch.path().join("w")).unwrap();
    let mut spec = img.spec(&["sh", "-c", "cat /src/f; echo changed > /src/f; echo n > /src/new"]);
    spec.mounts.push(Mount {
        target: "/src".into(),
        source: MountSource::Overlay {
            lowerdirs: vec![src.path().into()],
            upperdir: scratch.path().join("u"),
            workdir: scratch.path().join("w"),
            subpath: String::new(),
            readonly: false,
        },
    });
    let out = run_captured(&spec);
    assert_eq!(out.stdout, "orig", "{out:?}");
    assert_eq!(fs::read_to_string(src.path().join("f")).unwrap(), "orig");
    assert!(!src.path().join("new").exists());
    assert_eq!(fs::read_to_string(scratch.path().join("u/new")).unwrap(), "n\n");
    assert_eq!(list(&img.upper), Vec::<String>::new());
}

fn overlay_subpath_is_resolved_in_the_merged_view() {
    let img = Image::busybox();
    let top = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    fs::create_dir_all(top.path().join("data/dir")).unwrap();
    fs::write(top.path().join("data/dir/y"), "y").unwrap();
    std::os::unix::fs::symlink("/data/dir", top.path().join("link")).unwrap();
    std::os::unix::fs::symlink("../../../../etc", top.path().join("escape")).unwrap();
    fs::create_dir(scratch.path().join("u")).unwrap();
    fs::create_dir(scratch.path().join("w")).unwrap();
    let layers = vec![top.path().to_path_buf(), img.data_layer.clone()];
    let overlay = |subpath: &str, readonly: bool| MountSource::Overlay {
        lowerdirs: layers.clone(),
        upperdir: scratch.path().join("u"),
        workdir: scratch.path().join("w"),
        subpath: subpath.into(),
        readonly,
    };
    let mut spec = img.spec(&["sh", "-c", "ls /m /l; cat /f; touch /m/z 2>/dev/null || echo ro; ls /e"]);
    spec.mounts.push(Mount { target: "/m".into(), source: overlay("/data/dir", true) });
    spec.mounts.push(Mount { target: "/l".into(), source: overlay("link", false) });
    spec.mounts.push(Mount { target: "/f".into(), source: overlay("data/file", true) });
    // A symlink climbing out stays inside the view: `/etc` of the layers, absent.
    spec.mounts.push(Mount { target: "/e".into(), source: overlay("escape", true) });
    let out = run_captured(&spec);
    assert!(out.status.is_err(), "{out:?}");
    assert!(out.status.as_ref().unwrap_err().contains("escape"), "{out:?}");
    spec.mounts.pop();
    let out = run_captured(&spec);
    assert_eq!(out.stdout, "/l:\nx\ny\n\n/m:\nx\ny\nlower\nro\n", "{out:?}");
    assert_eq!(list(&img.upper), Vec::<String>::new(), "stubs removed");
}

fn forwarded_signals_reach_the_process() {
    let img = Image::busybox();
    let spec = img.spec(&["sh", "-c", "trap 'echo got; exit 7' TERM; echo ready; while true; do sleep 0.05; done"]);
    let signals = Signals::new();
    let mut out = Vec::new();
    let raise = signals.clone();
    let mut cb = |_: OutputStream, b: &[u8]| {
        out.extend_from_slice(b);
        if b.starts_with(b"ready") {
            raise.raise(libc::SIGTERM);
        }
    };
    let control = Control { cancel: None, signals: Some(signals) };
    let status = run_with(&spec, Stdio::Capture(&mut cb), control);
    assert_eq!(status.unwrap(), ExitStatus::Code(7));
    assert_eq!(String::from_utf8_lossy(&out), "ready\ngot\n");
}

fn inherit_output_reads_dev_null() {
    use std::process::{Command, Stdio as P};
    let out = Command::new(std::env::current_exe().unwrap())
        .args([INHERIT_CHILD, "--no-stdin"])
        .stdin(P::piped())
        .stdout(P::piped())
        .stderr(P::piped())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "got\n");
}

const TERMINAL_CHILD: &str = "--terminal-child";

/// This binary, re-run as a child: a sandbox on a pty relayed to its stdio.
fn terminal_child() -> i32 {
    let img = Image::busybox();
    let spec = img.spec(&["sh", "-c", "test -t 0 && test -t 2 && echo tty; read x; echo got $x; exit 4"]);
    run(&spec, Stdio::Terminal, None).map(|s| s.code()).unwrap_or(99)
}

fn terminal_is_the_controlling_tty() {
    use std::io::Write;
    use std::process::{Command, Stdio as P};
    let mut child = Command::new(std::env::current_exe().unwrap())
        .arg(TERMINAL_CHILD)
        .stdin(P::piped())
        .stdout(P::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}");
    // A terminal's line endings, and its echo of what was typed.
    assert!(text.contains("tty\r\n") && text.contains("got hello\r\n"), "{text:?}");
}

fn cancel_kills_the_sandbox() {
    let img = Image::busybox();
    let spec = img.spec(&["sh", "-c", "sleep 97531 & sleep 97531; echo never"]);
    let cancel = Arc::new(AtomicBool::new(false));
    let c = cancel.clone();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        c.store(true, Ordering::SeqCst);
    });
    let start = Instant::now();
    let mut out = String::new();
    let mut cb = |_: OutputStream, b: &[u8]| out.push_str(&String::from_utf8_lossy(b));
    let result = run(&spec, Stdio::Capture(&mut cb), Some(cancel));
    setter.join().unwrap();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(!out.contains("never"));
    assert_eq!(processes_matching("97531"), 0);
}

fn capabilities_are_dockers_default() {
    let img = Image::busybox();
    let mut spec = img.spec(&["sh", "-c", "grep -E 'Cap(Eff|Bnd)|NoNewPrivs' /proc/self/status"]);
    spec.security = Security::container();
    let out = run_captured(&spec);
    assert!(out.stdout.contains("CapEff:\t00000000a80425fb"), "{out:?}");
    assert!(out.stdout.contains("CapBnd:\t00000000a80425fb"), "{out:?}");
    assert!(out.stdout.contains("NoNewPrivs:\t1"), "{out:?}");
    // A build step: no NET_RAW (13), no MKNOD (27).
    let out = img.run(&["sh", "-c", "grep -E 'Cap(Eff|Bnd)' /proc/self/status"]);
    assert!(out.stdout.contains("CapEff:\t00000000a00405fb"), "{out:?}");
    assert!(out.stdout.contains("CapBnd:\t00000000a00405fb"), "{out:?}");
    let mut spec = img.spec(&["grep", "CapEff", "/proc/self/status"]);
    spec.process.user = "app".into();
    assert!(run_captured(&spec).stdout.contains("0000000000000000"));
}

/// Whether this host lets a process make a user namespace at all.
fn host_has_user_namespaces() -> bool {
    std::process::Command::new("unshare").args(["-U", "true"]).status().is_ok_and(|s| s.success())
}

fn seccomp_filters_steps_and_containers() {
    let img = Image::busybox();
    // unshare(CLONE_NEWUSER) needs no capability: only the filter refuses it. So do
    // personality(PER_LINUX32|ADDR_NO_RANDOMIZE) (`linux32 -R`) and mount; chroot is
    // allowed with CAP_SYS_CHROOT, which a build step keeps.
    let out = img.run(&[
        "sh",
        "-c",
        "grep '^Seccomp:' /proc/self/status; unshare -U true || echo no-userns; \
         mkdir -p /mnt; mount -t tmpfs none /mnt 2>/dev/null || echo no-mount; \
         linux32 true && echo linux32; linux32 -R true 2>/dev/null || echo no-personality; \
         chroot / true && echo chroot",
    ]);
    assert_eq!(out.status, Ok(ExitStatus::Code(0)), "{out:?}");
    assert_eq!(out.stdout, "Seccomp:\t2\nno-userns\nno-mount\nlinux32\nno-personality\nchroot\n", "{out:?}");
    assert!(out.stderr.contains("Operation not permitted"), "unshare's EPERM: {out:?}");
    // A container, and a user without capabilities (no_new_privs lets it load a filter).
    let mut spec =
        img.spec(&["sh", "-c", "grep '^Seccomp:' /proc/self/status; unshare -U true 2>/dev/null || echo no"]);
    spec.security = Security::container();
    assert_eq!(run_captured(&spec).stdout, "Seccomp:\t2\nno\n");
    spec.process.user = "app".into();
    assert_eq!(run_captured(&spec).stdout, "Seccomp:\t2\nno\n");
}

fn seccomp_is_off_when_insecure() {
    let img = Image::busybox();
    let mut spec = img.spec(&[
        "sh",
        "-c",
        "grep '^Seccomp:' /proc/self/status; linux32 -R true && echo personality; unshare -U true && echo userns",
    ]);
    spec.security = Security::insecure();
    let out = run_captured(&spec);
    let expected =
        if host_has_user_namespaces() { "Seccomp:\t0\npersonality\nuserns\n" } else { "Seccomp:\t0\npersonality\n" };
    assert_eq!(out.stdout, expected, "{out:?}");
}

fn dev_has_the_usual_nodes() {
    let img = Image::busybox();
    let out = img.run(&[
        "sh",
        "-c",
        "ls /dev | tr '\\n' ' '; head -c 4 /dev/zero | wc -c; echo x > /dev/null && echo null-ok; \
         echo shm > /dev/shm/a && cat /dev/shm/a; ls /dev/pts",
    ]);
    for name in ["null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd"] {
        assert!(out.stdout.split_whitespace().any(|w| w == name), "/dev/{name} missing: {out:?}");
    }
    assert!(out.stdout.contains(" 4\nnull-ok\nshm\nptmx"), "{out:?}");
}

fn spec_mounts_bind_tmpfs_and_secret() {
    let img = Image::busybox();
    let shared = tempfile::tempdir().unwrap();
    fs::write(shared.path().join("in"), "from host").unwrap();
    let mut spec = img.spec(&[
        "sh",
        "-c",
        "cat /ro/in; echo x > /ro/y 2>/dev/null || echo ro-refused; echo w > /rw/out; \
         echo t > /tmpfs/t && cat /tmpfs/t; cat /run/secrets/token; stat -c %a:%u /run/secrets/token; \
         grep -c tmpfs /proc/mounts",
    ]);
    spec.mounts = vec![
        Mount { target: "/ro".into(), source: MountSource::Bind { source: shared.path().into(), readonly: true } },
        Mount { target: "/rw".into(), source: MountSource::Bind { source: shared.path().into(), readonly: false } },
        Mount { target: "/tmpfs".into(), source: MountSource::Tmpfs { size: Some(1 << 20) } },
        Mount { target: "/run/secrets/token".into(), source: secret(b"hunter2") },
    ];
    let out = run_captured(&spec);
    assert!(out.stdout.starts_with("from hostro-refused\nt\nhunter2400:0\n"), "{out:?}");
    assert_eq!(fs::read_to_string(shared.path().join("out")).unwrap(), "w\n");
    assert!(!walk_contains(&img.upper, b"hunter2"), "the secret never lands in the layer");
    assert_eq!(list(&img.upper), Vec::<String>::new());
}

fn scratch_rootfs() {
    let upper = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let bb = upper.path().join("busybox");
    fs::copy("/bin/busybox", &bb).unwrap();
    let spec = Spec {
        rootfs: Rootfs {
            lowerdirs: vec![],
            upper: Some(Upper { upperdir: upper.path().into(), workdir: work.path().into() }),
            readonly: false,
        },
        mounts: vec![],
        process: process(&["/busybox", "sh", "-c", "/busybox echo hi > /made; /busybox ls /"]),
        network: Network::Host,
        hostname: String::new(),
        extra_hosts: Vec::new(),
        security: Default::default(),
        resources: Default::default(),
    };
    let out = run_captured(&spec);
    assert_eq!(out.status, Ok(ExitStatus::Code(0)), "{out:?}");
    assert_eq!(list(upper.path()), ["busybox", "made"]);
}

fn readonly_rootfs() {
    let img = Image::busybox();
    let mut spec = img.spec(&["sh", "-c", "touch /x 2>/dev/null || echo refused; echo ok > /tmpfs/x && cat /tmpfs/x"]);
    spec.rootfs.readonly = true;
    spec.mounts.push(Mount { target: "/tmpfs".into(), source: MountSource::Tmpfs { size: None } });
    let out = run_captured(&spec);
    assert_eq!(out.stdout, "refused\nok\n", "{out:?}");
    assert_eq!(list(&img.upper), Vec::<String>::new());
    // No upper at all: a throwaway one takes the writes.
    let mut spec = img.spec(&["sh", "-c", "echo gone > /x && cat /x"]);
    spec.rootfs.upper = None;
    assert_eq!(run_captured(&spec).stdout, "gone\n");
}

fn many_layers_with_long_paths() {
    let img = Image::busybox();
    let layers = tempfile::tempdir().unwrap();
    let long = "l".repeat(200);
    let mut lowerdirs = Vec::new();
    for i in 0..120 {
        let dir = layers.path().join(format!("{long}/{i:03}-{long}"));
        fs::create_dir_all(dir.join("layers")).unwrap();
        fs::write(dir.join(format!("layers/{i:03}")), "").unwrap();
        lowerdirs.push(dir);
    }
    lowerdirs.reverse();
    lowerdirs.push(img.base.clone());
    let mut spec = img.spec(&["sh", "-c", "ls /layers | wc -l"]);
    spec.rootfs.lowerdirs = lowerdirs.clone();
    let out = run_captured(&spec);
    assert_eq!(out.stdout, "120\n", "{out:?}");
    let n = with_rootfs_mounted(&[Rootfs { lowerdirs, upper: None, readonly: true }], |p| {
        fs::read_dir(p[0].join("layers")).unwrap().count()
    })
    .unwrap();
    assert_eq!(n, 120);
}

fn view_writes_through_overlay() {
    let img = Image::busybox();
    let rootfs = img.spec(&["true"]).rootfs;
    let got = with_rootfs_mounted(&[rootfs], |paths| {
        let root = &paths[0];
        fs::write(root.join("copied"), "c").unwrap();
        fs::remove_file(root.join("data/file")).unwrap();
        fs::read_to_string(root.join("etc/passwd")).unwrap()
    })
    .unwrap();
    assert!(got.contains("app:x:1000"));
    assert_eq!(fs::read_to_string(img.upper.join("copied")).unwrap(), "c");
    assert!(fs::symlink_metadata(img.upper.join("data/file")).unwrap().file_type().is_char_device());
}

fn view_readonly_lowers() {
    let img = Image::busybox();
    let two = Rootfs { lowerdirs: vec![img.data_layer.clone(), img.base.clone()], upper: None, readonly: true };
    let one = Rootfs { lowerdirs: vec![img.data_layer.clone()], upper: None, readonly: true };
    let none = Rootfs { lowerdirs: vec![], upper: None, readonly: true };
    with_rootfs_mounted(&[two, one, none], |p| {
        assert!(p[0].join("bin/busybox").exists() && p[0].join("data/file").exists());
        assert!(p[1].join("data/file").exists() && !p[1].join("bin").exists());
        assert_eq!(fs::read_dir(&p[2]).unwrap().count(), 0);
        for root in p {
            assert!(fs::write(root.join("x"), "").is_err(), "{} must be read-only", root.display());
        }
    })
    .unwrap();
}

fn view_panic_is_reraised_and_unmounted() {
    let img = Image::busybox();
    let rootfs = img.spec(&["true"]).rootfs;
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let r = quietly(|| std::panic::catch_unwind(|| with_rootfs_mounted(&[rootfs], |_| panic!("boom"))));
    assert!(r.is_err());
    assert_eq!(fs::read_to_string("/proc/self/mountinfo").unwrap(), mounts);
}

/// Runs `f` with panic messages silenced (for panics a test causes on purpose).
fn quietly<R>(f: impl FnOnce() -> R) -> R {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = f();
    std::panic::set_hook(hook);
    r
}

fn parent_panic_kills_the_sandbox() {
    let img = Image::busybox();
    let spec = img.spec(&["sh", "-c", "echo started; sleep 86420"]);
    let r = quietly(|| {
        std::panic::catch_unwind(|| {
            let mut cb = |_: OutputStream, _: &[u8]| panic!("callback panics");
            run(&spec, Stdio::Capture(&mut cb), None)
        })
    });
    assert!(r.is_err());
    assert_eq!(processes_matching("86420"), 0);
    assert_eq!(list(&img.upper), Vec::<String>::new(), "stubs removed after a panic too");
}

fn many_runs_leave_nothing_behind() {
    let img = Image::busybox();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for i in 0..20 {
        let args = match i % 4 {
            0 => vec!["sh", "-c", "sleep 86421 & echo $!"],
            1 => vec!["sh", "-c", "exit 1"],
            2 => vec!["no-such"],
            _ => vec!["sh", "-c", "sleep 86421 & sleep 86421"],
        };
        let spec = img.spec(&args);
        let cancel = Arc::new(AtomicBool::new(false));
        let c = cancel.clone();
        let setter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            c.store(true, Ordering::SeqCst);
        });
        let mut cb = |_: OutputStream, _: &[u8]| {};
        let result = run(&spec, Stdio::Capture(&mut cb), (i % 4 == 3).then_some(cancel));
        setter.join().unwrap();
        assert!(result.is_ok() || matches!(result, Err(Error::Cancelled)), "{result:?}");
    }
    assert_eq!(fs::read_to_string("/proc/self/mountinfo").unwrap(), mounts);
    assert_eq!(processes_matching("86421"), 0);
    assert_eq!(list(&img.upper), Vec::<String>::new());
}

/// Prints how long a trivial sandbox takes, per network (no assertion on time).
fn startup_cost() {
    let img = Image::busybox();
    for network in [Network::Host, Network::None, Network::Private] {
        if network == Network::Private && executor::nat_helper().is_none() {
            continue;
        }
        let mut spec = img.spec(&["true"]);
        spec.network = network;
        let start = Instant::now();
        for _ in 0..10 {
            assert_eq!(run_captured(&spec).status, Ok(ExitStatus::Code(0)));
        }
        println!("    a sandbox running `true` ({network:?}) takes {:.1} ms", start.elapsed().as_secs_f64() * 100.0);
    }
    executor::close_networks();
}
