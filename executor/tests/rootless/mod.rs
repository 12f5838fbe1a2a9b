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

mod child;

pub use child::child;

use crate::common::*;
use executor::*;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
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
