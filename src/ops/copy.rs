//! COPY/ADD semantics: wildcards, directory contents, ownership, modes, parents.
//!
//! Follows BuildKit's file backend (`docopy` and fsutil's copier): sources resolve
//! inside their root like a chroot, a directory source copies its contents, a file
//! goes inside a destination that ends in `/` or is a directory, missing parents are
//! created 0755, copied entries keep their mode and times, and their owner becomes
//! `--chown`'s, root's (context files) or stays the source's (stages and images).
//!
//! Everything here runs on the caller's thread: the destination may be an overlay
//! mounted only in that thread's mount namespace, so no thread pool may touch it.
//! The exception is a copy into a plain directory that reuses a previous result
//! ([`apply_copy_reusing`]), whose files the thread pool writes once it has checked
//! that it sees the same directory.

mod chmod;
mod fileop;
mod owner;
mod reuse;
#[cfg(test)]
mod tests;
mod unpack;
mod write;

pub use fileop::apply_file_action;
pub(crate) use owner::resolve_owner_in;
pub use reuse::Reuse;
pub(crate) use unpack::is_archive;

use super::context::Context;
use super::context::tree::{CopyFilter, Selected, SourceFs, resolve_in_root};
use anyhow::{Context as _, Result, bail};
use chmod::ModeSpec;
use owner::{Ids, resolve_owner};
use solver::ir::CopyAction;
use std::fs;
use std::path::{Path, PathBuf};
use write::{Writer, mkdir_all};

/// Where a copy reads from: the build context (filtered by `.dockerignore`) or the
/// root of another filesystem (a stage, an image).
pub enum CopySource<'a> {
    Context(&'a Context),
    Root(&'a Path),
}

const MULTI_SOURCE_ERROR: &str =
    "When using COPY with more than one source file, the destination must be a directory and end with a /";

/// Applies `action` reading from `source` and writing into the filesystem mounted at
/// `dest_root` (owners are resolved in `dest_root`'s /etc/passwd and /etc/group).
pub fn apply_copy(action: &CopyAction, source: &CopySource<'_>, dest_root: &Path) -> Result<()> {
    copy_with(action, source, dest_root, None).map(drop)
}

/// [`apply_copy`] into a plain directory, files the previous result of the same copy
/// has unchanged linked from it rather than copied (see [`Reuse`]); returns `reuse`
/// with what this copy wrote, for the next.
pub fn apply_copy_reusing(
    action: &CopyAction,
    source: &CopySource<'_>,
    dest_root: &Path,
    reuse: Reuse,
) -> Result<Reuse> {
    let reuse = copy_with(action, source, dest_root, Some(reuse))?;
    Ok(reuse.expect("handed to the writer and back"))
}

fn copy_with(
    action: &CopyAction,
    source: &CopySource<'_>,
    dest_root: &Path,
    reuse: Option<Reuse>,
) -> Result<Option<Reuse>> {
    let (fs, reset_owner) = match source {
        CopySource::Context(context) => (SourceFs::new(context.root(), Some(context.matcher())), true),
        CopySource::Root(root) => (SourceFs::new(root, None), false),
    };
    let filter = CopyFilter::new(&action.include, &action.exclude)?;
    let owner = match &action.owner {
        Some(owner) => Some(resolve_owner(dest_root, owner).context("invalid --chown")?),
        None => None,
    };
    let mode = action.mode.as_deref().map(ModeSpec::parse).transpose().context("invalid --chmod")?;
    let dest = Dest::parse(&action.dest);
    if action.sources.len() > 1 && !dest.is_dir {
        bail!(MULTI_SOURCE_ERROR);
    }
    if !action.create_dest_path {
        let parent = resolve_in_root(dest_root, dest.rel.parent().unwrap_or(Path::new("")), true)?;
        fs::metadata(dest_root.join(&parent)).with_context(|| format!("failed to stat {}", action.dest))?;
    }
    let ensure = if dest.is_dir { dest.rel.as_path() } else { dest.rel.parent().unwrap_or(Path::new("")) };
    mkdir_all(dest_root, ensure, 0o755, owner)?;

    let mut copier = Copier {
        fs: &fs,
        context: match source {
            CopySource::Context(context) => Some(context),
            CopySource::Root(_) => None,
        },
        filter: &filter,
        action,
        dest_root,
        dest: &dest,
        owner,
        writer: Writer::new(owner, reset_owner, mode.as_ref()),
    };
    // A copy that reuses a previous result writes into a plain directory (a new
    // layer's), which the thread pool may write too if it sees the same directory.
    copier.writer.parallel = reuse.is_some() && write::pool_sees(dest_root);
    copier.writer.reuse = reuse;
    for source in &action.sources {
        let tops = fs.resolve_source(source, action.allow_wildcard, action.follow_symlinks)?;
        if tops.is_empty() {
            if action.allow_empty_wildcard {
                continue;
            }
            bail!("COPY failed: no source files were specified: {source} matched nothing");
        }
        let tops: Vec<Selected> = tops.into_iter().filter(|top| SourceFs::passes(top, &filter)).collect();
        if tops.len() > 1 && !dest.is_dir && !copier.dest_is_dir()? {
            bail!(MULTI_SOURCE_ERROR);
        }
        for top in &tops {
            copier.copy_top(top).with_context(|| format!("copying {}", top.requested.display()))?;
        }
    }
    let reuse = copier.writer.reuse.take();
    copier.writer.finish()?;
    Ok(reuse)
}

/// The destination as given: cleaned, relative to the root, and whether it names a
/// directory (`/` at the end, or `.`).
struct Dest {
    rel: PathBuf,
    is_dir: bool,
}

impl Dest {
    fn parse(dest: &str) -> Self {
        let cleaned = crate::ignore::clean_path(&format!("/{dest}"));
        let rel = PathBuf::from(cleaned.trim_start_matches('/'));
        let is_dir = dest.ends_with('/') || dest.ends_with("/.") || dest == "." || rel.as_os_str().is_empty();
        Dest { rel, is_dir }
    }
}

struct Copier<'a> {
    fs: &'a SourceFs<'a>,
    /// The build context the copy reads, whose last digest may have walked it already.
    context: Option<&'a Context>,
    filter: &'a CopyFilter,
    action: &'a CopyAction,
    dest_root: &'a Path,
    dest: &'a Dest,
    owner: Option<Ids>,
    writer: Writer<'a>,
}

impl Copier<'_> {
    /// The destination's host path, symlinks resolved inside the destination root.
    fn dest_host(&self) -> Result<PathBuf> {
        Ok(self.dest_root.join(resolve_in_root(self.dest_root, &self.dest.rel, true)?))
    }

    fn dest_is_dir(&self) -> Result<bool> {
        Ok(fs::metadata(self.dest_host()?).is_ok_and(|m| m.is_dir()))
    }

    fn copy_top(&mut self, top: &Selected) -> Result<()> {
        if self.action.unpack_archives && top.meta.is_file() && unpack::is_archive(&top.host)? {
            let dir = mkdir_all(self.dest_root, &self.dest.rel, 0o755, self.owner)?;
            return unpack::unpack(&top.host, &dir, self.owner);
        }
        if self.action.parents {
            return self.copy_with_parents(top);
        }
        let dest_host = self.dest_host()?;
        let dest_meta = fs::metadata(&dest_host).ok();
        let dest_is_dir = dest_meta.as_ref().is_some_and(|m| m.is_dir());
        let target = if top.meta.is_dir() && self.action.dir_contents_only {
            match &dest_meta {
                None => mkdir_all(self.dest_root, &self.dest.rel, 0o755, self.owner)?,
                Some(meta) if meta.is_dir() => dest_host,
                Some(_) => bail!("cannot copy to non-directory: {}", self.dest.rel.display()),
            }
        } else if dest_is_dir {
            dest_host.join(&top.name)
        } else {
            dest_host
        };
        self.copy_tree(top, &target)
    }

    /// `COPY --parents`: the source's path (or what follows its `/./` pivot) is kept
    /// under the destination directory; its parent directories are created with the
    /// source directories' metadata.
    fn copy_with_parents(&mut self, top: &Selected) -> Result<()> {
        let dest_dir = mkdir_all(self.dest_root, &self.dest.rel, 0o755, self.owner)?;
        let kept: Vec<_> = top.parents_rel.iter().collect();
        let base = top.requested.ancestors().nth(kept.len()).unwrap_or(Path::new("")).to_path_buf();
        let mut src = base;
        let mut dst = dest_dir;
        for part in kept.iter().take(kept.len().saturating_sub(1)) {
            src.push(part);
            dst.push(part);
            let rel = resolve_in_root(self.fs.root, &src, true)?;
            let host = self.fs.root.join(&rel);
            let meta = fs::symlink_metadata(&host).with_context(|| format!("stat {}", src.display()))?;
            let entry = super::context::tree::Entry { rel: PathBuf::new(), host, meta };
            self.writer.write(&entry, &dst, true)?;
        }
        if let Some(last) = kept.last() {
            dst.push(last);
        }
        self.copy_tree(top, &dst)
    }

    fn copy_tree(&mut self, top: &Selected, target: &Path) -> Result<()> {
        let kept = self.context.and_then(|context| context.take_listing(self.action, top));
        let entries = match kept {
            Some(entries) => entries,
            None => self.fs.collect(top, self.filter)?,
        };
        self.writer.write_tree(&entries, target)
    }
}
