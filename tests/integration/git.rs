//! Git sources: `ADD <git url>` and `--build-context NAME=<git url>`, from a bare
//! repository served by `git daemon` on 127.0.0.1 and as `file://`.

use crate::util::{Env, env};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(super) fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.email=t@example.com", "-c", "user.name=t", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// A work tree with `top.txt`, `sub/b.txt`, `sub/deep/c.sh` (executable), `link` (to
/// `/`) committed on
/// `main` and tagged `v1`, and its bare clone `srv/repo.git`.
pub(super) struct Repo {
    pub work: PathBuf,
    pub bare: PathBuf,
}

impl Repo {
    pub fn new(env: &Env) -> Repo {
        let work = env.work.path().join("repo");
        std::fs::create_dir_all(work.join("sub/deep")).unwrap();
        std::fs::write(work.join("top.txt"), "top\n").unwrap();
        std::fs::write(work.join("sub/b.txt"), "b\n").unwrap();
        std::fs::write(work.join("sub/deep/c.sh"), "#!/bin/sh\n").unwrap();
        let mut perms = std::fs::metadata(work.join("sub/deep/c.sh")).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(work.join("sub/deep/c.sh"), perms).unwrap();
        // A link out of the repository: what `#ref:link` must not follow.
        std::os::unix::fs::symlink("/", work.join("link")).unwrap();
        git(&work, &["init", "-q"]);
        git(&work, &["add", "-A"]);
        git(&work, &["commit", "-qm", "one"]);
        git(&work, &["tag", "-a", "v1", "-m", "v1"]);
        let srv = env.work.path().join("srv");
        std::fs::create_dir_all(&srv).unwrap();
        git(&srv, &["clone", "-q", "--bare", work.to_str().unwrap(), "repo.git"]);
        Repo { work, bare: srv.join("repo.git") }
    }

    pub fn commit(&self, args: &[&str]) -> String {
        git(&self.work, &["rev-parse", args[0]]).trim().to_string()
    }

    /// A new commit on `main`, pushed to the bare repository.
    pub fn advance(&self, file: &str) -> String {
        std::fs::write(self.work.join(file), "new\n").unwrap();
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-qm", file]);
        git(&self.work, &["push", "-q", self.bare.to_str().unwrap(), "main"]);
        self.commit(&["main"])
    }
}

/// `git daemon` serving the bare repositories beside `bare` on a free port.
struct Daemon {
    child: Child,
    url: String,
}

impl Daemon {
    fn start(bare: &Path) -> Daemon {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let base = bare.parent().unwrap();
        let child = Command::new("git")
            .args(["daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1", &format!("--port={port}")])
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon (is git installed?)");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "git daemon did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Daemon { child, url: format!("git://127.0.0.1:{port}/repo.git") }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every path under `dir`, relative, sorted.
pub(super) fn tree(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap().path().strip_prefix(dir).unwrap().display().to_string())
        .collect();
    out.sort();
    out
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o7777
}

/// The progress lines of the vertex named `name` (its `#N` number's lines).
pub(super) fn vertex_lines<'a>(stderr: &'a str, name: &str) -> Vec<&'a str> {
    let Some(number) = stderr.lines().find_map(|l| l.strip_suffix(name).and_then(|p| p.strip_suffix(' '))) else {
        return Vec::new();
    };
    stderr.lines().filter(|l| l.starts_with(&format!("{number} "))).collect()
}

#[test]
fn add_git_subdir_keep_git_dir_and_cache_by_commit() {
    let Some(env) = env("add_git") else { return };
    let repo = Repo::new(&env);
    let daemon = Daemon::start(&repo.bare);
    let v1 = repo.commit(&["v1^{commit}"]);
    let file_url = format!("file://{}", repo.bare.display());
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!(
                "FROM scratch\n\
                 ADD --checksum={} {}#v1:sub /src/\n\
                 ADD {file_url}#main /all/\n\
                 ADD --keep-git-dir=true {file_url}#main /kept\n",
                &v1[..7],
                daemon.url
            ),
        )],
    );
    let out = env.work.path().join("out");
    let dest = format!("type=local,dest={}", out.display());
    env.build_ok(&ctx, &["-o", &dest]);
    // Exactly the subdir's files, modes as git has them, no .git.
    assert_eq!(tree(&out.join("src")), ["b.txt", "deep", "deep/c.sh"]);
    assert_eq!((mode(&out.join("src/b.txt")), mode(&out.join("src/deep/c.sh"))), (0o644, 0o755));
    assert_eq!(tree(&out.join("all")), ["link", "sub", "sub/b.txt", "sub/deep", "sub/deep/c.sh", "top.txt"]);
    assert_eq!(std::fs::read_link(out.join("all/link")).unwrap(), Path::new("/"));
    // --keep-git-dir: a repository of its own at the commit.
    let main = repo.commit(&["main"]);
    assert_eq!(git(&out.join("kept"), &["rev-parse", "HEAD"]).trim(), main);
    assert_eq!(git(&out.join("kept"), &["status", "--porcelain"]), "");
    assert_eq!(git(&out.join("kept"), &["remote", "get-url", "origin"]).trim(), file_url);
    // Nothing of the store in it.
    let store = env.root.path().to_str().unwrap();
    assert!(!out.join("kept/.git/FETCH_HEAD").exists());
    assert!(!git(&out.join("kept"), &["config", "--list", "--local"]).contains(store));

    // Unchanged refs: every git source is a hit, nothing fetched or checked out.
    let (ok, _, stderr) = env.build(&ctx, &["-o", &dest]);
    assert!(ok, "{stderr}");
    for name in [format!("{}#v1:sub", daemon.url), format!("{file_url}#main")] {
        let lines = vertex_lines(&stderr, &name);
        assert!(lines.iter().any(|l| l.ends_with(" CACHED")), "{name} not cached:\n{stderr}");
    }

    // The branch moved: the ADDs of main run again, the tag's is still a hit.
    let moved = repo.advance("new.txt");
    let (ok, _, stderr) = env.build(&ctx, &["-o", &dest]);
    assert!(ok, "{stderr}");
    let main_lines = vertex_lines(&stderr, &format!("{file_url}#main"));
    assert!(!main_lines.iter().any(|l| l.ends_with(" CACHED")), "main not re-run:\n{stderr}");
    assert!(vertex_lines(&stderr, &format!("{}#v1:sub", daemon.url)).iter().any(|l| l.ends_with(" CACHED")));
    assert!(out.join("all/new.txt").exists());
    assert_eq!(git(&out.join("kept"), &["rev-parse", "HEAD"]).trim(), moved);

    // The bare repositories are build data: `du` counts them, `prune --all` removes
    // them, and the next build fetches again.
    let repos = env.root.path().join("cache/git");
    assert_eq!(std::fs::read_dir(&repos).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count(), 2);
    env.ok(&["prune", "--all"]);
    assert_eq!(std::fs::read_dir(&repos).unwrap().count(), 0);
    env.build_ok(&ctx, &["-o", &dest]);
    assert_eq!(tree(&out.join("src")), ["b.txt", "deep", "deep/c.sh"]);

    // A checksum that is not the commit fails, naming both.
    let bad = env
        .context("bad", &[("Dockerfile", &format!("FROM scratch\nADD --checksum=deadbeef {}#v1 /x/\n", daemon.url))]);
    let (ok, _, stderr) = env.build(&bad, &[]);
    assert!(!ok && stderr.contains("checksum mismatch") && stderr.contains("deadbeef") && stderr.contains(&v1));
    // A subdir through a symlink is refused, not followed out of the checkout.
    let link = env.context("link", &[("Dockerfile", &format!("FROM scratch\nADD {file_url}#v1:link/etc /x/\n"))]);
    let (ok, _, stderr) = env.build(&link, &[]);
    assert!(!ok && stderr.contains("subdir \"link/etc\" is not a directory"), "{stderr}");
    // A ref the remote does not have, named with the remote.
    let missing = env.context("missing", &[("Dockerfile", &format!("FROM scratch\nADD {file_url}#nope /x/\n"))]);
    let (ok, _, stderr) = env.build(&missing, &[]);
    assert!(!ok && stderr.contains("\"nope\" not found") && stderr.contains(&file_url), "{stderr}");
}

/// Serves `body` over HTTP on 127.0.0.1 for as many requests as come.
fn serve(body: Vec<u8>) -> String {
    use std::io::{Read as _, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn build_contexts_from_git_http_and_oci_layout() {
    let Some(env) = env("build_contexts_remote") else { return };
    let repo = Repo::new(&env);
    // A tarball and a plain file over HTTP.
    let files = env.context("tarred", &[("dir/t.txt", "in a tarball\n")]);
    let tarball = env.work.path().join("ctx.tar.gz");
    let status = Command::new("tar").arg("-czf").arg(&tarball).arg("-C").arg(&files).arg("dir").status().unwrap();
    assert!(status.success());
    let tar_url = format!("{}/ctx.tar.gz", serve(std::fs::read(&tarball).unwrap()));
    let plain_url = format!("{}/notes.txt", serve(b"plain file\n".to_vec()));
    // An OCI layout this builder wrote.
    let layout = env.work.path().join("layout");
    let image_ctx =
        env.context("image", &[("Dockerfile", "FROM scratch\nCOPY hello.txt /\n"), ("hello.txt", "from a layout\n")]);
    env.build_ok(&image_ctx, &["-t", "app:v2", "-o", &format!("type=oci,tar=false,dest={}", layout.display())]);
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap().to_string();

    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM layout\n\
             COPY --from=src / /git/\n\
             COPY --from=tarball / /tarball/\n\
             COPY --from=plain / /plain/\n\
             COPY --from=layout /hello.txt /layout/\n\
             COPY --from=pinned /hello.txt /pinned/\n",
        )],
    );
    let out = env.work.path().join("out");
    let contexts = [
        format!("src=file://{}#v1:sub", repo.bare.display()),
        format!("tarball={tar_url}"),
        format!("plain={plain_url}"),
        format!("layout=oci-layout://{}:v2", layout.display()),
        format!("pinned=oci-layout://{}@{digest}", layout.display()),
    ];
    let mut args = vec!["-o".to_string(), format!("type=local,dest={}", out.display())];
    for c in &contexts {
        args.extend(["--build-context".to_string(), c.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.build_ok(&ctx, &args);
    assert_eq!(tree(&out.join("git")), ["b.txt", "deep", "deep/c.sh"]);
    assert_eq!(std::fs::read_to_string(out.join("tarball/dir/t.txt")).unwrap(), "in a tarball\n");
    assert_eq!(std::fs::read_to_string(out.join("plain/context")).unwrap(), "plain file\n");
    assert_eq!(std::fs::read_to_string(out.join("layout/hello.txt")).unwrap(), "from a layout\n");
    // `FROM layout`: the layout's image is the base.
    assert_eq!(std::fs::read_to_string(out.join("hello.txt")).unwrap(), "from a layout\n");
    assert_eq!(std::fs::read_to_string(out.join("pinned/hello.txt")).unwrap(), "from a layout\n");
    // The layout's image is read, not named: the store has no new ref.
    assert!(!env.ok(&["images"]).contains("layout"));

    // A tag the layout does not have is an error naming it.
    let bad = format!("layout=oci-layout://{}:nope", layout.display());
    let (ok, _, stderr) = env.build(&ctx, &["--build-context", &bad]);
    assert!(!ok && stderr.contains("no image tagged \"nope\""), "{stderr}");
}

#[test]
fn add_git_over_ssh_uses_the_default_agent() {
    let Some(env) = env("add_git_ssh") else { return };
    if Command::new("ssh-keygen").arg("-?").output().is_err() {
        eprintln!("SKIPPED add_git_over_ssh_uses_the_default_agent: openssh-client is not installed");
        return;
    }
    let repo = Repo::new(&env);
    let key = env.work.path().join("id_ed25519");
    let keygen = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(&key).output().unwrap();
    assert!(keygen.status.success());
    let fingerprint = Command::new("ssh-keygen").arg("-lf").arg(key.with_extension("pub")).output().unwrap();
    let fingerprint = String::from_utf8(fingerprint.stdout).unwrap().split_whitespace().nth(1).unwrap().to_string();
    // An `ssh` that runs the remote command here, after noting which keys the agent
    // git was given holds: the ssh transport, offline.
    let bin = env.work.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let seen = env.work.path().join("agent-keys");
    let script =
        format!("#!/bin/sh\nssh-add -l >> {}\nfor last in \"$@\"; do :; done\nexec sh -c \"$last\"\n", seen.display());
    std::fs::write(bin.join("ssh"), script).unwrap();
    let mut perms = std::fs::metadata(bin.join("ssh")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(bin.join("ssh"), perms).unwrap();

    let url = format!("git@localhost:{}", repo.bare.display());
    let ctx = env.context("ctx", &[("Dockerfile", &format!("FROM scratch\nADD {url}#v1:sub /src/\n"))]);
    let out = env.work.path().join("out");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let output = env
        .cmd(&["build", "--progress=plain", "--ssh", &format!("default={}", key.display())])
        .args(["-o", &format!("type=local,dest={}", out.display())])
        .arg(&ctx)
        .env("PATH", &path)
        .env_remove("SSH_AUTH_SOCK")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(tree(&out.join("src")), ["b.txt", "deep", "deep/c.sh"]);
    let keys = std::fs::read_to_string(&seen).unwrap();
    assert!(keys.lines().next().is_some_and(|l| l.contains(&fingerprint)), "{keys}");
}

#[test]
fn add_git_checks_out_submodules_unless_asked_not_to() {
    let Some(env) = env("add_git_submodules") else { return };
    // `lib.git` and `app.git` (with `lib` as a submodule over git://) in one daemon.
    let srv = env.work.path().join("srv");
    let lib = env.work.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(&srv).unwrap();
    std::fs::write(lib.join("lib.txt"), "lib\n").unwrap();
    git(&lib, &["init", "-q"]);
    git(&lib, &["add", "-A"]);
    git(&lib, &["commit", "-qm", "lib"]);
    git(&srv, &["clone", "-q", "--bare", lib.to_str().unwrap(), "lib.git"]);
    let daemon = Daemon::start(&srv.join("lib.git"));
    let lib_url = daemon.url.replace("repo.git", "lib.git");
    let app = env.work.path().join("app");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("app.txt"), "app\n").unwrap();
    git(&app, &["init", "-q"]);
    git(&app, &["submodule", "add", "-q", &lib_url, "lib"]);
    git(&app, &["add", "-A"]);
    git(&app, &["commit", "-qm", "app"]);
    git(&srv, &["clone", "-q", "--bare", app.to_str().unwrap(), "app.git"]);
    let app_url = daemon.url.replace("repo.git", "app.git");

    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            &format!(
                "FROM scratch\n\
                 ADD {app_url}#main /with/\n\
                 ADD {app_url}?submodules=false#main /without/\n\
                 ADD --keep-git-dir=true {app_url}#main /kept/\n"
            ),
        )],
    );
    let out = env.work.path().join("out");
    env.build_ok(&ctx, &["-o", &format!("type=local,dest={}", out.display())]);
    assert_eq!(tree(&out.join("with")), [".gitmodules", "app.txt", "lib", "lib/lib.txt"]);
    assert_eq!(tree(&out.join("without")), [".gitmodules", "app.txt", "lib"]);
    let status = git(&out.join("kept"), &["submodule", "status"]);
    assert!(status.contains(git(&lib, &["rev-parse", "HEAD"]).trim()) && status.contains(" lib"), "{status}");
}
