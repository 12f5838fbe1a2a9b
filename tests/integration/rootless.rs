//! Rootless: the real `builder` run by an ordinary user, as a CI job without root
//! would. As root, the test makes (or reuses) two users: `builder-rootless-test` with
//! subordinate ids in /etc/subuid and /etc/subgid (`useradd`, plus `usermod
//! --add-subuids` where useradd gave none), and `builder-rootless-nosub` without any;
//! the executor's rootless tests use the same two. Each test gets a HOME of its own
//! (owned by the user, removed by root afterwards: files of subordinate owners are not
//! the user's to remove), and runs a copy of the binary the user may execute.
//! Named `rootless_*`: `cargo test --test integration rootless_` runs this subset.

use crate::registry::Registry;
use crate::util::{busybox_tar, privileged};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

const USER: &str = "builder-rootless-test";
const USER_WITHOUT_SUBIDS: &str = "builder-rootless-nosub";

fn sh(program: &str, args: &[&str]) -> Result<String, String> {
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

struct User {
    name: &'static str,
    uid: u32,
    gid: u32,
    /// The first subordinate uid.
    subuid: Option<u32>,
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

/// A copy of the binary anyone may run, made once per test process (the build's own
/// may sit under a directory only root may enter).
fn exe() -> &'static Path {
    static EXE: OnceLock<PathBuf> = OnceLock::new();
    EXE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("builder-rootless-exe-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let exe = dir.join("builder");
        fs::copy(env!("CARGO_BIN_EXE_builder"), &exe).unwrap();
        fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
        exe
    })
}

/// One test's world as `user`: a HOME of its own (the default store is under it).
struct Rootless {
    user: User,
    /// Root's, mode 0711: the user passes through it into `home`.
    dir: tempfile::TempDir,
    home: PathBuf,
    /// One test at a time as the users: "no process of the user is left" must not
    /// see another test's.
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Rootless {
    fn new(test: &str, subids: bool) -> Option<Rootless> {
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
        Some(Rootless { user, dir, home, _serial: serial })
    }

    /// The default store: `$XDG_DATA_HOME/builder` (XDG_DATA_HOME unset: ~/.local/share).
    fn store(&self) -> PathBuf {
        self.home.join(".local/share/builder")
    }

    /// `builder ARGS` as the user, with a clean environment and no `--root`.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(exe());
        // std drops the supplementary groups too.
        cmd.uid(self.user.uid).gid(self.user.gid);
        self.environment(&mut cmd);
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    fn environment(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
            .env("HOME", &self.home)
            .env("USER", self.user.name)
            .env("TMPDIR", &self.home)
            .current_dir(&self.home);
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(&self.run(args), &format!("builder {args:?} as {}", self.user.name))
    }

    /// A context directory (owned by the user) with these files.
    fn context(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let dir = self.home.join(name);
        for (path, content) in files {
            let p = dir.join(path);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, content).unwrap();
        }
        sh("chown", &["-R", &format!("{}:{}", self.user.uid, self.user.gid), dir.to_str().unwrap()]).unwrap();
        dir
    }

    /// Processes of the user still alive (`pgrep -u`), but for zombies being reaped.
    fn processes(&self) -> Vec<String> {
        let out = sh("ps", &["-u", &self.user.uid.to_string(), "-o", "pid=,stat=,args="]).unwrap_or_default();
        out.lines()
            .filter(|l| !l.split_whitespace().nth(1).is_some_and(|s| s.starts_with('Z')))
            .map(String::from)
            .collect()
    }

    /// Waits (up to 10 s) until the user has no process left.
    fn assert_no_processes_left(&self, after: &str) {
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

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `tar -tv` of every layer of the OCI archive `tar`: "owner path" lines.
fn layer_owners(tar: &Path) -> Vec<String> {
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

const MULTI_STAGE: &str = "\
FROM busybox AS build
RUN mkdir -p /out && echo built > /out/a && chown -R 1001:1001 /out
RUN --mount=type=cache,target=/cache echo run >> /cache/log && cp /cache/log /out/cachelog
RUN --mount=type=secret,id=token test \"$(cat /run/secrets/token)\" = s3cret && echo secret-ok > /out/secret
RUN --network=none test \"$(ls /sys/class/net)\" = lo
RUN --network=host ls /sys/class/net > /out/host-net
RUN --mount=type=bind,source=file.txt,target=/bound cp /bound /out/bound
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && test ! -e /out/x

FROM busybox
COPY --from=build /out /from-build
COPY --chown=1001:1001 file.txt /owned.txt
ADD --chown=nobody:nogroup file.txt /added.txt
RUN mkdir /home/nobody && chown nobody /home/nobody
USER nobody
RUN id -u > /home/nobody/id && touch /home/nobody/made
CMD [\"cat\", \"/owned.txt\"]
";

#[test]
fn rootless_build_export_push_pull_run_and_store_commands() {
    let Some(r) = Rootless::new("rootless_build_export_push_pull_run_and_store_commands", true) else { return };
    let tar = r.home.join("busybox.tar");
    r.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    let store = r.store();
    assert!(store.is_dir(), "the default store is ~/.local/share/builder");
    assert_eq!(fs::metadata(&store).unwrap().uid(), r.user.uid, "the store is the user's");

    let ctx = r.context("ctx", &[("Dockerfile", MULTI_STAGE), ("file.txt", "hello\n")]);
    let secret = r.context("secret", &[("token", "s3cret")]).join("token");
    let (oci, docker) = (r.home.join("oci.tar"), r.home.join("docker.tar"));
    r.ok(&[
        "build",
        "--progress=plain",
        "--secret",
        &format!("id=token,src={}", secret.display()),
        "--allow",
        "network.host",
        "-t",
        "app:1",
        "-o",
        "type=image",
        "-o",
        &format!("type=oci,dest={},name=app:1", oci.display()),
        "-o",
        &format!("type=docker,dest={},name=app:1", docker.display()),
        ctx.to_str().unwrap(),
    ]);

    // Owners in the layers are the Dockerfile's, not the host's.
    let owners = layer_owners(&oci);
    for expected in [
        "1001/1001 owned.txt",
        "1001/1001 from-build/a",
        "0/0 from-build/cachelog",
        "65534/65534 home/nobody/made",
        "65534/65534 home/nobody/id",
        "65534/65534 added.txt",
        "0/0 from-build/bound",
        "0/0 from-build/host-net",
    ] {
        assert!(owners.iter().any(|l| l == expected), "no {expected:?} in the layers:\n{}", owners.join("\n"));
    }
    for source in [format!("oci-archive:{}", oci.display()), format!("docker-archive:{}", docker.display())] {
        let config = sh("skopeo", &["inspect", "--config", &source]).unwrap();
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["config"]["User"], "nobody", "{source}");
    }
    // On the host the store's files are the user's, or its subordinate ids'.
    let subuid = r.user.subuid.unwrap();
    let strangers = sh("find", &[store.to_str().unwrap(), "!", "-user", &r.user.uid.to_string()]).unwrap();
    for path in strangers.lines() {
        let uid = fs::symlink_metadata(path).unwrap().uid();
        assert!((subuid..subuid + 65536).contains(&uid), "{path} owned by {uid}");
    }
    assert!(
        sh("find", &[store.to_str().unwrap(), "-uid", &(subuid + 1000).to_string()]).unwrap().contains("owned.txt"),
        "COPY --chown=1001 is subuid+1000 on the host"
    );

    // The container sees the image's owners; its exit code is run's.
    let out = r.run(&["run", "--rm", "app:1", "sh", "-c", "stat -c '%u %n' /owned.txt /home/nobody/id; id -u; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1001 /owned.txt\n65534 /home/nobody/id\n65534\n");
    // A named volume keeps its files between containers, with both network modes.
    r.ok(&["run", "--rm", "--network=none", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f"]);
    let out = r.ok(&["run", "--rm", "--network=host", "-v", "data:/data", "busybox", "cat", "/data/f"]);
    assert_eq!(out, "kept\n");
    // The cache (with the cache mount) exported, then imported by a fresh store: the
    // build there is all hits.
    let cache = r.home.join("cache");
    let secret_arg = format!("id=token,src={}", secret.display());
    let export = format!("type=local,dest={},mode=max,mounts=true", cache.display());
    let host = ["--allow", "network.host"];
    r.ok(&[
        &["build", "--progress=plain", "--secret", &secret_arg, "--cache-to", &export][..],
        &host,
        &[ctx.to_str().unwrap()],
    ]
    .concat());
    // Without its cache records (prune), the store takes them from the export.
    r.ok(&["prune", "-a"]);
    let import = format!("type=local,src={}", cache.display());
    let out = r
        .cmd(&[&["build", "--progress=plain", "--secret", &secret_arg, "--cache-from", &import][..], &host].concat())
        .arg(&ctx)
        .output()
        .unwrap();
    ok(&out, "build with --cache-from");
    let err = stderr(&out);
    // Every RUN was a hit: none ran (a step that runs prints DONE, a hit CACHED).
    let runs = err.lines().filter(|l| l.contains("] RUN ")).filter_map(|l| l.split_whitespace().next());
    for step in runs.collect::<std::collections::BTreeSet<_>>() {
        assert!(err.contains(&format!("{step} CACHED")), "{step} ran again:\n{err}");
    }

    // Push to the test registry, pull into another store, run it there.
    if let Some(registry) = Registry::start("rootless_push_pull", None) {
        let name = format!("{}/rootless/app:1", registry.host());
        r.ok(&["tag", "app:1", &name]);
        r.ok(&["push", &name]);
        let other = r.home.join("other-store");
        r.ok(&["--root", other.to_str().unwrap(), "pull", &name]);
        let out = r.ok(&["--root", other.to_str().unwrap(), "run", "--rm", &name]);
        assert_eq!(out, "hello\n");
        r.ok(&["--root", other.to_str().unwrap(), "rmi", &name]);
        r.ok(&["--root", other.to_str().unwrap(), "prune", "-a"]);
    }

    // Store commands work on files of subordinate owners.
    let du = r.ok(&["du"]);
    assert!(du.contains("snapshots"), "{du}");
    r.ok(&["rmi", "app:1"]);
    r.ok(&["prune", "-a"]);
    let fsck = r.run(&["fsck"]);
    ok(&fsck, "fsck");
    assert!(stderr(&fsck).contains(" 0 problems"), "{}", stderr(&fsck));
    r.assert_no_processes_left("the commands");
}

#[test]
fn rootless_without_subordinate_ids_root_alone_works_and_other_owners_fail_clearly() {
    let Some(r) = Rootless::new("rootless_without_subordinate_ids", false) else { return };
    let tar = r.home.join("busybox.tar");
    let out = r.run(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    ok(&out, "import");
    let warning = stderr(&out);
    assert!(
        warning.contains("no subordinate ids for user builder-rootless-nosub")
            && warning.contains("usermod --add-subuids"),
        "{warning}"
    );
    let ctx = r.context("root-only", &[("Dockerfile", "FROM busybox\nRUN echo ok > /ok && chown 0:0 /ok\n")]);
    r.ok(&["build", "--progress=plain", "-t", "root-only", ctx.to_str().unwrap()]);
    let out = r.ok(&["run", "--rm", "root-only", "cat", "/ok"]);
    assert_eq!(out, "ok\n");

    let ctx = r.context("copy", &[("Dockerfile", "FROM busybox\nCOPY --chown=1001:1001 Dockerfile /d\n")]);
    let out = r.run(&["build", "--progress=plain", ctx.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("1001:1001 is not mapped in builder's user namespace") && err.contains("/etc/subuid"),
        "{err}"
    );
    let ctx = r.context("user", &[("Dockerfile", "FROM busybox\nUSER 1001\nRUN true\n")]);
    let out = r.run(&["build", "--progress=plain", ctx.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("uid 1001 is not mapped") && err.contains("no subordinate ids"), "{err}");
    r.assert_no_processes_left("the builds");
}

#[test]
fn rootless_steps_cannot_reach_the_users_files_or_processes_and_leave_nothing_behind() {
    let Some(r) = Rootless::new("rootless_isolation", true) else { return };
    let tar = r.home.join("busybox.tar");
    r.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    let canary = r.context("canary", &[("file", "untouched\n")]).join("file");
    let home = r.home.display().to_string();
    let dockerfile = format!(
        "FROM busybox\nRUN echo changed > {0}/canary/file 2>/dev/null; echo changed > /etc/canary; \
         ls /proc | grep -c '^[0-9]' > /pids; test ! -e {0}/canary/file; cat /proc/1/cmdline > /init\n",
        home
    );
    let ctx = r.context("escape", &[("Dockerfile", &dockerfile)]);
    r.ok(&["build", "--progress=plain", "-t", "escape", ctx.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&canary).unwrap(), "untouched\n");
    assert!(!Path::new("/etc/canary").exists());
    let out = r.ok(&["run", "--rm", "escape", "sh", "-c", "cat /pids; ls /proc | grep -c '^[0-9]'"]);
    let counts: Vec<u32> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert!(counts.iter().all(|&n| n <= 4), "host processes visible: {out}");

    // A failed build leaves no process, no mount and no temp behind.
    let mounts = crate::util::mount_table();
    let ctx = r.context("fail", &[("Dockerfile", "FROM busybox\nRUN sleep 1 & exit 3\n")]);
    let out = r.run(&["build", "--progress=plain", ctx.to_str().unwrap()]);
    assert!(!out.status.success());
    r.assert_no_processes_left("a failed build");
    assert_eq!(crate::util::mount_table(), mounts);
    let tmp: Vec<_> = fs::read_dir(r.store().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{tmp:?}");

    // Killed (SIGKILL to the builder the user started): its namespace goes with it.
    let ctx = r.context("killed", &[("Dockerfile", "FROM busybox\nRUN sleep 300\n")]);
    let mut child = r.cmd(&["build", "--progress=plain", ctx.to_str().unwrap()]).stdout(Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !r.processes().iter().any(|p| p.ends_with("sleep 300")) {
        assert!(std::time::Instant::now() < deadline, "the step never started: {:?}", r.processes());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    r.assert_no_processes_left("a killed build");
    assert_eq!(crate::util::mount_table(), mounts);
    let fsck = r.run(&["fsck"]);
    ok(&fsck, "fsck");
    assert!(stderr(&fsck).contains(" 0 problems"), "{}", stderr(&fsck));
}

#[test]
fn rootless_with_user_namespaces_disabled_says_what_is_missing() {
    let Some(r) = Rootless::new("rootless_with_user_namespaces_disabled", true) else { return };
    // `user.max_user_namespaces` is per user namespace and binds every namespace below:
    // 0 in a namespace of the test's own disables them for builder exactly as the host
    // setting would, and the host's stays as it was.
    // `unshare --user` makes the namespace; root, outside, maps every id to itself
    // (unshare's own --map-users would need subordinate ids for root), and the shell
    // inside lowers the limit and becomes the user.
    let fifo = r.dir.path().join("go");
    sh("mkfifo", &[fifo.to_str().unwrap()]).unwrap();
    let pid_file = r.dir.path().join("pid");
    // The second exec gives the shell its capabilities in the namespace: an execve
    // before the maps existed got none.
    let stage2 = r.dir.path().join("stage2.sh");
    fs::write(
        &stage2,
        format!(
            "echo 0 > /proc/sys/user/max_user_namespaces && \
             exec setpriv --reuid={} --regid={} --clear-groups -- {} build .\n",
            r.user.uid,
            r.user.gid,
            exe().display()
        ),
    )
    .unwrap();
    let script =
        format!("echo $$ > {} && read go < {} && exec sh {}", pid_file.display(), fifo.display(), stage2.display());
    let mut cmd = Command::new("unshare");
    r.environment(&mut cmd);
    let child = cmd
        .args(["--user", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pid = loop {
        if let Ok(pid) = fs::read_to_string(&pid_file).map(|p| p.trim().to_string())
            && !pid.is_empty()
        {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "unshare never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    fs::write(format!("/proc/{pid}/uid_map"), "0 0 4294967295\n").unwrap();
    fs::write(format!("/proc/{pid}/gid_map"), "0 0 4294967295\n").unwrap();
    fs::write(&fifo, "go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("user namespaces are disabled: sysctl user.max_user_namespaces=0"), "{err}");
    assert!(err.contains("builder doctor"), "{err}");
    assert!(std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap().trim() != "0");
}

#[test]
fn rootless_where_proc_is_partly_hidden_steps_get_it_read_only_and_say_so() {
    let Some(r) = Rootless::new("rootless_where_proc_is_partly_hidden", true) else { return };
    let tar = r.home.join("busybox.tar");
    r.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    // As an unprivileged container's masked paths do: a mount over part of /proc, in a
    // mount namespace of the test's own. A fresh procfs is then refused in a user
    // namespace.
    let me = std::process::id();
    let script = format!(
        "mount --bind /dev/null /proc/uptime && exec setpriv --reuid={} --regid={} --clear-groups -- {} run --rm \
         busybox sh -c 'kill -0 1 && echo own-init; kill -0 {me} 2>/dev/null || echo cannot-signal-host; \
         test -e /proc/{me} && echo sees-host; touch /proc/x 2>/dev/null || echo read-only'",
        r.user.uid,
        r.user.gid,
        exe().display()
    );
    let mut cmd = Command::new("unshare");
    r.environment(&mut cmd);
    let out = cmd.args(["-m", "--", "sh", "-c", &script]).stdin(Stdio::null()).output().unwrap();
    let said = ok(&out, "run with a partly hidden /proc");
    assert_eq!(said, "own-init\ncannot-signal-host\nsees-host\nread-only\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("no fresh /proc for sandboxes here") && stderr(&out).contains("/proc/uptime"));
}

#[test]
fn rootless_unpack_skips_device_nodes_and_drops_overlay_xattrs_of_a_layer() {
    let Some(r) = Rootless::new("rootless_unpack_devices_and_overlay_xattrs", true) else { return };
    // busybox plus what a hostile or foreign layer may hold: a device node, and
    // overlayfs's own markers, which in a user namespace would make /keep a whiteout
    // and /d opaque.
    let tree = r.dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    sh("tar", &["-xf", busybox_tar().to_str().unwrap(), "-C", tree.to_str().unwrap()]).unwrap();
    fs::write(tree.join("keep"), "kept\n").unwrap();
    fs::create_dir(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), "f\n").unwrap();
    xattr::set(tree.join("keep"), "user.overlay.whiteout", b"").unwrap();
    xattr::set(tree.join("d"), "user.overlay.opaque", b"y").unwrap();
    xattr::set(tree.join("d/f"), "user.note", b"kept").unwrap();
    sh("mknod", &[tree.join("node").to_str().unwrap(), "c", "1", "3"]).unwrap();
    let tar = r.home.join("foreign.tar");
    sh(
        "tar",
        &["--xattrs", "--xattrs-include=user.*", "-cf", tar.to_str().unwrap(), "-C", tree.to_str().unwrap(), "."],
    )
    .unwrap();
    assert!(sh("tar", &["--xattrs", "-tvvf", tar.to_str().unwrap()]).unwrap().contains("node"));
    std::os::unix::fs::chown(&tar, Some(r.user.uid), Some(r.user.gid)).unwrap();

    r.ok(&["import", tar.to_str().unwrap(), "foreign:1"]);
    let out = r.run(&["run", "--rm", "foreign:1", "sh", "-c", "cat /keep /d/f; test -e /node || echo no-node"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\nf\nno-node\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("skipping device node node (rootless"), "{}", stderr(&out));
    // The layer's own xattrs stay; the snapshot holds no overlay marker from the tar.
    let snapshot = fs::read_dir(r.store().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("keep").exists())
        .expect("the layer's snapshot");
    assert_eq!(xattr::get(snapshot.join("d/f"), "user.note").unwrap().as_deref(), Some(&b"kept"[..]));
    assert_eq!(xattr::get(snapshot.join("keep"), "user.overlay.whiteout").unwrap(), None);
    assert_eq!(xattr::get(snapshot.join("d"), "user.overlay.opaque").unwrap(), None);
}
