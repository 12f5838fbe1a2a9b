//! The rootless tests' harness: the two test users, a copy of the binary they may run,
//! and one test's world as a user (a HOME of its own, builder run with a clean
//! environment).

use crate::util::{busybox_tar, privileged};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const USER: &str = "builder-rootless-test";
const USER_WITHOUT_SUBIDS: &str = "builder-rootless-nosub";

pub(super) fn sh(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program).args(args).output().map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{program} {}: {} {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The first `START:COUNT` of `name` in `file`.
fn first_range(file: &str, name: &str) -> Option<(u32, u32)> {
    fs::read_to_string(file).unwrap_or_default().lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() == 3 && f[0] == name).then(|| Some((f[1].parse().ok()?, f[2].parse().ok()?))).flatten()
    })
}

/// Why the rootless tests cannot run here, if they cannot.
fn skip_reason() -> Option<String> {
    if !privileged() {
        return Some("needs root to create the test users (CI runs as root)".into());
    }
    for tool in ["useradd", "usermod", "newuidmap", "newgidmap", "setpriv", "unshare"] {
        if sh("sh", &["-c", &format!("command -v {tool}")]).is_err() {
            return Some(format!("{tool} is not installed (apt-get install passwd uidmap util-linux)"));
        }
    }
    None
}

pub(super) struct User {
    pub name: &'static str,
    pub uid: u32,
    pub gid: u32,
    /// The first subordinate uid.
    pub subuid: Option<u32>,
}

impl User {
    /// Makes `name` if missing, with or without 65536 subordinate ids.
    fn ensure(name: &'static str, subids: bool) -> User {
        if sh("id", &["-u", name]).is_err() {
            let mut args = vec!["-M", "-s", "/bin/sh"];
            if !subids {
                args.extend(["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]);
            }
            args.push(name);
            // Another test of this binary may be making it at the same moment.
            if let Err(e) = sh("useradd", &args) {
                assert!(sh("id", &["-u", name]).is_ok(), "{e}");
            }
        }
        let ranges = (first_range("/etc/subuid", name), first_range("/etc/subgid", name));
        match (subids, ranges) {
            (true, (Some((_, u)), Some((_, g)))) if u >= 65536 && g >= 65536 => {}
            (true, _) => {
                let end = ["/etc/subuid", "/etc/subgid"]
                    .iter()
                    .flat_map(|f| {
                        fs::read_to_string(f).unwrap_or_default().lines().map(String::from).collect::<Vec<_>>()
                    })
                    .filter_map(|l| {
                        let f: Vec<&str> = l.split(':').collect();
                        Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
                    })
                    .max()
                    .unwrap_or(0);
                let start = end.max(100_000).div_ceil(65536) * 65536;
                let range = format!("{start}-{}", start + 65535);
                sh("usermod", &["--add-subuids", &range, "--add-subgids", &range, name]).unwrap();
            }
            (false, (None, None)) => {}
            (false, (uids, gids)) => {
                for (flag, range) in [("--del-subuids", uids), ("--del-subgids", gids)] {
                    if let Some((start, n)) = range {
                        sh("usermod", &[flag, &format!("{start}-{}", start + n - 1), name]).unwrap();
                    }
                }
            }
        }
        let id = |flag| sh("id", &[flag, name]).unwrap().trim().parse::<u32>().unwrap();
        let subuid = first_range("/etc/subuid", name).map(|(start, _)| start);
        User { name, uid: id("-u"), gid: id("-g"), subuid }
    }
}

/// One test's world as `user`: a HOME of its own (the default store is under it).
pub(super) struct Rootless {
    pub user: User,
    /// Root's, mode 0711: the user passes through it into `home`.
    pub dir: tempfile::TempDir,
    pub home: PathBuf,
    /// A copy of the binary the user may run (the build's own may sit under a
    /// directory only root may enter), in `dir`.
    pub exe: PathBuf,
    /// One test at a time as the users: "no process of the user is left" must not
    /// see another test's.
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Rootless {
    pub(super) fn new(test: &str, subids: bool) -> Option<Rootless> {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED {test}: {why}");
            return None;
        }
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let serial = SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let user = User::ensure(if subids { USER } else { USER_WITHOUT_SUBIDS }, subids);
        assert_eq!(user.subuid.is_some(), subids, "{}: /etc/subuid", user.name);
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
        let home = dir.path().join("home");
        fs::create_dir(&home).unwrap();
        std::os::unix::fs::chown(&home, Some(user.uid), Some(user.gid)).unwrap();
        // The import below needs a busybox tarball the user may read.
        let tar = home.join("busybox.tar");
        fs::copy(busybox_tar(), &tar).unwrap();
        std::os::unix::fs::chown(&tar, Some(user.uid), Some(user.gid)).unwrap();
        let exe = dir.path().join("builder");
        fs::copy(env!("CARGO_BIN_EXE_builder"), &exe).unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        Some(Rootless { user, dir, home, exe, _serial: serial })
    }

    /// The default store: `$XDG_DATA_HOME/builder` (XDG_DATA_HOME unset: ~/.local/share).
    pub(super) fn store(&self) -> PathBuf {
        self.home.join(".local/share/builder")
    }

    /// `builder ARGS` as the user, with a clean environment and no `--root`.
    pub(super) fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.exe);
        // std drops the supplementary groups too.
        cmd.uid(self.user.uid).gid(self.user.gid);
        self.environment(&mut cmd);
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    pub(super) fn environment(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &self.home)
            .env("USER", self.user.name)
            .env("TMPDIR", &self.home)
            .current_dir(&self.home);
    }

    pub(super) fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    pub(super) fn ok(&self, args: &[&str]) -> String {
        ok(&self.run(args), &format!("builder {args:?} as {}", self.user.name))
    }

    /// A context directory (owned by the user) with these files.
    pub(super) fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.home.join(name);
        for (path, content) in files {
            let p = dir.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        sh("chown", &["-R", &format!("{}:{}", self.user.uid, self.user.gid), dir.to_str().unwrap()]).unwrap();
        dir
    }

    /// Processes of the user still alive, from /proc (procps may not be installed):
    /// "PID ARGS" lines, zombies being reaped left out.
    pub(super) fn processes(&self) -> Vec<String> {
        let uid = self.user.uid.to_string();
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
            let pid = entry.file_name().to_string_lossy().into_owned();
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let Ok(status) = fs::read_to_string(entry.path().join("status")) else { continue };
            let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim).unwrap_or("");
            let real_uid = field("Uid:").split_whitespace().next().unwrap_or("");
            if real_uid != uid || field("State:").starts_with('Z') {
                continue;
            }
            let cmdline = fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let args: Vec<String> = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into())
                .collect();
            found.push(format!("{pid} {}", args.join(" ")));
        }
        found
    }

    /// Waits (up to 10 s) until the user has no process left.
    pub(super) fn assert_no_processes_left(&self, after: &str) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.processes().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert_eq!(self.processes(), Vec::<String>::new(), "processes of {} left after {after}", self.user.name);
    }
}

impl Drop for Rootless {
    fn drop(&mut self) {
        // Root removes what subordinate owners hold; `dir` then goes by itself.
        let _ = fs::remove_dir_all(&self.home);
        let _ = &self.dir;
    }
}

pub(super) fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(super) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `tar -tv` of every layer of the OCI archive `tar`: "owner path" lines.
pub(super) fn layer_owners(tar: &Path) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    sh("tar", &["-xf", tar.to_str().unwrap(), "-C", dir.path().to_str().unwrap()]).unwrap();
    let blob = |digest: &str| dir.path().join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let index: serde_json::Value = serde_json::from_slice(&fs::read(dir.path().join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(blob(manifest)).unwrap()).unwrap();
    let mut lines = Vec::new();
    for layer in manifest["layers"].as_array().unwrap() {
        let listing = sh("tar", &["-tvzf", blob(layer["digest"].as_str().unwrap()).to_str().unwrap()]).unwrap();
        // `-rw-r--r-- 1001/1001 3 2026-01-01 00:00 f.txt`
        for line in listing.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            lines.push(format!("{} {}", f[1], f[5..].join(" ")));
        }
    }
    lines
}
