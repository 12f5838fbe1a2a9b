//! [`probe`]: what isolation sandboxes get on this host beyond namespaces, and why
//! not where they do not, for `builder doctor` and for warnings.

use std::fmt;

use crate::CgroupUnavailable;

/// The cgroup version sandbox cgroups are made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// Per-controller hierarchies (this includes hybrid hosts).
    V1,
    /// The unified hierarchy.
    V2,
}

/// Whether one kind of limit is enforced, with where (or why not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Support {
    Enforced(String),
    NotEnforced(CgroupUnavailable),
}

impl Support {
    pub fn is_enforced(&self) -> bool {
        matches!(self, Support::Enforced(_))
    }
}

impl fmt::Display for Support {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Support::Enforced(how) => write!(f, "enforced ({how})"),
            Support::NotEnforced(why) => write!(f, "not enforced: {why}"),
        }
    }
}

/// What [`probe`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Isolation {
    /// The cgroup version in use, or why builder can make no cgroups at all.
    pub cgroup: Result<CgroupVersion, CgroupUnavailable>,
    /// [`crate::Resources::pids`]. A sandbox asking for a limit that is not enforced
    /// fails to start.
    pub pids: Support,
    /// [`crate::Resources::memory`].
    pub memory: Support,
    /// [`crate::Resources::cpu_millis`].
    pub cpu: Support,
    /// The device cgroup of [`crate::Devices::Default`]. Where it is not enforced,
    /// sandboxes still start: their mounts are `nodev` and build steps lack CAP_MKNOD.
    pub devices: Support,
    /// User namespaces: used by sandboxes of an ordinary user (rootless), and what
    /// they need.
    pub user_namespace: crate::UserNamespaces,
}

impl fmt::Display for Isolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cgroup {
            Ok(CgroupVersion::V1) => writeln!(f, "cgroups: v1")?,
            Ok(CgroupVersion::V2) => writeln!(f, "cgroups: v2")?,
            Err(why) => writeln!(f, "cgroups: none ({why})")?,
        }
        writeln!(f, "pids limit: {}", self.pids)?;
        writeln!(f, "memory limit: {}", self.memory)?;
        writeln!(f, "cpu limit: {}", self.cpu)?;
        writeln!(f, "device filter: {}", self.devices)?;
        write!(f, "{}", self.user_namespace)
    }
}

/// Looks at the host: which limits of [`crate::Resources`] and which device filter
/// sandboxes get, and (without root) what their user namespaces get. Cheap enough to
/// call often; it changes nothing (on cgroup v2 it may load, and keep, the BPF device
/// program once; without root, it starts one trial sandbox per process, to see that
/// overlayfs and a fresh `/proc` work in a user namespace).
pub fn probe() -> Isolation {
    crate::cgroup::isolation(crate::userns::user_namespaces())
}

/// Only whether a [`crate::Resources::pids`] limit is enforced here: what every build
/// asks, without the rest of [`probe`] (no user-namespace trial, no passwd lookups).
pub fn probe_pids() -> Support {
    crate::cgroup::pids()
}
