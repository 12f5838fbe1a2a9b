//! The parent side of [`crate::run`]: prepare a bundle directory, start the sandbox
//! init in new namespaces, pump its output, honour cancellation, and clean up.
//!
//! The init is started with a raw `clone(2)` that creates the namespaces (so it is PID 1
//! of the new PID namespace and the parent can kill the whole sandbox through it) and
//! immediately execs `/proc/self/exe`. Between clone and exec the child of this
//! multithreaded process runs only raw syscalls on data computed beforehand (dup2,
//! close_range, prctl, setsid, execve): nothing that could take a lock another thread
//! held at fork time. Everything else happens in the fresh, single-threaded init.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::cgroup::SandboxCgroup;
use crate::fds::{dup_high, pipe};
use crate::network::Nat;
use crate::network::{self, PrivateNet};
use crate::paths::Created;
use crate::protocol::{CONFIG_FD, INIT_ENV, InitConfig, InitError, InitUserNamespace, Message, NETWORK_FD, STATUS_FD};
use crate::snapshotter::Prepared;
use crate::userns::{self, Plan};
use crate::{
    Control, Error, ExitStatus, Network, OutputStream, Spec, Stdio, Upper, console, init, rlimits, snapshotter, stubs,
    tty,
};

fn sys(what: &'static str) -> impl FnOnce(io::Error) -> Error {
    move |e| Error::sys(what, e)
}

/// What a descriptor the parent polls carries.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pipe {
    /// The init's JSON status lines.
    Status,
    /// Captured output.
    Output(OutputStream),
    /// The pty master: the process's output, for our stdout.
    Terminal,
    /// Our stdin, for the pty master.
    Input,
    /// The socket the init sends the pty master on.
    Console,
}

pub(crate) fn run(spec: &Spec, stdio: Stdio<'_>, control: Control) -> Result<ExitStatus, Error> {
    // The native snapshotter: the sandbox runs on copies of the layers, whose changes
    // go into the upperdir once it is gone (and its mountpoint stubs with it).
    // With fuse-overlayfs, the init mounts it, and the upperdir gets overlayfs's
    // markers afterwards.
    match snapshotter::prepare_spec(spec)? {
        Prepared::AsGiven => run_as_given(spec, stdio, control, None),
        Prepared::Fuse(program) => {
            let status = run_as_given(spec, stdio, control, Some(program))?;
            snapshotter::normalize_fuse_upper(&spec.rootfs)?;
            Ok(status)
        }
        Prepared::Native(spec, copies) => {
            let status = run_as_given(&spec, stdio, control, None)?;
            copies.finish()?;
            Ok(status)
        }
    }
}

/// [`run`] with the rootfs mounted as `spec` says, whatever the snapshotter (the
/// trial sandbox that tries overlayfs).
pub(crate) fn run_as_given(
    spec: &Spec,
    mut stdio: Stdio<'_>,
    control: Control,
    fuse: Option<std::path::PathBuf>,
) -> Result<ExitStatus, Error> {
    // Keeps the before-main hook linked into every binary that can call `run`.
    std::hint::black_box(&init::RUN_BEFORE_MAIN);
    if !init::CHECKED.load(Ordering::SeqCst) {
        return Err(Error::sys(
            "start sandbox",
            io::Error::other("executor::maybe_run_init() was never called in this binary"),
        ));
    }
    if spec.process.args.is_empty() {
        return Err(Error::sys("start sandbox", io::Error::new(io::ErrorKind::InvalidInput, "no command")));
    }
    let cancel = control.cancel;
    let cancelled = || cancel.as_ref().is_some_and(|c| c.load(Ordering::SeqCst));
    if cancelled() {
        return Err(Error::Cancelled);
    }

    // Beside the upperdir when there is one: if we are killed, the leftover bundle is
    // wherever the caller keeps (and cleans) its temp dirs, not in the system's.
    let bundle_parent = spec.rootfs.upper.as_ref().and_then(|u| u.upperdir.parent()).map(Path::to_path_buf);
    let builder = tempfile::Builder::new().prefix(".builder-sandbox-").to_owned();
    let bundle = match &bundle_parent {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
    .map_err(sys("create bundle dir"))?;
    let terminal = matches!(stdio, Stdio::Terminal | Stdio::TerminalOutput);
    // Without root, the namespaces come with a user namespace of the sandbox's own.
    let userns = userns::plan(spec.security.user_namespace)?;
    if userns.is_some() || userns::enter::current().is_some() {
        userns::procfs::warn_once();
    }
    let mut config = prepare_bundle(spec, bundle.path(), terminal, userns.as_ref())?;
    config.fuse_overlayfs = fuse;
    // The cgroup is made and configured before the clone, and the init joins it as
    // its first act, before it mounts or forks anything: all the sandbox runs is in
    // it, and no handshake is needed (the parent moving the init in after the clone
    // would have to hold it until then). Dropped, it is removed.
    rlimits::check(&spec.resources.rlimits)?;
    let cgroup = SandboxCgroup::create(&spec.resources, spec.security.devices)?;
    config.cgroup_procs = cgroup.as_ref().map(SandboxCgroup::procs).unwrap_or_default();
    let json = serde_json::to_vec(&config).map_err(|e| Error::sys("encode sandbox config", io::Error::other(e)))?;
    let config_fd = memfd_with(&json)?;
    let (status_r, status_w) = pipe()?;
    let mut fds = vec![(config_fd, CONFIG_FD), (status_w, STATUS_FD)];
    let nat_helper = match spec.network {
        Network::Private => Some(network::nat_helper().ok_or_else(|| {
            Error::sys(
                "set up the sandbox network",
                io::Error::new(
                    io::ErrorKind::NotFound,
                    "slirp4netns not found on PATH (install the slirp4netns package, or run without network)",
                ),
            )
        })?),
        _ => None,
    };
    // Joined by the init; back to the pool when the sandbox is gone. A sandbox in a user
    // namespace cannot join a namespace another user namespace owns: it gets one of
    // its own, and a NAT of its own once its maps are written (see `network.rs`).
    let net = match &nat_helper {
        Some(_) if userns.is_some() => None,
        Some(helper) => {
            let net = PrivateNet::take(helper)?;
            fds.push((net.netns.try_clone().map_err(sys("duplicate the network namespace"))?, NETWORK_FD));
            Some(net)
        }
        None => None,
    };
    let mut pipes: Vec<(OwnedFd, Pipe)> = vec![(status_r, Pipe::Status)];
    let mut _raw_mode = None;
    match &stdio {
        Stdio::Capture(_) | Stdio::InheritOutput => {
            let null = fs::File::open("/dev/null").map_err(sys("open /dev/null"))?;
            fds.push((OwnedFd::from(null), 0));
        }
        Stdio::Inherit => {}
        Stdio::Terminal | Stdio::TerminalOutput => {
            // The init makes the pty in the sandbox's devpts and sends us its master
            // (`console.rs`); until then its stdio is /dev/null.
            let null = fs::File::options().read(true).write(true).open("/dev/null").map_err(sys("open /dev/null"))?;
            for fd in 0..3 {
                fds.push((OwnedFd::from(null.try_clone().map_err(sys("duplicate /dev/null"))?), fd));
            }
            let (ours, theirs) = console::socketpair()?;
            fds.push((theirs, console::CONSOLE_FD));
            pipes.push((ours, Pipe::Console));
            if let Stdio::Terminal = stdio {
                _raw_mode = tty::RawMode::enable();
            }
        }
    }
    if let Stdio::Capture(_) = &stdio {
        for (fd, stream) in [(1, OutputStream::Stdout), (2, OutputStream::Stderr)] {
            let (r, w) = pipe()?;
            fds.push((w, fd));
            pipes.push((r, Pipe::Output(stream)));
        }
    }

    let own_netns = spec.network == Network::None || (spec.network == Network::Private && userns.is_some());
    let flags = libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | if own_netns { libc::CLONE_NEWNET } else { 0 }
        | if userns.is_some() { libc::CLONE_NEWUSER } else { 0 };
    // In a user namespace, the child waits for its maps before it execs the init.
    let (release_r, release_w) = match &userns {
        Some(_) => pipe().map(|(r, w)| (Some(r), Some(w)))?,
        None => (None, None),
    };
    // Always a session of its own: a terminal's ^C reaches the process once, through
    // us, and never the init directly.
    let pid = clone_init(flags, &fds, true, release_r.as_ref(), release_w.as_ref(), |e| {
        if userns.is_some() { userns::clone_error(e) } else { Error::sys("clone sandbox init", e) }
    })?;
    drop(fds);
    drop(release_r);

    let mut sandbox = Sandbox {
        pid,
        reaped: false,
        upperdir: spec.rootfs.upper.as_ref().map(|u| u.upperdir.clone()),
        created: Vec::new(),
        net: net.map(|n| (n, spec.security.capabilities)),
        nat: None,
        cgroup,
        _bundle: bundle,
    };
    if let (Some(plan), Some(release)) = (&userns, release_w) {
        userns::write_maps(pid, plan)?;
        if let (Network::Private, Some(helper)) = (spec.network, &nat_helper) {
            sandbox.nat = Some(Nat::start_in(helper, pid)?);
        }
        // SAFETY: writing one byte from a local buffer to a pipe we own.
        if unsafe { libc::write(release.as_raw_fd(), [1u8].as_ptr().cast(), 1) } != 1 {
            return Err(Error::sys("start sandbox init", io::Error::last_os_error()));
        }
    }
    let mut failed = None;
    let mut exited = None;
    let mut killed = false;
    let mut status_buf = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    // Our stdin alone does not keep the loop going.
    while pipes.iter().any(|(_, p)| *p != Pipe::Input) {
        if !killed && cancelled() {
            sandbox.kill();
            killed = true;
        }
        if let Some(signals) = &control.signals {
            for signal in signals.take() {
                match (signal, pipes.iter().find(|(_, p)| *p == Pipe::Terminal)) {
                    (libc::SIGWINCH, Some((master, _))) => tty::copy_size(master),
                    (libc::SIGWINCH, None) => {}
                    _ => sandbox.signal(signal),
                }
            }
        }
        let mut pollfds: Vec<libc::pollfd> =
            pipes.iter().map(|(fd, _)| libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 }).collect();
        // SAFETY: `pollfds` is a valid array of the given length for the whole call.
        let n = unsafe { libc::poll(pollfds.as_mut_ptr(), pollfds.len() as libc::nfds_t, 50) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::sys("poll sandbox output", e));
        }
        let mut closed = Vec::new();
        let mut received = Vec::new();
        for (i, p) in pollfds.iter().enumerate() {
            if p.revents == 0 {
                continue;
            }
            let (fd, kind) = &pipes[i];
            if *kind == Pipe::Console {
                closed.push(i);
                let master = console::recv_fd(fd).map_err(sys("receive the sandbox's pty"))?;
                if let Some(master) = master {
                    tty::copy_size(&master);
                    received.push((master, Pipe::Terminal));
                    if let Stdio::Terminal = stdio {
                        received.push((tty::dup_stdin()?, Pipe::Input));
                    }
                }
                continue;
            }
            // SAFETY: reading into a buffer of the given length from a descriptor we own.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(e.kind(), io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock) {
                    continue;
                }
                // EIO: the pty's last slave descriptor is gone, its end of file.
                if *kind == Pipe::Terminal || *kind == Pipe::Input {
                    closed.push(i);
                    continue;
                }
                return Err(Error::sys("read sandbox output", e));
            }
            if n == 0 {
                closed.push(i);
                continue;
            }
            let chunk = &buf[..n as usize];
            match (kind, &mut stdio) {
                (Pipe::Output(stream), Stdio::Capture(cb)) => cb(*stream, chunk),
                (Pipe::Output(_), _) | (Pipe::Console, _) => {}
                (Pipe::Terminal, _) => {
                    let mut out = io::stdout().lock();
                    // Our stdout gone (a closed pipe) must not stop the sandbox's end.
                    let _ = out.write_all(chunk).and_then(|()| out.flush());
                }
                (Pipe::Input, _) => {
                    let master = pipes.iter().find(|(_, p)| *p == Pipe::Terminal).map(|(fd, _)| fd);
                    if let Some(master) = master {
                        let _ = fs::File::from(master.try_clone().map_err(sys("duplicate pty"))?).write_all(chunk);
                    }
                }
                (Pipe::Status, _) => {
                    status_buf.extend_from_slice(chunk);
                    for msg in take_messages(&mut status_buf) {
                        match msg {
                            Message::Created(c) => sandbox.created.push(on_host(c, userns.as_ref())),
                            Message::Failed(e) => failed = failed.or(Some(e)),
                            Message::Exited(s) => exited = Some(s),
                        }
                    }
                }
            }
        }
        for i in closed.into_iter().rev() {
            pipes.remove(i);
        }
        pipes.extend(received);
    }
    drop(_raw_mode);
    let wait = sandbox.wait()?;
    if let Some(cgroup) = &sandbox.cgroup {
        cgroup.warn_if_oom_killed();
    }
    if killed {
        return Err(Error::Cancelled);
    }
    match (failed, exited) {
        (Some(e), _) => Err(e.into()),
        (None, Some(status)) => Ok(status),
        // A memory limit too small for the init too: the OOM killer took it, and the
        // process with it. To the caller that is the process killed (137), as ever.
        (None, None) if sandbox.cgroup.as_ref().and_then(SandboxCgroup::oom_kills).is_some_and(|n| n > 0) => {
            Ok(ExitStatus::Signal(libc::SIGKILL))
        }
        (None, None) => Err(Error::from(InitError::Sys {
            what: "sandbox init".into(),
            errno: None,
            message: format!("ended without reporting a status ({wait})"),
        })),
    }
}

/// Writes `hosts` and `resolv.conf` and makes the mountpoint and, if the rootfs has
/// no upper, a throwaway one.
fn prepare_bundle(spec: &Spec, bundle: &Path, terminal: bool, userns: Option<&Plan>) -> Result<InitConfig, Error> {
    fs::create_dir(bundle.join("rootfs")).map_err(sys("create bundle rootfs"))?;
    let hostname = if spec.hostname.is_empty() { "sandbox" } else { &spec.hostname };
    let mut hosts = format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for (name, ip) in &spec.extra_hosts {
        hosts.push_str(&format!("{ip}\t{name}\n"));
    }
    fs::write(bundle.join("hosts"), hosts).map_err(sys("write hosts"))?;
    let mut resolv = match fs::read("/etc/resolv.conf") {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(Error::sys("read /etc/resolv.conf", e)),
    };
    if spec.network == Network::Private {
        resolv = network::resolv_conf(&String::from_utf8_lossy(&resolv)).into_bytes();
    }
    fs::write(bundle.join("resolv.conf"), resolv).map_err(sys("write resolv.conf"))?;
    // The init puts a tmpfs here: writes to a rootfs without upper never touch a disk,
    // and overlayfs gets an upper it accepts even when the temp dir is itself on one.
    let scratch_upper = if spec.rootfs.upper.is_none() {
        let scratch = bundle.join("scratch");
        fs::create_dir(&scratch).map_err(sys("create scratch dir"))?;
        Some(Upper { upperdir: scratch.join("upper"), workdir: scratch.join("work") })
    } else {
        None
    };
    let join_network = spec.network == Network::Private && userns.is_none();
    Ok(InitConfig {
        spec: spec.clone(),
        bundle: bundle.to_path_buf(),
        scratch_upper,
        terminal,
        join_network,
        fuse_overlayfs: None,
        cgroup_procs: Vec::new(),
        user_namespace: match userns {
            Some(plan) => Some(InitUserNamespace {
                mapping: plan.mapping.clone(),
                setgroups: plan.setgroups(),
                user: plan.user.clone(),
            }),
            // Builder itself runs in a user namespace (rootless, see `userns/enter.rs`):
            // the sandbox is in it too, and its set-up is a rootless one.
            None => userns::enter::current().map(|mapping| InitUserNamespace {
                mapping: mapping.clone(),
                setgroups: userns::enter::setgroups_allowed(),
                user: userns::enter::outside_user(mapping),
            }),
        },
    })
}

/// What the init saw, with the ids the host sees (a copied-up directory's owner is
/// compared with the upperdir's, outside the sandbox's user namespace).
fn on_host(created: Created, userns: Option<&Plan>) -> Created {
    match (created, userns) {
        (Created::CopiedUp { path, mode, uid, gid }, Some(plan)) => Created::CopiedUp {
            path,
            mode,
            // Unmapped, it was seen as the overflow id: no host id matches that one.
            uid: plan.mapping.uid.to_host(uid).unwrap_or(u32::MAX),
            gid: plan.mapping.gid.to_host(gid).unwrap_or(u32::MAX),
        },
        (created, _) => created,
    }
}

fn take_messages(buf: &mut Vec<u8>) -> Vec<Message> {
    let mut out = Vec::new();
    while let Some(end) = buf.iter().position(|b| *b == b'\n') {
        let line: Vec<u8> = buf.drain(..=end).collect();
        match serde_json::from_slice(&line) {
            Ok(msg) => out.push(msg),
            Err(e) => tracing::warn!(error = %e, "unreadable message from the sandbox init"),
        }
    }
    out
}

/// A started sandbox. Dropping it (after a panic, say) kills and reaps it, then
/// removes its mountpoint stubs, its cgroup and its bundle directory.
struct Sandbox {
    pid: libc::pid_t,
    reaped: bool,
    upperdir: Option<std::path::PathBuf>,
    created: Vec<Created>,
    /// The namespace the init joined, and what the sandbox could do with it; given back
    /// to the pool once the init is gone.
    net: Option<(PrivateNet, crate::Capabilities)>,
    /// The NAT of a sandbox in a user namespace, on the sandbox's own network
    /// namespace; stopped once the init is gone.
    nat: Option<Nat>,
    /// Removed (its `Drop`) after `drop` has reaped the init: empty by then.
    cgroup: Option<SandboxCgroup>,
    _bundle: tempfile::TempDir,
}

impl Sandbox {
    /// SIGKILL to the namespace's init: the kernel kills everything else in it.
    fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    /// A signal for the init (which forwards the usual ones to the process).
    fn signal(&self, signal: i32) {
        if !self.reaped {
            // SAFETY: `pid` is our unreaped child, so the pid cannot have been reused.
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    /// Waits for the init. Its parent is told only once every other process of the
    /// PID namespace is gone; its mount namespace, with every mount, goes with it.
    fn wait(&mut self) -> Result<String, Error> {
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child with a valid status pointer.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc >= 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::sys("wait for sandbox init", e));
            }
        }
        self.reaped = true;
        Ok(if libc::WIFEXITED(status) {
            format!("exit code {}", libc::WEXITSTATUS(status))
        } else {
            format!("signal {}", libc::WTERMSIG(status))
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let _ = self.wait();
        }
        if let Some(upperdir) = &self.upperdir {
            stubs::remove(upperdir, &self.created);
        }
        if let Some((net, capabilities)) = self.net.take() {
            net.release(capabilities);
        }
        self.nat = None;
    }
}

/// An anonymous in-memory file holding `data`: the config never touches a disk.
fn memfd_with(data: &[u8]) -> Result<OwnedFd, Error> {
    // SAFETY: memfd_create with a NUL-terminated name; the result is checked.
    let fd = unsafe { libc::memfd_create(c"builder-sandbox-config".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(Error::sys("create memfd", io::Error::last_os_error()));
    }
    // SAFETY: the descriptor is fresh and ours.
    let mut file = fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    file.write_all(data).map_err(sys("write sandbox config"))?;
    Ok(file.into())
}

/// Clones a child into new namespaces (`flags`) that places `fds` at their target
/// numbers, closes every other descriptor above them and execs the init. With
/// `release` (a pipe's read end, `hold` its write end), the child waits for a byte on
/// it before it execs: a child in a new user namespace waits for its id maps.
/// `clone_failed` explains the clone's own failure.
fn clone_init(
    flags: libc::c_int,
    fds: &[(OwnedFd, i32)],
    new_session: bool,
    release: Option<&OwnedFd>,
    hold: Option<&OwnedFd>,
    clone_failed: impl FnOnce(io::Error) -> Error,
) -> Result<libc::pid_t, Error> {
    let sources: Vec<(OwnedFd, i32)> =
        fds.iter().map(|(fd, to)| Ok((dup_high(fd)?, *to))).collect::<Result<_, Error>>()?;
    // Above every target, so no dup2 clobbers it; close-on-exec, so the init never has it.
    let release = release.map(dup_high).transpose()?;
    let release_fd = release.as_ref().map_or(-1, |fd| fd.as_raw_fd());
    let hold_fd = hold.map_or(-1, |fd| fd.as_raw_fd());
    let map: Vec<(i32, i32)> = sources.iter().map(|(fd, to)| (fd.as_raw_fd(), *to)).collect();
    let first_free = map.iter().map(|(_, to)| to + 1).max().unwrap_or(3) as libc::c_uint;
    let exe = c"/proc/self/exe";
    let arg0 = CString::new(init::INIT_ARG0).expect("no NUL in a constant");
    let argv = [arg0.as_ptr(), std::ptr::null()];
    let env = CString::new(format!("{INIT_ENV}=1")).expect("no NUL in a constant");
    let mut envs = vec![env];
    // Keep diagnostics on for the init if the caller has them.
    for key in ["RUST_BACKTRACE", "RUST_LOG"] {
        if let Some(v) = std::env::var_os(key) {
            let mut kv = key.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            envs.extend(CString::new(kv).ok());
        }
    }
    let envp: Vec<*const libc::c_char> =
        envs.iter().map(|e| e.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();

    // SAFETY: a clone without CLONE_VM and without a new stack behaves like fork: the
    // child gets a copy of this thread's stack. It only makes the raw syscalls below on
    // data prepared above (no allocation, no locks) and then execs or _exits.
    let pid = unsafe {
        libc::syscall(libc::SYS_clone, (flags | libc::SIGCHLD) as libc::c_ulong, 0usize, 0usize, 0usize, 0usize)
    };
    if pid < 0 {
        return Err(clone_failed(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: async-signal-safe syscalls only, in the freshly cloned child.
        unsafe {
            if hold_fd >= 0 {
                // Our copy of the write end would keep the read below from ever ending.
                // (Closed first: its number may be one of the targets.)
                libc::close(hold_fd);
            }
            for (from, to) in &map {
                if libc::dup2(*from, *to) < 0 {
                    libc::_exit(125);
                }
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            if release_fd >= 0 {
                let mut byte = 0u8;
                loop {
                    match libc::read(release_fd, (&mut byte as *mut u8).cast(), 1) {
                        1 => break,
                        n if n < 0 && *libc::__errno_location() == libc::EINTR => {}
                        // The parent gave up (its end closed): so do we.
                        _ => libc::_exit(125),
                    }
                }
            }
            libc::syscall(libc::SYS_close_range, first_free, libc::c_uint::MAX, 0);
            if new_session {
                libc::setsid();
            }
            libc::execve(exe.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(125);
        }
    }
    Ok(pid as libc::pid_t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Process, Rootfs};

    /// The sandbox init is this libtest binary re-executed: the before-main hook must
    /// take over before libtest's `main` would run the tests again.
    #[test]
    fn run_works_from_a_libtest_binary() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || !Path::new("/bin/busybox").exists() {
            eprintln!("skipped: needs root and /bin/busybox");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("lower");
        fs::create_dir_all(lower.join("bin")).unwrap();
        fs::copy("/bin/busybox", lower.join("bin/busybox")).unwrap();
        let upper = Upper { upperdir: dir.path().join("upper"), workdir: dir.path().join("work") };
        fs::create_dir(&upper.upperdir).unwrap();
        fs::create_dir(&upper.workdir).unwrap();
        let spec = Spec {
            rootfs: Rootfs { lowerdirs: vec![lower], upper: Some(upper), readonly: false },
            mounts: vec![],
            process: Process {
                args: vec!["/bin/busybox".into(), "echo".into(), "hi".into()],
                env: vec![],
                cwd: "/".into(),
                user: String::new(),
            },
            network: Network::None,
            hostname: String::new(),
            extra_hosts: Vec::new(),
            security: Default::default(),
            resources: Default::default(),
        };
        let mut out = Vec::new();
        let mut cb = |_: OutputStream, b: &[u8]| out.extend_from_slice(b);
        assert_eq!(run(&spec, Stdio::Capture(&mut cb), Control::default()).unwrap(), ExitStatus::Code(0));
        assert_eq!(out, b"hi\n");
    }
}
