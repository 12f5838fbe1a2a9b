//! User namespaces: how an ordinary user's sandbox gets its namespaces, and which ids
//! it has ([`IdMapping`]).
//!
//! Without root, the kernel grants the mount, PID, UTS, IPC and network namespaces only
//! together with a new user namespace, whose root has capabilities over those alone.
//! The parent clones the init with `CLONE_NEWUSER` too; the child waits, before it
//! even execs, until the parent has written its id maps ([`write_maps`]): execve
//! computes the new program's capabilities from its uid, and an unmapped uid is not
//! root, so an init that ran before its maps existed would have none.
//!
//! The maps ([`plan`]) are rootless Podman's: 0 is the caller; 1, 2... are the caller's
//! subordinate ids from `/etc/subuid` and `/etc/subgid`, written by the setuid helpers
//! `newuidmap`/`newgidmap` (the kernel lets an ordinary user map only its own id).
//! Without subordinate ids the parent maps root alone, itself, after writing `deny`
//! to `setgroups` (the kernel's condition for a gid map written without privilege):
//! then chown to any other id fails with EINVAL in the sandbox, a `USER` other than
//! root cannot be switched to (an error names the missing lines), and the process
//! keeps the supplementary groups it was started with (shown as 65534), since it may
//! not change them.

pub(crate) mod enter;
mod mapping;
pub(crate) mod probe;
pub(crate) mod procfs;
mod subid;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

pub use mapping::{IdMap, IdMapping, IdRange};
pub use probe::UserNamespaces;
pub(crate) use probe::user_namespaces;
pub use subid::SubordinateRange;

use crate::{Error, UserNamespace};

pub(crate) const SUBUID: &str = "/etc/subuid";
pub(crate) const SUBGID: &str = "/etc/subgid";

/// Who the caller is, as far as user namespaces go.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// From the host's passwd (`None` for a uid without an entry).
    pub name: Option<String>,
    pub subuids: Result<Vec<SubordinateRange>, String>,
    pub subgids: Result<Vec<SubordinateRange>, String>,
    pub newuidmap: Option<PathBuf>,
    pub newgidmap: Option<PathBuf>,
}

impl Caller {
    pub fn current() -> Caller {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        let name = nix::unistd::User::from_uid(uid.into()).ok().flatten().map(|u| u.name);
        let read = |path: &str| {
            subid::read(Path::new(path), name.as_deref(), uid)
                .map_err(|e| format!("read {path}: {}", crate::describe_io(&e)))
        };
        Caller {
            uid,
            gid,
            subuids: read(SUBUID),
            subgids: read(SUBGID),
            newuidmap: crate::find_program("newuidmap"),
            newgidmap: crate::find_program("newgidmap"),
            name,
        }
    }

    /// The name, or the uid when there is none.
    pub fn user(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.uid.to_string())
    }

    /// The `usermod` line that gives this user subordinate ids.
    pub fn fix_subids(&self) -> String {
        format!(
            "add a range to /etc/subuid and /etc/subgid, e.g. `usermod --add-subuids 100000-165535 \
             --add-subgids 100000-165535 {}` (as root)",
            self.user()
        )
    }
}

/// How the parent writes a new user namespace's maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Writer {
    /// Root writes any map itself.
    Root,
    /// An ordinary user writes a map of its own ids alone, after denying `setgroups`.
    SingleId,
    /// The setuid helpers of the uidmap package, which check the subordinate ranges.
    Helpers { newuidmap: PathBuf, newgidmap: PathBuf },
}

/// The user namespace a sandbox gets.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub mapping: IdMapping,
    pub writer: Writer,
    /// Who the caller is (for error messages).
    pub user: String,
}

impl Plan {
    /// Whether processes in the namespace may call `setgroups(2)`: not once a map was
    /// written without privilege (by us, or by newgidmap for a gid of our own alone).
    pub fn setgroups(&self) -> bool {
        self.writer == Writer::Root || self.mapping.gid.len() > 1
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The user namespace a sandbox with `mode` gets here, if any.
pub(crate) fn plan(mode: UserNamespace) -> Result<Option<Plan>, Error> {
    match mode {
        UserNamespace::Host if !is_root() => Err(Error::sys(
            "start sandbox",
            io::Error::new(
                io::ErrorKind::PermissionDenied,
                "a sandbox in the host's user namespace needs root (UserNamespace::Host)",
            ),
        )),
        UserNamespace::Host => Ok(None),
        UserNamespace::Auto if is_root() => Ok(None),
        UserNamespace::Auto | UserNamespace::Private => plan_for(&Caller::current()).map(Some),
    }
}

/// The mapping and how to write it, for `caller`.
pub(crate) fn plan_for(caller: &Caller) -> Result<Plan, Error> {
    let ranges = |r: &Result<Vec<SubordinateRange>, String>| {
        r.clone().map_err(|why| Error::sys("find subordinate ids", io::Error::other(why)))
    };
    let (subuids, subgids) = (ranges(&caller.subuids)?, ranges(&caller.subgids)?);
    let mapping = IdMapping::new(caller.uid, caller.gid, &subuids, &subgids);
    let user = caller.user();
    let writer = if caller.uid == 0 {
        Writer::Root
    } else if subuids.is_empty() && subgids.is_empty() {
        warn_single_id(caller);
        Writer::SingleId
    } else {
        let missing = |tool: &str, file: &str| {
            Error::sys(
                format!("map the subordinate ids of user {user} ({file})"),
                io::Error::new(io::ErrorKind::NotFound, format!("{tool}: not installed (apt-get install uidmap)")),
            )
        };
        Writer::Helpers {
            newuidmap: caller.newuidmap.clone().ok_or_else(|| missing("newuidmap", SUBUID))?,
            newgidmap: caller.newgidmap.clone().ok_or_else(|| missing("newgidmap", SUBGID))?,
        }
    };
    Ok(Plan { mapping, writer, user })
}

/// Once per process: what a map of root alone cannot do.
fn warn_single_id(caller: &Caller) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "no subordinate ids for user {} in {SUBUID} and {SUBGID}: user namespaces (builder's and its \
             sandboxes') map only root (to uid {}, gid {}); files cannot be given other owners: layers with \
             such files, COPY --chown and RUN chown to other ids fail with an error, and a USER other than root \
             cannot run; {}",
            caller.user(),
            caller.uid,
            caller.gid,
            caller.fix_subids()
        );
    }
}

/// Writes the maps of the user namespace of `pid` (a child that waits for them).
pub(crate) fn write_maps(pid: libc::pid_t, plan: &Plan) -> Result<(), Error> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let write = |file: &str, text: &str| {
        std::fs::write(proc.join(file), text).map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::EPERM) => " (the kernel refused the map: only root may map ids other than its own)",
                Some(libc::EINVAL) => " (the kernel refused the map: overlapping or out-of-range ids)",
                _ => "",
            };
            Error::sys(
                format!("write {file} of the sandbox's user namespace"),
                io::Error::new(e.kind(), format!("{}{hint}", crate::describe_io(&e))),
            )
        })
    };
    match &plan.writer {
        Writer::Root => {
            write("uid_map", &plan.mapping.uid.proc_text())?;
            write("gid_map", &plan.mapping.gid.proc_text())
        }
        Writer::SingleId => {
            write("uid_map", &plan.mapping.uid.proc_text())?;
            write("setgroups", "deny")?;
            write("gid_map", &plan.mapping.gid.proc_text())
        }
        Writer::Helpers { newuidmap, newgidmap } => {
            // Both at once: each is a setuid program that costs milliseconds to start.
            let uid = start_helper(newuidmap, pid, &plan.mapping.uid);
            let gid = start_helper(newgidmap, pid, &plan.mapping.gid);
            let uid = finish_helper(uid, &plan.user, SUBUID);
            let gid = finish_helper(gid, &plan.user, SUBGID);
            uid.and(gid)
        }
    }
}

/// A helper started by [`start_helper`]: what it was asked, and the process or why it
/// did not start.
struct Helper {
    helper: PathBuf,
    what: String,
    child: Result<std::process::Child, Error>,
}

/// Starts `newuidmap PID 0 UID 1 1 START COUNT...` (or `newgidmap`).
fn start_helper(helper: &Path, pid: libc::pid_t, map: &IdMap) -> Helper {
    let name = helper.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let args = map.helper_args();
    let what = format!("{name} {pid} {}", args.join(" "));
    let child = Command::new(helper)
        .arg(pid.to_string())
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| Error::sys(what.clone(), io::Error::new(e.kind(), crate::describe_io(&e))));
    Helper { helper: helper.to_path_buf(), what, child }
}

/// Waits for a helper; its complaint in the error if it failed.
fn finish_helper(started: Helper, user: &str, file: &str) -> Result<(), Error> {
    let Helper { helper, what, child } = started;
    let out = child?
        .wait_with_output()
        .map_err(|e| Error::sys(what.clone(), io::Error::new(e.kind(), crate::describe_io(&e))))?;
    if out.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&out.stderr);
    let said = said.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim();
    Err(Error::sys(
        what,
        io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} ({said}; are the ranges of user {user} in {file}, and is {} setuid root or given \
                 cap_setuid/cap_setgid?)",
                out.status,
                helper.display()
            ),
        ),
    ))
}

/// Turns the clone's failure to make a user namespace into what to do about it.
pub(crate) fn clone_error(e: io::Error) -> Error {
    let read = |path: &str| std::fs::read_to_string(path).ok().map(|s| s.trim().to_string());
    let max = read("/proc/sys/user/max_user_namespaces");
    let why = match e.raw_os_error() {
        Some(libc::ENOSPC) if max.as_deref() == Some("0") => {
            "user namespaces are disabled: sysctl user.max_user_namespaces=0".to_string()
        }
        Some(libc::ENOSPC) => format!(
            "too many user namespaces: the limit user.max_user_namespaces ({}) is reached",
            max.as_deref().unwrap_or("?")
        ),
        Some(libc::EUSERS) => "user namespaces nested too deep (32 levels at most)".to_string(),
        Some(libc::EPERM) if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") => {
            "user namespaces are disabled for unprivileged users: sysctl kernel.unprivileged_userns_clone=0".into()
        }
        Some(libc::EPERM) if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") => {
            "AppArmor forbids unprivileged user namespaces: sysctl kernel.apparmor_restrict_unprivileged_userns=1 \
             (or give builder an AppArmor profile that allows userns)"
                .into()
        }
        Some(libc::EPERM) => "user namespaces are not allowed here: inside a container, its seccomp profile or \
                              missing privileges may forbid them, or sysctl user.max_user_namespaces=0"
            .into(),
        _ => return Error::sys("create the sandbox's user namespace", e),
    };
    Error::sys(
        "create the sandbox's user namespace",
        io::Error::new(e.kind(), format!("{} ({why}; see `builder doctor`)", crate::describe_io(&e))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(uid: u32, subuids: Vec<SubordinateRange>, helpers: bool) -> Caller {
        Caller {
            uid,
            gid: uid,
            name: Some("u".into()),
            subgids: Ok(subuids.clone()),
            subuids: Ok(subuids),
            newuidmap: helpers.then(|| "/usr/bin/newuidmap".into()),
            newgidmap: helpers.then(|| "/usr/bin/newgidmap".into()),
        }
    }

    const RANGE: SubordinateRange = SubordinateRange { start: 100000, count: 65536 };

    #[test]
    fn subordinate_ids_go_through_the_helpers() {
        let plan = plan_for(&caller(1000, vec![RANGE], true)).unwrap();
        assert!(matches!(plan.writer, Writer::Helpers { .. }));
        assert_eq!(plan.mapping.uid.to_host(1001), Some(101000));
        assert!(plan.setgroups());
    }

    #[test]
    fn without_the_helpers_the_error_says_what_to_install() {
        let err = plan_for(&caller(1000, vec![RANGE], false)).unwrap_err().to_string();
        assert_eq!(
            err,
            "map the subordinate ids of user u (/etc/subuid): newuidmap: not installed (apt-get install uidmap)"
        );
    }

    #[test]
    fn without_subordinate_ids_root_alone_and_no_setgroups() {
        let plan = plan_for(&caller(1000, vec![], true)).unwrap();
        assert_eq!(plan.writer, Writer::SingleId);
        assert!(plan.mapping.is_single_id() && !plan.setgroups());
    }

    #[test]
    fn root_writes_its_own_maps() {
        let plan = plan_for(&caller(0, vec![], false)).unwrap();
        assert_eq!(plan.writer, Writer::Root);
        assert_eq!(plan.mapping.uid.proc_text(), "0 0 1\n");
        assert!(plan.setgroups());
    }

    #[test]
    fn an_unreadable_subuid_file_is_an_error() {
        let mut c = caller(1000, vec![], true);
        c.subuids = Err("read /etc/subuid: permission denied".into());
        assert_eq!(plan_for(&c).unwrap_err().to_string(), "find subordinate ids: read /etc/subuid: permission denied");
    }

    #[test]
    fn disabled_user_namespaces_are_named() {
        let e = clone_error(io::Error::from_raw_os_error(libc::EUSERS)).to_string();
        assert!(e.starts_with("create the sandbox's user namespace: "), "{e}");
        assert!(e.contains("nested too deep") && e.contains("builder doctor"), "{e}");
        let e = clone_error(io::Error::from_raw_os_error(libc::EPERM)).to_string();
        assert!(e.contains("operation not permitted (") && e.contains("builder doctor"), "{e}");
    }
}
