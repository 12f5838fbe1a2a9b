//! COPY/ADD semantics: wildcards, directory contents, ownership, modes, parents.

use super::context::Context;
use anyhow::Result;
use solver::ir::CopyAction;
use std::path::Path;

/// Where a copy reads from: the build context (filtered by `.dockerignore`) or the
/// root of another filesystem (a stage, an image).
pub enum CopySource<'a> {
    Context(&'a Context),
    Root(&'a Path),
}

/// Applies `action` reading from `source` and writing into the filesystem mounted at
/// `dest_root` (owners are resolved in `dest_root`'s /etc/passwd and /etc/group).
pub fn apply_copy(action: &CopyAction, source: &CopySource<'_>, dest_root: &Path) -> Result<()> {
    let _ = (action, source, dest_root);
    anyhow::bail!("copy not built yet")
}
