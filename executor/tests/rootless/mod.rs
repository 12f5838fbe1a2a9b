//! Rootless sandboxes: this binary, as root, makes (or reuses) test users and runs
//! itself again as one of them ([`CHILD`]), where the subset below runs against the
//! real kernel with a user namespace: a user with subordinate ids, the same tests
//! for one without (a map of root alone), and one with user namespaces disabled by
//! `user.max_user_namespaces=0`. That sysctl is per user namespace, and a limit holds
//! in every namespace below: the child runs in a user namespace of its own (all ids
//! mapped to themselves) where the limit is 0, which disables user namespaces for it
//! exactly as the host-wide setting would, without touching the host's (which root
//! here cannot even write: it lacks CAP_SYS_RESOURCE), so nothing can be left
//! disabled for anyone else. What the root side changes on the host (the users, their
//! `/etc/subuid` lines, the mode of `/dev/net/tun`) is either meant to stay (the
//! users) or restored, on a panic too, and after a crash by the next run (a note in
//! /run says what to restore).

use crate::common::*;
use executor::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the rootless subset named by the next argument: `subids`, `single`, `disabled`.
pub const CHILD: &str = "--rootless-child";

/// A user with subordinate ids (allocated by `useradd`, or added here).
const USER: &str = "builder-rootless-test";
/// A user without any.
const USER_WITHOUT_SUBIDS: &str = "builder-rootless-nosub";

/// Host state a test changed, to restore even if this process dies: `path mode value`.
const RESTORE_NOTE: &str = "/run/builder-rootless-test.restore";

// ---------------------------------------------------------------- the root side

struct TestUser {
    name: &'static str,
    uid: u32,
    gid: u32,
    home: PathBuf,
    /// The first subordinate uid and gid.
    subids: Option<(u32, u32)>,
}

fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{program} {}: {} {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The first range of `name` in `file`.
fn first_range(file: &str, name: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string(file).unwrap_or_default();
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() == 3 && f[0] == name).then(|| Some((f[1].parse().ok()?, f[2].parse().ok()?))).flatten()
    })
}

/// The start of a free range of 65536 ids, after every range of both files.
fn free_range() -> u32 {
    let end = ["/etc/subuid", "/etc/subgid"]
        .iter()
        .flat_map(|f| fs::read_to_string(f).unwrap_or_default().lines().map(String::from).collect::<Vec<_>>())
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
        })
        .max()
        .unwrap_or(0);
    (end.max(100_000).div_ceil(65536) * 65536) as u32
}

impl TestUser {
    /// Makes `name` if missing, with or without subordinate ids as asked.
    fn ensure(name: &'static str, subids: bool) -> Result<TestUser, String> {
        if sh("id", &["-u", name]).is_err() {
            let mut args = vec!["-m", "-s", "/bin/sh"];
            if !subids {
                args.extend(["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]);
            }
            args.push(name);
            sh("useradd", &args)?;
        }
        let count = 65536u32;
        match (subids, first_range("/etc/subuid", name), first_range("/etc/subgid", name)) {
            (true, Some((_, u)), Some((_, g))) if u >= count && g >= count => {}
            (true, ..) => {
                let start = free_range();
                let range = format!("{start}-{}", start + count - 1);
                sh("usermod", &["--add-subuids", &range, "--add-subgids", &range, name])?;
            }
            (false, None, None) => {}
            (false, uids, gids) => {
                for (flag, range) in [("--del-subuids", uids), ("--del-subgids", gids)] {
                    if let Some((start, n)) = range {
                        sh("usermod", &[flag, &format!("{start}-{}", start + n - 1), name])?;
                    }
                }
            }
        }
        let id = |flag| sh("id", &[flag, name]).and_then(|s| s.trim().parse::<u32>().map_err(|e| e.to_string()));
        let home = sh("getent", &["passwd", name])?.trim().split(':').nth(5).unwrap_or("/").into();
        let subids = match (first_range("/etc/subuid", name), first_range("/etc/subgid", name)) {
            (Some((u, _)), Some((g, _))) => Some((u, g)),
            _ => None,
        };
        Ok(TestUser { name, uid: id("-u")?, gid: id("-g")?, home, subids })
    }
}

/// Why rootless sandboxes cannot be tried here at all, if they cannot.
fn skip_reason() -> Option<String> {
    for tool in ["useradd", "usermod", "newuidmap", "newgidmap"] {
        if sh("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!("{tool} is not installed (apt-get install passwd uidmap)"));
        }
    }
    None
}

/// Runs this binary as `user` with `mode`, prints what it said, and says whether it
/// passed. Its files live in a directory of its own, removed afterwards. With
/// `no_user_namespaces`, it runs in a user namespace (every id mapped to itself) with
/// `user.max_user_namespaces=0`.
fn run_child(user: &TestUser, mode: &str, no_user_namespaces: bool) -> bool {
    let work = tempfile::Builder::new().prefix("rootless-").tempdir().unwrap();
    // The private temp dir above is root's: let the user through (not in).
    let tmp = std::env::temp_dir();
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o711)).unwrap();
    fs::set_permissions(work.path(), fs::Permissions::from_mode(0o711)).unwrap();
    // A copy the user may execute, wherever this build lives.
    let exe = work.path().join("sandbox-test");
    fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let own = work.path().join("tmp");
    fs::create_dir(&own).unwrap();
    std::os::unix::fs::chown(&own, Some(user.uid), Some(user.gid)).unwrap();
    fs::set_permissions(&own, fs::Permissions::from_mode(0o700)).unwrap();
    let mut command = Command::new(&exe);
    let limited = if no_user_namespaces {
        Some(in_a_user_namespace_without_user_namespaces(&mut command, user))
    } else {
        // std drops the supplementary groups too.
        command.uid(user.uid).gid(user.gid);
        None
    };
    command
        .args([CHILD, mode])
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .env("HOME", &user.home)
        .env("USER", user.name)
        .env("LOGNAME", user.name)
        .env("TMPDIR", &own)
        .env("RUST_BACKTRACE", "1")
        .current_dir(&own);
    if let Some((uid, gid)) = user.subids {
        command.env("BUILDER_TEST_SUBUID", uid.to_string()).env("BUILDER_TEST_SUBGID", gid.to_string());
    }
    let out = command.output().unwrap();
    if let Some((mapper, pipes)) = limited {
        drop(pipes);
        mapper.join().unwrap();
    }
    if !out.status.success() {
        println!("    the child ({:?}) ended with {}", command.get_program(), out.status);
    }
    for line in String::from_utf8_lossy(&out.stdout).lines().chain(String::from_utf8_lossy(&out.stderr).lines()) {
        println!("    | {line}");
    }
    // Files the sandboxes gave subordinate owners the user cannot remove; root can.
    drop(work);
    out.status.success()
}

/// Makes `command` start in a new user namespace, every id mapped to itself, where
/// `user.max_user_namespaces` is 0, then become `user`. The child writes its pid on
/// a pipe and waits; the thread returned (root, outside) writes its maps and lets it
/// go on. Drop the pipes once the command has run, then join the thread.
fn in_a_user_namespace_without_user_namespaces(
    command: &mut Command,
    user: &TestUser,
) -> (std::thread::JoinHandle<()>, (std::io::PipeWriter, std::io::PipeReader)) {
    use std::io::{Read, Write};
    use std::os::fd::AsRawFd;
    let (mut pid_r, pid_w) = std::io::pipe().unwrap();
    let (go_r, mut go_w) = std::io::pipe().unwrap();
    let (pid_fd, go_fd) = (pid_w.as_raw_fd(), go_r.as_raw_fd());
    let (uid, gid) = (user.uid, user.gid);
    let mapper = std::thread::spawn(move || {
        let mut pid = [0u8; 4];
        if pid_r.read_exact(&mut pid).is_err() {
            return; // the child never got there: its error says why
        }
        let proc = PathBuf::from(format!("/proc/{}", i32::from_ne_bytes(pid)));
        fs::write(proc.join("uid_map"), "0 0 4294967295\n").unwrap();
        fs::write(proc.join("gid_map"), "0 0 4294967295\n").unwrap();
        go_w.write_all(b"g").unwrap();
    });
    // SAFETY: raw syscalls only between fork and exec, on data prepared beforehand.
    unsafe {
        command.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::unshare(libc::CLONE_NEWUSER) < 0 {
                return fail();
            }
            let pid = libc::getpid().to_ne_bytes();
            let mut go = 0u8;
            if libc::write(pid_fd, pid.as_ptr().cast(), 4) != 4 || libc::read(go_fd, (&raw mut go).cast(), 1) != 1 {
                return fail();
            }
            // Root of this namespace, with its CAP_SYS_RESOURCE: the limit below it is 0.
            let fd = libc::open(c"/proc/sys/user/max_user_namespaces".as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 || libc::write(fd, c"0".as_ptr().cast(), 1) != 1 {
                return fail();
            }
            libc::close(fd);
            if libc::setgroups(0, std::ptr::null()) < 0 || libc::setresgid(gid, gid, gid) < 0 {
                return fail();
            }
            if libc::setresuid(uid, uid, uid) < 0 {
                return fail();
            }
            Ok(())
        });
    }
    (mapper, (pid_w, go_r))
}

/// A file's mode (or content), changed for a while: restored on drop, or by the next
/// run should this one die first.
struct Changed {
    path: PathBuf,
    old: String,
    mode: bool,
}

impl Changed {
    fn mode(path: &str, mode: u32) -> Changed {
        let old = fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        let changed = Changed { path: path.into(), old: format!("{old:o}"), mode: true };
        changed.note();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        changed
    }

    fn note(&self) {
        let line = format!("{} {} {}\n", self.path.display(), if self.mode { "mode" } else { "value" }, self.old);
        let mut note = fs::read_to_string(RESTORE_NOTE).unwrap_or_default();
        note.push_str(&line);
        fs::write(RESTORE_NOTE, note).unwrap();
    }

    fn restore(path: &Path, mode: bool, old: &str) {
        let _ = if mode {
            u32::from_str_radix(old, 8)
                .map_err(std::io::Error::other)
                .and_then(|m| fs::set_permissions(path, fs::Permissions::from_mode(m)))
        } else {
            fs::write(path, old)
        };
    }
}

impl Drop for Changed {
    fn drop(&mut self) {
        Changed::restore(&self.path, self.mode, &self.old);
        let note = fs::read_to_string(RESTORE_NOTE).unwrap_or_default();
        let line = format!("{} {} {}", self.path.display(), if self.mode { "mode" } else { "value" }, self.old);
        let rest: String = note.lines().filter(|l| *l != line).map(|l| format!("{l}\n")).collect();
        let _ = if rest.is_empty() { fs::remove_file(RESTORE_NOTE) } else { fs::write(RESTORE_NOTE, rest) };
    }
}

/// Puts back what a run that died (killed mid-test) left changed.
pub fn restore_after_a_crash() {
    let Ok(note) = fs::read_to_string(RESTORE_NOTE) else { return };
    for line in note.lines() {
        if let [path, kind, old] = line.split(' ').collect::<Vec<_>>()[..] {
            println!("restoring {path} ({kind} {old}), changed by a test run that died");
            Changed::restore(Path::new(path), kind == "mode", old);
        }
    }
    let _ = fs::remove_file(RESTORE_NOTE);
}

fn skip(why: impl std::fmt::Display) {
    println!("    skipped: {why}");
}

pub fn with_subordinate_ids() {
    if let Some(why) = skip_reason() {
        return skip(why);
    }
    let user = TestUser::ensure(USER, true).unwrap();
    // Network::Private needs the tap device, 0666 on most distributions.
    let tun = Path::new("/dev/net/tun");
    let _tun = (tun.exists() && fs::metadata(tun).unwrap().permissions().mode() & 0o006 != 0o006).then(|| {
        println!("    (/dev/net/tun made 0666 for the test, as distributions have it; restored after)");
        Changed::mode("/dev/net/tun", 0o666)
    });
    assert!(run_child(&user, "subids", false), "the rootless subset failed as {}", user.name);
}

pub fn without_subordinate_ids() {
    if let Some(why) = skip_reason() {
        return skip(why);
    }
    let user = TestUser::ensure(USER_WITHOUT_SUBIDS, false).unwrap();
    assert!(run_child(&user, "single", false), "the single-id subset failed as {}", user.name);
}

pub fn with_user_namespaces_disabled() {
    if let Some(why) = skip_reason() {
        return skip(why);
    }
    let user = TestUser::ensure(USER, true).unwrap();
    assert!(run_child(&user, "disabled", true), "the disabled-user-namespace subset failed");
}

/// As root, [`UserNamespace::Private`]: root is mapped (to itself, or to root's own
/// subordinate ids) and the sandbox's capabilities are its user namespace's.
pub fn private_user_namespace_as_root() {
    let img = Image::busybox();
    let mut spec = img.spec(&["sh", "-c", "cat /proc/self/uid_map; touch /made; echo x > /dev/null && echo ok"]);
    spec.security.user_namespace = UserNamespace::Private;
    let mapping = id_mapping(&spec.security).unwrap().expect("a mapping");
    assert_eq!(mapping.uid.to_host(0), Some(0), "{mapping}");
    let out = run_captured(&spec);
    assert_eq!(out.status, Ok(ExitStatus::Code(0)), "{out:?}");
    let first = out.stdout.lines().next().unwrap().split_whitespace().collect::<Vec<_>>();
    assert_eq!(first[..2], ["0", "0"], "{out:?}");
    assert!(out.stdout.ends_with("ok\n"), "{out:?}");
    assert_eq!(fs::metadata(img.upper.join("made")).unwrap().uid(), 0);
    assert_eq!(id_mapping(&Security::build_step()).unwrap(), None, "root uses none by default");
}

// ---------------------------------------------------------------- the child side

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
