//! The build context: a local directory seen through `.dockerignore`, hashed lazily.
//!
//! Nothing is copied up front. [`Context::digest_selection`] hashes exactly what one
//! COPY selects (its sources, wildcards expanded, directories walked, ignored and
//! `--exclude`d paths left out): per path its type, mode, owner, symlink target and
//! content, never its mtime. File contents are read in parallel and remembered in a
//! [`stat_cache`] keyed by stat identity; the walk is kept for the copy of the same
//! selection ([`listings`]).

mod listings;
mod stat_cache;
#[cfg(test)]
mod tests;
pub(crate) mod tree;

use crate::ignore::Matcher;
use anyhow::{Context as _, Result, bail};
use listings::Listings;
use rayon::prelude::*;
use solver::ir::CopyAction;
use solver::{ContentDigest, KeyHasher};
use stat_cache::StatCache;
pub(crate) use stat_cache::StatKey;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use tree::{CopyFilter, SourceFs, slash_path};

pub struct Context {
    root: PathBuf,
    matcher: Matcher,
    stat_cache: StatCache,
    /// The last digest's walks, for the copy that follows.
    listings: Listings,
    /// Files whose bytes were read (stat-cache misses), for tests and progress.
    files_read: AtomicU64,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("root", &self.root).finish_non_exhaustive()
    }
}

impl Context {
    /// A context rooted at `root`, excluding what `exclude` (dockerignore patterns)
    /// matches, with a stat cache that lives only as long as the context (tests).
    #[cfg(test)]
    pub fn new(root: &Path, exclude: &[String]) -> Result<Self> {
        Context::build(root, exclude, StatCache::in_memory())
    }

    /// Like [`Context::new`], with file digests remembered across processes in
    /// `cache_file` (written back when the context is dropped, or by
    /// [`Context::save_stat_cache`]).
    pub fn with_stat_cache(root: &Path, exclude: &[String], cache_file: PathBuf) -> Result<Self> {
        Context::build(root, exclude, StatCache::load(cache_file))
    }

    fn build(root: &Path, exclude: &[String], stat_cache: StatCache) -> Result<Self> {
        let matcher = Matcher::new(exclude).context("invalid .dockerignore")?;
        let meta = fs::metadata(root).with_context(|| format!("build context {}", root.display()))?;
        if !meta.is_dir() {
            bail!("build context {} is not a directory", root.display());
        }
        Ok(Context {
            root: root.to_path_buf(),
            matcher,
            stat_cache,
            listings: Listings::default(),
            files_read: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Whether a context-relative path is excluded by `.dockerignore`.
    #[expect(dead_code)]
    pub fn is_excluded(&self, rel: &str) -> bool {
        self.matcher.matches(rel)
    }

    /// Writes the stat cache back now rather than on drop.
    #[expect(dead_code)]
    pub fn save_stat_cache(&self) -> Result<()> {
        self.stat_cache.save()
    }

    #[cfg(test)]
    pub(crate) fn files_read(&self) -> u64 {
        self.files_read.load(Ordering::Relaxed)
    }

    /// Digest of exactly the files `copy` selects: path, type, mode, uid/gid, symlink
    /// target and bytes, never mtime.
    pub fn digest_selection(&self, copy: &CopyAction) -> Result<ContentDigest> {
        let fs = SourceFs::new(&self.root, Some(&self.matcher));
        let filter = CopyFilter::new(&copy.include, &copy.exclude)?;
        let mut hasher = KeyHasher::new("builder.context.selection");
        let mut all_tops = Vec::new();
        for source in &copy.sources {
            let tops = fs.resolve_source(source, copy.allow_wildcard, copy.follow_symlinks)?;
            if tops.is_empty() && !copy.allow_empty_wildcard {
                bail!("COPY failed: no source files were specified: {source} matched nothing in the build context");
            }
            hasher.str(source);
            let tops: Vec<_> = tops.into_iter().filter(|top| SourceFs::passes(top, &filter)).collect();
            hasher.u64(tops.len() as u64);
            for top in &tops {
                // Where each selected path lands depends on its name and resolved path.
                hasher.bytes(top.rel.as_os_str().as_bytes());
                hasher.bytes(top.name.as_bytes());
                hasher.bytes(top.parents_rel.as_os_str().as_bytes());
            }
            all_tops.extend(tops);
        }
        let walks = Listings::walk(&fs, &all_tops, &filter)?;
        let mut selected: Vec<(PathBuf, &Path, &Metadata)> = Vec::new();
        for (top, walk) in all_tops.iter().zip(&walks) {
            for entry in walk {
                let rel = if entry.rel.as_os_str().is_empty() { top.rel.clone() } else { top.rel.join(&entry.rel) };
                selected.push((rel, &entry.host, &entry.meta));
            }
        }
        selected.sort_by(|a, b| a.0.as_os_str().as_bytes().cmp(b.0.as_os_str().as_bytes()));
        selected.dedup_by(|a, b| a.0 == b.0);
        let digests: Vec<[u8; 32]> =
            selected.par_iter().map(|(_, host, meta)| self.entry_digest(host, meta)).collect::<Result<_>>()?;
        let mut entries = Vec::with_capacity(selected.len());
        for ((rel, _, _), digest) in selected.iter().zip(digests) {
            hasher.bytes(rel.as_os_str().as_bytes());
            hasher.bytes(&digest);
            entries.push((slash_path(rel), hex::encode(digest)));
        }
        drop(selected);
        self.listings.keep(copy, all_tops, walks);
        Ok(ContentDigest { digest: hasher.finish(), entries })
    }

    /// The walk of `top` the last [`Context::digest_selection`] made for `copy`, for
    /// the copy to write exactly what the key was computed over (see [`listings`]).
    pub(crate) fn take_listing(&self, copy: &CopyAction, top: &tree::Selected) -> Option<Vec<tree::Entry>> {
        self.listings.take(copy, top)
    }

    /// [`Context::entry_digest`] of a context path (a stat-cache hit after
    /// [`Context::digest_selection`] read it), for a COPY that takes unchanged files
    /// from its previous result.
    pub(crate) fn entry_digest_of(&self, host: &Path, meta: &Metadata) -> Result<[u8; 32]> {
        self.entry_digest(host, meta)
    }

    /// One path's digest: type, permission bits, owner, and its content (file bytes,
    /// link target or device number).
    fn entry_digest(&self, host: &Path, meta: &Metadata) -> Result<[u8; 32]> {
        let kind = meta.file_type();
        let mut h = blake3::Hasher::new();
        let tag: u8 = if kind.is_file() {
            b'f'
        } else if kind.is_dir() {
            b'd'
        } else if kind.is_symlink() {
            b'l'
        } else if kind.is_fifo() {
            b'p'
        } else if kind.is_char_device() {
            b'c'
        } else if kind.is_block_device() {
            b'b'
        } else {
            b's'
        };
        h.update(&[tag]);
        h.update(&(meta.mode() & 0o7777).to_le_bytes());
        // As builder sees them in its user namespace, also when a build runs outside.
        let (uid, gid) = crate::userns::owner_seen_inside(meta.uid(), meta.gid());
        h.update(&uid.to_le_bytes());
        h.update(&gid.to_le_bytes());
        if kind.is_file() {
            h.update(&self.file_digest(host, meta)?);
        } else if kind.is_symlink() {
            let target = fs::read_link(host).with_context(|| format!("reading link {}", host.display()))?;
            h.update(target.as_os_str().as_bytes());
        } else if kind.is_char_device() || kind.is_block_device() {
            h.update(&meta.rdev().to_le_bytes());
        }
        Ok(*h.finalize().as_bytes())
    }

    /// blake3 of a file's bytes, from the stat cache when its identity is unchanged.
    fn file_digest(&self, host: &Path, meta: &Metadata) -> Result<[u8; 32]> {
        let key = StatKey::of(meta);
        if let Some(digest) = self.stat_cache.get(&key) {
            return Ok(digest);
        }
        let file = fs::File::open(host).with_context(|| format!("opening {}", host.display()))?;
        self.files_read.fetch_add(1, Ordering::Relaxed);
        let mut h = blake3::Hasher::new();
        h.update_reader(&file).with_context(|| format!("reading {}", host.display()))?;
        let digest = *h.finalize().as_bytes();
        // A file that changed while being read must not be remembered under its old
        // identity.
        let after = file.metadata().with_context(|| format!("stat {}", host.display()))?;
        if StatKey::of(&after) == key {
            self.stat_cache.insert(key, digest);
        }
        Ok(digest)
    }
}
