//! The build context: a local directory seen through `.dockerignore`, hashed lazily.

use crate::ignore::Matcher;
use anyhow::Result;
use solver::ContentDigest;
use solver::ir::CopyAction;
use std::path::{Path, PathBuf};

pub struct Context {
    root: PathBuf,
    matcher: Matcher,
}

impl Context {
    /// A context rooted at `root`, excluding what `exclude` (dockerignore patterns) matches.
    pub fn new(root: &Path, exclude: &[String]) -> Result<Self> {
        Ok(Context { root: root.to_path_buf(), matcher: Matcher::new(exclude)? })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a context-relative path is excluded by `.dockerignore`.
    pub fn is_excluded(&self, rel: &str) -> bool {
        self.matcher.matches(rel)
    }

    /// Digest of exactly the files `copy` selects: path, type, mode, uid/gid, symlink
    /// target and bytes, never mtime.
    pub fn digest_selection(&self, copy: &CopyAction) -> Result<ContentDigest> {
        let _ = copy;
        anyhow::bail!("context hashing not built yet")
    }
}
