//! cgroup v2 delegation. A controller's files exist in a cgroup only if its parent
//! enables it in `cgroup.subtree_control`, so the sandbox's cgroup
//! (`<own>/builder/<id>`) needs the controllers enabled in our own cgroup and in
//! `builder`. The catch is the no-internal-process rule: a cgroup (other than the
//! root) that has processes cannot enable controllers for its children, and our own
//! cgroup has at least us. As podman and BuildKit's entrypoint do, if builder is
//! alone in its cgroup it moves itself into a leaf beside `builder`
//! (`<own>/builder-self`), then enables them; if other processes share its cgroup (a
//! login shell's scope, say), moving them is not ours to do, and the limits that need
//! a controller cannot be enforced: run builder in a cgroup of its own (a systemd
//! service or `systemd-run --scope`, with `Delegate=yes`).

use std::fs;
use std::io;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use super::discover::OwnCgroup;
use super::{BASE, CgroupUnavailable, Controller, failure, read_words};
use crate::Error;

/// Where builder moves itself when its own cgroup must have no processes.
const SELF_LEAF: &str = "builder-self";

/// Whether `controller` can be had in sandbox cgroups, and how; changes nothing.
pub(crate) fn readiness(own: &OwnCgroup, controller: Controller) -> Result<String, CgroupUnavailable> {
    let name = controller.name();
    let dir = own.dir.display();
    let file = own.dir.join("cgroup.controllers");
    let available = read_words(&file).map_err(|e| CgroupUnavailable::unreadable(file, &e))?;
    if !available.iter().any(|c| c == name) {
        return Err(CgroupUnavailable::NotDelegated { controller: name, dir: own.dir.clone() });
    }
    let how = format!("cgroup v2, in {dir}/{BASE}");
    let enabled = read_words(&own.dir.join("cgroup.subtree_control")).unwrap_or_default();
    if enabled.iter().any(|c| c == name) || own.is_root {
        return Ok(how);
    }
    match other_processes(&own.dir) {
        Ok(0) => Ok(format!("{how}; builder moves itself into {dir}/{SELF_LEAF} first")),
        Ok(n) => Err(busy(own, n)),
        Err(e) => Err(CgroupUnavailable::unreadable(own.dir.join("cgroup.procs"), &e)),
    }
}

fn busy(own: &OwnCgroup, others: usize) -> CgroupUnavailable {
    CgroupUnavailable::Busy { dir: own.dir.clone(), others }
}

/// Enables `wanted` below our own cgroup, moving builder into a leaf first if that is
/// what it takes and builder is alone there.
pub(crate) fn enable_below_own(own: &OwnCgroup, wanted: &[Controller]) -> Result<(), Error> {
    // Sandboxes start from many threads; one at a time here.
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let file = own.dir.join("cgroup.subtree_control");
    let Some(line) = missing(&file, wanted)? else { return Ok(()) };
    let what = || format!("write {line:?} to {}", file.display());
    match fs::write(&file, &line) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
            match other_processes(&own.dir) {
                Ok(0) => {}
                Ok(n) => return Err(Error::sys(what(), io::Error::new(e.kind(), busy(own, n).to_string()))),
                Err(e) => return Err(failure(format!("read {}/cgroup.procs", own.dir.display()), e)),
            }
            let leaf = own.dir.join(SELF_LEAF);
            match fs::create_dir(&leaf) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(failure(format!("create cgroup {}", leaf.display()), e)),
            }
            let procs = leaf.join("cgroup.procs");
            fs::write(&procs, std::process::id().to_string())
                .map_err(|e| failure(format!("move builder into {}", procs.display()), e))?;
            tracing::info!(cgroup = %leaf.display(), "moved builder into a leaf cgroup to enable {line} for sandboxes");
            fs::write(&file, &line).map_err(|e| failure(what(), e))
        }
        Err(e) => Err(failure(what(), e)),
    }
}

/// Enables `wanted` for the children of `dir`, a cgroup of ours without processes.
pub(crate) fn enable_in(dir: &Path, wanted: &[Controller]) -> Result<(), Error> {
    if wanted.is_empty() {
        return Ok(());
    }
    let file = dir.join("cgroup.subtree_control");
    match missing(&file, wanted)? {
        Some(line) => fs::write(&file, &line).map_err(|e| failure(format!("write {line:?} to {}", file.display()), e)),
        None => Ok(()),
    }
}

/// `+a +b` for the controllers of `wanted` not yet in `subtree_control`, if any.
fn missing(subtree_control: &Path, wanted: &[Controller]) -> Result<Option<String>, Error> {
    let enabled = read_words(subtree_control).map_err(|e| failure(format!("read {}", subtree_control.display()), e))?;
    let line: Vec<String> =
        wanted.iter().filter(|c| !enabled.iter().any(|e| e == c.name())).map(|c| format!("+{}", c.name())).collect();
    Ok((!line.is_empty()).then(|| line.join(" ")))
}

/// How many processes other than this one are in the cgroup `dir`.
fn other_processes(dir: &Path) -> io::Result<usize> {
    let me = std::process::id().to_string();
    Ok(fs::read_to_string(dir.join("cgroup.procs"))?.lines().filter(|p| !p.is_empty() && *p != me).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory shaped like a v2 cgroup (plain files: no kernel rules apply).
    fn fake(controllers: &str, subtree: &str, procs: &str, is_root: bool) -> (tempfile::TempDir, OwnCgroup) {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("cgroup.controllers"), controllers).unwrap();
        fs::write(dir.path().join("cgroup.subtree_control"), subtree).unwrap();
        fs::write(dir.path().join("cgroup.procs"), procs).unwrap();
        let own = OwnCgroup { mountpoint: dir.path().into(), dir: dir.path().into(), readonly: false, is_root };
        (dir, own)
    }

    #[test]
    fn readiness_follows_delegation_and_the_no_internal_process_rule() {
        let me = format!("{}\n", std::process::id());
        let (_d, own) = fake("cpu memory pids\n", "", "", false);
        assert!(readiness(&own, Controller::Pids).unwrap().starts_with("cgroup v2, in "));
        let (_d, own) = fake("cpu memory\n", "", "", false);
        let why = readiness(&own, Controller::Pids).unwrap_err().to_string();
        assert!(why.contains("pids controller is not delegated"), "{why}");
        // Enabled already: fine whoever is in there.
        let (_d, own) = fake("memory pids\n", "pids\n", "1\n2\n", false);
        assert!(readiness(&own, Controller::Pids).is_ok());
        // Alone: builder will move itself.
        let (_d, own) = fake("memory pids\n", "", &me, false);
        assert!(readiness(&own, Controller::Memory).unwrap().contains("builder-self"));
        // Not alone: not ours to move the others.
        let (_d, own) = fake("memory pids\n", "", &format!("1\n{me}"), false);
        let why = readiness(&own, Controller::Memory).unwrap_err().to_string();
        assert!(why.contains("1 process(es) besides builder") && why.contains("Delegate=yes"), "{why}");
        // The root cgroup is exempt from the rule.
        let (_d, own) = fake("memory pids\n", "", "1\n", true);
        assert!(readiness(&own, Controller::Memory).is_ok());
    }

    #[test]
    fn only_missing_controllers_are_enabled() {
        let (d, own) = fake("cpu memory pids\n", "pids\n", "", false);
        enable_below_own(&own, &[Controller::Pids, Controller::Memory, Controller::Cpu]).unwrap();
        assert_eq!(fs::read_to_string(d.path().join("cgroup.subtree_control")).unwrap(), "+memory +cpu");
        enable_in(d.path(), &[]).unwrap();
        fs::write(d.path().join("cgroup.subtree_control"), "memory pids").unwrap();
        enable_in(d.path(), &[Controller::Pids, Controller::Memory]).unwrap();
        assert_eq!(fs::read_to_string(d.path().join("cgroup.subtree_control")).unwrap(), "memory pids");
    }
}
