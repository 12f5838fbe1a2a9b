//! Whether what a copy writes meets what the parent already has under the
//! destination in a way only the overlay handles: a directory merging into one
//! below, a file over a directory or a directory over a file (an error there). A file
//! or symlink over a file or symlink is not such a meeting: through an overlay the old
//! one is removed and the new one written, and the upperdir holds the new one alone,
//! as written directly.
//!
//! Only the names the copy writes at its targets are looked at (the source's
//! top-level entries, listed without a stat each): below a name the parent does not
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
use std::path::Path;

/// What the merged view has at the copy's destination.
pub enum DestView {
    Absent,
    Dir(MergedDir),
    /// A file or device (a symlink is never written through directly).
    File,
}

/// The first name (destination-relative) at which the copy meets the parent's
/// files, or `None` when it writes only into places the parent leaves empty or over
/// its files. `dest_is_dir`: the destination ends in `/` (or is `.`).
pub fn first_collision(
    copy: &CopyAction,
    context: &Context,
    dest: &DestView,
    dest_is_dir: bool,
) -> Result<Option<OsString>> {
    let tops = tops(copy, context)?;
    let dir = match dest {
        DestView::Absent => return Ok(None),
        // A directory through a file or over one is an error the overlay path
        // reports; a file over a file is written as through it.
        DestView::File => {
            let through = dest_is_dir || tops.iter().any(|top| top.meta.is_dir());
            return Ok(through.then(OsString::new));
        }
        DestView::Dir(dir) => dir,
    };
    let names = Names::new(copy, context)?;
    // Only names the parent's directory has can meet anything: one listing of each of
    // its layers rather than a lookup per source entry (a flat context may hold
    // thousands).
    let parent_names = dir.names().context("listing the destination in the parent")?;
    for top in &tops {
        let top_is_dir = top.meta.is_dir();
        if !(top_is_dir && copy.dir_contents_only) {
            if meets(dir, &top.name, top_is_dir)? {
                return Ok(Some(top.name.clone()));
            }
            continue;
        }
        let listing = fs::read_dir(&top.host).with_context(|| format!("reading {}", top.host.display()))?;
        for entry in listing {
            let entry = entry.with_context(|| format!("reading {}", top.host.display()))?;
            let name = entry.file_name();
            if !parent_names.contains(&name) {
                continue;
            }
            let is_dir = entry.file_type().with_context(|| format!("stat {}", entry.path().display()))?.is_dir();
            if meets(dir, &name, is_dir)? && names.may_write(&top.rel.join(&name), &name, is_dir) {
                return Ok(Some(name));
            }
        }
    }
    Ok(None)
}

/// The source entries the copy writes at its targets (its sources resolved in the
/// context, wildcards expanded, filtered by `--include`/`--exclude`).
fn tops(copy: &CopyAction, context: &Context) -> Result<Vec<Selected>> {
    let fs = SourceFs::new(context.root(), Some(context.matcher()));
    let filter = CopyFilter::new(&copy.include, &copy.exclude)?;
    let mut tops = Vec::new();
    for source in &copy.sources {
        let resolved = fs.resolve_source(source, copy.allow_wildcard, copy.follow_symlinks)?;
        tops.extend(resolved.into_iter().filter(|top| SourceFs::passes(top, &filter)));
    }
    Ok(tops)
}

/// Whether an ADD has an archive to unpack among its sources: only a source file
/// itself is unpacked (never a file inside a source directory), so an ADD of
/// directories and other files copies as COPY does.
pub fn unpacks_an_archive(copy: &CopyAction, context: &Context) -> Result<bool> {
    if !copy.unpack_archives {
        return Ok(false);
    }
    for top in tops(copy, context)? {
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
