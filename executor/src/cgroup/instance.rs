//! One sandbox's cgroup: made and configured by the parent before the init starts,
//! joined by the init ([`super::join`]), removed once the init is reaped, and in
//! `Drop` whatever happens (a setup error, a panic, a cancel).
//!
//! Its name is `<our pid>-<counter>` under `<own cgroup>/builder`. A builder that was
//! killed leaves its (empty) cgroups behind: each new one first removes those whose
//! pid is no longer alive. rmdir only ever removes an empty cgroup, and a cgroup of a
//! live builder is never touched, even in the instant before its init joins it. The
//! last sandbox out also removes `builder` itself (rmdir fails while others are in
//! it; one being made meanwhile retries).

use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::discover::OwnCgroup;
use super::plan::{self, Write};
use super::{BASE, Controller, bpf, failure, support, v2};
use crate::{CgroupVersion, Devices, Error, Resources, Support};

pub(crate) struct SandboxCgroup {
    /// The leaf directories, one per v1 hierarchy used (one on v2), as made.
    dirs: Vec<PathBuf>,
    /// The memory leaf's file with the `oom_kill` counter.
    oom_file: Option<PathBuf>,
    memory: Option<u64>,
}

/// Makes the names of this process's sandbox cgroups unique.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn limit_name(c: Controller) -> &'static str {
    match c {
        Controller::Pids => "pids",
        Controller::Memory => "memory",
        Controller::Cpu => "CPU",
        Controller::Devices => "device",
    }
}

impl SandboxCgroup {
    /// The cgroup for a sandbox with `resources` and `devices`, configured; `None`
    /// when nothing needs one. Fails if a limit asked for cannot be enforced here.
    pub fn create(resources: &Resources, devices: Devices) -> Result<Option<Self>, Error> {
        let mut controllers = plan::required(resources);
        let want_devices = devices == Devices::Default;
        if controllers.is_empty() && !want_devices {
            return Ok(None);
        }
        let layout = support::layout();
        for &c in &controllers {
            if let Support::NotEnforced(why) = support::check(layout, c) {
                return Err(Error::sys(
                    format!("enforce the {} limit", limit_name(c)),
                    io::Error::other(format!("no usable {} cgroup: {why}", c.name())),
                ));
            }
        }
        if want_devices {
            match support::check(layout, Controller::Devices) {
                Support::Enforced(_) => controllers.push(Controller::Devices),
                // Not an error: sandbox mounts are nodev and build steps lack CAP_MKNOD,
                // the device cgroup is a second line of defence; where there can be none
                // (rootless, a read-only /sys/fs/cgroup) the sandbox goes without, and
                // `probe` says so.
                Support::NotEnforced(why) => tracing::debug!(%why, "no device cgroup for the sandbox"),
            }
        }
        let Some(&first) = controllers.first() else { return Ok(None) };
        let version =
            support::version(layout).map_err(|why| Error::sys("create sandbox cgroup", io::Error::other(why)))?;
        let name = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let writes = plan::writes(version, resources, controllers.contains(&Controller::Devices));
        // From here on, `Drop` removes whatever was made if a step fails.
        let mut cg = SandboxCgroup { dirs: Vec::new(), oom_file: None, memory: resources.memory };
        let own_of = |c| layout.own(c).map_err(|why| Error::sys("create sandbox cgroup", io::Error::other(why)));
        match version {
            CgroupVersion::V1 => {
                for &c in &controllers {
                    let own = own_of(c)?;
                    let leaf = own.dir.join(BASE).join(&name);
                    // Co-mounted controllers (cpu,cpuacct) share a hierarchy, and a leaf.
                    if !cg.dirs.contains(&leaf) {
                        cg.make_leaf(own, &name, &[])?;
                    }
                    for w in writes.iter().filter(|w| w.controller == c) {
                        write(&leaf, w)?;
                    }
                    if c == Controller::Memory {
                        cg.oom_file = Some(leaf.join("memory.oom_control"));
                    }
                }
            }
            CgroupVersion::V2 => {
                let own = own_of(first)?;
                let domain: Vec<Controller> =
                    controllers.iter().copied().filter(|c| *c != Controller::Devices).collect();
                if !domain.is_empty() {
                    v2::enable_below_own(own, &domain)?;
                }
                let leaf = cg.make_leaf(own, &name, &domain)?;
                for w in &writes {
                    write(&leaf, w)?;
                }
                if controllers.contains(&Controller::Memory) {
                    cg.oom_file = Some(leaf.join("memory.events"));
                }
                if controllers.contains(&Controller::Devices) {
                    let what = || format!("attach the device filter to cgroup {}", leaf.display());
                    let prog = bpf::default_program().map_err(|why| Error::sys(what(), io::Error::other(why)))?;
                    let dir = fs::File::open(&leaf).map_err(|e| failure(format!("open {}", leaf.display()), e))?;
                    bpf::attach(prog, &OwnedFd::from(dir)).map_err(|e| failure(what(), e))?;
                }
            }
        }
        Ok(Some(cg))
    }

    /// Makes `<own>/builder/<name>` (and `builder`, with `enable` in its
    /// `subtree_control` on v2), after clearing dead builders' leftovers.
    fn make_leaf(&mut self, own: &OwnCgroup, name: &str, enable: &[Controller]) -> Result<PathBuf, Error> {
        let base = own.dir.join(BASE);
        let leaf = base.join(name);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let retry = attempt < 5;
            match fs::create_dir(&base) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(failure(format!("create cgroup {}", base.display()), e)),
            }
            if attempt == 1 {
                remove_stale(&base);
            }
            if let Err(e) = v2::enable_in(&base, enable) {
                if retry && !base.exists() {
                    continue;
                }
                return Err(e);
            }
            match fs::create_dir(&leaf) {
                Ok(()) => {
                    self.dirs.push(leaf.clone());
                    return Ok(leaf);
                }
                // `builder` was removed meanwhile by the last sandbox out: again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && retry => {}
                // An empty leftover of a dead process that had our pid.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && retry => {
                    let _ = fs::remove_dir(&leaf);
                }
                Err(e) => return Err(failure(format!("create cgroup {}", leaf.display()), e)),
            }
        }
    }

    /// The `cgroup.procs` files the init writes itself into.
    pub fn procs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// How many processes the kernel's OOM killer killed in the sandbox, if known.
    pub fn oom_kills(&self) -> Option<u64> {
        let text = fs::read_to_string(self.oom_file.as_ref()?).ok()?;
        text.lines().find_map(|l| l.strip_prefix("oom_kill ")).and_then(|n| n.trim().parse().ok())
    }

    /// Logs an OOM kill: to the caller it is only a SIGKILL (exit code 137).
    pub fn warn_if_oom_killed(&self) {
        if let Some(n @ 1..) = self.oom_kills() {
            tracing::warn!(
                memory_limit = self.memory,
                killed = n,
                "the sandbox reached its memory limit: the kernel's OOM killer killed {n} of its processes"
            );
        }
    }

    /// Removes the leaves (and `builder` if it is empty). The sandbox's processes must
    /// be gone: a dying one may hold a cgroup a moment longer, so EBUSY is retried.
    fn remove(&mut self) {
        for dir in self.dirs.drain(..).rev() {
            remove_dir_retrying(&dir);
            if let Some(base) = dir.parent() {
                let _ = fs::remove_dir(base);
            }
        }
    }
}

impl Drop for SandboxCgroup {
    fn drop(&mut self) {
        self.remove();
    }
}

/// One configuration write, with the path and the likely cause on failure.
fn write(leaf: &Path, w: &Write) -> Result<(), Error> {
    let path = leaf.join(w.file);
    if w.if_present && !path.exists() {
        return Ok(());
    }
    match fs::write(&path, &w.value) {
        Ok(()) => Ok(()),
        // A device our own cgroup is denied cannot be allowed to a child (v1): without
        // that rule the sandbox is only stricter.
        Err(e) if w.file == "devices.allow" && e.raw_os_error() == Some(libc::EPERM) => {
            tracing::debug!(rule = %w.value, "device rule refused: our own cgroup lacks it");
            Ok(())
        }
        Err(e) => Err(failure(format!("write {:?} to {}", w.value, path.display()), e)),
    }
}

fn remove_dir_retrying(dir: &Path) {
    for attempt in 0.. {
        match fs::remove_dir(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 200 => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => {
                tracing::warn!(cgroup = %dir.display(), error = %e, "could not remove the sandbox's cgroup");
                return;
            }
        }
    }
}

/// Removes the empty cgroups of builders that no longer run (their pid is gone).
fn remove_stale(base: &Path) {
    let Ok(entries) = fs::read_dir(base) else { return };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.split_once('-')).and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == me || pid > i32::MAX as u32 {
            continue;
        }
        // SAFETY: signal 0 only checks whether the process exists.
        let gone = unsafe { libc::kill(pid as libc::pid_t, 0) } < 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = fs::remove_dir(entry.path());
        }
    }
}
