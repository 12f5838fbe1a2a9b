//! The other file actions (mkdir, mkfile, rm) as BuildKit's file backend applies
//! them: paths resolved inside the destination root like a chroot.

use super::owner::{Ids, resolve_owner};
use super::write::{display_rel, mkdir_all};
use super::{CopySource, apply_copy};
use crate::ignore::clean_path;
use crate::ops::context::tree::{SourceFs, contains_wildcards, resolve_in_root};
use anyhow::{Context as _, Result, bail};
use solver::ir::{FileAction, Owner};
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::{Path, PathBuf};

/// Applies one file action to the filesystem mounted at `dest_root`; a copy reads
/// from `source`.
pub fn apply_file_action(action: &FileAction, source: Option<&CopySource<'_>>, dest_root: &Path) -> Result<()> {
    match action {
        FileAction::Copy(copy) => {
            let source = source.context("copy action without a source")?;
            apply_copy(copy, source, dest_root)
        }
        FileAction::Mkdir { path, mode, make_parents, owner } => {
            mkdir(dest_root, path, *mode, *make_parents, owner.as_ref()).with_context(|| format!("mkdir {path}"))
        }
        FileAction::Mkfile { path, mode, data, owner } => {
            mkfile(dest_root, path, *mode, data, owner.as_ref()).with_context(|| format!("mkfile {path}"))
        }
        FileAction::Rm { path, allow_not_found, allow_wildcard } => {
            rm(dest_root, path, *allow_not_found, *allow_wildcard).with_context(|| format!("rm {path}"))
        }
    }
}

fn rel_path(path: &str) -> PathBuf {
    PathBuf::from(clean_path(&format!("/{path}")).trim_start_matches('/'))
}

fn owner_ids(root: &Path, owner: Option<&Owner>) -> Result<Option<Ids>> {
    owner.map(|owner| resolve_owner(root, owner)).transpose()
}

fn set_owner(path: &Path, ids: Option<Ids>) -> Result<()> {
    if let Some(ids) = ids {
        lchown(path, Some(ids.uid), Some(ids.gid))
            .map_err(|e| crate::layer::unmapped_owner(e, ids.uid, ids.gid))
            .with_context(|| format!("chown {}:{} {}", ids.uid, ids.gid, path.display()))?;
    }
    Ok(())
}

fn mkdir(root: &Path, path: &str, mode: u32, make_parents: bool, owner: Option<&Owner>) -> Result<()> {
    let ids = owner_ids(root, owner)?;
    let rel = rel_path(path);
    if make_parents {
        mkdir_all(root, &rel, mode & 0o7777, ids)?;
        return Ok(());
    }
    let host = root.join(resolve_in_root(root, &rel, true)?);
    match fs::create_dir(&host) {
        Ok(()) => {}
        // BuildKit: an existing path is not an error.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("creating /{}", display_rel(root, &host))),
    }
    fs::set_permissions(&host, fs::Permissions::from_mode(mode & 0o7777))?;
    set_owner(&host, ids)
}

fn mkfile(root: &Path, path: &str, mode: u32, data: &[u8], owner: Option<&Owner>) -> Result<()> {
    let ids = owner_ids(root, owner)?;
    let rel = rel_path(path);
    if rel.as_os_str().is_empty() {
        bail!("cannot write a file at /");
    }
    let host = root.join(resolve_in_root(root, &rel, true)?);
    if fs::symlink_metadata(&host).is_ok_and(|m| m.is_dir()) {
        bail!("/{} is a directory", display_rel(root, &host));
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&host)
        .with_context(|| format!("creating /{}", display_rel(root, &host)))?;
    file.write_all(data).with_context(|| format!("writing /{}", display_rel(root, &host)))?;
    fs::set_permissions(&host, fs::Permissions::from_mode(mode & 0o7777))?;
    set_owner(&host, ids)
}

fn rm(root: &Path, path: &str, allow_not_found: bool, allow_wildcard: bool) -> Result<()> {
    if allow_wildcard && contains_wildcards(path) {
        let matches = SourceFs::new(root, None).resolve_source(path, true, false)?;
        if matches.is_empty() && !allow_not_found {
            bail!("{path}: no such file or directory");
        }
        for matched in matches {
            remove(root, &matched.requested, allow_not_found)?;
        }
        return Ok(());
    }
    remove(root, &rel_path(path), allow_not_found)
}

/// Removes `rel` (recursively for a directory); a final symlink is removed, not
/// followed.
fn remove(root: &Path, rel: &Path, allow_not_found: bool) -> Result<()> {
    let Some(name) = rel.file_name() else { bail!("refusing to remove /") };
    let parent = resolve_in_root(root, rel.parent().unwrap_or(Path::new("")), true)?;
    let host = root.join(parent).join(name);
    let meta = match fs::symlink_metadata(&host) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound && allow_not_found => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("failed to stat /{}", rel.display())),
    };
    let result = if meta.is_dir() { fs::remove_dir_all(&host) } else { fs::remove_file(&host) };
    result.with_context(|| format!("removing /{}", display_rel(root, &host)))
}
