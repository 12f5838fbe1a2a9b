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
//! A new first instance whose key is in `BuildWorker::mount_seeds` (`--cache-from`)
//! starts from that exported copy instead (`cache::mounts`). Every key used is noted
//! in `BuildWorker::used_cache_mounts`, for `--cache-to ...,mounts=true`.

use super::super::copy::{CopySource, apply_copy};
use super::super::{BuildWorker, Output};
use crate::cache::mounts;
use anyhow::{Context as _, Result, bail};
use image_spec::LayerInfo;
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
    let key = cache_key(mount);
    worker.used_cache_mounts.lock().unwrap().insert(key.clone(), mount.id.to_string());
    let lease = lock_instance(&base, &key, mount.sharing, cancel)?;
    // Held by this process's store lease from now on: a prune beside the build leaves it.
    if let Some(name) = lease.dir.file_name() {
        worker.store.lease_hold(&name.to_string_lossy())?;
    }
    if !lease.dir.is_dir() {
        // Only the first instance starts from an imported cache: it is the one that
        // is exported, and `private` ones are extra copies for concurrent steps.
        let seed = if lease.dir == base.join(&key) { worker.options.mount_seeds.get(&key) } else { None };
        create(worker, mount, seed, &lease.dir)?;
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
    let seed = mount.from.map(|from| {
        let mut seed = Vec::new();
        match from {
            Output::Layers(layers, _) => {
                let diff_ids: Vec<_> = layers.iter().map(|l| l.diff_id.clone()).collect();
                let top = image_spec::chain_ids(&diff_ids).pop();
                seed.extend_from_slice(top.as_ref().map(|d| d.as_str()).unwrap_or("scratch").as_bytes());
            }
            Output::Context(context) => {
                seed.extend_from_slice(b"context:");
                seed.extend_from_slice(context.root().as_os_str().as_encoded_bytes());
            }
        }
        seed.push(0);
        seed.extend_from_slice(mount.source.as_bytes());
        seed
    });
    mounts::cache_key(mount.id, seed.as_deref())
}

/// Makes `dir`: restored from `imported` (an exported cache) or else seeded, given
/// its mode and owner, then renamed into place (losing a race to another builder is
/// fine: theirs is as good).
///
/// A restored directory keeps the mode and owner it was exported with, as a cache
/// kept in this store would; `mode=`, `uid=` and `gid=` given on the mount still win.
/// A restore that fails is a warning: the step gets an empty cache.
fn create(worker: &BuildWorker<'_>, mount: &CacheMount<'_>, imported: Option<&LayerInfo>, dir: &Path) -> Result<()> {
    let temp = worker.store.temp_dir("cache-mount")?;
    let new = temp.path().join("dir");
    std::fs::create_dir(&new)?;
    let restored = match imported {
        Some(blob) => restore(worker, mount, blob, &new)?,
        None => false,
    };
    if !restored && let Some(from) = mount.from {
        seed(worker, from, mount.source, &new).with_context(|| format!("seeding from {:?}", mount.source))?;
    }
    let explicit = |value: Option<u32>, default: u32| if restored { value } else { Some(value.unwrap_or(default)) };
    if let Some(mode) = explicit(mount.mode, 0o755) {
        std::fs::set_permissions(&new, std::fs::Permissions::from_mode(mode))?;
    }
    let (uid, gid) = (explicit(mount.uid, 0), explicit(mount.gid, 0));
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::chown(&new, uid, gid)?;
    }
    match std::fs::rename(&new, dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("creating cache directory {}", dir.display())),
    }
}

/// Unpacks an imported cache into `dest` (empty). When that fails, says why, empties
/// `dest` again and returns false.
fn restore(worker: &BuildWorker<'_>, mount: &CacheMount<'_>, blob: &LayerInfo, dest: &Path) -> Result<bool> {
    let Err(e) = mounts::restore_mount(worker.store, blob, dest) else { return Ok(true) };
    tracing::warn!("cache mount {:?}: not using the imported cache: {e:#}", mount.id);
    store::remove_tree(dest).with_context(|| format!("clearing {}", dest.display()))?;
    std::fs::create_dir(dest)?;
    Ok(false)
}

/// Copies the contents of `source` in `from` into `dest`.
fn seed(worker: &BuildWorker<'_>, from: &Output, source: &str, dest: &Path) -> Result<()> {
    let source = if source.is_empty() { "/".to_string() } else { format!("/{}", source.trim_start_matches('/')) };
    let action = CopyAction::new(0, vec![source], "/");
    match from {
        Output::Context(context) => apply_copy(&action, &CopySource::Context(context), dest),
        Output::Layers(layers, _) => {
            let lowers = crate::layer::ensure_snapshots(worker.store, layers)?;
            let view = executor::Rootfs { lowerdirs: lowers.into_iter().rev().collect(), upper: None, readonly: true };
            executor::with_rootfs_mounted(&[view], |paths| apply_copy(&action, &CopySource::Root(&paths[0]), dest))?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::source::ImageResolver;
    use registry::RegistryOptions;
    use std::collections::BTreeMap;
    use std::os::unix::fs::MetadataExt;
    use store::Store;

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

    /// `acquire` gives a new cache its owner, which takes root.
    fn skip_unless_root(test: &str) -> bool {
        let root = rustix::process::geteuid().is_root();
        if !root {
            eprintln!("skipping {test}: needs root to chown cache directories");
        }
        !root
    }

    fn mount(id: &str, sharing: CacheSharing) -> CacheMount<'_> {
        CacheMount { id, sharing, from: None, source: "", mode: None, uid: None, gid: None }
    }

    /// A store whose `npm` cache was exported (with `mode`), and a fresh store with
    /// that blob, ready to be given as a seed.
    fn exported_npm(mode: u32) -> (tempfile::TempDir, Store, crate::cache::format::ExportedMount) {
        let dir = tempfile::tempdir().unwrap();
        let from = Store::open(&dir.path().join("from")).unwrap();
        let key = mounts::cache_key("npm", None);
        let cache = from.root().join("cache-mounts").join(&key);
        std::fs::create_dir_all(cache.join("pkgs")).unwrap();
        std::fs::write(cache.join("pkgs/left-pad.tgz"), "pad").unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::chown(&cache, Some(1234), Some(5678)).unwrap();
        let keys = BTreeMap::from([(key, "npm".to_string())]);
        let exported = mounts::export_mounts(&from, &keys, image_spec::Compression::Zstd).unwrap().pop().unwrap();
        let to = Store::open(&dir.path().join("to")).unwrap();
        let bytes = from.read_blob(&exported.blob.digest).unwrap();
        to.write_blob(&mut &bytes[..], Some(&exported.blob.digest)).unwrap();
        (dir, to, exported)
    }

    fn with_worker<T>(
        store: &Store,
        seeds: &[&crate::cache::format::ExportedMount],
        f: impl FnOnce(&BuildWorker<'_>) -> T,
    ) -> T {
        let platform = image_spec::host_platform();
        let images =
            ImageResolver::new(store, false, platform, RegistryOptions::default(), &solver::progress::NullProgress);
        let mount_seeds = seeds.iter().map(|m| (m.id.clone(), m.blob.clone())).collect();
        let worker = BuildWorker::new(store, &images, crate::ops::WorkerOptions { mount_seeds, ..Default::default() });
        f(&worker)
    }

    #[test]
    fn an_imported_cache_becomes_the_first_instance_and_not_private_ones() {
        if skip_unless_root("an_imported_cache_becomes_the_first_instance_and_not_private_ones") {
            return;
        }
        let (_d, store, exported) = exported_npm(0o750);
        let cancel = CancelToken::default();
        with_worker(&store, &[&exported], |worker| {
            let first = acquire(worker, &cancel, &mount("npm", CacheSharing::Shared)).unwrap();
            assert_eq!(name(&first), exported.id);
            assert_eq!(std::fs::read_to_string(first.dir().join("pkgs/left-pad.tgz")).unwrap(), "pad");
            // The directory as it was exported: mode and owner.
            let meta = std::fs::metadata(first.dir()).unwrap();
            assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o750, 1234, 5678));

            let private = acquire(worker, &cancel, &mount("npm", CacheSharing::Private)).unwrap();
            assert_eq!(name(&private), format!("{}-1", exported.id));
            assert_eq!(std::fs::read_dir(private.dir()).unwrap().count(), 0, "a private instance starts empty");
            let used = worker.used_cache_mounts.lock().unwrap().clone();
            assert_eq!(used, BTreeMap::from([(exported.id.clone(), "npm".to_string())]));
        });
    }

    #[test]
    fn explicit_mode_and_owner_win_over_the_imported_ones() {
        if skip_unless_root("explicit_mode_and_owner_win_over_the_imported_ones") {
            return;
        }
        let (_d, store, exported) = exported_npm(0o750);
        let cancel = CancelToken::default();
        with_worker(&store, &[&exported], |worker| {
            let asked = CacheMount { mode: Some(0o700), uid: Some(42), ..mount("npm", CacheSharing::Shared) };
            let lease = acquire(worker, &cancel, &asked).unwrap();
            let meta = std::fs::metadata(lease.dir()).unwrap();
            assert_eq!((meta.mode() & 0o7777, meta.uid(), meta.gid()), (0o700, 42, 5678));
            assert!(lease.dir().join("pkgs/left-pad.tgz").is_file());
        });
    }

    #[test]
    fn an_existing_cache_is_not_replaced_by_an_imported_one() {
        if skip_unless_root("an_existing_cache_is_not_replaced_by_an_imported_one") {
            return;
        }
        let (_d, store, exported) = exported_npm(0o755);
        let cancel = CancelToken::default();
        let local = store.root().join("cache-mounts").join(&exported.id);
        std::fs::create_dir_all(&local).unwrap();
        std::fs::write(local.join("mine"), "local").unwrap();
        with_worker(&store, &[&exported], |worker| {
            let lease = acquire(worker, &cancel, &mount("npm", CacheSharing::Shared)).unwrap();
            assert!(lease.dir().join("mine").is_file());
            assert!(!lease.dir().join("pkgs").exists());
        });
    }

    #[test]
    fn a_broken_import_gives_an_empty_cache() {
        if skip_unless_root("a_broken_import_gives_an_empty_cache") {
            return;
        }
        let (_d, store, mut exported) = exported_npm(0o700);
        let cancel = CancelToken::default();
        // Content that does not match its diff id, then a blob the store cannot get.
        exported.blob.diff_id = image_spec::Digest::of(b"something else");
        let mut missing = exported.clone();
        missing.blob.digest = image_spec::Digest::of(b"nowhere");
        for seed in [exported, missing] {
            std::fs::remove_dir_all(store.root().join("cache-mounts")).ok();
            with_worker(&store, &[&seed], |worker| {
                let lease = acquire(worker, &cancel, &mount("npm", CacheSharing::Shared)).unwrap();
                assert_eq!(std::fs::read_dir(lease.dir()).unwrap().count(), 0);
                let meta = std::fs::metadata(lease.dir()).unwrap();
                assert_eq!((meta.mode() & 0o7777, meta.uid()), (0o755, 0), "the defaults of a new cache");
            });
        }
    }
}
