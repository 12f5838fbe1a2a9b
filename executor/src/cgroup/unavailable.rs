//! Why sandbox cgroups (or one controller of them) cannot be had here: what
//! [`crate::probe`] reports as "not enforced" and what `SandboxCgroup::create` fails
//! with when a limit was asked for. Kept as data (the file, the controller, the
//! operation) rather than text; `Clone` because the layout is read once per process
//! and every sandbox asks it again.

use std::path::PathBuf;

/// Why there is no usable cgroup for a controller (or none at all).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CgroupUnavailable {
    /// A file of `/proc` or of a cgroup could not be read; `reason` is the OS error,
    /// described (an `io::Error` is not `Clone`).
    #[error("read {}: {reason}", path.display())]
    Unreadable { path: PathBuf, reason: String },
    #[error("no cgroup filesystem is mounted (/proc/self/mountinfo)")]
    NoFilesystem,
    #[error("/proc/self/cgroup has no cgroup v2 line (0::/...)")]
    NoV2Membership,
    /// cgroup v1: this process is in no hierarchy of `controller`.
    #[error("/proc/self/cgroup lists no {controller} hierarchy")]
    NotListed { controller: &'static str },
    /// cgroup v1: no hierarchy of `controller` is mounted.
    #[error("no cgroup v1 hierarchy with the {controller} controller is mounted")]
    NotMounted { controller: &'static str },
    /// The mount shows only a part of the hierarchy (`root`), and our cgroup is not in it.
    #[error("this process's cgroup {cgroup} is outside the part ({root}) of the hierarchy mounted at {}", mountpoint.display())]
    OutsideMount { cgroup: String, root: String, mountpoint: PathBuf },
    #[error("the cgroup filesystem at {} is mounted read-only", mountpoint.display())]
    ReadOnly { mountpoint: PathBuf },
    /// `access(W_OK)` refused; `reason` says the OS error and its likely cause.
    #[error("create cgroups in {}: {reason}", dir.display())]
    NotWritable { dir: PathBuf, reason: String },
    /// cgroup v2: the controller is not in our cgroup's `cgroup.controllers`.
    #[error("the {controller} controller is not delegated to {} (absent from its cgroup.controllers)", dir.display())]
    NotDelegated { controller: &'static str, dir: PathBuf },
    /// cgroup v2's no-internal-process rule, with other processes in our cgroup.
    #[error(
        "{} has {others} process(es) besides builder, and cgroup v2 enables no controller below a cgroup with \
         processes; run builder in a cgroup of its own (a systemd service or `systemd-run --scope`, with Delegate=yes)",
        dir.display()
    )]
    Busy { dir: PathBuf, others: usize },
    /// cgroup v2: the BPF device program could not be loaded.
    #[error("bpf(BPF_PROG_LOAD) of a cgroup device program: {reason}")]
    BpfLoad { reason: String },
}

impl CgroupUnavailable {
    pub(crate) fn unreadable(path: impl Into<PathBuf>, e: &std::io::Error) -> Self {
        CgroupUnavailable::Unreadable { path: path.into(), reason: crate::describe_io(e) }
    }
}
