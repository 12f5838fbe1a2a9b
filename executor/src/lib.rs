//! The executor: runs one process in a sandbox and cleans up after it.
//!
//! A [`Spec`] says what to run ([`Process`]), on which root filesystem ([`Rootfs`]:
//! overlayfs lowerdirs + a fresh upperdir), with which extra [`Mount`]s and which
//! [`Network`]. [`run`] starts a sandbox init in new mount, PID, UTS and IPC namespaces
//! (and a network namespace with only `lo` for [`Network::None`]); the init builds the
//! rootfs, `pivot_root`s into it, forks the process as the requested user with Docker's
//! default capabilities, `no_new_privs` and moby's default seccomp filter, reaps zombies
//! and forwards SIGTERM/SIGINT.
//! When [`run`] returns, no mount and no process of the sandbox remain, whether the
//! process succeeded, failed, was cancelled, or the caller panicked.
//!
//! [`run_with`] also takes a [`Control`]: a cancel flag and [`Signals`] to pass on to
//! the process (`builder run` forwards its own SIGTERM/SIGINT this way). [`Stdio`]
//! says where the process's stdio goes: captured (stdin `/dev/null`), the caller's own,
//! or a new pty relayed to the caller's terminal ([`Stdio::Terminal`]; its output only,
//! with [`Stdio::TerminalOutput`]).
//!
//! [`with_rootfs_mounted`] mounts rootfs views in a private mount namespace on a helper
//! thread so the builder can apply file operations (COPY) through overlayfs.
//!
//! This crate knows nothing about images, layers or Dockerfiles, and it is the only
//! crate with `unsafe`, `nix` or `libc`.
//!
//! # How a sandbox starts, and why this way
//!
//! The builder is multithreaded (rayon, tokio), and after `fork` only
//! async-signal-safe work is safe in the child: no allocation, no locks. So the parent
//! (`spawn.rs`) does a raw `clone(2)` with the namespace flags, and the child only
//! places descriptors (`dup2`, `close_range`), sets the parent-death signal and execs
//! `/proc/self/exe` with `_BUILDER_EXECUTOR_INIT` set: runc's re-exec design. Cloning
//! with `CLONE_NEWPID` (rather than `unshare` in a `Command::pre_exec`) makes the
//! re-executed binary itself PID 1 of the new namespace, so the parent knows the one
//! pid whose death takes every sandbox process with it, and waits for exactly that.
//!
//! The re-executed binary becomes the init in [`maybe_run_init`], which runs before
//! `main` (an `.init_array` entry, so test binaries work too) and should also be the
//! first line of `main`. It reads the [`Spec`] as JSON from fd 3 (a memfd: secrets
//! never touch a disk) and reports on fd 4 as JSON lines: each mountpoint stub before
//! it is created, then the exit status or a setup error. Being a fresh single-threaded
//! process, it may use all of Rust.
//!
//! # Rootless
//!
//! An ordinary user gets the namespaces only together with a user namespace, so a
//! sandbox of a caller that is not root has one ([`UserNamespace::Auto`], the
//! default; [`UserNamespace::Private`] asks for one as root too). Its ids
//! ([`IdMapping`], from [`id_mapping`]) are rootless Podman's and BuildKit's: root is
//! the caller, and 1, 2... are the caller's subordinate ids from `/etc/subuid` and
//! `/etc/subgid` (by name or uid), written by the setuid `newuidmap`/`newgidmap`. So a
//! file the sandbox gives uid 1001 is, on the host, owned by the 1000th subordinate id
//! after the range's start, and [`IdMap::to_container`] turns it back. Without
//! subordinate ids only root is mapped (the caller writes that map itself, after
//! denying `setgroups`, as the kernel requires): `chown` to another id fails in the
//! sandbox with EINVAL, a `USER` other than root is an error that names the missing
//! `/etc/subuid` lines, and a warning says so once per process.
//!
//! The child of the clone waits, before it execs the init, until the parent has
//! written the maps (a byte on a pipe): `execve` grants the capabilities of the new
//! user namespace only to a uid that is root there, so an init exec'd unmapped would
//! have none. Inside, the init's root has capabilities over the sandbox's namespaces
//! only; the process's capabilities and seccomp filter apply as ever, relative to
//! them. What changes:
//! - overlayfs is mounted with `userxattr` (Linux 5.11 and later allow it in a user
//!   namespace) and `redirect_dir=nofollow`: see "The upperdir as a diff".
//! - A bind remount keeps the read-only, nosuid, nodev and noexec flags the mount
//!   already has: the kernel locks those of a mount that came from the host, and a
//!   remount dropping one fails with EPERM. (Root's binds keep them too.)
//! - `/proc` is fresh (the PID namespace is the user namespace's own). A fresh sysfs
//!   needs a network namespace of the sandbox's own: with [`Network::Host`] the host's
//!   `/sys` is bound read-only instead.
//! - devpts gets `gid=5` only where gid 5 is mapped.
//! - [`Network::Private`] is not pooled: a namespace can be joined only from the user
//!   namespace that owns it, so each sandbox gets its own and a slirp4netns of its own,
//!   started in the sandbox's user namespace after the maps are written and before the
//!   init runs (`network.rs`). It needs `/dev/net/tun` usable by the caller.
//! - No cgroup unless one is delegated to the caller: [`Resources::default()`] and
//!   [`Devices::Default`] need none (the device filter is then the `nodev` mounts and
//!   the missing CAP_MKNOD alone); a limit that cannot be enforced is an error, as ever.
//! - [`with_rootfs_mounted`] needs root still (a thread cannot enter a user namespace
//!   of its own in a multithreaded process): builder gets it by entering a user
//!   namespace of its own first ([`enter_user_namespace`], `userns/enter.rs`), where
//!   it is root. Sandboxes started there share that namespace, and [`run`] sets them up
//!   as rootless ones (the points above) since [`current_user_namespace`] is not the
//!   host's.
//!
//! Every set-up step the kernel refuses says which and why, with `builder doctor` for
//! more: user namespaces disabled (`user.max_user_namespaces=0`, which the kernel
//! reports as "no space left on device"), `newuidmap` missing, a uid beyond the
//! subordinate ids... [`probe`] tells what a rootless sandbox gets here
//! ([`UserNamespaces`]), trying overlayfs and `/proc` in a user namespace once.
//!
//! # Snapshotters
//!
//! Where overlayfs is refused, the overlays of a [`Spec`] and of
//! [`with_rootfs_mounted`] are fuse-overlayfs mounts, or copies of the lowerdirs
//! (the native snapshotter), as [`choose_snapshotter`] decides
//! (`BUILDER_SNAPSHOTTER`, else trial mounts); either way the upperdir ends up as
//! overlayfs would have left it (`snapshotter/`), so callers see no difference.
//!
//! # Limits
//!
//! [`Resources`] and the device allow list of [`Devices::Default`] are enforced by a
//! cgroup per sandbox (`cgroup/`): the parent makes and configures it under its own
//! cgroup (`<own>/builder/<pid>-<n>`, v1 or v2) before the clone, the init joins it
//! before building anything, and the parent removes it once the init is reaped.
//! Limits asked for that this host cannot enforce are an error, never ignored; the
//! device cgroup, a second line behind `nodev` mounts and a dropped CAP_MKNOD, is
//! left out where none can be made. [`probe`] says which apply here. Rlimits are set
//! in the forked process before it switches user.
//!
//! # Seccomp
//!
//! Unless [`Security::seccomp`] is off (`--security=insecure`), the process runs under
//! the equivalent of moby's default seccomp profile (`seccomp.rs`): moby's allowlist and
//! EPERM for the rest, `clone` only without namespace flags, ENOSYS for `clone3`, plus
//! what moby opens for the capabilities in [`Security::capabilities`] (CAP_SYS_ADMIN:
//! mount, unshare...). On x86_64, i386 syscalls are filtered too, by their own numbers.
//! The init compiles the BPF before it forks the process; the child loads it as its last
//! step before `execve`, after the user switch, the capabilities and `no_new_privs`.
//!
//! # Cleanup
//!
//! All sandbox mounts live in the sandbox's own mount namespace (with `/` made
//! `rprivate` first), so they vanish with its last process; none is ever visible on
//! the host. Killing the init (SIGKILL on cancel, on a panic in the parent through
//! `Drop`, or by `PR_SET_PDEATHSIG` if the parent dies) kills the namespace; the
//! parent's `waitpid` returns only once all of it is gone. Mountpoint stubs the init
//! had to create (`/proc`, `/etc/hosts`, a `RUN --mount` target...) are then removed
//! from the upperdir, with the directories that were copied up only to hold them, as
//! BuildKit's MountStubsCleaner does. The sandbox's bundle directory (mountpoint,
//! `hosts`, `resolv.conf`) is made beside the upperdir: should the caller be killed,
//! it stays where the caller keeps, and cleans up, its own temp dirs.
//!
//! # The upperdir as a diff
//!
//! Overlays are mounted with `redirect_dir=off,index=off,metacopy=off`: a deletion is a
//! 0/0 character device, an opaque directory has `trusted.overlay.opaque=y`. Copied-up
//! entries also carry `trusted.overlay.origin`/`impure`, which a differ must skip.
//!
//! In a user namespace (rootless), overlayfs may not use `trusted.*` xattrs: mounted
//! with `userxattr`, it keeps the same markers as `user.overlay.*` instead
//! (`user.overlay.opaque=y` for an opaque directory; `origin`, `impure`... to skip),
//! and deletions are still 0/0 character devices (the kernel lets a user namespace
//! make those). A differ reading a rootless upperdir must take `user.overlay.opaque`
//! for opaqueness and never copy a `user.overlay.*` xattr into a layer; and since
//! overlayfs then reads `user.overlay.*` from the lowerdirs as well, an unpacker
//! must drop such xattrs from layer tars (an image could otherwise make a directory
//! opaque or redirect a lookup). Owners in the upperdir are host ids: translate them
//! with the sandbox's [`IdMapping`] ([`IdMap::to_container`]). Any
//! number of layers works: the fd-based mount API with `lowerdir+` (paths of 256
//! bytes or more go through `/proc/self/fd/N`), falling back to `mount(2)` on kernels
//! before 6.8 while the options fit in a page.
//!
//! # Tests
//!
//! Kernel calls that shape the sandbox go through a `Syscall` trait; its recording fake
//! lets the mount plan and user resolution be unit-tested without root. The real
//! sandboxes are tested by `tests/sandbox.rs` (a `harness = false` binary, run as root;
//! it skips itself elsewhere). It also runs a rootless subset (`tests/rootless/`): as
//! root it makes test users (with and without subordinate ids) and re-runs itself as
//! each of them.

mod caps;
mod cgroup;
mod console;
mod fds;
mod fuse_overlay;
mod init;
mod isolation;
mod network;
mod overlay_meta;
mod paths;
mod protocol;
mod rlimits;
mod rootfs;
mod sandbox;
mod seccomp;
mod snapshotter;
mod spawn;
mod stubs;
mod syscall;
mod tty;
mod user;
mod userns;
mod view;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub use cgroup::CgroupUnavailable;
pub use fuse_overlay::program as fuse_overlayfs_program;
pub use init::maybe_run_init;
pub use isolation::{CgroupVersion, Isolation, Support, probe, probe_pids};
pub use network::{close_networks, nat_helper};
pub use rlimits::resource_by_name as rlimit_by_name;
pub use snapshotter::{
    SNAPSHOTTER_ENV, Snapshotter, SnapshotterChoice, choose_snapshotter, refused as overlay_refused,
    snapshotter_setting,
};
pub use userns::enter::{
    Entered, current as current_user_namespace, enter as enter_user_namespace, mapping_to_enter, reexec_to_enter,
    take_reexec_mark,
};
pub use userns::{IdMap, IdMapping, IdRange, SubordinateRange, UserNamespaces};

/// A filesystem assembled from layers: overlayfs lowerdirs and an optional upperdir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Rootfs {
    /// Read-only layers, topmost first. Empty means an empty root (scratch).
    pub lowerdirs: Vec<PathBuf>,
    /// Receives every change (it becomes the step's layer); `None` for a read-only view.
    pub upper: Option<Upper>,
    /// Mount the result read-only (`builder run --read-only`, views for COPY --from).
    pub readonly: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Upper {
    /// Must exist; normally empty.
    pub upperdir: PathBuf,
    /// overlayfs work directory on the same filesystem as `upperdir`.
    pub workdir: PathBuf,
}

#[derive(Clone, Serialize, Deserialize)]
pub enum MountSource {
    /// A host path bound into the sandbox.
    Bind { source: PathBuf, readonly: bool },
    /// A fresh tmpfs.
    Tmpfs { size: Option<u64> },
    /// An overlay whose changes land in `upperdir` (binds of another filesystem, whose
    /// writes must be discarded). Only `subpath` of it (relative; empty for all of it)
    /// is mounted, resolved inside the overlay as the sandboxed process would.
    Overlay { lowerdirs: Vec<PathBuf>, upperdir: PathBuf, workdir: PathBuf, subpath: String, readonly: bool },
    /// A single file with the given content, on a tmpfs, never on disk (secrets).
    File { content: Vec<u8>, mode: u32, uid: u32, gid: u32 },
}

/// Never prints a file's content: it may be a secret.
impl std::fmt::Debug for MountSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MountSource::Bind { source, readonly } => {
                f.debug_struct("Bind").field("source", source).field("readonly", readonly).finish()
            }
            MountSource::Tmpfs { size } => f.debug_struct("Tmpfs").field("size", size).finish(),
            MountSource::Overlay { lowerdirs, upperdir, workdir, subpath, readonly } => f
                .debug_struct("Overlay")
                .field("lowerdirs", lowerdirs)
                .field("upperdir", upperdir)
                .field("workdir", workdir)
                .field("subpath", subpath)
                .field("readonly", readonly)
                .finish(),
            MountSource::File { content, mode, uid, gid } => f
                .debug_struct("File")
                .field("content", &format_args!("<{} bytes>", content.len()))
                .field("mode", &format_args!("{mode:o}"))
                .field("uid", uid)
                .field("gid", gid)
                .finish(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the sandbox; created if missing.
    pub target: String,
    pub source: MountSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// Share the host's network namespace (only when the user allowed it).
    Host,
    /// A new network namespace with only `lo`, brought up.
    None,
    /// A new network namespace with `lo` and a tap device behind a userspace NAT
    /// (slirp4netns): outbound connections work; the host's loopback services and
    /// abstract unix sockets stay out of reach. Where no NAT helper is installed, the
    /// namespace keeps only `lo` (see [`probe`]).
    Private,
}

/// Capabilities as a bit set (bit n = capability number n, as in `capability.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities(pub u64);

impl Capabilities {
    pub const CHOWN: u32 = 0;
    pub const DAC_OVERRIDE: u32 = 1;
    pub const FOWNER: u32 = 3;
    pub const FSETID: u32 = 4;
    pub const KILL: u32 = 5;
    pub const SETGID: u32 = 6;
    pub const SETUID: u32 = 7;
    pub const SETPCAP: u32 = 8;
    pub const NET_BIND_SERVICE: u32 = 10;
    pub const NET_RAW: u32 = 13;
    pub const SYS_CHROOT: u32 = 18;
    pub const MKNOD: u32 = 27;
    pub const AUDIT_WRITE: u32 = 29;
    pub const SETFCAP: u32 = 31;

    /// Docker's default set: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID,
    /// SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE,
    /// SETFCAP.
    pub fn docker_default() -> Self {
        Self::of(&[
            Self::CHOWN,
            Self::DAC_OVERRIDE,
            Self::FOWNER,
            Self::FSETID,
            Self::KILL,
            Self::SETGID,
            Self::SETUID,
            Self::SETPCAP,
            Self::NET_BIND_SERVICE,
            Self::NET_RAW,
            Self::SYS_CHROOT,
            Self::MKNOD,
            Self::AUDIT_WRITE,
            Self::SETFCAP,
        ])
    }

    /// Every capability the kernel knows.
    pub fn all() -> Self {
        Capabilities(u64::MAX)
    }

    pub fn of(caps: &[u32]) -> Self {
        Capabilities(caps.iter().fold(0, |m, c| m | (1u64 << c)))
    }

    pub fn without(self, cap: u32) -> Self {
        Capabilities(self.0 & !(1u64 << cap))
    }

    pub fn contains(self, cap: u32) -> bool {
        self.0 & (1u64 << cap) != 0
    }
}

/// Which device nodes the process may open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Devices {
    /// Only the nodes the sandbox puts in `/dev` (null, zero, full, random, urandom,
    /// tty, ptmx and the pts): every other mount is `nodev`, and a device cgroup (where
    /// builder may create one) denies the rest, as runc's default allow list.
    Default,
    /// Every device (`--security=insecure`).
    All,
}

/// Whether a sandbox gets a user namespace of its own (see the crate's "Rootless"
/// section): then its ids are not the host's but those of an [`IdMapping`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserNamespace {
    /// One whenever the caller is not root (the only way an ordinary user gets the
    /// other namespaces), none as root.
    #[default]
    Auto,
    /// Always one, even as root: the sandbox's root then has capabilities over the
    /// sandbox's own namespaces only.
    Private,
    /// Never: the sandbox's ids are the host's. Only root can start such a sandbox.
    Host,
}

/// What the process may do beyond its filesystem view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Security {
    /// The capabilities a root process keeps, and the bounding set of any process.
    /// In a user namespace they are the namespace's, not the host's.
    pub capabilities: Capabilities,
    /// Load the default seccomp filter (the equivalent of moby's default profile).
    pub seccomp: bool,
    pub devices: Devices,
    #[serde(default)]
    pub user_namespace: UserNamespace,
}

impl Security {
    /// A build step (`RUN`): Docker's default capabilities less NET_RAW and MKNOD, the
    /// default seccomp filter, the default devices.
    pub fn build_step() -> Self {
        Security {
            capabilities: Capabilities::docker_default().without(Capabilities::NET_RAW).without(Capabilities::MKNOD),
            seccomp: true,
            devices: Devices::Default,
            user_namespace: UserNamespace::Auto,
        }
    }

    /// A container (`builder run`): Docker's defaults.
    pub fn container() -> Self {
        Security {
            capabilities: Capabilities::docker_default(),
            seccomp: true,
            devices: Devices::Default,
            user_namespace: UserNamespace::Auto,
        }
    }

    /// `RUN --security=insecure` (with `--allow security.insecure`): every capability,
    /// no seccomp filter, every device, as BuildKit's privileged mode.
    pub fn insecure() -> Self {
        Security {
            capabilities: Capabilities::all(),
            seccomp: false,
            devices: Devices::All,
            user_namespace: UserNamespace::Auto,
        }
    }
}

impl Default for Security {
    fn default() -> Self {
        Security::build_step()
    }
}

/// A resource limit set with `setrlimit(2)` before the process starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_*` number, as in `libc` (`libc::RLIMIT_NOFILE`...).
    pub resource: u32,
    pub soft: u64,
    pub hard: u64,
}

/// Limits on what the sandbox's processes may use together, enforced by a cgroup
/// made for the sandbox. A limit this host cannot enforce ([`probe`] says which)
/// makes [`run`] fail rather than be ignored. `rlimits` apply to the process itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory (and memory + swap) in bytes; beyond it the kernel's OOM killer kills.
    pub memory: Option<u64>,
    /// CPU time, in thousandths of a CPU (`--cpus 1.5` = 1500).
    pub cpu_millis: Option<u64>,
    /// How many tasks (processes and threads) may exist at once.
    pub pids: Option<u64>,
    pub rlimits: Vec<Rlimit>,
    /// Size of the sandbox's `/dev/shm` in bytes (64 MiB when not given, as Docker).
    #[serde(default)]
    pub shm_size: Option<u64>,
}

impl Resources {
    /// A sensible cap for a build step: 4096 tasks, against fork bombs, and nothing
    /// else. Where no pids cgroup can be made ([`probe`]), a sandbox asking for it
    /// fails to start, so check first. (`Resources::default()` limits nothing.)
    pub fn build_step() -> Self {
        Resources { pids: Some(4096), ..Default::default() }
    }
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Process {
    pub args: Vec<String>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// Working directory; created (owned by the user) if missing.
    pub cwd: String,
    /// `name`, `uid`, `name:group` or `uid:gid`, resolved in the rootfs's
    /// `/etc/passwd` and `/etc/group`; empty means root.
    pub user: String,
}

/// Shows the environment's names only: a value may be a secret (`RUN --mount=type=secret,env=`).
impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|kv| kv.split_once('=').map_or(kv.as_str(), |(k, _)| k)).collect();
        f.debug_struct("Process")
            .field("args", &self.args)
            .field("env", &names)
            .field("cwd", &self.cwd)
            .field("user", &self.user)
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub rootfs: Rootfs,
    pub mounts: Vec<Mount>,
    pub process: Process,
    pub network: Network,
    pub hostname: String,
    /// Lines added to the sandbox's `/etc/hosts` (`--add-host NAME:IP`).
    #[serde(default)]
    pub extra_hosts: Vec<(String, std::net::IpAddr)>,
    pub security: Security,
    pub resources: Resources,
}

/// Where the sandboxed process's input and output go.
pub enum Stdio<'a> {
    /// The caller's own stdin/stdout/stderr (`builder run -i`).
    Inherit,
    /// The caller's stdout/stderr; stdin is `/dev/null` (`builder run`).
    InheritOutput,
    /// A new pseudo-terminal for all three, relayed to and from the caller's stdin and
    /// stdout, which is put in raw mode meanwhile if it is a terminal (`builder run
    /// -it`). The process leads its own session with the pty as controlling terminal.
    Terminal,
    /// A new pseudo-terminal for all three, as [`Stdio::Terminal`], whose output is
    /// relayed to the caller's stdout; the caller's stdin is never read, so nothing is
    /// ever typed into it, and the caller's terminal stays as it is (`builder run -t`).
    TerminalOutput,
    /// Output captured and handed over in chunks as it arrives; stdin is `/dev/null`.
    Capture(&'a mut (dyn FnMut(OutputStream, &[u8]) + Send)),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        matches!(self, ExitStatus::Code(0))
    }

    /// The shell-style code: the exit code, or 128 + the signal number.
    pub fn code(&self) -> i32 {
        match *self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// Why a sandbox could not be set up or run.
///
/// `Sys` names the step and the OS error in one message (`create mountpoint /f/x: Not a
/// directory (os error 20)`), so the error has no `source`: an error chain printed
/// whole (`{:#}`) would show the OS error twice.
#[derive(Debug)]
pub enum Error {
    Sys { what: String, source: std::io::Error },
    UnknownUser(String),
    UnknownGroup(String),
    Cancelled,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Sys { what, source } => write!(f, "{what}: {source}"),
            Error::UnknownUser(user) => write!(f, "unable to find user {user}: no matching entries in passwd file"),
            Error::UnknownGroup(group) => write!(f, "unable to find group {group}: no matching entries in group file"),
            Error::Cancelled => f.write_str("cancelled"),
        }
    }
}

impl std::error::Error for Error {}

/// Runs `spec` to completion (or until `cancel` is set) and returns its exit status.
///
/// The process's own failures are its exit status (127: command not found, 126: not
/// executable, 128+n: killed by signal n); an `Err` means the sandbox could not be set
/// up, or [`Error::Cancelled`].
pub fn run(spec: &Spec, stdio: Stdio<'_>, cancel: Option<Arc<AtomicBool>>) -> Result<ExitStatus, Error> {
    spawn::run(spec, stdio, Control { cancel, signals: None })
}

/// [`run`] with the rootfs mounted by the kernel's overlayfs, whatever snapshotter
/// builds use: the trial sandbox of `userns::probe`, which asks whether overlayfs works.
pub(crate) fn run_with_overlayfs(spec: &Spec, stdio: Stdio<'_>) -> Result<ExitStatus, Error> {
    spawn::run_as_given(spec, stdio, Control::default(), None)
}

/// [`run`] with more control over the running sandbox.
pub fn run_with(spec: &Spec, stdio: Stdio<'_>, control: Control) -> Result<ExitStatus, Error> {
    spawn::run(spec, stdio, control)
}

/// What the caller can do to a running sandbox.
#[derive(Debug, Clone, Default)]
pub struct Control {
    /// Once set, the sandbox is killed and [`run`] returns [`Error::Cancelled`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Signals raised here are sent to the sandbox's init, which passes SIGTERM,
    /// SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 on to the process; SIGWINCH
    /// resizes a [`Stdio::Terminal`] or [`Stdio::TerminalOutput`] pty to the caller's terminal.
    pub signals: Option<Signals>,
}

/// Signals waiting to be forwarded into a sandbox (see [`Control::signals`]). Cheap to
/// clone; [`Signals::raise`] is one atomic OR, so it may be called from anywhere.
#[derive(Debug, Clone, Default)]
pub struct Signals(Arc<AtomicU64>);

impl Signals {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `signal` (1..=63; others are ignored) for the sandbox.
    pub fn raise(&self, signal: i32) {
        if (1..64).contains(&signal) {
            self.0.fetch_or(1 << signal, Ordering::SeqCst);
        }
    }

    /// The queued signals, lowest first; the queue is emptied.
    pub(crate) fn take(&self) -> Vec<i32> {
        let bits = self.0.swap(0, Ordering::SeqCst);
        (1..64).filter(|s| bits & (1 << s) != 0).collect()
    }
}

/// The ids of a sandbox with `security` started by this process: `None` when it runs
/// in our own user namespace (as root, by default), so its ids are the host's; else
/// the [`IdMapping`] of its user namespace. The files it writes (in its upperdir, or
/// in a bind mount) have host ids: [`IdMap::to_container`] gives the ids it saw.
/// An error says why no sandbox could start (no root for [`UserNamespace::Host`],
/// subordinate ids without `newuidmap`...).
pub fn id_mapping(security: &Security) -> Result<Option<IdMapping>, Error> {
    Ok(userns::plan(security.user_namespace)?.map(|plan| plan.mapping))
}

/// Mounts each of `rootfs` at a temporary path in a private mount namespace on a
/// helper thread, calls `f` with those paths (same order), then drops the namespace
/// so nothing stays mounted. Writes land in each rootfs's upperdir.
///
/// The mounts exist only in that thread's mount namespace: `f` must do its file I/O
/// on the thread it is called on (not on a thread pool), and must not leave processes
/// behind. A rootfs without an upper is a read-only view (overlay of 2+ lowers, a
/// read-only bind of 1, an empty read-only tmpfs for 0).
pub fn with_rootfs_mounted<R: Send>(rootfs: &[Rootfs], f: impl FnOnce(&[PathBuf]) -> R + Send) -> Result<R, Error> {
    view::with_rootfs_mounted(rootfs, f)
}

/// `name` in a directory of `PATH` (or the usual system ones).
pub(crate) fn find_program(name: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(std::path::PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// An I/O error as Go (and so Docker) words it: lowercase, without "(os error N)".
pub(crate) fn describe_io(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or(&text);
    let mut chars = text.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

impl Error {
    pub(crate) fn sys(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Sys { what: what.into(), source }
    }
}
