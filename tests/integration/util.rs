//! Tiny helpers: a throwaway store, a context directory, and the binary.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub struct Env {
    pub root: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

/// Whether this process can create namespaces and mount overlays.
pub fn privileged() -> bool {
    // The effective uid, from /proc (tests must not need libc).
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status.lines().find(|l| l.starts_with("Uid:")).and_then(|l| l.split_whitespace().nth(2));
    euid == Some("0")
}

/// A store and a scratch dir, or `None` (with a message) when not root.
pub fn env(test: &str) -> Option<Env> {
    if !privileged() {
        eprintln!("SKIPPED {test}: needs root for namespaces and overlayfs (CI runs as root)");
        return None;
    }
    Some(Env { root: tempfile::tempdir().unwrap(), work: tempfile::tempdir().unwrap() })
}

/// The busybox rootfs tarball, made once per test process.
pub fn busybox_tar() -> &'static Path {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("builder-test-busybox-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tar = dir.join("busybox.tar");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/make-busybox-rootfs.sh");
        let status = Command::new("sh").arg(script).arg(&tar).status().unwrap();
        assert!(status.success(), "making the busybox rootfs failed (is busybox-static installed?)");
        tar
    })
}

pub fn testdata(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata").join(rel)
}

/// Copies the tree `from` (directories and files) to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), &dst).unwrap();
        }
    }
}

/// (snapshot, inode) of every snapshot of the store that holds `rel`, sorted.
pub fn copies_of(env: &Env, rel: &str) -> Vec<(String, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    for entry in std::fs::read_dir(env.root.path().join("snapshots")).unwrap() {
        let entry = entry.unwrap();
        if let Ok(meta) = std::fs::symlink_metadata(entry.path().join(rel)) {
            out.push((entry.file_name().to_string_lossy().into_owned(), meta.ino()));
        }
    }
    out.sort();
    out
}

impl Env {
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_builder"));
        cmd.arg("--root").arg(self.root.path()).args(args).stdin(Stdio::null());
        cmd.env_remove("SOURCE_DATE_EPOCH");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs and asserts success, returning stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "builder {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Imports the busybox base image as `busybox:latest`.
    pub fn with_busybox(self) -> Self {
        self.ok(&["import", busybox_tar().to_str().unwrap(), "busybox:latest"]);
        self
    }

    /// Imports busybox as `busybox:latest` under SOURCE_DATE_EPOCH=`epoch`: the same
    /// image id in every store, so stores can share cache and compare digests.
    pub fn with_busybox_at(self, epoch: &str) -> Self {
        let out = self
            .cmd(&["import", busybox_tar().to_str().unwrap(), "busybox:latest"])
            .env("SOURCE_DATE_EPOCH", epoch)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        self
    }

    /// A context directory with these files (path, content); returns its path.
    pub fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.work.path().join(name);
        for (path, content) in files {
            let p = dir.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Builds `context` with extra args and returns (success, stdout, stderr).
    pub fn build(&self, context: &Path, extra: &[&str]) -> (bool, String, String) {
        let mut args = vec!["build", "--progress=plain"];
        args.extend_from_slice(extra);
        let ctx = context.to_str().unwrap().to_string();
        args.push(&ctx);
        let out = self.run(&args);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn build_ok(&self, context: &Path, extra: &[&str]) -> String {
        let (ok, stdout, stderr) = self.build(context, extra);
        assert!(ok, "build failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
        stdout
    }
}

/// The host's mount table without per-line noise that changes on its own.
pub fn mount_table() -> Vec<String> {
    let mut lines: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .map(|l| l.split_whitespace().skip(3).take(2).collect::<Vec<_>>().join(" "))
        .collect();
    lines.sort();
    lines
}
