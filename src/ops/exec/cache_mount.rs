//! `RUN --mount=type=cache`: directories kept in the store under `cache-mounts/`,
//! shared by every build and stage that names the same id, never part of a layer.
//!
//! A cache is keyed by its id (and, with `from=`, by what seeds it, as BuildKit keys it
//! by the seeding ref too). Each key has instances `<key>`, `<key>-1`, ... Every user
//! of an instance holds a shared `flock` on `<instance>.use` for the whole step:
//! - `shared` (the default) uses instance 0 whoever else does;
//! - `locked` also holds `<instance>.lock` exclusively, so two such steps take turns;
//! - `private` takes the first instance nobody uses (one exclusive try on `.use`,
//!   then kept shared), creating a new one if all are busy.
//!
//! A new instance is made in the store's `tmp/` (seeded from `from`/`source`, given
//! `mode`/`uid`/`gid`) and renamed into place, so a half-made cache is never seen.

use super::super::copy::{CopySource, apply_copy};
use super::super::{BuildWorker, Output};
use anyhow::{Context as _, Result, bail};
use solver::CancelToken;
use solver::ir::{CacheSharing, CopyAction};
use std::fs::{File, TryLockError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A cache mount as the step asks for it.
pub struct CacheMount<'a> {
    pub id: &'a str,
    pub sharing: CacheSharing,
    /// The filesystem to seed a new cache from, and the path in it.
    pub from: Option<&'a Output>,
    pub source: &'a str,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// A cache directory in use; dropping it releases the locks.
pub struct Lease {
    dir: PathBuf,
    _locks: Vec<File>,
}

impl Lease {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Picks (and if needed creates) the directory for `mount`, waiting for its lock when
/// it is `locked` (giving up if the build is cancelled meanwhile).
pub fn acquire(worker: &BuildWorker<'_>, cancel: &CancelToken, mount: &CacheMount<'_>) -> Result<Lease> {
    let base = worker.store.root().join("cache-mounts");
    std::fs::create_dir_all(&base).with_context(|| format!("creating {}", base.display()))?;
    let lease = lock_instance(&base, &cache_key(mount), mount.sharing, cancel)?;
    if !lease.dir.is_dir() {
        create(worker, mount, &lease.dir)?;
    }
    // Its last use, for `builder prune` to drop the least recently used first.
    let _ = filetime::set_file_mtime(&lease.dir, filetime::FileTime::now());
    Ok(lease)
}

/// Picks the instance of cache `key` under `base` that `sharing` allows, and takes its
/// locks; the directory itself may not exist yet.
fn lock_instance(base: &Path, key: &str, sharing: CacheSharing, cancel: &CancelToken) -> Result<Lease> {
    let instance = |n: usize| if n == 0 { base.join(key) } else { base.join(format!("{key}-{n}")) };
    let lock_file = |dir: &Path, ext: &str| -> Result<File> {
        let path = dir.with_extension(ext);
        File::options().create(true).append(true).open(&path).with_context(|| format!("opening {}", path.display()))
    };
    let mut locks = Vec::new();
    let dir = match sharing {
        CacheSharing::Shared | CacheSharing::Locked => {
            let dir = instance(0);
            if sharing == CacheSharing::Locked {
                let exclusive = lock_file(&dir, "lock")?;
                wait_for_lock(&exclusive, cancel)?;
                locks.push(exclusive);
            }
            let in_use = lock_file(&dir, "use")?;
            in_use.lock_shared()?;
            locks.push(in_use);
            dir
        }
        CacheSharing::Private => {
            let mut n = 0;
            loop {
                let dir = instance(n);
                let in_use = lock_file(&dir, "use")?;
                match in_use.try_lock() {
                    Ok(()) => {
                        // Others may share it from now on; only `private` looks for
                        // a free one.
                        in_use.lock_shared()?;
                        locks.push(in_use);
                        break dir;
                    }
                    Err(TryLockError::WouldBlock) => n += 1,
                    Err(TryLockError::Error(e)) => return Err(e.into()),
                }
            }
        }
    };
    Ok(Lease { dir, _locks: locks })
}

fn wait_for_lock(file: &File, cancel: &CancelToken) -> Result<()> {
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if cancel.is_cancelled() => bail!("cancelled"),
            Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(50)),
            Err(TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

/// The name of a cache's first instance: its id and, with `from=`, what seeds it.
fn cache_key(mount: &CacheMount<'_>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"cache-mount\0");
    h.update(mount.id.as_bytes());
    if let Some(from) = mount.from {
        h.update(b"\0from\0");
        match from {
            Output::Layers(layers) => {
                let diff_ids: Vec<_> = layers.iter().map(|l| l.diff_id.clone()).collect();
                let top = crate::image::manifest::chain_ids(&diff_ids).pop();
                h.update(top.as_ref().map(|d| d.as_str()).unwrap_or("scratch").as_bytes());
            }
            Output::Context(context) => {
                h.update(b"context:");
                h.update(context.root().as_os_str().as_encoded_bytes());
            }
        }
        h.update(b"\0");
        h.update(mount.source.as_bytes());
    }
    h.finalize().to_hex()[..32].to_string()
}

/// Makes `dir`: seeded, given its mode and owner, then renamed into place (losing a
/// race to another builder is fine: theirs is as good).
fn create(worker: &BuildWorker<'_>, mount: &CacheMount<'_>, dir: &Path) -> Result<()> {
    let temp = worker.store.temp_dir("cache-mount")?;
    let new = temp.path().join("dir");
    std::fs::create_dir(&new)?;
    if let Some(from) = mount.from {
        seed(worker, from, mount.source, &new).with_context(|| format!("seeding from {:?}", mount.source))?;
    }
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(mount.mode.unwrap_or(0o755)))?;
    std::os::unix::fs::chown(&new, Some(mount.uid.unwrap_or(0)), Some(mount.gid.unwrap_or(0)))?;
    match std::fs::rename(&new, dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating cache directory {}", dir.display())),
    }
}

/// Copies the contents of `source` in `from` into `dest`.
fn seed(worker: &BuildWorker<'_>, from: &Output, source: &str, dest: &Path) -> Result<()> {
    let source = if source.is_empty() { "/".to_string() } else { format!("/{}", source.trim_start_matches('/')) };
    let action = CopyAction::new(0, vec![source], "/");
    match from {
        Output::Context(context) => apply_copy(&action, &CopySource::Context(context), dest),
        Output::Layers(layers) => {
            let lowers = crate::layer::ensure_snapshots(worker.store, layers)?;
            let view = executor::Rootfs { lowerdirs: lowers.into_iter().rev().collect(), upper: None, readonly: true };
            executor::with_rootfs_mounted(&[view], |paths| apply_copy(&action, &CopySource::Root(&paths[0]), dest))?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(lease: &Lease) -> String {
        lease.dir().file_name().unwrap().to_string_lossy().into_owned()
    }

    #[test]
    fn shared_users_share_and_private_ones_get_a_free_instance() {
        let base = tempfile::tempdir().unwrap();
        let cancel = CancelToken::default();
        let lock = |sharing| lock_instance(base.path(), "k", sharing, &cancel).unwrap();
        let a = lock(CacheSharing::Shared);
        let b = lock(CacheSharing::Shared);
        assert_eq!((name(&a), name(&b)), ("k".into(), "k".into()));
        let p1 = lock(CacheSharing::Private);
        let p2 = lock(CacheSharing::Private);
        assert_eq!((name(&p1), name(&p2)), ("k-1".into(), "k-2".into()));
        drop((a, b, p2));
        // Free again: the first instance, then the freed `k-2`.
        assert_eq!(name(&lock(CacheSharing::Private)), "k");
        let k = lock(CacheSharing::Private);
        assert_eq!(name(&lock(CacheSharing::Private)), "k-2");
        drop((k, p1));
    }

    #[test]
    fn locked_waits_for_the_holder_and_gives_up_when_cancelled() {
        let base = tempfile::tempdir().unwrap();
        let cancel = CancelToken::default();
        let held = lock_instance(base.path(), "k", CacheSharing::Locked, &cancel).unwrap();
        // A shared user does not wait for a locked one.
        drop(lock_instance(base.path(), "k", CacheSharing::Shared, &cancel).unwrap());
        let waiter = std::thread::scope(|s| {
            let t = s.spawn(|| lock_instance(base.path(), "k", CacheSharing::Locked, &cancel).map(|l| name(&l)));
            std::thread::sleep(Duration::from_millis(200));
            assert!(!t.is_finished(), "a second locked user must wait");
            drop(held);
            t.join().unwrap()
        });
        assert_eq!(waiter.unwrap(), "k");

        let _held = lock_instance(base.path(), "k", CacheSharing::Locked, &cancel).unwrap();
        cancel.cancel();
        let err = lock_instance(base.path(), "k", CacheSharing::Locked, &cancel).err().unwrap();
        assert_eq!(err.to_string(), "cancelled");
    }
}
