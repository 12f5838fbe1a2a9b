//! One cgroup per sandbox: where [`crate::Resources`] (pids, memory, CPU) and the
//! device allow list of [`crate::Devices::Default`] are enforced.
//!
//! The parent makes the cgroup and configures it before it starts the sandbox init
//! ([`SandboxCgroup::create`]); the init joins it ([`join`]) before it does anything
//! else, so every process of the sandbox is confined; the parent removes it once the
//! init is reaped. Cgroups are made under this process's own cgroup of each hierarchy
//! (`<own>/builder/<pid>-<n>`), so whatever limits the builder itself is under still
//! apply to its sandboxes.
//!
//! cgroup v1 (this includes hybrid hosts, where the controllers are on v1): one
//! directory in each hierarchy a limit needs; the device list goes to
//! `devices.deny`/`devices.allow`. cgroup v2: one directory; the controllers must be
//! enabled in `cgroup.subtree_control` from our own cgroup down (see `v2.rs` for the
//! no-internal-process rule), and the device list is a BPF program attached to it
//! (`bpf.rs`).
//!
//! A limit the caller asked for is never dropped silently: if it cannot be enforced
//! here, [`SandboxCgroup::create`] fails and says why. The device cgroup is a second
//! line of defence (sandbox mounts are `nodev` and build steps lack CAP_MKNOD), so
//! where none can be made the sandbox starts without it; [`crate::probe`] tells.
//!
//! Files, one concern each: `discover.rs` finds the hierarchies and our place in them
//! (parsing, tested on text), `support.rs` says what can be enforced and why not,
//! `plan.rs` computes the files to write (tested without root), `devices.rs` holds the
//! allow list, `bpf.rs` the v2 device program, `v2.rs` the controller delegation, and
//! `instance.rs` the lifecycle of one sandbox's cgroup.

mod bpf;
mod devices;
mod discover;
mod instance;
mod plan;
mod support;
mod unavailable;
mod v2;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub(crate) use instance::SandboxCgroup;
pub(crate) use support::{isolation, pids};
pub use unavailable::CgroupUnavailable;

use crate::Error;

/// The controllers builder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controller {
    Pids,
    Memory,
    Cpu,
    Devices,
}

impl Controller {
    pub const ALL: [Controller; 4] = [Controller::Pids, Controller::Memory, Controller::Cpu, Controller::Devices];

    /// The kernel's name for it (in mount options, `/proc/self/cgroup`, `cgroup.controllers`).
    pub fn name(self) -> &'static str {
        match self {
            Controller::Pids => "pids",
            Controller::Memory => "memory",
            Controller::Cpu => "cpu",
            Controller::Devices => "devices",
        }
    }
}

/// Sets up the sandbox init's own cgroups: writes `0` (the writer) to each
/// `cgroup.procs`. Called by the init first thing, so that all it forks is inside.
pub(crate) fn join(procs: &[PathBuf]) -> Result<(), Error> {
    for path in procs {
        fs::write(path, "0").map_err(|e| failure(format!("join cgroup {}", path.display()), e))?;
    }
    Ok(())
}

/// The name of the per-process directory (under our own cgroup) holding the sandboxes'.
const BASE: &str = "builder";

/// An error for a cgroup operation on `what`, with the likely cause spelled out.
pub(crate) fn failure(what: String, e: io::Error) -> Error {
    let text = explain(&e);
    Error::sys(what, io::Error::new(e.kind(), text))
}

/// The OS error of a cgroup operation, described, with its likely cause.
pub(crate) fn explain(e: &io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::EACCES | libc::EPERM) => Some(
            "not root, or the cgroup is not delegated to this user; fix: delegate one (cgroup v2: \
             `Delegate=yes` for user@.service, as rootless Docker and Podman document) or run builder as root",
        ),
        Some(libc::EROFS) => Some("the cgroup filesystem is mounted read-only"),
        Some(libc::ENOENT) => Some("the cgroup is gone, or the controller is not enabled for it"),
        Some(libc::EBUSY) => Some("the cgroup has processes, or children with controllers"),
        Some(libc::EINVAL) => Some("the kernel refused the value"),
        Some(libc::ENOSPC) => Some("too many cgroups (cgroup.max.descendants or max depth)"),
        _ => None,
    };
    let text = crate::describe_io(e);
    match hint {
        Some(hint) => format!("{text} ({hint})"),
        None => text,
    }
}

/// `access(path, W_OK)`: may this process create cgroups in `path`? (The kernel
/// answers read-only mounts with EROFS.)
pub(crate) fn writable(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: access reads a NUL-terminated path and nothing else.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// The whitespace-separated words of a file (`cgroup.controllers`, `cgroup.subtree_control`).
pub(crate) fn read_words(path: &Path) -> io::Result<Vec<String>> {
    Ok(fs::read_to_string(path)?.split_whitespace().map(String::from).collect())
}
