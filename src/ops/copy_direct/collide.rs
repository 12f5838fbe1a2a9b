//! How what a copy writes meets what the parent already has under the destination.
//! A file or symlink over a file or symlink is written as through an overlay (the old
//! one removed, the new one written: the upperdir holds the new one alone). A
//! directory the copy writes into one the parent has is merged as overlayfs merges
//! it: the parent's directory is copied up first (`copy_up.rs`), then the copy writes
//! into it and applies the source's metadata, and the entries below meet the parent's
//! in turn. A file over a directory or a directory over a file (an error there), and a
//! directory the copy's patterns may leave partly out meeting one of the parent's,
//! are for the overlay path.
//!
//! Only names the parent's directory has are looked at (one listing of each of its
//! layers, the source listed without a stat each): below a name the parent does not
//! have, nothing can meet. A name `.dockerignore` or the copy's own filters leave out
//! counts unless a pattern could bring back something below it.

use super::merged::{Found, MergedDir};
use crate::ignore::Matcher;
use crate::ops::context::Context;
use crate::ops::context::tree::{CopyFilter, Selected, SourceFs, slash_path};
use crate::ops::copy::is_archive;
use anyhow::{Context as _, Result};
use solver::ir::CopyAction;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

/// What the merged view has at the copy's destination.
pub enum DestView {
    Absent,
    Dir(MergedDir),
    /// A file or device (a symlink is never written through directly).
    File,
}

/// How a copy meets what the parent already has under its destination.
pub enum Meeting {
    /// Only where the parent leaves room, over its files, or into its directories
    /// (merged): those, as (path under the root, merged directory) in pre-order, are
    /// copied up before the copy writes into them.
    Direct(Vec<(PathBuf, MergedDir)>),
    /// At this name (destination-relative), in a way only the overlay handles.
    Overlay(OsString),
}

/// How the copy meets the parent's files at its destination `dest` (at `dest_rel`
/// under the root). `dest_is_dir`: the destination ends in `/` (or is `.`).
pub fn meeting(
    copy: &CopyAction,
    context: &Context,
    tops: &[Selected],
    dest: &DestView,
    dest_is_dir: bool,
    dest_rel: &Path,
) -> Result<Meeting> {
    let dir = match dest {
        DestView::Absent => return Ok(Meeting::Direct(Vec::new())),
        // A directory through a file or over one is an error the overlay path
        // reports; a file over a file is written as through it.
        DestView::File => {
            let through = dest_is_dir || tops.iter().any(|top| top.meta.is_dir());
            return Ok(if through { Meeting::Overlay(OsString::new()) } else { Meeting::Direct(Vec::new()) });
        }
        DestView::Dir(dir) => dir,
    };
    let names = Names::new(copy, context)?;
    let mut merge =
        Merge { names: &names, filtered: !copy.include.is_empty() || !copy.exclude.is_empty(), dirs: Vec::new() };
    for top in tops {
        let top_is_dir = top.meta.is_dir();
        if !(top_is_dir && copy.dir_contents_only) {
            if meets(dir, &top.name, top_is_dir)? {
                return Ok(Meeting::Overlay(top.name.clone()));
            }
            continue;
        }
        if let Some(name) = merge.dir(&top.host, &top.rel, Path::new(""), dest_rel, dir)? {
            return Ok(Meeting::Overlay(name));
        }
    }
    Ok(Meeting::Direct(merge.dirs))
}

/// The walk of the source directories that merge into the parent's.
struct Merge<'a> {
    names: &'a Names<'a>,
    /// The copy has `--include`/`--exclude` patterns.
    filtered: bool,
    /// The parent's directories the copy merges into, pre-order.
    dirs: Vec<(PathBuf, MergedDir)>,
}

impl Merge<'_> {
    /// Meets the entries of the source directory `src` (`rel` in the context, `under`
    /// below the copied directory) with the parent's directory `dir` (at `dest` under
    /// the root). Only names the parent's directory has can meet anything: one
    /// listing of each of its layers rather than a lookup per source entry (a flat
    /// context may hold thousands). Returns the first name only the overlay handles.
    fn dir(&mut self, src: &Path, rel: &Path, under: &Path, dest: &Path, dir: &MergedDir) -> Result<Option<OsString>> {
        let parent_names = dir.names().with_context(|| format!("listing /{} in the parent", dest.display()))?;
        if parent_names.is_empty() {
            return Ok(None);
        }
        let listing = fs::read_dir(src).with_context(|| format!("reading {}", src.display()))?;
        for entry in listing {
            let entry = entry.with_context(|| format!("reading {}", src.display()))?;
            let name = entry.file_name();
            if !parent_names.contains(&name) {
                continue;
            }
            let is_dir = entry.file_type().with_context(|| format!("stat {}", entry.path().display()))?.is_dir();
            let (rel, under) = (rel.join(&name), under.join(&name));
            if !self.names.may_write(&rel, under.as_os_str(), is_dir) {
                continue;
            }
            let found = dir.child(&name).with_context(|| format!("looking up {} in the parent", under.display()))?;
            match found {
                Found::Absent => {}
                // Through an overlay the old one is removed and the new one written.
                Found::NonDir(_) if !is_dir => {}
                // A directory the copy writes (it applies the source's metadata to
                // it) meeting one of the parent's: overlayfs copies it up and merges.
                // One a pattern leaves partly out may not be written: the overlay
                // decides.
                Found::Dir(child) if is_dir && !self.filtered && !self.names.ignored(&rel) => {
                    let dest = dest.join(&name);
                    self.dirs.push((dest.clone(), child.clone()));
                    if let Some(name) = self.dir(&entry.path(), &rel, &under, &dest, &child)? {
                        return Ok(Some(name));
                    }
                }
                _ => return Ok(Some(under.into_os_string())),
            }
        }
        Ok(None)
    }
}

/// The source entries the copy writes at its targets (its sources resolved in the
/// context, wildcards expanded, filtered by `--include`/`--exclude`).
pub fn tops(copy: &CopyAction, context: &Context) -> Result<Vec<Selected>> {
    let fs = SourceFs::new(context.root(), Some(context.matcher()));
    let filter = CopyFilter::new(&copy.include, &copy.exclude)?;
    let mut tops = Vec::new();
    for source in &copy.sources {
        let resolved = fs.resolve_source(source, copy.allow_wildcard, copy.follow_symlinks)?;
        tops.extend(resolved.into_iter().filter(|top| SourceFs::passes(top, &filter)));
    }
    Ok(tops)
}

/// Whether an ADD has an archive to unpack among its sources (`tops`): only a source
/// file itself is unpacked (never a file inside a source directory), so an ADD of
/// directories and other files copies as COPY does.
pub fn unpacks_an_archive(copy: &CopyAction, tops: &[Selected]) -> Result<bool> {
    if !copy.unpack_archives {
        return Ok(false);
    }
    for top in tops {
        if top.meta.is_file() && is_archive(&top.host)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether an entry named `name` (a directory or not) written into `dir` meets
/// something only the overlay handles.
fn meets(dir: &MergedDir, name: &OsStr, is_dir: bool) -> Result<bool> {
    let found = dir.child(name).with_context(|| format!("looking up {} in the parent", name.to_string_lossy()))?;
    Ok(match found {
        Found::Absent => false,
        Found::NonDir(_) => is_dir,
        Found::Dir(_) => true,
    })
}

/// The patterns that decide whether an entry below a copied directory is written.
struct Names<'a> {
    context: &'a Context,
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

impl<'a> Names<'a> {
    fn new(copy: &CopyAction, context: &'a Context) -> Result<Self> {
        let build = |patterns: &[String]| -> Result<Option<Matcher>> {
            if patterns.is_empty() { Ok(None) } else { Matcher::new(patterns).map(Some) }
        };
        Ok(Names { context, include: build(&copy.include)?, exclude: build(&copy.exclude)? })
    }

    /// Whether `.dockerignore` leaves out `rel` (context-relative) itself.
    fn ignored(&self, rel: &Path) -> bool {
        self.context.matcher().matches(&slash_path(rel))
    }

    /// Whether the copy may write something at `rel` (context-relative; `name`
    /// relative to the copied directory): not left out, or a directory that a pattern
    /// could bring something below back into.
    fn may_write(&self, rel: &Path, name: &OsStr, is_dir: bool) -> bool {
        let (rel, name) = (slash_path(rel), slash_path(Path::new(name)));
        let ignored = self.context.matcher().matches(&rel);
        let excluded = self.exclude.as_ref().is_some_and(|m| m.matches(&name));
        let not_included = self.include.as_ref().is_some_and(|m| !m.matches(&name));
        if !ignored && !excluded && !not_included {
            return true;
        }
        is_dir
            && (!ignored || self.context.matcher().may_include_below(&rel))
            && (!excluded || self.exclude.as_ref().is_some_and(|m| m.may_include_below(&name)))
            && (!not_included || self.include.as_ref().is_some_and(|m| m.may_match_below(&name)))
    }
}
