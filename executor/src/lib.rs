//! The executor: runs one process in a sandbox and cleans up after it.
//!
//! A [`Spec`] says what to run ([`Process`]), on which root filesystem ([`Rootfs`]:
//! overlayfs lowerdirs + a fresh upperdir), with which extra [`Mount`]s and which
//! [`Network`]. [`run`] forks a child into new mount, PID, UTS and IPC namespaces (and
//! a network namespace for [`Network::None`]), builds the rootfs, `pivot_root`s into
//! it, drops to the requested user and execs. When it returns, no mount and no
//! process of the sandbox remain, whether the process succeeded, failed or was killed.
//!
//! [`with_rootfs_mounted`] mounts a rootfs in a private mount namespace on a helper
//! thread so the builder can apply file operations (COPY) through overlayfs.
//!
//! This crate knows nothing about images, layers or Dockerfiles, and it is the only
//! crate with `unsafe`, `nix` or `libc`.

mod caps;
mod init;
mod paths;
mod protocol;
mod rootfs;
mod sandbox;
mod spawn;
mod stubs;
mod syscall;
mod user;
mod view;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use serde::{Deserialize, Serialize};

pub use init::maybe_run_init;

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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MountSource {
    /// A host path bound into the sandbox.
    Bind { source: PathBuf, readonly: bool },
    /// A fresh tmpfs.
    Tmpfs { size: Option<u64> },
    /// An overlay whose changes land in `upperdir` (used for writable binds whose
    /// writes must be discarded).
    Overlay { lowerdirs: Vec<PathBuf>, upperdir: PathBuf, workdir: PathBuf },
    /// A single file with the given content, on a tmpfs, never on disk (secrets).
    File { content: Vec<u8>, mode: u32, uid: u32, gid: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the sandbox; created if missing.
    pub target: String,
    pub source: MountSource,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    /// Share the host's network namespace.
    Host,
    /// A new network namespace with only `lo`, brought up.
    None,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    pub rootfs: Rootfs,
    pub mounts: Vec<Mount>,
    pub process: Process,
    pub network: Network,
    pub hostname: String,
}

/// Where the sandboxed process's output goes.
pub enum Stdio<'a> {
    /// The caller's own stdin/stdout/stderr (`builder run`).
    Inherit,
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

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Sys {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    #[error("cancelled")]
    Cancelled,
}

/// Runs `spec` to completion (or until `cancel` is set) and returns its exit status.
///
/// The process's own failures are its exit status (127: command not found, 126: not
/// executable, 128+n: killed by signal n); an `Err` means the sandbox could not be set
/// up, or [`Error::Cancelled`].
pub fn run(spec: &Spec, stdio: Stdio<'_>, cancel: Option<Arc<AtomicBool>>) -> Result<ExitStatus, Error> {
    spawn::run(spec, stdio, cancel)
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

impl Error {
    pub(crate) fn sys(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Sys { what: what.into(), source }
    }
}
