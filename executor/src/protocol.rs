//! What the parent hands the sandbox init, and what the init reports back: one JSON
//! document on fd 3 (a memfd, so secrets never touch a disk), JSON lines on fd 4.

use std::io;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::paths::Created;
use crate::{Error, ExitStatus, IdMapping, Spec, Upper};

/// The init's file descriptor for the [`InitConfig`].
pub(crate) const CONFIG_FD: i32 = 3;
/// The init's file descriptor for [`Message`]s.
pub(crate) const STATUS_FD: i32 = 4;
/// The init's descriptor of the network namespace to join (only with
/// [`InitConfig::join_network`]).
pub(crate) const NETWORK_FD: i32 = 5;
/// Set in the init's environment; its presence makes a process the sandbox init.
pub(crate) const INIT_ENV: &str = "_BUILDER_EXECUTOR_INIT";

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct InitConfig {
    pub spec: Spec,
    /// Private to this sandbox: `rootfs/` (the mountpoint), `hosts`, `resolv.conf`.
    pub bundle: PathBuf,
    /// A throwaway upper for a rootfs that has none (so stubs can be created), on a
    /// tmpfs the init mounts at their common parent.
    pub scratch_upper: Option<Upper>,
    /// The init opens a pty in the sandbox, sends its master on `console::CONSOLE_FD`
    /// and makes the slave fds 0-2 and the process's controlling terminal.
    pub terminal: bool,
    /// Mount overlays with this fuse-overlayfs program (the snapshotter in use).
    #[serde(default)]
    pub fuse_overlayfs: Option<PathBuf>,
    /// Join the network namespace on [`NETWORK_FD`] (one behind a NAT) first.
    pub join_network: bool,
    /// The sandbox cgroup's `cgroup.procs` files (one per v1 hierarchy), for the init
    /// to join before anything else.
    #[serde(default)]
    pub cgroup_procs: Vec<PathBuf>,
    /// The sandbox's own user namespace, if it has one (its maps are written before
    /// the init starts).
    #[serde(default)]
    pub user_namespace: Option<InitUserNamespace>,
}

/// What the init must know of its user namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InitUserNamespace {
    pub mapping: IdMapping,
    /// Whether `setgroups(2)` is allowed (not after a map written without privilege).
    pub setgroups: bool,
    /// Who started the sandbox, for error messages.
    pub user: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Message {
    Created(Created),
    Failed(InitError),
    Exited(ExitStatus),
}

/// An [`Error`] that crosses the pipe.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum InitError {
    UnknownUser(String),
    UnknownGroup(String),
    Sys { what: String, errno: Option<i32>, message: String },
}

impl From<Error> for InitError {
    fn from(e: Error) -> Self {
        match e {
            Error::UnknownUser(u) => InitError::UnknownUser(u),
            Error::UnknownGroup(g) => InitError::UnknownGroup(g),
            Error::Sys { what, source } => {
                InitError::Sys { what, errno: source.raw_os_error(), message: source.to_string() }
            }
            Error::Cancelled => InitError::Sys { what: "init".into(), errno: None, message: "cancelled".into() },
        }
    }
}

impl From<InitError> for Error {
    fn from(e: InitError) -> Self {
        match e {
            InitError::UnknownUser(u) => Error::UnknownUser(u),
            InitError::UnknownGroup(g) => Error::UnknownGroup(g),
            InitError::Sys { what, errno, message } => {
                let source = match errno {
                    Some(n) if io::Error::from_raw_os_error(n).to_string() == message => {
                        io::Error::from_raw_os_error(n)
                    }
                    Some(n) => io::Error::new(io::Error::from_raw_os_error(n).kind(), message),
                    None => io::Error::other(message),
                };
                Error::Sys { what, source }
            }
        }
    }
}
