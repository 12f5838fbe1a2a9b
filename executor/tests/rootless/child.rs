//! The child side of the rootless subset: this binary run as an ordinary user
//! ([`super::CHILD`]), where every sandbox gets a user namespace.

use crate::common::*;
use executor::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;

/// In the child (an ordinary user): runs the subset for `mode`; the exit code says.
pub fn child(mode: &str) -> i32 {
    let tests: &[(&str, fn())] = match mode {
        "subids" => &[
            ("echo_and_exit_code", echo_and_exit_code),
            ("owners_map_to_the_subordinate_ids", owners_map_to_the_subordinate_ids),
            ("user_nobody_runs", user_nobody_runs),
            ("whiteouts_and_opaque_dirs", whiteouts_and_opaque_dirs),
            ("capabilities_are_the_namespaces", capabilities_are_the_namespaces),
            ("spec_mounts_and_readonly_binds", spec_mounts_and_readonly_binds),
            ("network_none_has_only_lo", network_none_has_only_lo),
            ("network_host_works_with_the_hosts_sysfs", network_host_works_with_the_hosts_sysfs),
            ("network_private_reaches_nothing_on_the_host_loopback", network_private),
            ("home_canary_is_out_of_reach", home_canary_is_out_of_reach),
            ("limits_need_a_delegated_cgroup", limits_need_a_delegated_cgroup),
            ("cancel_leaves_no_process", cancel_leaves_no_process),
            ("probe_reports_what_the_user_namespace_gets", probe_reports_what_the_user_namespace_gets),
            ("rootfs_views_say_they_need_root", rootfs_views_say_they_need_root),
            ("overlay_mounts_and_subpaths", overlay_mounts_and_subpaths),
            ("terminal_and_dev", terminal_and_dev),
            ("startup_cost", startup_cost),
        ],
        "single" => &[
            ("echo_and_exit_code", echo_and_exit_code),
            ("only_root_is_mapped", only_root_is_mapped),
            ("chown_to_another_id_fails", chown_to_another_id_fails),
            ("another_user_is_a_clear_error", another_user_is_a_clear_error),
            ("probe_says_only_root_is_mapped", probe_says_only_root_is_mapped),
        ],
        "disabled" => &[
            ("disabled_user_namespaces_are_a_clear_error", disabled_user_namespaces_are_a_clear_error),
            ("probe_says_user_namespaces_are_disabled", probe_says_user_namespaces_are_disabled),
        ],
        _ => return 2,
    };
    let before = Snapshot::take_without_temp();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                passed += 1;
                println!("test rootless::{mode}::{name} ... ok");
            }
            Err(_) => {
                failed += 1;
                println!("test rootless::{mode}::{name} ... FAILED");
            }
        }
    }
    if let Err(diff) = before.same_as(&Snapshot::take_without_temp()) {
        failed += 1;
        println!("test rootless::{mode}::leaves_no_mounts_or_processes ... FAILED\n{diff}");
    } else {
        passed += 1;
        println!("test rootless::{mode}::leaves_no_mounts_or_processes ... ok");
    }
    println!("{passed} passed, {failed} failed (as uid {})", nix_uid());
    i32::from(failed > 0)
}

fn nix_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

fn nix_gid() -> u32 {
    // SAFETY: getgid has no preconditions.
    unsafe { libc::getgid() }
}

fn env_u32(key: &str) -> u32 {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} unset")).parse().unwrap()
}

fn echo_and_exit_code() {
    let img = Image::busybox();
    let out = img.run(&["sh", "-c", "echo hello; echo err >&2; exit 3"]);
    assert_eq!(out.status, Ok(ExitStatus::Code(3)), "{out:?}");
    assert_eq!((out.stdout.as_str(), out.stderr.as_str()), ("hello\n", "err\n"));
    let out = img.run(&["sh", "-c", "id -u; hostname; ls /proc | grep -c '^[0-9]'"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..2], ["0", "test"], "{out:?}");
    assert!(lines[2].parse::<u32>().unwrap() <= 4, "host processes are visible: {out:?}");
}

/// Files made as root and as 1001 land in the upperdir owned by the caller and by
/// the subordinate id 1000 above the range's start, as `id_mapping` says.
fn owners_map_to_the_subordinate_ids() {
    let (subuid, subgid) = (env_u32("BUILDER_TEST_SUBUID"), env_u32("BUILDER_TEST_SUBGID"));
    let mapping = id_mapping(&Security::build_step()).unwrap().expect("a user namespace");
    assert_eq!(mapping.uid.to_host(0), Some(nix_uid()), "{mapping}");
    assert_eq!(mapping.uid.to_host(1001), Some(subuid + 1000), "{mapping}");
    assert_eq!(mapping.gid.to_host(1001), Some(subgid + 1000), "{mapping}");
    let img = Image::busybox();
    let out = img.run(&[
        "sh",
        "-c",
        "touch /by-root && mkdir /d && touch /d/f && chown 1001:1001 /d/f /d && chown 0:1001 /by-root && \
         cat /proc/self/uid_map",
    ]);
    assert_eq!(out.status, Ok(ExitStatus::Code(0)), "{out:?}");
    let by_root = fs::metadata(img.upper.join("by-root")).unwrap();
    assert_eq!((by_root.uid(), by_root.gid()), (nix_uid(), subgid + 1000));
    for path in ["d", "d/f"] {
        let m = fs::metadata(img.upper.join(path)).unwrap();
        assert_eq!((m.uid(), m.gid()), (subuid + 1000, subgid + 1000), "{path}");
        assert_eq!(mapping.uid.to_container(m.uid()), Some(1001));
    }
    let map: Vec<Vec<u32>> =
        out.stdout.lines().map(|l| l.split_whitespace().map(|n| n.parse().unwrap()).collect()).collect();
    assert_eq!(map, [vec![0, nix_uid(), 1], vec![1, subuid, 65536]], "{out:?}");
}

fn user_nobody_runs() {
    let img = Image::busybox();
    let passwd = img.base.join("etc/passwd");
    let mut text = fs::read_to_string(&passwd).unwrap();
    text.push_str("nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n");
    fs::write(&passwd, text).unwrap();
    let mut spec = img.spec(&["sh", "-c", "id -u; id -g; touch /tmp/n; grep -E 'Cap(Eff)' /proc/self/status"]);
    spec.process.user = "nobody".into();
    let out = run_captured(&spec);
    assert_eq!(out.stdout, "65534\n65534\nCapEff:\t0000000000000000\n", "{out:?}");
    let m = fs::metadata(img.upper.join("tmp/n")).unwrap();
    assert_eq!(m.uid(), env_u32("BUILDER_TEST_SUBUID") + 65533);
    // Another user, by name with its groups.
    let mut spec = img.spec(&["sh", "-c", "id -u; id -G"]);
    spec.process.user = "app".into();
    assert_eq!(run_captured(&spec).stdout, "1000\n1000 2000\n");
}

/// overlayfs in a user namespace: a deletion is still a 0/0 character device, an
/// opaque directory has `user.overlay.opaque` rather than `trusted.overlay.opaque`.
fn whiteouts_and_opaque_dirs() {
    let img = Image::busybox();
    let out = img.run(&["sh", "-c", "rm /data/file && rm -r /data/dir && mkdir /data/dir && ls /data"]);
    assert_eq!(out.status, Ok(ExitStatus::Code(0)), "{out:?}");
    let wh = fs::symlink_metadata(img.upper.join("data/file")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "whiteout is a 0/0 char device");
    assert_eq!(xattr(&img.upper.join("data/dir"), "user.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert_eq!(xattr(&img.upper.join("data/dir"), "trusted.overlay.opaque"), None);
    assert_eq!(fs::read_to_string(img.data_layer.join("data/file")).unwrap(), "lower\n");
}

fn capabilities_are_the_namespaces() {
    let img = Image::busybox();
    let out = img.run(&[
        "sh",
        "-c",
        "grep -E 'Cap(Eff|Bnd)|NoNewPrivs|Seccomp:' /proc/self/status; \
         mount -t tmpfs none /mnt 2>/dev/null || echo no-mount; echo x > /proc/sys/kernel/hostname 2>/dev/null || echo ro-sys",
    ]);
    assert_eq!(
        out.stdout,
        "CapEff:\t00000000a00405fb\nCapBnd:\t00000000a00405fb\nNoNewPrivs:\t1\nSeccomp:\t2\nno-mount\nro-sys\n",
        "{out:?}"
    );
}

fn spec_mounts_and_readonly_binds() {
    let img = Image::busybox();
    let shared = tempfile::tempdir().unwrap();
    fs::write(shared.path().join("in"), "from host").unwrap();
    let mut spec = img.spec(&[
        "sh",
        "-c",
        "cat /ro/in; echo x > /ro/y 2>/dev/null || echo ro-refused; echo w > /rw/out; \
         echo t > /tmpfs/t && cat /tmpfs/t; cat /run/secrets/token; stat -c %a:%u /run/secrets/token; \
         ls /dev/pts; head -c 3 /dev/zero | wc -c",
    ]);
    spec.mounts = vec![
        Mount { target: "/ro".into(), source: MountSource::Bind { source: shared.path().into(), readonly: true } },
        Mount { target: "/rw".into(), source: MountSource::Bind { source: shared.path().into(), readonly: false } },
        Mount { target: "/tmpfs".into(), source: MountSource::Tmpfs { size: Some(1 << 20) } },
        Mount { target: "/run/secrets/token".into(), source: secret(b"hunter2") },
    ];
    let out = run_captured(&spec);
    assert_eq!(out.stdout, "from hostro-refused\nt\nhunter2400:0\nptmx\n3\n", "{out:?}");
    assert_eq!(fs::read_to_string(shared.path().join("out")).unwrap(), "w\n");
    assert_eq!(list(&img.upper), Vec::<String>::new(), "stubs removed");
    // A read-only rootfs, and one without an upper.
    spec.process = process(&["sh", "-c", "touch /x 2>/dev/null || echo refused"]);
    spec.mounts.clear();
    spec.rootfs.readonly = true;
    assert_eq!(run_captured(&spec).stdout, "refused\n");
    let mut spec = img.spec(&["sh", "-c", "echo gone > /x && cat /x"]);
    spec.rootfs.upper = None;
    assert_eq!(run_captured(&spec).stdout, "gone\n");
}

fn network_none_has_only_lo() {
    let img = Image::busybox();
    let mut spec = img.spec(&["sh", "-c", "ls /sys/class/net; ping -c 1 -W 1 127.0.0.1 >/dev/null && echo up"]);
    spec.network = Network::None;
    spec.security = Security::container();
    let out = run_captured(&spec);
    assert_eq!(out.stdout, "lo\nup\n", "{out:?}");
}

fn network_host_works_with_the_hosts_sysfs() {
    let img = Image::busybox();
    let out = img.run(&["sh", "-c", "wc -l < /proc/net/dev; ls /sys/class/net | wc -l"]);
    let host = fs::read_to_string("/proc/net/dev").unwrap().lines().count();
    let host_sys = fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(out.stdout, format!("{host}\n{host_sys}\n"), "{out:?}");
}

fn network_private() {
    let Some(_) = executor::nat_helper() else { return println!("    skipped: slirp4netns is not installed") };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let img = Image::busybox();
    let script = format!(
        "ls /sys/class/net | tr '\\n' ' '; echo; ip -4 addr show tap0 | grep -o 'inet [0-9./]*'; \
         for a in 127.0.0.1 10.0.2.2; do nc -w 2 $a {port} </dev/null && echo reached-$a || echo refused-$a; done"
    );
    let mut spec = img.spec(&["sh", "-c", &script]);
    spec.network = Network::Private;
    let out = run_captured(&spec);
    assert_eq!(out.status, Ok(ExitStatus::Code(0)), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines, ["lo tap0 ", "inet 10.0.2.100/24", "refused-127.0.0.1", "refused-10.0.2.2"], "{out:?}");
    assert!(listener.accept().is_err(), "the host's loopback service was reached");
    assert_eq!(own_processes_matching("slirp4netns"), 0, "the NAT of a rootless sandbox ends with it");
}

/// A file in the user's home, outside the rootfs, stays as it was whatever the
/// sandbox tries, even with the home bound in read-only.
fn home_canary_is_out_of_reach() {
    let home = PathBuf::from(std::env::var("HOME").unwrap());
    let canary = home.join("builder-canary");
    fs::write(&canary, "untouched").unwrap();
    let img = Image::busybox();
    let c = canary.display();
    let script = format!(
        "echo pwned > {c}; echo pwned > /proc/1/root{c}; echo pwned > /proc/self/root{c}; \
         echo pwned > /home-ro/builder-canary 2>/dev/null || echo ro; cat /home-ro/builder-canary; echo; \
         mount -o remount,rw /home-ro 2>/dev/null || echo no-remount; \
         ls /proc | grep -c '^[0-9]'"
    );
    let mut spec = img.spec(&["sh", "-c", &script]);
    spec.mounts.push(Mount { target: "/home-ro".into(), source: MountSource::Bind { source: home, readonly: true } });
    spec.security = Security::container();
    let out = run_captured(&spec);
    assert_eq!(fs::read_to_string(&canary).unwrap(), "untouched", "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..3], ["ro", "untouched", "no-remount"], "{out:?}");
    assert!(lines[3].parse::<u32>().unwrap() <= 4, "{out:?}");
    fs::remove_file(&canary).unwrap();
}

fn limits_need_a_delegated_cgroup() {
    let img = Image::busybox();
    let mut spec = img.spec(&["true"]);
    spec.resources.pids = Some(64);
    let out = run_captured(&spec);
    if probe().pids.is_enforced() {
        assert_eq!(out.status, Ok(ExitStatus::Code(0)), "{out:?}");
    } else {
        let e = out.status.unwrap_err();
        assert!(e.contains("pids") && e.contains("delegated"), "{e}");
    }
}

fn cancel_leaves_no_process() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let img = Image::busybox();
    let spec = img.spec(&["sh", "-c", "sleep 86431 & sleep 86431"]);
    let cancel = Arc::new(AtomicBool::new(false));
    let c = cancel.clone();
    let setter = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        c.store(true, Ordering::SeqCst);
    });
    let mut cb = |_: OutputStream, _: &[u8]| {};
    let result = run(&spec, Stdio::Capture(&mut cb), Some(cancel));
    setter.join().unwrap();
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert_eq!(own_processes_matching("86431"), 0);
    let out = img.run(&["sh", "-c", "exit 1"]);
    assert_eq!(out.status, Ok(ExitStatus::Code(1)));
    assert_eq!(list(&img.upper), Vec::<String>::new());
}

fn only_root_is_mapped() {
    let mapping = id_mapping(&Security::build_step()).unwrap().expect("a user namespace");
    assert!(mapping.is_single_id(), "{mapping}");
    assert_eq!(mapping.uid.to_host(0), Some(nix_uid()));
    assert_eq!(mapping.gid.to_host(0), Some(nix_gid()));
    let img = Image::busybox();
    let out = img.run(&["sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; touch /f"]);
    let words: Vec<String> = out.stdout.split_whitespace().map(String::from).collect();
    let (u, g) = (nix_uid().to_string(), nix_gid().to_string());
    assert_eq!(words, ["0", &u, "1", "0", &g, "1", "deny"], "{out:?}");
    assert_eq!(fs::metadata(img.upper.join("f")).unwrap().uid(), nix_uid());
}

fn chown_to_another_id_fails() {
    let img = Image::busybox();
    let out = img.run(&["sh", "-c", "touch /f && chown 1001:1001 /f"]);
    assert_eq!(out.status, Ok(ExitStatus::Code(1)), "{out:?}");
    assert!(out.stderr.contains("Invalid argument"), "{out:?}");
}

fn another_user_is_a_clear_error() {
    let img = Image::busybox();
    let mut spec = img.spec(&["true"]);
    spec.process.user = "1001".into();
    let e = run_captured(&spec).status.unwrap_err();
    assert!(e.starts_with("switch to user 1001:0: uid 1001 is not mapped in the sandbox's user namespace"), "{e}");
    assert!(e.contains("no subordinate ids in /etc/subuid") && e.contains("usermod --add-subuids"), "{e}");
}

fn disabled_user_namespaces_are_a_clear_error() {
    let img = Image::busybox();
    let e = img.run(&["true"]).status.unwrap_err();
    assert_eq!(
        e,
        "create the sandbox's user namespace: no space left on device (user namespaces are disabled: sysctl \
         user.max_user_namespaces=0; see `builder doctor`)"
    );
}

fn print_probe(isolation: &Isolation) {
    for line in isolation.to_string().lines() {
        println!("    {line}");
    }
}

fn probe_reports_what_the_user_namespace_gets() {
    let isolation = probe();
    print_probe(&isolation);
    let u = &isolation.user_namespace;
    assert!(!u.root && u.allowed.is_ok(), "{u}");
    assert_eq!(u.subuids.as_ref().unwrap()[0].start, env_u32("BUILDER_TEST_SUBUID"));
    assert!(u.newuidmap.is_some() && u.newgidmap.is_some(), "{u}");
    assert!(!u.mapping.as_ref().unwrap().is_single_id(), "{u}");
    assert_eq!((&u.overlay, &u.procfs), (&Ok(()), &Ok(())), "{u}");
    assert_eq!(u.tun, Ok(()), "the root side made /dev/net/tun usable: {u}");
}

fn probe_says_only_root_is_mapped() {
    let isolation = probe();
    print_probe(&isolation);
    let u = &isolation.user_namespace;
    assert_eq!(u.subuids, Ok(vec![]));
    assert!(u.mapping.as_ref().unwrap().is_single_id());
    assert!(isolation.to_string().contains("(only root is mapped; fix: usermod --add-subuids"), "{u}");
    assert_eq!((&u.overlay, &u.procfs), (&Ok(()), &Ok(())), "{u}");
}

fn probe_says_user_namespaces_are_disabled() {
    let isolation = probe();
    print_probe(&isolation);
    let u = &isolation.user_namespace;
    let why = u.allowed.as_ref().unwrap_err();
    assert!(why.contains("user.max_user_namespaces=0"), "{u}");
    assert!(u.overlay.is_err() && u.procfs.is_err(), "{u}");
}

/// Prints how long a trivial rootless sandbox takes, per network (no assertion on time).
fn startup_cost() {
    let img = Image::busybox();
    for network in [Network::Host, Network::None, Network::Private] {
        if network == Network::Private && executor::nat_helper().is_none() {
            continue;
        }
        let mut spec = img.spec(&["true"]);
        spec.network = network;
        let start = std::time::Instant::now();
        for _ in 0..10 {
            assert_eq!(run_captured(&spec).status, Ok(ExitStatus::Code(0)));
        }
        println!(
            "    a rootless sandbox running `true` ({network:?}) takes {:.1} ms",
            start.elapsed().as_secs_f64() * 100.0
        );
    }
}

fn rootfs_views_say_they_need_root() {
    let img = Image::busybox();
    let e = with_rootfs_mounted(&[img.spec(&["true"]).rootfs], |_| ()).unwrap_err().to_string();
    assert_eq!(
        e,
        "unshare mount namespace: operation not permitted (rootfs views need root for now; see `builder doctor`)"
    );
}

/// `MountSource::Overlay` (another stage's filesystem), whole and by sub-path, in a
/// user namespace: writes land in its own upper, with user.overlay markers.
fn overlay_mounts_and_subpaths() {
    let img = Image::busybox();
    let src = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    fs::create_dir_all(src.path().join("sub/dir")).unwrap();
    fs::write(src.path().join("sub/f"), "orig").unwrap();
    for d in ["u", "w", "u2", "w2"] {
        fs::create_dir(scratch.path().join(d)).unwrap();
    }
    let overlay = |subpath: &str, upper: &str, work: &str, readonly| MountSource::Overlay {
        lowerdirs: vec![src.path().into()],
        upperdir: scratch.path().join(upper),
        workdir: scratch.path().join(work),
        subpath: subpath.into(),
        readonly,
    };
    let mut spec = img.spec(&[
        "sh",
        "-c",
        "cat /src/sub/f; echo changed > /src/sub/f; rm -r /src/sub/dir && mkdir /src/sub/dir; \
         ls /part; touch /part/x 2>/dev/null || echo ro",
    ]);
    spec.mounts.push(Mount { target: "/src".into(), source: overlay("", "u", "w", false) });
    spec.mounts.push(Mount { target: "/part".into(), source: overlay("sub", "u2", "w2", true) });
    let out = run_captured(&spec);
    assert_eq!(out.stdout, "origdir\nf\nro\n", "{out:?}");
    assert_eq!(fs::read_to_string(src.path().join("sub/f")).unwrap(), "orig");
    assert_eq!(fs::read_to_string(scratch.path().join("u/sub/f")).unwrap(), "changed\n");
    assert_eq!(xattr(&scratch.path().join("u/sub/dir"), "user.overlay.opaque").as_deref(), Some(&b"y"[..]));
    assert_eq!(list(&img.upper), Vec::<String>::new(), "stubs removed");
}

/// A pty as stdio, and the mounts of /dev (devpts with the tty group, which the
/// subordinate ids map).
fn terminal_and_dev() {
    let img = Image::busybox();
    let spec = img.spec(&["sh", "-c", "test -t 0 && test -t 1"]);
    assert_eq!(run(&spec, Stdio::TerminalOutput, None).unwrap(), ExitStatus::Code(0));
    let out = img.run(&["sh", "-c", "grep ' /dev' /proc/mounts | cut -d' ' -f2-4 | sort"]);
    for mount in ["/dev tmpfs", "/dev/mqueue mqueue", "/dev/pts devpts", "/dev/shm tmpfs", "/dev/null devtmpfs"] {
        assert!(out.stdout.contains(mount), "{mount} missing: {out:?}");
    }
    // (Shown with the host's ids: gid 5 is the fifth subordinate gid.)
    let tty = format!("gid={}", env_u32("BUILDER_TEST_SUBGID") + 4);
    assert!(out.stdout.lines().any(|l| l.starts_with("/dev/pts devpts") && l.contains(&tty)), "{out:?}");
}

/// Processes of this user (others may run the root suite meanwhile) whose command
/// line contains `marker`.
fn own_processes_matching(marker: &str) -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter(|e| fs::metadata(e.path()).is_ok_and(|m| m.uid() == nix_uid()))
        .filter(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(marker))
        })
        .count()
}
