//! The local store: content-addressed blobs, unpacked snapshots, image refs, volumes.
//!
//! [`Store`] owns the directory and everything in it: blobs (written through a
//! [`BlobWriter`] that hashes while it writes, verified, fsynced and renamed), the
//! snapshots of layer stacks (one owner: [`Store::ensure_snapshots`], unpacking
//! through a [`LayerUnpacker`]), image refs, the layer variant index, the store lock,
//! and GC ([`Store::gc`]), which asks a [`Holder`] what it holds besides the refs.
//! It knows the image formats (`image-spec`) but not tar, compression, the build
//! cache's records or registries: those are the caller's, behind the traits above.
//!
//! Layout under the root (see DESIGN.md): `blobs/sha256/<hex>`, `snapshots/<chainID>/`,
//! `refs.json`, `cache/`, `volumes/<name>/`, `containers/<id>/`, `tmp/`, `leases/`, `lock`.
//! Every write goes to a temp path on the same filesystem and is renamed into place,
//! so nothing half-written is ever visible under its final name.
//!
//! Temp entries are named `<token>-<prefix>-<random>`, the token that of an owner file
//! its process keeps locked (`owner.rs`); [`Store::open`] and prune remove those whose
//! owner is gone (a crashed or killed `builder`), never crossing a mount point.

mod atomic;
mod blobs;
mod error;
mod gc;
mod hash;
mod holders;
mod images;
mod index;
mod lease;
mod lock;
mod owner;
mod packed;
mod refs;
mod remote;
mod sizes;
mod snapshots;
pub mod testing;
mod variants;
mod writeback;

pub use atomic::{Durability, replace, replace_written};
pub use blobs::BlobWriter;
pub use error::{BoxError, Error, Result};
pub use gc::{DiskUsage, FsckReport, Gc, PruneOptions, PruneReport, Usage};
pub use hash::{HashReader, HashWriter};
pub use holders::{Hold, HoldKind, Holder};
pub use images::{ImageFormat, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE, parse_config, parse_manifest};
pub use index::IndexAnnotations;
pub use lock::{LockMode, LockWait, StoreLock, StoreLockKind};
pub use owner::{OUTPUT_TEMP_PREFIXES, OutputRecord, create_locked_temp, remove_stale_outputs};
pub use packed::PackedLayer;
pub use remote::BlobSource;
pub use sizes::tree_size;
pub use snapshots::LayerUnpacker;
pub use writeback::WritebackFile;

use error::io_at;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

pub struct Store {
    root: PathBuf,
    remote: remote::Remote,
    /// This process's lease, once taken (`lease.rs`).
    lease: std::sync::OnceLock<lease::Lease>,
    /// What to do when a lock must be waited for (`lock.rs`); the store prints nothing.
    on_lock_wait: std::sync::OnceLock<lock::WaitObserver>,
}

/// A directory under the store's `tmp/` that is removed when dropped unless kept.
pub struct TempDir {
    path: Option<PathBuf>,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("temp dir already taken")
    }

    /// Hands the directory over; it is no longer removed on drop.
    pub fn keep(mut self) -> PathBuf {
        self.path.take().expect("temp dir already taken")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(p) = self.path.take()
            && let Err(e) = remove_tree(&p)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("removing {}: {e}", p.display());
        }
    }
}

const LAYOUT: &[&str] = &["blobs/sha256", "snapshots", "tmp", "volumes", "containers", "cache"];

impl Store {
    /// `/var/lib/builder` as root, else `$XDG_DATA_HOME/builder` (by default
    /// `~/.local/share/builder`).
    pub fn default_root() -> PathBuf {
        if rustix::process::geteuid().is_root() {
            return PathBuf::from("/var/lib/builder");
        }
        let data = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
        let data = data.unwrap_or_else(|| {
            let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"));
            home.join(".local/share")
        });
        data.join("builder")
    }

    /// Opens (creating if needed) the store at `root`, and removes temp entries left
    /// behind by processes that no longer run.
    pub fn open(root: &Path) -> Result<Store> {
        for dir in LAYOUT {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(io_at("creating", &path))?;
        }
        let store = Store {
            root: root.to_path_buf(),
            remote: Default::default(),
            lease: Default::default(),
            on_lock_wait: Default::default(),
        };
        owner::open_store(&store.tmp());
        store.clean_stale_temps();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh directory under `tmp/`, on the store's filesystem.
    pub fn temp_dir(&self, prefix: &str) -> Result<TempDir> {
        let dir = tempfile::Builder::new()
            .prefix(&self.temp_prefix(prefix)?)
            .tempdir_in(self.tmp())
            .map_err(io_at("creating a temp dir in", self.tmp()))?;
        Ok(TempDir { path: Some(dir.keep()) })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        owner::close_store(&self.tmp());
    }
}

/// Best-effort fsync of a directory, so that a rename in it survives a crash.
fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// Removes a tree without crossing into other filesystems (a mount left behind must
/// not be emptied) and without being stopped by read-only directories.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    remove_tree_on(path, &meta, meta.dev())
}

fn remove_tree_on(path: &Path, meta: &std::fs::Metadata, dev: u64) -> io::Result<()> {
    if !meta.is_dir() {
        return std::fs::remove_file(path);
    }
    if meta.dev() != dev {
        return Err(io::Error::other(format!("{} is on another filesystem (a mount point?)", path.display())));
    }
    if meta.mode() & 0o700 != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(meta.mode() | 0o700))?;
    }
    let mut first_error = None;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let child = entry.path();
        let result = std::fs::symlink_metadata(&child).and_then(|m| remove_tree_on(&child, &m, dev));
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => std::fs::remove_dir(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_store;
    use image_spec::Digest;

    #[test]
    fn open_creates_the_layout() {
        let (_d, store) = test_store();
        for dir in LAYOUT {
            assert!(store.root().join(dir).is_dir(), "{dir}");
        }
    }

    #[test]
    fn temp_dir_is_removed_on_drop_unless_kept() {
        let (_d, store) = test_store();
        let t = store.temp_dir("x").unwrap();
        let p = t.path().to_path_buf();
        std::fs::create_dir(p.join("ro")).unwrap();
        std::fs::write(p.join("ro/f"), "x").unwrap();
        std::fs::set_permissions(p.join("ro"), std::fs::Permissions::from_mode(0o555)).unwrap();
        assert!(p.starts_with(store.root().join("tmp")));
        drop(t);
        assert!(!p.exists());
        let kept = store.temp_dir("y").unwrap().keep();
        assert!(kept.exists());
    }

    #[test]
    fn stale_temps_of_dead_processes_are_removed() {
        let (_d, store) = test_store();
        // pid 0 is never a running process we could see in /proc.
        let stale = store.tmp().join("0-exec-abc");
        std::fs::create_dir_all(stale.join("sub")).unwrap();
        let mine = store.temp_dir("live").unwrap();
        let foreign = store.tmp().join("not-a-temp");
        std::fs::create_dir(&foreign).unwrap();
        let store = Store::open(store.root()).unwrap();
        assert!(!stale.exists());
        assert!(mine.path().exists());
        assert!(foreign.exists());
        drop(store);
    }

    #[test]
    fn commit_snapshot_is_atomic_and_idempotent() {
        let (_d, store) = test_store();
        let id = Digest::of(b"layer");
        let a = store.temp_dir("snap").unwrap();
        std::fs::write(a.path().join("f"), "one").unwrap();
        let path = store.commit_snapshot(a.path().to_path_buf(), &id).unwrap();
        assert_eq!(std::fs::read_to_string(path.join("f")).unwrap(), "one");
        let b = store.temp_dir("snap").unwrap();
        std::fs::write(b.path().join("f"), "two").unwrap();
        let path2 = store.commit_snapshot(b.path().to_path_buf(), &id).unwrap();
        assert_eq!(path, path2);
        assert_eq!(std::fs::read_to_string(path.join("f")).unwrap(), "one");
        assert!(!b.path().exists());
        assert!(store.has_snapshot(&id));
    }
}
