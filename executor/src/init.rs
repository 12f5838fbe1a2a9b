//! The sandbox init: PID 1 of the new PID namespace, re-executed from
//! `/proc/self/exe`. It builds the filesystem, forks the process, execs it as the
//! requested user, reaps every zombie, forwards SIGTERM/SIGINT/... to the process and
//! reports its exit status. When it exits, the kernel kills whatever is left in the
//! namespace and the mount namespace (with every sandbox mount) goes with it.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork};

use crate::paths::create_dir_owned;
use crate::protocol::{CONFIG_FD, INIT_ENV, InitConfig, InitUserNamespace, Message, NETWORK_FD, STATUS_FD};
use crate::sandbox::Setup;
use crate::syscall::{Identity, Real, Syscall};
use crate::user::{self, User};
use crate::{Error, ExitStatus, Rlimit, Security, caps, cgroup, rlimits, seccomp};

/// Set once this process has checked whether it is a sandbox init; [`crate::run`]
/// refuses to re-execute a binary that never checks (it would run the wrong `main`).
pub(crate) static CHECKED: AtomicBool = AtomicBool::new(false);

/// Runs before `main` in every binary that links this crate, test binaries included,
/// so that a sandbox init never reaches someone else's `main`.
#[used]
#[unsafe(link_section = ".init_array")]
pub(crate) static RUN_BEFORE_MAIN: extern "C" fn() = before_main;

extern "C" fn before_main() {
    maybe_run_init();
}

/// If this process is a sandbox init, runs it and exits; otherwise returns at once.
///
/// It already runs before `main` (from `.init_array`); calling it first thing in
/// `main` as well is cheap and keeps working should that mechanism be unavailable.
pub fn maybe_run_init() {
    CHECKED.store(true, Ordering::SeqCst);
    if std::env::var_os(INIT_ENV).is_none() {
        return;
    }
    let code = init_main();
    // SAFETY: _exit ends the process without running atexit handlers or destructors,
    // which belong to the binary's own main, never reached.
    unsafe { libc::_exit(code) }
}

/// Status messages to the parent; if it is gone, so is the sandbox.
struct Reporter(File);

impl Reporter {
    fn send(&mut self, msg: &Message) -> io::Result<()> {
        let mut line = serde_json::to_vec(msg).map_err(io::Error::other)?;
        line.push(b'\n');
        self.0.write_all(&line)
    }
}

fn init_main() -> i32 {
    // SAFETY: fds 3 and 4 were placed by the parent for this process alone.
    let (mut config_file, status_file) = unsafe { (File::from_raw_fd(CONFIG_FD), File::from_raw_fd(STATUS_FD)) };
    // (The console socket, when there is one: nor does a fuse-overlayfs daemon.)
    for fd in [CONFIG_FD, STATUS_FD, crate::console::CONSOLE_FD] {
        // SAFETY: sets FD_CLOEXEC on a descriptor we own, so the process never sees it.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    // SAFETY: plain signal(2)/umask(2) calls on a single-threaded process. SIGPIPE is
    // ignored so a vanished parent shows up as EPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        libc::umask(0o022);
    }
    if parent_is_gone() {
        return 1;
    }
    // SAFETY: PR_SET_NAME reads a NUL-terminated name of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"builder-init".as_ptr(), 0, 0, 0) };
    let mut reporter = Reporter(status_file);
    let mut text = Vec::new();
    let config: Result<InitConfig, Error> = config_file
        .rewind()
        .and_then(|()| config_file.read_to_end(&mut text))
        .map_err(|e| Error::sys("read sandbox config", e))
        .and_then(|_| {
            serde_json::from_slice(&text).map_err(|e| Error::sys("parse sandbox config", io::Error::other(e)))
        });
    drop(config_file);
    let result = config.and_then(|config| run_init(&config, &mut reporter));
    let msg = match result {
        Ok(status) => Message::Exited(status),
        Err(e) => Message::Failed(e.into()),
    };
    match reporter.send(&msg) {
        Ok(()) if matches!(msg, Message::Exited(_)) => 0,
        _ => 1,
    }
}

/// The parent died before the parent-death signal was armed: the read end of the
/// status pipe is closed.
fn parent_is_gone() -> bool {
    let mut fd = libc::pollfd { fd: STATUS_FD, events: 0, revents: 0 };
    // SAFETY: polling one valid pollfd without waiting.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & libc::POLLERR != 0
}

fn run_init(config: &InitConfig, reporter: &mut Reporter) -> Result<ExitStatus, Error> {
    if config.fuse_overlayfs.is_some() {
        // Before the device cgroup, which denies /dev/fuse (`snapshotter/fuse.rs`).
        let overlays = config.spec.mounts.iter().filter(|m| matches!(m.source, crate::MountSource::Overlay { .. }));
        crate::fuse_overlay::preopen(1 + overlays.count())
            .map_err(|e| Error::sys("open /dev/fuse for fuse-overlayfs", e))?;
    }
    // First: all that follows, the process included, is under the sandbox's limits.
    cgroup::join(&config.cgroup_procs)?;
    if config.join_network {
        join_network()?;
    }
    let mut report = |c| reporter.send(&Message::Created(c));
    Setup { sys: &Real, host_root: PathBuf::from("/"), report: &mut report, nodev: true, userns: false, fuse: None }
        .run(config)
        .map_err(|e| if config.user_namespace.is_some() { explain_in_user_namespace(e) } else { e })?;
    crate::fuse_overlay::close_preopened();
    if config.terminal {
        crate::console::open_in_sandbox()?;
    }

    let process = &config.spec.process;
    let passwd = read_optional("/etc/passwd")?;
    let group = read_optional("/etc/group")?;
    let user = user::resolve(&process.user, &user::parse_passwd(&passwd), &user::parse_group(&group))?;
    if let Some(userns) = &config.user_namespace {
        check_mapped(userns, &user)?;
    }
    let env = environment(&process.env, &user);
    let cwd = if process.cwd.is_empty() { "/" } else { &process.cwd };
    let cwd = Path::new("/").join(cwd);
    create_dir_owned(&cwd, user.uid, user.gid).map_err(|e| Error::sys(format!("create cwd {}", cwd.display()), e))?;
    let mut exec = Exec::new(&process.args, &env, &cwd)?;
    exec.terminal = config.terminal;
    exec.setgroups = config.user_namespace.as_ref().is_none_or(|u| u.setgroups);
    exec.set_security(config.spec.security)?;
    exec.rlimits = config.spec.resources.rlimits.clone();

    let forwarded = forwarded_signals();
    let mut blocked = forwarded;
    blocked.add(Signal::SIGCHLD);
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&blocked), None).map_err(|e| Error::sys("block signals", e.into()))?;

    // SAFETY: this process is single-threaded (a fresh exec), so fork is safe.
    match unsafe { fork() }.map_err(|e| Error::sys("fork", e.into()))? {
        ForkResult::Child => exec.run(&Real, &user, reporter),
        ForkResult::Parent { child } => Ok(reap_until_exit(child, &blocked)),
    }
}

/// Joins the network namespace the parent placed on [`NETWORK_FD`] (before `/sys` is
/// mounted: sysfs shows the namespace of whoever mounts it).
fn join_network() -> Result<(), Error> {
    // SAFETY: fd 5 was placed by the parent for this process alone; the File closes it.
    let netns = unsafe { File::from_raw_fd(NETWORK_FD) };
    // SAFETY: setns with a namespace descriptor we own and its type.
    if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&netns), libc::CLONE_NEWNET) } < 0 {
        return Err(Error::sys("join the sandbox network namespace", io::Error::last_os_error()));
    }
    Ok(())
}

/// The user's ids must exist in the sandbox's user namespace: else the switch fails
/// with a bare EINVAL, and the cause is a missing subordinate range.
fn check_mapped(userns: &InitUserNamespace, user: &User) -> Result<(), Error> {
    let unmapped = if userns.mapping.uid.to_host(user.uid).is_none() {
        Some(format!("uid {}", user.uid))
    } else if userns.mapping.gid.to_host(user.gid).is_none() {
        Some(format!("gid {}", user.gid))
    } else if userns.setgroups {
        user.groups.iter().find(|g| userns.mapping.gid.to_host(**g).is_none()).map(|g| format!("group {g}"))
    } else {
        None
    };
    let Some(unmapped) = unmapped else { return Ok(()) };
    let why = if userns.mapping.is_single_id() {
        format!(
            "only root is, as user {0} has no subordinate ids in /etc/subuid and /etc/subgid: add a range, e.g. \
             `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {0}` (as root)",
            userns.user
        )
    } else {
        format!("it is beyond the subordinate ids of user {} in /etc/subuid and /etc/subgid", userns.user)
    };
    Err(Error::sys(
        format!("switch to user {}:{}", user.uid, user.gid),
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{unmapped} is not mapped in the sandbox's user namespace ({why}; see `builder doctor`)"),
        ),
    ))
}

/// A set-up step the kernel refused in the sandbox's user namespace, with its likely
/// cause.
pub(crate) fn explain_in_user_namespace(e: Error) -> Error {
    let Error::Sys { what, source } = e else { return e };
    let hint = match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES | libc::EINVAL) if what.starts_with("mount overlay") => {
            "overlayfs in a user namespace needs Linux 5.11 or later, an upperdir filesystem with user xattrs, \
             and lowerdirs and upperdir the caller may read and write"
        }
        Some(libc::EPERM | libc::EACCES) if what.starts_with("mount proc") => {
            "a fresh /proc needs the sandbox's own PID namespace and a host /proc no mount hides in part, \
             which an unprivileged container's is not"
        }
        Some(libc::EPERM) if ["mount", "bind", "remount"].iter().any(|op| what.starts_with(op)) => {
            "not allowed in the sandbox's user namespace"
        }
        Some(libc::EACCES) => "the caller may not reach this path: the sandbox's root is the caller on the host",
        _ => return Error::Sys { what, source },
    };
    let text = crate::describe_io(&source);
    Error::sys(what, io::Error::new(source.kind(), format!("{text} ({hint}; see `builder doctor`)")))
}

/// Signals that, sent to the init, are passed on to the process.
fn forwarded_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
        set.add(s);
    }
    set
}

/// Reaps every child (orphans land here) and forwards signals, until `child` exits.
fn reap_until_exit(child: Pid, blocked: &SigSet) -> ExitStatus {
    loop {
        let sig = match blocked.wait() {
            Ok(sig) => sig,
            Err(_) => continue,
        };
        if sig != Signal::SIGCHLD {
            let _ = kill(child, sig);
            continue;
        }
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => return ExitStatus::Code(code),
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == child => return ExitStatus::Signal(sig as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

fn read_optional(path: &str) -> Result<String, Error> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(Error::sys(format!("read {path}"), e)),
    }
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The spec's environment, with `PATH` and `HOME` filled in when missing.
fn environment(env: &[String], user: &User) -> Vec<String> {
    let mut env = env.to_vec();
    let has = |env: &[String], key: &str| env.iter().any(|kv| kv.split_once('=').map(|(k, _)| k) == Some(key));
    if !has(&env, "PATH") {
        env.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={}", user.home));
    }
    env
}

/// Everything the forked process needs, computed before the fork.
struct Exec {
    arg0: String,
    candidates: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: PathBuf,
    /// Make stdin, a pty, the controlling terminal of a new session.
    terminal: bool,
    security: Security,
    rlimits: Vec<Rlimit>,
    /// The seccomp filter, compiled before the fork: the child only loads it.
    seccomp: Option<seccomp::Filter>,
    /// Whether the supplementary groups can be set (see [`Identity::setgroups`]).
    setgroups: bool,
}

fn cstring(s: &[u8]) -> Result<CString, Error> {
    CString::new(s).map_err(|_| Error::sys("exec", io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in argument")))
}

impl Exec {
    fn new(args: &[String], env: &[String], cwd: &Path) -> Result<Self, Error> {
        let arg0 = args.first().cloned().unwrap_or_default();
        let path = env.iter().rev().find_map(|kv| kv.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
        let candidates: Vec<PathBuf> = if arg0.contains('/') {
            vec![cwd.join(&arg0)]
        } else if arg0.is_empty() {
            vec![]
        } else {
            path.split(':').map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(&arg0)).collect()
        };
        Ok(Exec {
            candidates: candidates.iter().map(|c| cstring(c.as_os_str().as_bytes())).collect::<Result<_, _>>()?,
            argv: args.iter().map(|a| cstring(a.as_bytes())).collect::<Result<_, _>>()?,
            envp: env.iter().map(|e| cstring(e.as_bytes())).collect::<Result<_, _>>()?,
            cwd: cwd.to_path_buf(),
            arg0,
            terminal: false,
            security: Security::default(),
            rlimits: Vec::new(),
            seccomp: None,
            setgroups: true,
        })
    }

    /// Takes `security` and compiles its seccomp filter, if it has one.
    fn set_security(&mut self, security: Security) -> Result<(), Error> {
        self.security = security;
        self.seccomp = security
            .seccomp
            .then(|| seccomp::Filter::new(security.capabilities))
            .transpose()
            .map_err(|e| Error::sys("compile seccomp filter", e))?;
        Ok(())
    }

    /// In the forked child: become the user, drop privileges, exec. Never returns.
    fn run(self, sys: &dyn Syscall, user: &User, reporter: &mut Reporter) -> ! {
        if let Err(e) = self.become_user(sys, user) {
            let _ = reporter.send(&Message::Failed(e.into()));
            // SAFETY: _exit in a forked child.
            unsafe { libc::_exit(126) }
        }
        let argv: Vec<*const libc::c_char> =
            self.argv.iter().map(|a| a.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let envp: Vec<*const libc::c_char> =
            self.envp.iter().map(|e| e.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let mut denied = None;
        let mut last = libc::ENOENT;
        for candidate in &self.candidates {
            // SAFETY: argv and envp are NULL-terminated arrays of pointers into CStrings
            // that live until the call returns (it only returns on failure).
            unsafe { libc::execve(candidate.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            last = io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOENT);
            match last {
                libc::ENOENT | libc::ENOTDIR => {}
                libc::EACCES => denied = Some(candidate),
                _ => break,
            }
        }
        let (code, reason) = match (denied, last) {
            (Some(_), _) | (None, libc::EACCES) => (126, describe(libc::EACCES)),
            (None, libc::ENOENT | libc::ENOTDIR) if !self.arg0.contains('/') => {
                (127, "executable file not found in $PATH".to_string())
            }
            (None, libc::ENOENT | libc::ENOTDIR) => (127, describe(libc::ENOENT)),
            (None, errno) => (126, describe(errno)),
        };
        let _ = writeln!(io::stderr(), "exec {:?}: {reason}", self.arg0);
        // SAFETY: _exit in a forked child after a failed exec.
        unsafe { libc::_exit(code) }
    }

    fn become_user(&self, sys: &dyn Syscall, user: &User) -> Result<(), Error> {
        reset_signals();
        if self.terminal {
            // SAFETY: setsid and TIOCSCTTY with an integer argument, in the forked
            // child; a new session leader may take fd 0, a pty, as its terminal.
            let rc = unsafe {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0)
            };
            if rc < 0 {
                return Err(Error::sys("set controlling terminal", io::Error::last_os_error()));
            }
        }
        // As root still, so that hard limits may be raised as well as lowered.
        rlimits::apply(&self.rlimits)?;
        let keep = self.security.capabilities;
        caps::limit_bounding_set(keep).map_err(|e| Error::sys("limit capability bounding set", e))?;
        let id = Identity { uid: user.uid, gid: user.gid, groups: user.groups.clone(), setgroups: self.setgroups };
        sys.set_identity(&id).map_err(|e| Error::sys(format!("switch to user {}:{}", user.uid, user.gid), e))?;
        if user.uid == 0 {
            caps::set_sets(keep).map_err(|e| Error::sys("set capabilities", e))?;
        }
        // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(Error::sys("set no_new_privs", io::Error::last_os_error()));
        }
        std::env::set_current_dir(&self.cwd).map_err(|e| Error::sys(format!("chdir {}", self.cwd.display()), e))?;
        // Last: from here on only what the filter allows (execve, write, exit...).
        if let Some(filter) = &self.seccomp {
            filter.install().map_err(|e| Error::sys("load seccomp filter", e))?;
        }
        Ok(())
    }
}

/// An errno the way Go (and so Docker) words it: lowercase, no "(os error N)".
fn describe(errno: i32) -> String {
    match errno {
        libc::EACCES => "permission denied".into(),
        libc::ENOENT => "no such file or directory".into(),
        libc::ENOEXEC => "exec format error".into(),
        libc::ETXTBSY => "text file busy".into(),
        libc::EISDIR => "is a directory".into(),
        _ => {
            let text = io::Error::from_raw_os_error(errno).to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            let mut chars = text.chars();
            chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or(text)
        }
    }
}

/// Default dispositions and an empty mask: ignored or blocked signals would be
/// inherited across exec (the builder itself ignores SIGPIPE).
fn reset_signals() {
    for sig in 1..=libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition to SIG_DFL in a single-threaded child.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// The name this crate gives the init in `ps`.
pub(crate) const INIT_ARG0: &str = "builder-init";

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User { uid: 1, gid: 1, groups: vec![1], home: "/home/u".into() }
    }

    #[test]
    fn environment_fills_in_path_and_home() {
        let env = environment(&["A=1".into()], &user());
        assert_eq!(env, ["A=1", &format!("PATH={DEFAULT_PATH}"), "HOME=/home/u"]);
        let env = environment(&["PATH=/x".into(), "HOME=/h".into()], &user());
        assert_eq!(env, ["PATH=/x", "HOME=/h"]);
    }

    #[test]
    fn the_seccomp_filter_is_compiled_before_the_fork_unless_insecure() {
        let mut e = Exec::new(&["true".into()], &[], Path::new("/")).unwrap();
        e.set_security(Security::build_step()).unwrap();
        assert!(e.seccomp.is_some());
        e.set_security(Security::insecure()).unwrap();
        assert!(e.seccomp.is_none());
    }

    #[test]
    fn exec_candidates_follow_path() {
        let e = Exec::new(&["ls".into()], &["PATH=/a::/b".into()], Path::new("/w")).unwrap();
        let c: Vec<_> = e.candidates.iter().map(|c| c.to_str().unwrap()).collect();
        assert_eq!(c, ["/a/ls", "./ls", "/b/ls"]);
        let e = Exec::new(&["./run".into()], &[], Path::new("/w")).unwrap();
        assert_eq!(e.candidates[0].to_str().unwrap(), "/w/./run");
    }
}
