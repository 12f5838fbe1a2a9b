//! What [`crate::probe`] says about user namespaces: whether this process may make
//! one, its subordinate ids and helpers, the mapping its sandboxes get, and whether
//! overlayfs and a fresh `/proc` work inside one. The last two are tried once per
//! process, by starting a real sandbox (in the temp dir) whose command does not exist:
//! its set-up is that of every sandbox, so it fails where theirs would, with the same
//! error.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use super::{Caller, IdMapping, SubordinateRange, plan_for};
use crate::{
    Error, ExitStatus, Network, OutputStream, Process, Resources, Rootfs, Security, Spec, Stdio, Upper, UserNamespace,
};

/// What [`crate::probe`] found about user namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNamespaces {
    /// This process is root: its sandboxes get no user namespace unless asked
    /// ([`UserNamespace::Private`]), and nothing below was tried.
    pub root: bool,
    /// Who this process runs as (its name, or its uid).
    pub user: String,
    /// Whether a sandbox's user namespace can be made, or why not.
    pub allowed: Result<(), String>,
    /// From `/etc/subuid` and `/etc/subgid`, by name and by uid.
    pub subuids: Result<Vec<SubordinateRange>, String>,
    pub subgids: Result<Vec<SubordinateRange>, String>,
    /// The setuid helpers that map subordinate ids, where found.
    pub newuidmap: Option<PathBuf>,
    pub newgidmap: Option<PathBuf>,
    /// The ids of a sandbox's user namespace, or why it cannot have any.
    pub mapping: Result<IdMapping, String>,
    /// overlayfs (with `userxattr`) mounted inside a user namespace.
    pub overlay: Result<(), String>,
    /// A fresh procfs mounted inside one (with its PID namespace).
    pub procfs: Result<(), String>,
    /// What [`Network::Private`] needs without root beyond slirp4netns: a usable
    /// `/dev/net/tun`.
    pub tun: Result<(), String>,
}

/// The outcome of the trial sandbox.
#[derive(Debug, Clone)]
struct Trial {
    allowed: Result<(), String>,
    overlay: Result<(), String>,
    procfs: Result<(), String>,
}

pub(crate) fn user_namespaces() -> UserNamespaces {
    let caller = Caller::current();
    let root = caller.uid == 0;
    let mapping = plan_for(&caller).map(|p| p.mapping).map_err(|e| e.to_string());
    let not_tried = || Err("not tried (root: sandboxes use no user namespace)".to_string());
    let (allowed, overlay, procfs) = if root {
        (sysctls(), not_tried(), not_tried())
    } else {
        static TRIAL: OnceLock<Trial> = OnceLock::new();
        let trial = TRIAL.get_or_init(trial).clone();
        (sysctls().and(trial.allowed), trial.overlay, trial.procfs)
    };
    UserNamespaces {
        root,
        user: caller.user(),
        allowed,
        subuids: caller.subuids.clone(),
        subgids: caller.subgids.clone(),
        newuidmap: caller.newuidmap.clone(),
        newgidmap: caller.newgidmap.clone(),
        mapping,
        overlay,
        procfs,
        tun: tun(root),
    }
}

/// The host-wide switches that forbid user namespaces.
fn sysctls() -> Result<(), String> {
    let read = |path: &str| std::fs::read_to_string(path).ok().map(|s| s.trim().to_string());
    if read("/proc/sys/user/max_user_namespaces").as_deref() == Some("0") {
        return Err(
            "disabled: sysctl user.max_user_namespaces=0 (fix: sysctl -w user.max_user_namespaces=15000)".into()
        );
    }
    if read("/proc/sys/kernel/unprivileged_userns_clone").as_deref() == Some("0") {
        return Err("disabled for unprivileged users: sysctl kernel.unprivileged_userns_clone=0 \
                    (fix: sysctl -w kernel.unprivileged_userns_clone=1)"
            .into());
    }
    if read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1") {
        return Err("AppArmor restricts unprivileged user namespaces: sysctl \
                    kernel.apparmor_restrict_unprivileged_userns=1 (fix: an AppArmor profile for builder with \
                    `userns,`, or set it to 0)"
            .into());
    }
    Ok(())
}

fn tun(root: bool) -> Result<(), String> {
    let path = std::path::Path::new("/dev/net/tun");
    match std::fs::OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => Ok(()),
        Err(e) if root => Err(format!("cannot open /dev/net/tun: {}", crate::describe_io(&e))),
        Err(e) => {
            let mode = std::fs::metadata(path).map(|m| format!(" (mode {:04o})", m.permissions().mode() & 0o7777));
            Err(format!(
                "cannot open /dev/net/tun{}: {} (fix: chmod 0666 /dev/net/tun, as most distributions set it)",
                mode.unwrap_or_default(),
                crate::describe_io(&e)
            ))
        }
    }
}

/// Starts a sandbox of two empty layers and an upper, in a user namespace, whose
/// command cannot exist: 127 means every set-up step worked.
fn trial() -> Trial {
    let not_tried = |why: &str| Err(format!("not tried: {why}"));
    let dir = match tempfile::Builder::new().prefix(".builder-probe-").tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            let why = format!("cannot make a temp dir: {e}");
            return Trial { allowed: Ok(()), overlay: not_tried(&why), procfs: not_tried(&why) };
        }
    };
    let p = dir.path();
    for d in ["a", "b", "upper", "work"] {
        if let Err(e) = std::fs::create_dir(p.join(d)) {
            let why = format!("cannot make {}: {e}", p.join(d).display());
            return Trial { allowed: Ok(()), overlay: not_tried(&why), procfs: not_tried(&why) };
        }
    }
    let spec = Spec {
        rootfs: Rootfs {
            lowerdirs: vec![p.join("a"), p.join("b")],
            upper: Some(Upper { upperdir: p.join("upper"), workdir: p.join("work") }),
            readonly: false,
        },
        mounts: vec![],
        process: Process {
            args: vec!["/.builder-probe-no-such-command".into()],
            env: vec![],
            cwd: "/".into(),
            user: String::new(),
        },
        network: Network::None,
        hostname: String::new(),
        extra_hosts: Vec::new(),
        security: Security { user_namespace: UserNamespace::Private, ..Security::build_step() },
        resources: Resources::default(),
    };
    let mut ignore = |_: OutputStream, _: &[u8]| {};
    // overlayfs is what is tried, whichever snapshotter builds use.
    let ran = crate::run_with_overlayfs(&spec, Stdio::Capture(&mut ignore));
    // overlayfs leaves `work/work` with mode 000: as an ordinary user the temp dir
    // could not be listed, so not removed, and every probe left one in /tmp.
    let _ = std::fs::set_permissions(p.join("work/work"), std::os::unix::fs::PermissionsExt::from_mode(0o700));
    match ran {
        Ok(ExitStatus::Code(127)) => Trial { allowed: Ok(()), overlay: Ok(()), procfs: Ok(()) },
        Ok(status) => {
            let why = format!("the trial sandbox ended with {status:?}, not 127");
            Trial { allowed: Ok(()), overlay: Err(why.clone()), procfs: Err(why) }
        }
        Err(e) => classify(e),
    }
}

/// Which step of the trial failed, from its error.
fn classify(e: Error) -> Trial {
    let text = e.to_string();
    let after = |step: &str| Err(format!("not tried: {step} failed"));
    if text.starts_with("create the sandbox's user namespace") || text.starts_with("write ") {
        Trial { allowed: Err(text), overlay: after("the user namespace"), procfs: after("the user namespace") }
    } else if text.starts_with("mount overlay") {
        Trial { allowed: Ok(()), overlay: Err(text), procfs: after("overlayfs") }
    } else if text.starts_with("mount proc") {
        Trial { allowed: Ok(()), overlay: Ok(()), procfs: Err(text) }
    } else {
        let why = format!("the trial sandbox failed first: {text}");
        Trial { allowed: Ok(()), overlay: Err(why.clone()), procfs: Err(why) }
    }
}

fn ranges(r: &[SubordinateRange]) -> String {
    let all: Vec<String> = r.iter().map(|r| format!("{}-{} ({})", r.start, r.end(), r.count)).collect();
    all.join(", ")
}

impl fmt::Display for UserNamespaces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = |r: &Result<(), String>, ok: &str| match r {
            Ok(()) => ok.to_string(),
            Err(why) => format!("no: {why}"),
        };
        if self.root {
            writeln!(f, "user namespace: none (running as root; UserNamespace::Private asks for one)")?;
            return writeln!(f, "user namespaces allowed: {}", state(&self.allowed, "yes"));
        }
        writeln!(
            f,
            "user namespace: yes (running as {}, not root; builder makes one at start, its sandboxes run in it)",
            self.user
        )?;
        writeln!(f, "user namespaces allowed: {}", state(&self.allowed, "yes"))?;
        for (what, file, r) in [("uids", super::SUBUID, &self.subuids), ("gids", super::SUBGID, &self.subgids)] {
            match r {
                Ok(r) if r.is_empty() => writeln!(
                    f,
                    "subordinate {what}: none for {} in {file} (only root is mapped; fix: usermod \
                     --add-subuids 100000-165535 --add-subgids 100000-165535 {})",
                    self.user, self.user
                )?,
                Ok(r) => writeln!(f, "subordinate {what}: {}", ranges(r))?,
                Err(why) => writeln!(f, "subordinate {what}: unknown ({why})")?,
            }
        }
        let tool = |p: &Option<PathBuf>| p.as_ref().map_or("not installed".to_string(), |p| p.display().to_string());
        let fix =
            if self.newuidmap.is_none() || self.newgidmap.is_none() { " (fix: apt-get install uidmap)" } else { "" };
        writeln!(f, "newuidmap: {}, newgidmap: {}{fix}", tool(&self.newuidmap), tool(&self.newgidmap))?;
        match &self.mapping {
            Ok(m) => writeln!(f, "id mapping: {m}")?,
            Err(why) => writeln!(f, "id mapping: none ({why})")?,
        }
        writeln!(f, "overlayfs in a user namespace: {}", state(&self.overlay, "yes (userxattr)"))?;
        writeln!(f, "fresh /proc in a user namespace: {}", state(&self.procfs, "yes"))?;
        writeln!(f, "private network without root (/dev/net/tun): {}", state(&self.tun, "yes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sys(what: &str, message: &str) -> Error {
        Error::sys(what, std::io::Error::other(message.to_string()))
    }

    #[test]
    fn the_failed_step_is_named() {
        let t = classify(sys("create the sandbox's user namespace", "no space left on device"));
        assert!(t.allowed.is_err() && t.overlay.is_err());
        let t = classify(sys("mount overlay on /x", "operation not permitted"));
        assert_eq!(t.allowed, Ok(()));
        assert_eq!(t.overlay.unwrap_err(), "mount overlay on /x: operation not permitted");
        assert_eq!(t.procfs.unwrap_err(), "not tried: overlayfs failed");
        let t = classify(sys("mount proc on /p", "operation not permitted"));
        assert_eq!((t.allowed, t.overlay), (Ok(()), Ok(())));
        assert!(t.procfs.is_err());
    }

    #[test]
    fn shows_what_is_missing_and_the_fix() {
        let u = UserNamespaces {
            root: false,
            user: "alice".into(),
            allowed: Ok(()),
            subuids: Ok(vec![]),
            subgids: Ok(vec![SubordinateRange { start: 100000, count: 65536 }]),
            newuidmap: None,
            newgidmap: Some("/usr/bin/newgidmap".into()),
            mapping: Ok(IdMapping::new(1000, 1000, &[], &[])),
            overlay: Ok(()),
            procfs: Err("mount proc on /p: operation not permitted".into()),
            tun: Ok(()),
        };
        let text = u.to_string();
        assert!(text.contains("subordinate uids: none for alice in /etc/subuid (only root is mapped; fix: usermod"));
        assert!(text.contains("subordinate gids: 100000-165535 (65536)"));
        assert!(text.contains("newuidmap: not installed, newgidmap: /usr/bin/newgidmap (fix: apt-get install uidmap)"));
        assert!(text.contains("id mapping: uids 0 -> 1000; gids 0 -> 1000"));
        assert!(text.contains("fresh /proc in a user namespace: no: mount proc on /p: operation not permitted"));
    }
}
