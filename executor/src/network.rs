//! [`Network::Private`]: the sandbox's own network namespace, given outbound
//! connectivity by a userspace NAT, slirp4netns, as rootless Docker, Podman and
//! BuildKit do.
//!
//! Why a userspace NAT rather than a veth pair and iptables: it needs no change to the
//! host's firewall or routes, works the same without root, and every packet the
//! sandbox sends is turned into an ordinary socket of the helper process on the host,
//! so the sandbox can reach what that process could, except the host's loopback
//! (`--disable-host-loopback`: 10.0.2.2 does not lead to 127.0.0.1). A raw socket in
//! the sandbox sees only its own `tap0` and `lo`; abstract unix sockets are per network
//! namespace, so the host's are out of reach too.
//!
//! Starting the helper costs more than a whole trivial `RUN` (about 27 ms against
//! 11 ms here), so namespaces are pooled, as BuildKit pools its CNI namespaces: a
//! [`PrivateNet`] is a namespace (held by a descriptor) with its helper already
//! running and `tap0` configured (10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3); the
//! sandbox init joins it ([`crate::protocol::NETWORK_FD`]) before it builds the
//! filesystem, and when the sandbox is gone the namespace goes back to the pool for
//! the next one. What a process could leave in a namespace needs CAP_NET_ADMIN or
//! CAP_SYS_ADMIN (addresses, routes, filters, sysctls; `/proc/sys` is read-only);
//! namespaces of sandboxes that had either are never reused. Sockets die with the
//! sandbox's processes. The helper sandboxes itself (`--enable-sandbox`,
//! `--enable-seccomp`) and exits when the write end of its exit pipe closes: when its
//! namespace is dropped, or with builder.
//!
//! A sandbox in a user namespace (rootless) is not pooled: joining a network namespace
//! takes CAP_SYS_ADMIN in the user namespace that owns it, which a sandbox has in its
//! own alone. So it is cloned with a network namespace of its own, and the parent
//! starts a helper for it ([`Nat::start_in`]) after writing its id maps and before
//! letting it run: the helper joins the sandbox's user namespace first (as root there,
//! it may configure `tap0` and sandbox itself; its sockets stay the caller's, on the
//! host) and is stopped with the sandbox. That costs the helper's start-up on every
//! such sandbox (about 30 ms here). It needs `/dev/net/tun` to be readable and
//! writable by the caller (0666, as distributions make it).

use std::fs;
use std::io::{self, Read, Seek};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::{Capabilities, Error};

/// The nameserver the sandbox sees: slirp4netns's DNS forwarder.
pub(crate) const DNS: &str = "10.0.2.3";

/// How long the helper may take to configure the namespace.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The userspace NAT helper, if installed: `slirp4netns` on `PATH` (or the path in
/// `BUILDER_SLIRP4NETNS`). Looked up once per process: every sandbox asks.
pub fn nat_helper() -> Option<PathBuf> {
    static HELPER: OnceLock<Option<PathBuf>> = OnceLock::new();
    HELPER
        .get_or_init(|| match std::env::var_os("BUILDER_SLIRP4NETNS") {
            Some(path) => Some(PathBuf::from(path)).filter(|p| p.is_file()),
            None => crate::find_program("slirp4netns"),
        })
        .clone()
}

/// The `resolv.conf` of a sandbox behind the NAT: its DNS forwarder, and the host's
/// `search` and `options` lines.
pub(crate) fn resolv_conf(host: &str) -> String {
    let mut out = format!("nameserver {DNS}\n");
    for line in host.lines() {
        let line = line.trim();
        if line.starts_with("search ") || line.starts_with("options ") {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Namespaces ready for the next sandbox, at most [`POOL_MAX`].
static POOL: Mutex<Vec<PrivateNet>> = Mutex::new(Vec::new());
const POOL_MAX: usize = 8;

/// A network namespace behind a running NAT, for one sandbox at a time.
pub(crate) struct PrivateNet {
    pub netns: OwnedFd,
    nat: Nat,
}

impl PrivateNet {
    /// One from the pool, or a new one.
    pub(crate) fn take(helper: &Path) -> Result<PrivateNet, Error> {
        loop {
            let pooled = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
            match pooled {
                Some(mut net) => {
                    if net.nat.alive() {
                        return Ok(net);
                    }
                }
                None => break,
            }
        }
        let netns = new_netns()?;
        let nat = Nat::start(helper, &netns, None)?;
        Ok(PrivateNet { netns, nat })
    }

    /// Back to the pool, unless the sandbox that used it could have changed it.
    pub(crate) fn release(self, used_with: Capabilities) {
        const NET_ADMIN: u32 = 12;
        const SYS_ADMIN: u32 = 21;
        if used_with.contains(NET_ADMIN) || used_with.contains(SYS_ADMIN) {
            return;
        }
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL_MAX {
            pool.push(self);
        }
    }
}

/// Stops every pooled NAT helper (they also stop by themselves when this process ends).
pub fn close_networks() {
    POOL.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// A new, empty network namespace, held by a descriptor: made on a thread of its own,
/// since `unshare(CLONE_NEWNET)` moves only the calling thread.
fn new_netns() -> Result<OwnedFd, Error> {
    let made = std::thread::spawn(|| -> io::Result<OwnedFd> {
        // SAFETY: unshare with CLONE_NEWNET changes only this thread, which ends here.
        if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fs::File::open("/proc/thread-self/ns/net")?.into())
    })
    .join()
    .unwrap_or_else(|_| Err(io::Error::other("the thread making it panicked")));
    made.map_err(|e| Error::sys("create a network namespace for the sandbox", e))
}

/// A running slirp4netns attached to a namespace. Dropping it stops the helper.
pub(crate) struct Nat {
    child: Child,
    /// Closing it tells the helper to exit.
    exit: Option<OwnedFd>,
}

impl Nat {
    /// Starts the helper on the network namespace of `pid`, from within its user
    /// namespace (a sandbox waiting to exec its init).
    pub(crate) fn start_in(helper: &Path, pid: libc::pid_t) -> Result<Nat, Error> {
        let open = |ns: &str| {
            let path = format!("/proc/{pid}/ns/{ns}");
            fs::File::open(&path).map(OwnedFd::from).map_err(|e| Error::sys(format!("open {path}"), e))
        };
        Nat::start(helper, &open("net")?, Some(&open("user")?))
    }

    /// Starts the helper on `netns` (after joining `userns`, if given) and waits until
    /// `tap0` is configured.
    fn start(helper: &Path, netns: &OwnedFd, userns: Option<&OwnedFd>) -> Result<Nat, Error> {
        let what = || format!("start {} for the sandbox network", helper.display());
        let fail = |e: io::Error| Error::sys(what(), e);
        let (ready_r, ready_w) = crate::fds::pipe()?;
        let (exit_r, exit_w) = crate::fds::pipe()?;
        // Only the helper may hold the write end of its ready pipe (EOF: it died), and
        // the read end of its exit pipe.
        // (Taken by value: the low originals close here.)
        let high = |fd: OwnedFd| crate::fds::dup_high(&fd);
        let (ready_w, exit_r) = (high(ready_w)?, high(exit_r)?);
        let ns = crate::fds::dup_high(netns)?;
        let fds = [(ready_w.as_raw_fd(), 3), (exit_r.as_raw_fd(), 4), (ns.as_raw_fd(), 5)];
        let userns = userns.map(|fd| fd.as_raw_fd()).unwrap_or(-1);
        // Its output, read back only if it fails; never a file anyone else sees.
        let mut log = tempfile::tempfile().map_err(fail)?;
        let mut command = Command::new(helper);
        command
            .args(["--configure", "--mtu=65520", "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp"])
            .args(["--ready-fd=3", "--exit-fd=4", "--netns-type=path", "/proc/self/fd/5", "tap0"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(fail)?)
            .stderr(log.try_clone().map_err(fail)?);
        // SAFETY: only setns and dup2 in the child between fork and exec
        // (async-signal-safe); every source is above 9, so no target overwrites another's
        // source. setns into a user namespace is allowed there: the child has one thread.
        unsafe {
            command.pre_exec(move || {
                if userns >= 0 && libc::setns(userns, libc::CLONE_NEWUSER) < 0 {
                    return Err(io::Error::last_os_error());
                }
                for (from, to) in fds {
                    if libc::dup2(from, to) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(|e| {
            let hint = if e.kind() == io::ErrorKind::NotFound { " (is slirp4netns installed?)" } else { "" };
            Error::sys(what(), io::Error::new(e.kind(), format!("{e}{hint}")))
        })?;
        drop((ready_w, exit_r, ns));
        let mut nat = Nat { child, exit: Some(exit_w) };
        match wait_ready(ready_r) {
            Ok(()) => Ok(nat),
            Err(e) => {
                nat.stop();
                let mut said = String::new();
                let _ = log.rewind().and_then(|()| log.read_to_string(&mut said));
                // Its last line, unless an earlier one says why: the tap device it could not open.
                let tun = said.lines().find(|l| l.contains("/dev/net/tun") && l.contains("ermission denied"));
                let said = match tun {
                    Some(line) => format!(
                        "{} (/dev/net/tun must be readable and writable by uid {}: `chmod 0666 /dev/net/tun`, \
                         as most distributions set it; see `builder doctor`)",
                        line.trim(),
                        // In builder's own user namespace, its root is the caller outside.
                        crate::userns::enter::current()
                            .and_then(|m| m.uid.to_host(0))
                            .unwrap_or(nix::unistd::geteuid().as_raw())
                    ),
                    None => said.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string(),
                };
                let message = if said.is_empty() { e.to_string() } else { format!("{e}: {said}") };
                Err(Error::sys(what(), io::Error::new(e.kind(), message)))
            }
        }
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn stop(&mut self) {
        self.exit = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Nat {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits for the helper's byte on its ready pipe (EOF: it died first).
fn wait_ready(ready: OwnedFd) -> io::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut pollfd = libc::pollfd { fd: ready.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "not ready after 10 s"));
        }
        // SAFETY: polling one valid pollfd.
        let n = unsafe { libc::poll(&mut pollfd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n > 0 {
            break;
        }
    }
    let mut byte = [0u8; 1];
    match fs::File::from(ready).read(&mut byte)? {
        1 => Ok(()),
        _ => Err(io::Error::new(io::ErrorKind::UnexpectedEof, "exited before the network was configured")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_points_at_the_forwarder_and_keeps_search_and_options() {
        let host = "# generated\nnameserver 127.0.0.53\nsearch corp.example\noptions edns0 trust-ad\n";
        assert_eq!(resolv_conf(host), "nameserver 10.0.2.3\nsearch corp.example\noptions edns0 trust-ad\n");
        assert_eq!(resolv_conf(""), "nameserver 10.0.2.3\n");
    }
}
