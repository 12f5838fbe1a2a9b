//! Git sources (`ADD <git url>`, `--build-context NAME=<git url>`), as BuildKit's
//! `source/git`: the ref is resolved to a commit with `git ls-remote` (the commit,
//! the subdir and `keep-git-dir` are the source's cache key, never the URL or its
//! credentials), the commit is fetched shallow into a bare repository cached in the
//! store (`cache/git/<hash of the remote>`), and checked out into a fresh directory
//! that becomes one layer. Git runs here, on the host, with a timeout, never in a
//! step's sandbox; over ssh it uses the build's `default` ssh agent (`--ssh`), over
//! https a `GIT_AUTH_TOKEN`/`GIT_AUTH_HEADER` secret as BuildKit takes them, or the
//! user's own git credential configuration.

mod command;

use super::{BuildWorker, Output};
use anyhow::{Context as _, Result, bail};
use command::{add_auth, git_command, run_git, run_git_remote, wait};
use solver::ir::GitSource;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a build resolved, so each ref is asked once per build.
#[derive(Default)]
pub struct GitState {
    commits: Mutex<HashMap<(String, String), String>>,
}

/// The commit `git.reference` names on the remote, checked against `--checksum`.
pub fn resolve(worker: &BuildWorker<'_>, git: &GitSource) -> Result<String> {
    let key = (git.remote.clone(), git.reference.clone());
    if let Some(commit) = worker.git.commits.lock().unwrap().get(&key) {
        return Ok(commit.clone());
    }
    let commit = if is_full_commit(&git.reference) {
        git.reference.to_lowercase()
    } else {
        let wanted = if git.reference.is_empty() { "HEAD" } else { git.reference.as_str() };
        // Asked with `^{}` too, so that an annotated tag comes peeled to its commit.
        let peeled = format!("{wanted}^{{}}");
        let out = run_git_remote(worker, None, &git.remote, &["ls-remote", "--", &git.remote, wanted, &peeled])
            .with_context(|| format!("resolving {wanted:?}"))?;
        pick_ref(&out, wanted).with_context(|| format!("git ref {wanted:?} not found in {}", redacted(git)))?
    };
    if let Some(want) = &git.checksum
        && !commit.starts_with(&want.to_lowercase())
    {
        // The error is shown after the source's name (the remote and ref).
        bail!("checksum mismatch: expected commit {want}, the ref resolved to {commit}");
    }
    worker.git.commits.lock().unwrap().insert(key, commit.clone());
    // Used by this build, hit or not: what `prune --keep-storage` keeps longest.
    crate::cache::git_repos::touch(&bare_path(worker, &git.remote));
    Ok(commit)
}

/// Whether the checkout may be a cache record. A record keeps its op, and a password
/// in the remote's URL must not be written to the store or exported with the cache:
/// such a source is checked out again each build (from the bare repository, without
/// a fetch when it has the commit), like an HTTP source is downloaded.
pub fn cacheable(git: &GitSource) -> bool {
    frontend::redact_remote(&git.remote) == git.remote
}

/// Fetches `commit` (shallow) into the store's bare repository of the remote and
/// checks it out as one layer: files 0644 or 0755 as git has them, directories 0755,
/// every time the commit's, `.git` only when asked.
pub fn checkout(worker: &BuildWorker<'_>, git: &GitSource, commit: &str) -> Result<Output> {
    let store = worker.store;
    let shown = shown(git);
    let bare = bare_repository(worker, &git.remote)?;
    // One fetch at a time per remote, across builds.
    let lock = std::fs::File::create(bare.with_extension("lock"))?;
    lock.lock()?;
    if !has_commit(worker, &bare, commit) {
        fetch(worker, &bare, git, commit).with_context(|| format!("fetching commit {commit}"))?;
    }
    // Pinned so that git's own gc never drops what the store's layers came from.
    run_git(worker, Some(&bare), &["update-ref", &format!("refs/builder/{commit}"), commit])?;
    drop(lock);

    let scratch = store.temp_dir("git")?;
    let tree = scratch.path().join("checkout");
    let time = run_git(worker, Some(&bare), &["show", "-s", "--format=%ct", commit])?;
    let time: i64 = time.trim().parse().with_context(|| format!("commit time of {commit}: {time:?}"))?;
    // Submodules need a repository to be checked out in: one of the checkout's own.
    let submodules = git.submodules && has_object(worker, &bare, &format!("{commit}:.gitmodules"));
    if git.keep_git_dir || submodules {
        repository_checkout(worker, git, &bare, &tree, commit)?;
        if submodules {
            let mut update = git_command(worker, None);
            add_auth(&mut update, worker, &git.remote);
            update.current_dir(&tree).args(["submodule", "update", "--init", "--recursive", "--depth=1"]);
            wait(update, "submodule update").with_context(|| format!("submodules of {commit}"))?;
        }
        let tree_git = Some(tree.join(".git"));
        run_git(worker, tree_git.as_deref(), &["remote", "set-url", "origin", &frontend::redact_remote(&git.remote)])?;
        if !git.keep_git_dir {
            remove_git_dirs(&tree)?;
        }
    } else {
        std::fs::create_dir_all(&tree)?;
        let mut checkout = git_command(worker, Some(&bare));
        checkout.env("GIT_INDEX_FILE", scratch.path().join("index")).arg("--work-tree").arg(&tree);
        checkout.args(["checkout", "-q", "-f", commit, "--", "."]);
        wait(checkout, "checkout")?;
    }
    // Every component a directory, none a symlink: a repository's link must not
    // lead the layer (and the chmods below) out of the checkout.
    let mut root = tree.clone();
    for part in git.subdir.split('/').filter(|p| !p.is_empty()) {
        root.push(part);
        if !std::fs::symlink_metadata(&root).is_ok_and(|m| m.is_dir()) {
            bail!("{shown}: subdir {:?} is not a directory at commit {commit}", git.subdir);
        }
    }
    normalize(&root, time)?;
    // The checkout is a cached source: `SOURCE_DATE_EPOCH` clamps the ADD's own layer.
    let options = crate::layer::LayerOptions { mtime_clamp: None, ..worker.options.layer_options };
    let tar = crate::layer::tar_writer::TarOptions { overlay: false, mtime_clamp: None };
    let layer = crate::layer::dir_to_layer(store, &root, &options, &tar)?;
    let result = scratch.path().join("result");
    std::fs::rename(&root, &result)?;
    store.commit_snapshot(result, &layer.diff_id)?;
    Ok(Output::base(vec![layer]))
}

/// Where the remote's bare repository is in the store.
fn bare_path(worker: &BuildWorker<'_>, remote: &str) -> PathBuf {
    use sha2::Digest as _;
    crate::cache::git_repos::dir(worker.store).join(hex::encode(sha2::Sha256::digest(remote.as_bytes())))
}

/// The remote's bare repository in the store, created on first use.
fn bare_repository(worker: &BuildWorker<'_>, remote: &str) -> Result<PathBuf> {
    let bare = bare_path(worker, remote);
    std::fs::create_dir_all(bare.parent().expect("under cache/git"))?;
    if !bare.join("HEAD").exists() {
        // Made aside and renamed, so a half-made repository is never found.
        let temp = worker.store.temp_dir("git-init")?;
        let path = temp.path().join("repo.git");
        run_git(worker, None, &["init", "-q", "--bare", path.to_str().context("store path is not UTF-8")?])?;
        run_git(worker, Some(&path), &["config", "gc.auto", "0"])?;
        if let Err(e) = std::fs::rename(&path, &bare)
            && !bare.join("HEAD").exists()
        {
            return Err(e).with_context(|| format!("creating {}", bare.display()));
        }
    }
    Ok(bare)
}

fn has_commit(worker: &BuildWorker<'_>, bare: &Path, commit: &str) -> bool {
    has_object(worker, bare, &format!("{commit}^{{commit}}"))
}

fn has_object(worker: &BuildWorker<'_>, bare: &Path, object: &str) -> bool {
    run_git(worker, Some(bare), &["cat-file", "-e", object]).is_ok()
}

/// `commit` checked out in a repository of its own at `tree` (no alternates into the
/// store), its origin the remote (set to the remote without credentials by the caller).
fn repository_checkout(
    worker: &BuildWorker<'_>,
    git: &GitSource,
    bare: &Path,
    tree: &Path,
    commit: &str,
) -> Result<()> {
    run_git(worker, None, &["init", "-q", tree.to_str().context("store path is not UTF-8")?])?;
    let bare_path = bare.to_str().context("store path is not UTF-8")?;
    let tree_git = Some(tree.join(".git"));
    // No reflog (it would hold times and names) and no FETCH_HEAD (the store's path).
    run_git(worker, tree_git.as_deref(), &["config", "core.logAllRefUpdates", "false"])?;
    run_git(worker, tree_git.as_deref(), &["fetch", "-q", "--depth=1", "--no-tags", bare_path, commit])?;
    std::fs::remove_file(tree.join(".git/FETCH_HEAD"))?;
    // The real remote while submodules with relative URLs are fetched.
    run_git(worker, tree_git.as_deref(), &["remote", "add", "origin", &git.remote])?;
    let mut checkout = git_command(worker, tree_git.as_deref());
    checkout.current_dir(tree).args(["checkout", "-q", "--detach", commit]);
    wait(checkout, "checkout").map(drop)
}

/// Removes every `.git` under `dir` (the checkout's repository, its submodules'
/// links), following no symlink. Git never tracks a `.git` entry, so nothing else goes.
fn remove_git_dirs(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let kind = entry.file_type()?;
        if entry.file_name() == ".git" {
            if kind.is_dir() {
                std::fs::remove_dir_all(entry.path())?;
            } else {
                std::fs::remove_file(entry.path())?;
            }
        } else if kind.is_dir() {
            remove_git_dirs(&entry.path())?;
        }
    }
    Ok(())
}

/// `git fetch --depth=1` of the commit itself; a server that does not serve
/// unadvertised commits gets asked for the ref instead, which must still be there,
/// and one that cannot fetch shallow (git's "dumb" HTTP) for all of the ref's history.
fn fetch(worker: &BuildWorker<'_>, bare: &Path, git: &GitSource, commit: &str) -> Result<()> {
    let fetch = |depth: &[&str], what: &str| {
        // No FETCH_HEAD: it would keep the URL.
        let mut args = vec!["fetch", "-q", "--no-tags", "--no-write-fetch-head"];
        args.extend(depth);
        args.extend(["--", &git.remote, what]);
        run_git_remote(worker, Some(bare), &git.remote, &args)
    };
    let by_commit = fetch(&["--depth=1"], commit);
    if by_commit.is_ok() && has_commit(worker, bare, commit) {
        return Ok(());
    }
    let wanted = if git.reference.is_empty() { "HEAD" } else { git.reference.as_str() };
    let refspec = format!("+{wanted}:refs/builder/fetched");
    let mut by_ref = fetch(&["--depth=1"], &refspec);
    if by_ref.is_err() {
        by_ref = fetch(&[], &refspec);
    }
    if has_commit(worker, bare, commit) {
        return Ok(());
    }
    match by_ref {
        Err(e) => Err(e),
        Ok(_) => bail!("{} no longer points at {commit}", shown(git)),
    }
}

/// Files 0644 or 0755 (as git records them), directories 0755, every mtime the
/// commit's: the same commit always gives the same layer.
fn normalize(root: &Path, time: i64) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let time = filetime::FileTime::from_unix_time(time, 0);
    for entry in walkdir::WalkDir::new(root).contents_first(true) {
        let entry = entry?;
        let meta = entry.path().symlink_metadata()?;
        if !meta.file_type().is_symlink() {
            let mode = if meta.is_dir() || meta.permissions().mode() & 0o100 != 0 { 0o755 } else { 0o644 };
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(mode))?;
        }
        filetime::set_symlink_file_times(entry.path(), time, time)?;
    }
    Ok(())
}

/// The last matching line of `git ls-remote REMOTE REF`, in the order git itself
/// would read REF: an exact name, a peeled tag, a tag, a branch.
fn pick_ref(ls_remote: &str, wanted: &str) -> Option<String> {
    let refs: Vec<(&str, &str)> = ls_remote.lines().filter_map(|l| l.split_once('\t')).collect();
    let candidates = [
        format!("{wanted}^{{}}"),
        wanted.to_string(),
        format!("refs/tags/{wanted}^{{}}"),
        format!("refs/tags/{wanted}"),
        format!("refs/heads/{wanted}"),
    ];
    candidates.iter().find_map(|c| refs.iter().find(|(_, name)| name == c)).map(|(sha, _)| sha.to_string())
}

fn is_full_commit(reference: &str) -> bool {
    matches!(reference.len(), 40 | 64) && reference.chars().all(|c| c.is_ascii_hexdigit())
}

fn redacted(git: &GitSource) -> String {
    frontend::redact_remote(&git.remote)
}

fn shown(git: &GitSource) -> String {
    frontend::show_git(git)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_resolve_as_git_reads_them() {
        let out = "1111\trefs/heads/v1\n2222\trefs/tags/v1\n3333\trefs/tags/v1^{}\n4444\tHEAD\n5555\trefs/heads/x/v1\n";
        assert_eq!(pick_ref(out, "v1").as_deref(), Some("3333"));
        assert_eq!(pick_ref(out, "HEAD").as_deref(), Some("4444"));
        assert_eq!(pick_ref(out, "refs/heads/v1").as_deref(), Some("1111"));
        assert_eq!(pick_ref("1111\trefs/heads/main\n", "main").as_deref(), Some("1111"));
        assert_eq!(pick_ref(out, "nope"), None);
    }

    #[test]
    fn full_commits_need_no_lookup() {
        assert!(is_full_commit("0123456789abcdef0123456789abcdef01234567"));
        assert!(!is_full_commit("0123456"));
        assert!(!is_full_commit("main"));
    }
}
