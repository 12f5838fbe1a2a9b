//! Helpers for the real-root sandbox tests: a busybox image in layers, a captured run,
//! and snapshots of what a sandbox could leave behind.

use executor::*;
use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why these tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root".into());
    }
    if !Path::new("/bin/busybox").exists() {
        return Some("needs /bin/busybox (busybox-static)".into());
    }
    match Command::new("unshare").args(["-m", "-p", "-f", "-u", "-i", "-n", "true"]).status() {
        Ok(s) if s.success() => None,
        Ok(s) => Some(format!("unshare of namespaces fails here ({s})")),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

/// A two-layer busybox image (`base` below `data_layer`) with a fresh upper.
pub struct Image {
    _dir: tempfile::TempDir,
    pub base: PathBuf,
    pub data_layer: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
}

impl Image {
    pub fn busybox() -> Image {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let bin = base.join("bin");
        fs::create_dir_all(&bin).unwrap();
        fs::copy("/bin/busybox", bin.join("busybox")).unwrap();
        let list = Command::new("/bin/busybox").arg("--list").output().unwrap();
        for name in String::from_utf8(list.stdout).unwrap().lines() {
            if name != "busybox" {
                symlink("busybox", bin.join(name)).unwrap();
            }
        }
        fs::create_dir_all(base.join("etc")).unwrap();
        fs::write(base.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
            .unwrap();
        fs::write(base.join("etc/group"), "root:x:0:\napp:x:1000:\ntools:x:2000:app\n").unwrap();
        fs::create_dir_all(base.join("tmp")).unwrap();
        fs::set_permissions(base.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
        fs::create_dir_all(base.join("home/app")).unwrap();
        let data_layer = dir.path().join("data");
        fs::create_dir_all(data_layer.join("data/dir")).unwrap();
        fs::write(data_layer.join("data/file"), "lower\n").unwrap();
        fs::write(data_layer.join("data/dir/x"), "x").unwrap();
        let upper = dir.path().join("upper");
        let work = dir.path().join("work");
        fs::create_dir_all(&upper).unwrap();
        fs::create_dir_all(&work).unwrap();
        Image { _dir: dir, base, data_layer, upper, work }
    }

    pub fn spec(&self, args: &[&str]) -> Spec {
        Spec {
            rootfs: Rootfs {
                lowerdirs: vec![self.data_layer.clone(), self.base.clone()],
                upper: Some(Upper { upperdir: self.upper.clone(), workdir: self.work.clone() }),
                readonly: false,
            },
            mounts: vec![],
            process: process(args),
            network: Network::Host,
            hostname: "test".into(),
            extra_hosts: Vec::new(),
            security: Default::default(),
            resources: Default::default(),
        }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        run_captured(&self.spec(args))
    }
}

pub fn process(args: &[&str]) -> Process {
    Process {
        args: args.iter().map(|a| a.to_string()).collect(),
        env: vec!["PATH=/bin".into()],
        cwd: "/".into(),
        user: String::new(),
    }
}

pub fn secret(content: &[u8]) -> MountSource {
    MountSource::File { content: content.to_vec(), mode: 0o400, uid: 0, gid: 0 }
}

#[derive(Debug)]
pub struct Output {
    pub status: Result<ExitStatus, String>,
    pub stdout: String,
    pub stderr: String,
}

pub fn run_captured(spec: &Spec) -> Output {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut cb = |s: OutputStream, b: &[u8]| match s {
        OutputStream::Stdout => stdout.extend_from_slice(b),
        OutputStream::Stderr => stderr.extend_from_slice(b),
    };
    let status = run(spec, Stdio::Capture(&mut cb), None).map_err(|e| e.to_string());
    Output {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Every path under `dir`, relative and sorted.
pub fn list(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_dir() {
                walk(root, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

pub fn walk_contains(dir: &Path, needle: &[u8]) -> bool {
    list(dir)
        .iter()
        .any(|p| fs::read(dir.join(p)).is_ok_and(|content| content.windows(needle.len()).any(|w| w == needle)))
}

pub fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: NUL-terminated strings and a buffer of the given length.
    let len = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

/// Processes anywhere on the host whose command line contains `marker`.
pub fn processes_matching(marker: &str) -> usize {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().chars().all(|c| c.is_ascii_digit()))
        .filter(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(marker))
        })
        .count()
}

/// Children of this process whose command line contains `marker` (other processes
/// on the host, another test run's say, do not count).
pub fn children_matching(marker: &str) -> usize {
    let me = std::process::id().to_string();
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)) == Some(me.as_str())
        })
        .filter(|e| {
            fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(marker))
        })
        .count()
}

/// What a sandbox could leave behind: host mounts, children of this process, temp dirs.
#[derive(Debug, PartialEq)]
pub struct Snapshot {
    mountinfo: String,
    children: Vec<String>,
    temp: Vec<String>,
}

impl Snapshot {
    pub fn take() -> Snapshot {
        Snapshot { temp: list(&std::env::temp_dir()), ..Snapshot::take_without_temp() }
    }

    /// Mounts and children only: a rootless sandbox's upperdir may hold files of
    /// subordinate owners that its (unprivileged) caller can neither list nor remove.
    pub fn take_without_temp() -> Snapshot {
        let me = std::process::id().to_string();
        let mut children = Vec::new();
        for e in fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
            let Ok(stat) = fs::read_to_string(e.path().join("stat")) else { continue };
            // pid (comm) state ppid ...
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            if after.split_whitespace().nth(1) == Some(me.as_str()) {
                children.push(stat);
            }
        }
        Snapshot { mountinfo: fs::read_to_string("/proc/self/mountinfo").unwrap(), children, temp: Vec::new() }
    }

    pub fn same_as(&self, after: &Snapshot) -> Result<(), String> {
        if self == after { Ok(()) } else { Err(format!("before: {self:#?}\nafter: {after:#?}")) }
    }
}
