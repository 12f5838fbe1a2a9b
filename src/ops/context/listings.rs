//! What the digest of a selection walked, kept for the copy of the same selection
//! that follows in the same build, so that a large context is walked (and every file
//! stat'ed) once per build rather than twice.
//!
//! The copy then writes exactly the paths the cache key was computed over, with the
//! metadata the key saw; file bytes are read when they are copied, as before. Only the
//! last digest's listings are kept, and a copy takes (removes) the one it uses, so a
//! build holds at most one selection's listing beyond what it would anyway.

use super::tree::{CopyFilter, Entry, Selected, SourceFs};
use anyhow::Result;
use solver::ir::CopyAction;
use std::path::PathBuf;
use std::sync::Mutex;

/// One selected path's walk, and what it depends on besides the context.
struct Listing {
    host: PathBuf,
    rel: PathBuf,
    include: Vec<String>,
    exclude: Vec<String>,
    entries: Vec<Entry>,
}

#[derive(Default)]
pub(super) struct Listings(Mutex<Vec<Listing>>);

impl Listings {
    /// Walks what `copy` selects under each of `tops`, in order.
    pub fn walk(fs: &SourceFs<'_>, tops: &[Selected], filter: &CopyFilter) -> Result<Vec<Vec<Entry>>> {
        tops.iter().map(|top| fs.collect(top, filter)).collect()
    }

    /// Keeps the walks of `tops` (by `copy`'s patterns) for the copy, in place of the
    /// previous digest's.
    pub fn keep(&self, copy: &CopyAction, tops: Vec<Selected>, walks: Vec<Vec<Entry>>) {
        let kept = tops
            .into_iter()
            .zip(walks)
            .map(|(top, entries)| Listing {
                host: top.host,
                rel: top.rel,
                include: copy.include.clone(),
                exclude: copy.exclude.clone(),
                entries,
            })
            .collect();
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = kept;
    }

    /// The kept walk of `top` for a copy with `copy`'s patterns, if there is one.
    pub fn take(&self, copy: &CopyAction, top: &Selected) -> Option<Vec<Entry>> {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let at = kept.iter().position(|l| {
            l.host == top.host && l.rel == top.rel && l.include == copy.include && l.exclude == copy.exclude
        })?;
        Some(kept.swap_remove(at).entries)
    }
}
