//! The sandbox's filesystem, built by its init (PID 1 of the new namespaces) before it
//! starts the process: rootfs, `/proc`, `/sys`, `/dev`, `/etc/hosts`,
//! `/etc/resolv.conf`, the spec's mounts, hostname, loopback, then `pivot_root`.
//! Every kernel call goes through [`Syscall`]; only mountpoint stubs and the files in
//! the fresh `/dev` are made with plain file operations.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

use crate::paths::{Created, StubKind, ensure_in_root, resolve_in_root};
use crate::protocol::InitConfig;
use crate::rootfs;
use crate::syscall::{Overlay, Syscall};
use crate::{Devices, Error, Mount, MountSource, Network, Upper};

/// Device nodes bound from the host into the sandbox's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
/// Hidden behind `/dev/null` or an empty read-only tmpfs, as in Docker.
const MASKED: [&str; 11] = [
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];
const READONLY: [&str; 5] = ["proc/bus", "proc/fs", "proc/irq", "proc/sys", "proc/sysrq-trigger"];

pub(crate) struct Setup<'a> {
    pub sys: &'a dyn Syscall,
    /// Where the host's `/dev` and `/sys` are (`/` in the sandbox init).
    pub host_root: PathBuf,
    pub report: &'a mut dyn FnMut(Created) -> io::Result<()>,
    /// Every mount but `/dev`'s nodes is `nodev` ([`Devices::Default`]); set by [`Setup::run`].
    pub nodev: bool,
    /// In a user namespace of the sandbox's own; set by [`Setup::run`].
    pub userns: bool,
    /// Overlays are fuse-overlayfs mounts (this program); set by [`Setup::run`].
    pub fuse: Option<PathBuf>,
}

impl Setup<'_> {
    /// Builds the whole filesystem and pivots into it.
    pub fn run(&mut self, cfg: &InitConfig) -> Result<(), Error> {
        let sys = self.sys;
        // Device nodes are data in a layer (any base image may ship `brw-rw-rw- 7,0`):
        // every mount but the nodes bound into `/dev` is `nodev`, unless the spec
        // allows every device.
        self.nodev = cfg.spec.security.devices == Devices::Default;
        self.userns = cfg.user_namespace.is_some();
        self.fuse = cfg.fuse_overlayfs.clone();
        // devpts gives new ptys the group tty (5), which a user namespace may not map.
        let tty_group = cfg.user_namespace.as_ref().is_none_or(|u| u.mapping.gid.to_host(5).is_some());
        sys.mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)
            .map_err(|e| Error::sys("make / private", e))?;
        let root = cfg.bundle.join("rootfs");
        let spec = &cfg.spec;
        if let Some(scratch) = &cfg.scratch_upper {
            self.scratch(scratch)?;
        }
        let fuse = self.fuse.as_deref();
        rootfs::mount(sys, &spec.rootfs, cfg.scratch_upper.as_ref(), &root, self.nodev, self.userns, fuse)?;
        let upperdir = spec.rootfs.upper.as_ref().map(|u| u.upperdir.clone());
        let upperdir = upperdir.as_deref();

        self.proc_and_sys(&root, upperdir)?;
        self.dev(&root, upperdir, tty_group, spec.resources.shm_size)?;
        for (name, source) in
            [("etc/hosts", cfg.bundle.join("hosts")), ("etc/resolv.conf", cfg.bundle.join("resolv.conf"))]
        {
            let target = self.stub(&root, name, StubKind::File, upperdir)?;
            self.bind(&source, &target, true)?;
        }
        let mut mounts: Vec<&Mount> = spec.mounts.iter().collect();
        // Parents before children, otherwise in the order given.
        mounts.sort_by_key(|m| Path::new(&m.target).components().count());
        for (i, m) in mounts.into_iter().enumerate() {
            self.user_mount(&root, upperdir, m, &cfg.bundle.join(format!("file-{i}")))?;
        }
        self.mask(&root)?;
        if spec.rootfs.readonly {
            rootfs::remount(sys, &root, true, self.nodev)?;
        }

        let hostname = if spec.hostname.is_empty() { "sandbox" } else { &spec.hostname };
        sys.sethostname(hostname).map_err(|e| Error::sys(format!("set hostname {hostname:?}"), e))?;
        if spec.network != Network::Host {
            sys.loopback_up().map_err(|e| Error::sys("bring up lo", e))?;
        }
        sys.pivot_root(&root).map_err(|e| Error::sys(format!("pivot_root to {}", root.display()), e))
    }

    fn scratch(&self, upper: &Upper) -> Result<(), Error> {
        let dir = upper.upperdir.parent().unwrap_or(Path::new("/"));
        self.mount("tmpfs", dir, "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=700"))?;
        for d in [&upper.upperdir, &upper.workdir] {
            fs::create_dir(d).map_err(|e| Error::sys(format!("create {}", d.display()), e))?;
        }
        Ok(())
    }

    fn stub(&mut self, root: &Path, path: &str, kind: StubKind, upperdir: Option<&Path>) -> Result<PathBuf, Error> {
        ensure_in_root(root, Path::new(path), kind, upperdir, self.report)
            .map_err(|e| Error::sys(format!("create mountpoint {path}"), e))
    }

    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), Error> {
        self.sys
            .mount(Some(Path::new(source)), target, Some(fstype), flags, data)
            .map_err(|e| Error::sys(format!("mount {fstype} on {}", target.display()), e))
    }

    /// Binds `source` on `target`, `nodev` under the sandbox's device policy.
    fn bind(&self, source: &Path, target: &Path, readonly: bool) -> Result<(), Error> {
        self.bind_with(source, target, readonly, self.nodev)
    }

    fn bind_with(&self, source: &Path, target: &Path, readonly: bool, nodev: bool) -> Result<(), Error> {
        rootfs::bind(self.sys, source, target)
            .map_err(|e| Error::sys(format!("bind {} on {}", source.display(), target.display()), e))?;
        if readonly || nodev { rootfs::remount(self.sys, target, readonly, nodev) } else { Ok(()) }
    }

    fn proc_and_sys(&mut self, root: &Path, upperdir: Option<&Path>) -> Result<(), Error> {
        let hardened = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
        let proc = self.stub(root, "proc", StubKind::Dir, upperdir)?;
        match self.sys.mount(Some(Path::new("proc")), &proc, Some("proc"), hardened, None) {
            Ok(()) => {}
            // Refused in a user namespace where mounts hide part of the host's /proc (an
            // unprivileged container's): the host's, read-only (`userns/procfs.rs`).
            Err(e) if e.raw_os_error() == Some(libc::EPERM) && self.userns => {
                self.bind(&self.host_root.join("proc"), &proc, true)?
            }
            Err(e) => return Err(Error::sys(format!("mount proc on {}", proc.display()), e)),
        }
        let sys_dir = self.stub(root, "sys", StubKind::Dir, upperdir)?;
        match self.sys.mount(Some(Path::new("sysfs")), &sys_dir, Some("sysfs"), hardened | MsFlags::MS_RDONLY, None) {
            Ok(()) => Ok(()),
            // sysfs refuses a new mount in some setups; the host's, read-only, will do.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => self.bind(&self.host_root.join("sys"), &sys_dir, true),
            Err(e) => Err(Error::sys(format!("mount sysfs on {}", sys_dir.display()), e)),
        }
    }

    fn dev(&mut self, root: &Path, upperdir: Option<&Path>, tty_group: bool, shm: Option<u64>) -> Result<(), Error> {
        let dev = self.stub(root, "dev", StubKind::Dir, upperdir)?;
        // nodev too: a node made here (with CAP_MKNOD) cannot be opened; the nodes
        // below are bind mounts of the host's, with the host mount's flags.
        let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME;
        if self.nodev {
            flags |= MsFlags::MS_NODEV;
        }
        self.mount("tmpfs", &dev, "tmpfs", flags, Some("mode=755,size=65536k"))?;
        let io_err = |what: &str| {
            let what = format!("{what} in {}", dev.display());
            move |e| Error::sys(what, e)
        };
        for name in DEVICES {
            let node = dev.join(name);
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o666)
                .open(&node)
                .map_err(io_err("create node"))?;
            self.bind_with(&self.host_root.join("dev").join(name), &node, false, false)?;
        }
        for (name, mode) in [("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o1777)] {
            let dir = dev.join(name);
            fs::DirBuilder::new().mode(mode).create(&dir).map_err(io_err("create dir"))?;
            fs::set_permissions(&dir, fs::Permissions::from_mode(mode)).map_err(io_err("chmod"))?;
        }
        let devpts =
            if tty_group { "newinstance,ptmxmode=0666,mode=0620,gid=5" } else { "newinstance,ptmxmode=0666,mode=0620" };
        self.mount("devpts", &dev.join("pts"), "devpts", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, Some(devpts))?;
        let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        let shm = shm.map_or_else(|| "mode=1777,size=65536k".to_string(), |bytes| format!("mode=1777,size={bytes}"));
        self.mount("shm", &dev.join("shm"), "tmpfs", nosuid_nodev_noexec, Some(&shm))?;
        // Best effort: some kernels are built without POSIX message queues.
        if let Err(e) = self.mount("mqueue", &dev.join("mqueue"), "mqueue", nosuid_nodev_noexec, None) {
            tracing::debug!(error = %e, "no mqueue in the sandbox");
        }
        for (link, target) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            std::os::unix::fs::symlink(target, dev.join(link)).map_err(io_err("create symlink"))?;
        }
        Ok(())
    }

    fn user_mount(&mut self, root: &Path, upperdir: Option<&Path>, m: &Mount, staging: &Path) -> Result<(), Error> {
        if let MountSource::Overlay { lowerdirs, upperdir: upper, workdir, subpath, readonly } = &m.source
            && !Path::new(subpath).components().all(|c| matches!(c, Component::RootDir | Component::CurDir))
        {
            let overlay = Overlay {
                lowerdirs: lowerdirs.clone(),
                upper: Some((upper.clone(), workdir.clone())),
                readonly: false,
                nodev: self.nodev,
                userxattr: self.userns,
                fuse: self.fuse.clone(),
            };
            return self.overlay_subpath(root, upperdir, &m.target, &overlay, subpath, *readonly, staging);
        }
        let kind = match &m.source {
            MountSource::Bind { source, .. } if !source.is_dir() => StubKind::File,
            MountSource::File { .. } => StubKind::File,
            _ => StubKind::Dir,
        };
        let target = self.stub(root, &m.target, kind, upperdir)?;
        match &m.source {
            MountSource::Bind { source, readonly } => self.bind(source, &target, *readonly),
            MountSource::Tmpfs { size } => {
                let data = size.map(|s| format!("size={s}"));
                self.mount("tmpfs", &target, "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, data.as_deref())
            }
            MountSource::Overlay { lowerdirs, upperdir, workdir, subpath: _, readonly } => {
                let overlay = Overlay {
                    lowerdirs: lowerdirs.clone(),
                    upper: Some((upperdir.clone(), workdir.clone())),
                    readonly: false,
                    nodev: self.nodev,
                    userxattr: self.userns,
                    fuse: self.fuse.clone(),
                };
                crate::fuse_overlay::mount_overlay(self.sys, &target, &overlay)
                    .map_err(|e| Error::sys(format!("mount overlay on {}", target.display()), e))?;
                if *readonly { rootfs::remount(self.sys, &target, true, self.nodev) } else { Ok(()) }
            }
            MountSource::File { content, mode, uid, gid } => {
                self.file_on_tmpfs(staging, content, *mode, *uid, *gid, &target)
            }
        }
    }

    /// `subpath` of an overlay (another stage's filesystem): the overlay is mounted at
    /// `staging`, the sub-path resolved inside it (symlinks stay inside), bound onto
    /// `target`, and the staging mount detached again.
    #[expect(clippy::too_many_arguments)]
    fn overlay_subpath(
        &mut self,
        root: &Path,
        upperdir: Option<&Path>,
        target: &str,
        overlay: &Overlay,
        subpath: &str,
        readonly: bool,
        staging: &Path,
    ) -> Result<(), Error> {
        let io_err = |what: &'static str| move |e| Error::sys(format!("{what} {}", staging.display()), e);
        fs::DirBuilder::new().mode(0o700).create(staging).map_err(io_err("create"))?;
        crate::fuse_overlay::mount_overlay(self.sys, staging, overlay)
            .map_err(|e| Error::sys(format!("mount overlay on {}", staging.display()), e))?;
        let source = resolve_in_root(staging, Path::new(subpath))
            .map(|rel| staging.join(rel))
            .map_err(|e| Error::sys(format!("resolve {subpath} in the mount source"), e))?;
        let kind = match fs::metadata(&source) {
            Ok(m) if m.is_dir() => StubKind::Dir,
            Ok(_) => StubKind::File,
            Err(e) => return Err(Error::sys(format!("mount source {subpath}"), e)),
        };
        let target = self.stub(root, target, kind, upperdir)?;
        self.bind(&source, &target, readonly)?;
        self.sys.umount(staging, MntFlags::MNT_DETACH).map_err(io_err("unmount"))
    }

    /// A single file that lives on its own small tmpfs (secrets): staged in the bundle,
    /// bound read-only onto `target`, the staging mount detached again.
    fn file_on_tmpfs(
        &self,
        staging: &Path,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
        target: &Path,
    ) -> Result<(), Error> {
        let io_err = |what: &'static str| move |e| Error::sys(format!("{what} {}", staging.display()), e);
        fs::DirBuilder::new().mode(0o700).create(staging).map_err(io_err("create"))?;
        let size = format!("mode=700,size={}", content.len().max(4096));
        self.mount(
            "tmpfs",
            staging,
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(&size),
        )?;
        let file = staging.join("file");
        fs::write(&file, content).map_err(io_err("write into"))?;
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).map_err(io_err("chmod in"))?;
        std::os::unix::fs::chown(&file, Some(uid), Some(gid)).map_err(io_err("chown in"))?;
        self.bind(&file, target, true)?;
        self.sys.umount(staging, MntFlags::MNT_DETACH).map_err(io_err("unmount"))
    }

    /// Docker's masked and read-only paths, where they exist.
    fn mask(&self, root: &Path) -> Result<(), Error> {
        for path in MASKED {
            let target = root.join(path);
            match fs::symlink_metadata(&target) {
                Ok(m) if m.is_dir() => {
                    self.mount("tmpfs", &target, "tmpfs", MsFlags::MS_RDONLY, None)?;
                }
                // /dev/null itself must stay openable: reading a masked file gives nothing.
                Ok(_) => self.bind_with(&self.host_root.join("dev/null"), &target, false, false)?,
                Err(_) => {}
            }
        }
        for path in READONLY {
            let target = root.join(path);
            if fs::symlink_metadata(&target).is_ok() {
                self.bind(&target, &target, true)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::{Call, Recording};
    use crate::{Process, Rootfs, Spec};

    struct Fixture {
        dir: tempfile::TempDir,
        config: InitConfig,
    }

    fn fixture(lowers: usize) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("bundle/rootfs")).unwrap();
        fs::create_dir_all(p.join("host/bindme")).unwrap();
        let spec = Spec {
            rootfs: Rootfs {
                lowerdirs: (0..lowers).map(|i| p.join(format!("l{i}"))).collect(),
                // The fake mounts nothing, so what lands in the rootfs dir is what an
                // overlay would put in its upperdir.
                upper: Some(Upper { upperdir: p.join("bundle/rootfs"), workdir: p.join("work") }),
                readonly: false,
            },
            mounts: vec![],
            process: Process { args: vec!["true".into()], env: vec![], cwd: "/".into(), user: String::new() },
            network: Network::Host,
            hostname: "box".into(),
            extra_hosts: Vec::new(),
            security: Default::default(),
            resources: Default::default(),
        };
        Fixture {
            config: InitConfig {
                spec,
                bundle: p.join("bundle"),
                scratch_upper: None,
                terminal: false,
                join_network: false,
                fuse_overlayfs: None,
                cgroup_procs: vec![],
                user_namespace: None,
            },
            dir,
        }
    }

    /// The recorded calls, paths relative to the fixture, one short line each.
    fn plan(f: &Fixture, sys: &Recording) -> (Vec<String>, Vec<Created>) {
        let mut created = Vec::new();
        let mut report = |c| {
            created.push(c);
            Ok(())
        };
        let host_root = f.dir.path().join("host");
        Setup { sys, host_root, report: &mut report, nodev: false, userns: false, fuse: None }.run(&f.config).unwrap();
        let rel = |p: &Path| p.strip_prefix(f.dir.path()).unwrap_or(p).display().to_string();
        let lines = sys
            .take()
            .into_iter()
            .map(|c| match c {
                Call::Mount { source, target, fstype, flags, data } => {
                    let what = if flags.contains(MsFlags::MS_REMOUNT) {
                        let ro = flags.contains(MsFlags::MS_RDONLY).then_some("ro");
                        let nodev = flags.contains(MsFlags::MS_NODEV).then_some("nodev");
                        format!("remount-{}", [ro, nodev].into_iter().flatten().collect::<Vec<_>>().join(","))
                    } else if flags.contains(MsFlags::MS_BIND) {
                        format!("bind {}", rel(source.as_deref().unwrap()))
                    } else if flags.contains(MsFlags::MS_PRIVATE) {
                        "private".to_string()
                    } else {
                        let ro = if flags.contains(MsFlags::MS_RDONLY) { " ro" } else { "" };
                        let nodev = if flags.contains(MsFlags::MS_NODEV) { " nodev" } else { "" };
                        format!("{}{ro}{nodev}{}", fstype.unwrap(), data.map(|d| format!(" {d}")).unwrap_or_default())
                    };
                    format!("{what} -> {}", rel(&target))
                }
                Call::Overlay { target, overlay } => {
                    let lowers: Vec<_> = overlay.lowerdirs.iter().map(|l| rel(l)).collect();
                    let nodev = if overlay.nodev { " nodev" } else { "" };
                    format!("overlay {} upper={}{nodev} -> {}", lowers.join(":"), overlay.upper.is_some(), rel(&target))
                }
                Call::Umount { target } => format!("umount {}", rel(&target)),
                Call::PivotRoot { new_root } => format!("pivot_root {}", rel(&new_root)),
                Call::Hostname(h) => format!("hostname {h}"),
                Call::LoopbackUp => "lo up".into(),
                Call::Identity(id) => format!("identity {id:?}"),
            })
            .collect();
        (lines, created)
    }

    const R: &str = "bundle/rootfs";

    #[test]
    fn image_rootfs_plan() {
        let f = fixture(2);
        let (lines, created) = plan(&f, &Recording::default());
        let mut expected = vec![
            "private -> /".to_string(),
            format!("overlay l0:l1 upper=true nodev -> {R}"),
            format!("proc nodev -> {R}/proc"),
            format!("sysfs ro nodev -> {R}/sys"),
            format!("tmpfs nodev mode=755,size=65536k -> {R}/dev"),
        ];
        for d in DEVICES {
            expected.push(format!("bind host/dev/{d} -> {R}/dev/{d}"));
        }
        expected.extend([
            format!("devpts newinstance,ptmxmode=0666,mode=0620,gid=5 -> {R}/dev/pts"),
            format!("tmpfs nodev mode=1777,size=65536k -> {R}/dev/shm"),
            format!("mqueue nodev -> {R}/dev/mqueue"),
            format!("bind bundle/hosts -> {R}/etc/hosts"),
            format!("remount-ro,nodev -> {R}/etc/hosts"),
            format!("bind bundle/resolv.conf -> {R}/etc/resolv.conf"),
            format!("remount-ro,nodev -> {R}/etc/resolv.conf"),
            "hostname box".into(),
            format!("pivot_root {R}"),
        ]);
        assert_eq!(lines, expected);
        let stubs: Vec<_> = created
            .iter()
            .map(|c| match c {
                Created::Stub(p) => p.display().to_string(),
                Created::CopiedUp { path, .. } => format!("copied-up {}", path.display()),
            })
            .collect();
        assert_eq!(stubs, ["proc", "sys", "dev", "etc", "etc/hosts", "etc/resolv.conf"]);
    }

    #[test]
    fn spec_mounts_parents_first_then_network_none() {
        let mut f = fixture(1);
        let host = f.dir.path().join("host/bindme");
        f.config.spec.network = Network::None;
        f.config.spec.rootfs.readonly = true;
        // SAFETY: geteuid/getegid have no preconditions. (The test may run as non-root.)
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        f.config.spec.mounts = vec![
            Mount {
                target: "/a/b/secret".into(),
                source: MountSource::File { content: b"s".to_vec(), mode: 0o400, uid, gid },
            },
            Mount { target: "/a".into(), source: MountSource::Tmpfs { size: Some(4096) } },
            Mount { target: "/src".into(), source: MountSource::Bind { source: host, readonly: true } },
        ];
        let (lines, _) = plan(&f, &Recording::default());
        let tail: Vec<_> = lines.iter().skip_while(|l| !l.contains("resolv.conf")).skip(2).cloned().collect();
        assert_eq!(
            tail,
            [
                format!("tmpfs nodev size=4096 -> {R}/a"),
                format!("bind host/bindme -> {R}/src"),
                format!("remount-ro,nodev -> {R}/src"),
                "tmpfs nodev mode=700,size=4096 -> bundle/file-2".to_string(),
                format!("bind bundle/file-2/file -> {R}/a/b/secret"),
                format!("remount-ro,nodev -> {R}/a/b/secret"),
                "umount bundle/file-2".into(),
                format!("remount-ro,nodev -> {R}"),
                "hostname box".into(),
                "lo up".into(),
                format!("pivot_root {R}"),
            ]
        );
        assert_eq!(fs::read(f.dir.path().join("bundle/file-2/file")).unwrap(), b"s");
    }

    #[test]
    fn every_device_allowed_leaves_the_rootfs_and_dev_without_nodev() {
        let mut f = fixture(2);
        f.config.spec.security = crate::Security::insecure();
        let (lines, _) = plan(&f, &Recording::default());
        assert_eq!(lines[1], format!("overlay l0:l1 upper=true -> {R}"));
        assert!(lines.contains(&format!("tmpfs mode=755,size=65536k -> {R}/dev")), "{lines:?}");
        assert!(lines.contains(&format!("remount-ro -> {R}/etc/hosts")), "{lines:?}");
    }

    #[test]
    fn sysfs_refused_falls_back_to_a_readonly_bind() {
        let f = fixture(1);
        let sys = Recording {
            fail: Some(|c| matches!(c, Call::Mount { fstype: Some(t), .. } if t == "sysfs").then_some(libc::EPERM)),
            ..Default::default()
        };
        let (lines, _) = plan(&f, &sys);
        let i = lines.iter().position(|l| l.starts_with("sysfs")).unwrap();
        assert_eq!(lines[i + 1..i + 3], [format!("bind host/sys -> {R}/sys"), format!("remount-ro,nodev -> {R}/sys")]);
    }

    #[test]
    fn no_upper_gets_a_tmpfs_scratch_upper() {
        let mut f = fixture(2);
        f.config.spec.rootfs.upper = None;
        let scratch = f.dir.path().join("bundle/scratch");
        fs::create_dir(&scratch).unwrap();
        f.config.scratch_upper = Some(Upper { upperdir: scratch.join("upper"), workdir: scratch.join("work") });
        let (lines, created) = plan(&f, &Recording::default());
        assert_eq!(
            lines[1..3],
            ["tmpfs nodev mode=700 -> bundle/scratch".to_string(), format!("overlay l0:l1 upper=true nodev -> {R}")]
        );
        assert!(created.iter().all(|c| matches!(c, Created::Stub(_))), "nothing to report as copied up");
    }

    #[test]
    fn scratch_binds_the_upperdir() {
        let f = fixture(0);
        let (lines, _) = plan(&f, &Recording::default());
        assert_eq!(lines[1], format!("bind {R} -> {R}"));
    }

    #[test]
    fn existing_parents_are_reported_for_copy_up() {
        let mut f = fixture(1);
        fs::create_dir_all(f.dir.path().join("bundle/rootfs/etc")).unwrap();
        fs::create_dir_all(f.dir.path().join("upper")).unwrap();
        f.config.spec.rootfs.upper.as_mut().unwrap().upperdir = f.dir.path().join("upper");
        let (_, created) = plan(&f, &Recording::default());
        assert!(matches!(&created[3], Created::CopiedUp { path, .. } if path == Path::new("etc")), "{created:?}");
        assert_eq!(created[4], Created::Stub("etc/hosts".into()));
    }

    #[test]
    fn views_without_upper_are_readonly() {
        let sys = Recording::default();
        let t = Path::new("/t");
        let view = |lowers: &[&str]| Rootfs {
            lowerdirs: lowers.iter().map(Into::into).collect(),
            upper: None,
            readonly: true,
        };
        rootfs::mount(&sys, &view(&[]), None, t, false, false, None).unwrap();
        rootfs::mount(&sys, &view(&["/a"]), None, t, false, false, None).unwrap();
        rootfs::mount(&sys, &view(&["/a", "/b"]), None, t, false, false, None).unwrap();
        let calls = sys.take();
        assert!(
            matches!(&calls[0], Call::Mount { fstype: Some(t), flags, .. } if t == "tmpfs" && flags.contains(MsFlags::MS_RDONLY))
        );
        assert!(matches!(&calls[1], Call::Mount { flags, .. } if flags.contains(MsFlags::MS_BIND)));
        assert!(
            matches!(&calls[2], Call::Mount { flags, .. } if flags.contains(MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY))
        );
        assert!(matches!(&calls[3], Call::Overlay { overlay, .. } if overlay.readonly && overlay.upper.is_none()));
    }
}
