//! The walk below a selected directory, in sorted pre-order. A build context's
//! subdirectories are walked by the thread pool: the context is a host directory
//! every thread sees, where a stage's root may be an overlay mounted in the calling
//! thread's mount namespace alone.

use super::{CopyFilter, Entry, SourceFs, slash_path, sorted_entries};
use anyhow::Result;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// An entry of a directory that is kept, and how to go below it.
struct Item {
    entry: Entry,
    below: Option<Below>,
}

struct Below {
    /// Its path relative to the source root (what `.dockerignore` matches).
    rel: PathBuf,
    /// Filtered out itself: kept only as the parent of something re-included below.
    only_as_parent: bool,
}

impl SourceFs<'_> {
    /// Appends what is visible and passes `filter` below `dir_host` (`dir_rel` from the
    /// source root, `dir_top_rel` from the selected path) to `out`.
    pub(super) fn walk_dir(
        &self,
        dir_host: &Path,
        dir_rel: &Path,
        dir_top_rel: &Path,
        filter: &CopyFilter,
        out: &mut Vec<Entry>,
    ) -> Result<()> {
        let mut items = Vec::new();
        for (name, meta) in sorted_entries(dir_host)? {
            let rel = dir_rel.join(&name);
            let top_rel = dir_top_rel.join(&name);
            // Pattern texts only where there are patterns: most contexts have none.
            let ignored = self.ignore.is_some() && self.ignored(&slash_path(&rel));
            let filtered = !filter.is_empty() && filter.excluded(&slash_path(&top_rel));
            let is_dir = meta.is_dir();
            let only_as_parent = ignored || filtered;
            if only_as_parent {
                let may_pass = is_dir
                    && (!ignored || self.ignore.is_some_and(|m| m.may_include_below(&slash_path(&rel))))
                    && (!filtered || filter.may_pass_below(&slash_path(&top_rel)));
                if !may_pass {
                    continue;
                }
            }
            let below = is_dir.then_some(Below { rel, only_as_parent });
            items.push(Item { entry: Entry { rel: top_rel, host: dir_host.join(&name), meta }, below });
        }
        let walk = |item: &Item| -> Result<Vec<Entry>> {
            let mut below = Vec::new();
            if let Some(b) = &item.below {
                self.walk_dir(&item.entry.host, &b.rel, &item.entry.rel, filter, &mut below)?;
            }
            Ok(below)
        };
        let dirs = items.iter().filter(|item| item.below.is_some()).count();
        let subtrees: Vec<Vec<Entry>> = if self.context && dirs > 1 {
            items.par_iter().map(walk).collect::<Result<_>>()?
        } else {
            items.iter().map(walk).collect::<Result<_>>()?
        };
        // Once: a large context's walk is one long list.
        out.reserve(items.len() + subtrees.iter().map(Vec::len).sum::<usize>());
        for (item, below) in items.into_iter().zip(subtrees) {
            if item.below.as_ref().is_some_and(|b| b.only_as_parent) && below.is_empty() {
                continue;
            }
            out.push(item.entry);
            out.extend(below);
        }
        Ok(())
    }
}
