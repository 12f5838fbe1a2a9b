//! `RUN --mount=type=cache` directories in an exported cache (`--cache-to
//! ...,mounts=true`): [`export_mounts`] tars each instance-0 directory into a store
//! blob, [`restore_mount`] unpacks such a blob into a new cache directory, so a
//! package manager's cache follows a team from runner to runner.
//!
//! The tar is deterministic (the layer tar writer, mtimes kept, plus a `./` entry
//! for the directory's own mode and owner with mtime 0, since every use of a cache
//! touches that mtime), so an unchanged cache, or a restored one exported again, is
//! the same blob and uploads nothing. A `<key>.export` file beside the directory
//! remembers the blob with a fingerprint of the tree's stat data, so an unchanged
//! large cache is not read again.
//!
//! The keys live here too ([`cache_key`], [`cache_mount_keys`]): `ops` names the
//! directories with them and the exporter finds them with them.

use super::format::ExportedMount;
use crate::layer::compress::{Compressor, decompress};
use crate::layer::tar_writer::{self, TarOptions};
use crate::layer::unpack::{self, UnpackOptions};
use anyhow::{Context as _, Result, bail};
use image_spec::{Compression, LayerInfo};
use serde::{Deserialize, Serialize};
use solver::Graph;
use solver::ir::{MountKind, Op};
use std::collections::BTreeMap;
use std::fs::{File, TryLockError};
use std::io::{BufReader, Write as _};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};
use store::Store;
use store::{HashReader, HashWriter};

/// How long an export waits for the steps using a cache (in this or another build)
/// to finish before it leaves that cache out.
const WAIT_FOR_USERS: Duration = Duration::from_secs(5 * 60);

/// A file whose ctime is this close to the export might change again within the same
/// timestamp tick; the export is then not remembered.
const RACY_WINDOW: Duration = Duration::from_secs(1);

/// Bumped when the tar or the fingerprint changes, so that old memos are ignored.
const MEMO_VERSION: &str = "cache-mount-export-v1";

/// The name of a cache's first instance under `cache-mounts/`: blake3 of its id and,
/// for a cache seeded with `from=`, of `seed` (what seeds it, as `ops` encodes it).
pub fn cache_key(id: &str, seed: Option<&[u8]>) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"cache-mount\0");
    h.update(id.as_bytes());
    if let Some(seed) = seed {
        h.update(b"\0from\0");
        h.update(seed);
    }
    h.finalize().to_hex()[..32].to_string()
}

/// Cache key → id of every cache mount without `from=` in the graph's exec ops. Their
/// keys depend on the id alone, so they are known before anything runs: a build whose
/// steps all come from the cache still exports them.
pub fn cache_mount_keys(graph: &Graph) -> BTreeMap<String, String> {
    let mut keys = BTreeMap::new();
    for (_, vertex) in graph.iter() {
        let Op::Exec(exec) = &vertex.op else { continue };
        for mount in &exec.mounts {
            if let MountKind::Cache { id, from: None, .. } = &mount.kind {
                keys.insert(cache_key(id, None), id.clone());
            }
        }
    }
    keys
}

/// Tars the instance-0 directory of each cache in `keys` (cache key → id) that exists
/// in `store`, compressed with `compression`, into a store blob. Each is read while
/// no step uses it: the export waits (a few minutes at most) for the steps that do.
/// A cache that cannot be exported is left out with a warning. The result is in key
/// order; `id` is the cache key and `name` the id.
pub fn export_mounts(
    store: &Store,
    keys: &BTreeMap<String, String>,
    compression: Compression,
) -> Result<Vec<ExportedMount>> {
    export_mounts_waiting(store, keys, compression, WAIT_FOR_USERS)
}

fn export_mounts_waiting(
    store: &Store,
    keys: &BTreeMap<String, String>,
    compression: Compression,
    wait: Duration,
) -> Result<Vec<ExportedMount>> {
    let base = store.root().join("cache-mounts");
    let mut out = Vec::new();
    for (key, name) in keys {
        let dir = base.join(key);
        if !dir.is_dir() {
            continue;
        }
        match export_one(store, &dir, compression, Instant::now() + wait) {
            Ok(blob) => out.push(ExportedMount { id: key.clone(), name: name.clone(), blob }),
            Err(e) => tracing::warn!("not exporting cache mount {name:?}: {e:#}"),
        }
    }
    Ok(out)
}

fn export_one(store: &Store, dir: &Path, compression: Compression, deadline: Instant) -> Result<LayerInfo> {
    let _locks = lock_for_export(dir, deadline)?;
    // The directory may have been pruned while we waited.
    if !dir.is_dir() {
        bail!("{} is gone", dir.display());
    }
    let memo_path = dir.with_extension("export");
    let (fingerprint, racy) = fingerprint(dir, compression)?;
    if let Some(memo) = read_memo(&memo_path)
        && memo.fingerprint == fingerprint
        && store.has_blob(&memo.blob.digest)
    {
        return Ok(memo.blob);
    }
    let blob = write_blob(store, dir, compression)?;
    if !racy {
        let memo = Memo { fingerprint, blob: blob.clone() };
        if let Err(e) = write_memo(store, &memo_path, &memo) {
            tracing::debug!("remembering the export of {}: {e:#}", dir.display());
        }
    }
    Ok(blob)
}

/// Takes what every kind of user of the cache takes, exclusively: `.lock` (held by
/// `sharing=locked` steps) and `.use` (held shared by every step), polling so that
/// a busy cache is given up at `deadline` rather than waited for forever.
fn lock_for_export(dir: &Path, deadline: Instant) -> Result<Vec<File>> {
    let mut locks = Vec::new();
    for ext in ["lock", "use"] {
        let path = dir.with_extension(ext);
        let file = File::options()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() >= deadline => {
                    bail!("still in use by a build step")
                }
                Err(TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(50)),
                Err(TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
            }
        }
        locks.push(file);
    }
    Ok(locks)
}

/// Streams the tar of `dir` (its own `./` entry first) through a sha256 (the diff id)
/// and the compressor into a new store blob.
fn write_blob(store: &Store, dir: &Path, compression: Compression) -> Result<LayerInfo> {
    let blob = store.blob_writer()?;
    let compressor = Compressor::new(compression, blob).context("starting compression")?;
    let mut hashing = HashWriter::new(compressor);
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    hashing.write_all(root_header(&meta).as_bytes()).context("writing tar")?;
    let options = TarOptions { overlay: false, mtime_clamp: None };
    let hashing =
        tar_writer::write_tar(dir, hashing, &options).with_context(|| format!("archiving {}", dir.display()))?;
    let (compressor, diff_id, _) = hashing.finish();
    let blob = compressor.finish().context("finishing compression")?;
    let (digest, size) = blob.commit(None)?;
    Ok(LayerInfo { digest, diff_id, size, media_type: compression.media_type().to_string() })
}

/// The `./` entry: the directory's mode and owner, which the unpacker gives the
/// directory it unpacks into. Its mtime is 0 because each use of a cache sets it.
fn root_header(meta: &std::fs::Metadata) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.as_old_mut().name[..2].copy_from_slice(b"./");
    h.set_mode(meta.mode() & 0o7777);
    // Ids beyond ustar's octal field are written base-256, which tar readers take.
    h.set_uid(meta.uid().into());
    h.set_gid(meta.gid().into());
    h.set_mtime(0);
    h.set_size(0);
    h.set_cksum();
    h
}

/// Unpacks the blob of an exported cache mount into `dir` (an empty directory nobody
/// else uses), checking its diff id. The blob is foreign data: it goes through the
/// layer unpacker, which keeps every entry inside `dir`, and device nodes, which no
/// cache needs, are dropped. `dir` takes the mode and (as root) the owner the
/// exported directory had.
pub fn restore_mount(store: &Store, blob: &LayerInfo, dir: &Path) -> Result<()> {
    let file = store.open_blob(&blob.digest).with_context(|| format!("cache mount blob {}", blob.digest))?;
    let reader = decompress(BufReader::new(file)).with_context(|| format!("cache mount blob {}", blob.digest))?;
    let mut hashing = HashReader::new(reader);
    unpack::unpack(&mut hashing, dir, UnpackOptions { overlay: false, follow_symlinks: false })
        .with_context(|| format!("unpacking cache mount blob {}", blob.digest))?;
    let (found, _) = hashing.finish().with_context(|| format!("reading cache mount blob {}", blob.digest))?;
    if found != blob.diff_id {
        bail!("cache mount blob {}: its content has diff id {found}, expected {}", blob.digest, blob.diff_id);
    }
    remove_devices(dir)
}

/// A cache is bind-mounted into steps as it is: a device node from elsewhere has no
/// business there.
fn remove_devices(dir: &Path) -> Result<()> {
    for item in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false) {
        let item = item.with_context(|| format!("walking {}", dir.display()))?;
        let kind = item.file_type();
        if kind.is_char_device() || kind.is_block_device() {
            tracing::warn!("dropping device node {} from an imported cache mount", item.path().display());
            std::fs::remove_file(item.path()).with_context(|| format!("removing {}", item.path().display()))?;
        }
    }
    Ok(())
}

/// What the last export of a cache directory wrote, and the state it wrote it from.
#[derive(Serialize, Deserialize)]
struct Memo {
    fingerprint: String,
    blob: LayerInfo,
}

fn read_memo(path: &Path) -> Option<Memo> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

fn write_memo(store: &Store, path: &Path, memo: &Memo) -> Result<()> {
    // A memo: losing it costs a re-tar of the cache mount.
    Ok(store.write_file(path, "mount-memo", &serde_json::to_vec(memo)?, store::Durability::Renamed)?)
}

/// A hash of the stat data of everything in `dir` (and of the compression): any
/// change to a file's content, metadata or xattrs moves its ctime. `dir`'s own times
/// are left out (each use sets them). Also says whether an entry changed so recently
/// that a change in the same clock tick could go unseen, when no memo should be kept.
fn fingerprint(dir: &Path, compression: Compression) -> Result<(String, bool)> {
    let recent = SystemTime::now() - RACY_WINDOW;
    let mut racy = false;
    let mut h = blake3::Hasher::new();
    h.update(MEMO_VERSION.as_bytes());
    h.update(compression.media_type().as_bytes());
    let root = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    for n in [root.mode(), root.uid(), root.gid()] {
        h.update(&n.to_le_bytes());
    }
    for item in walkdir::WalkDir::new(dir).min_depth(1).follow_links(false).sort_by_file_name() {
        let item = item.with_context(|| format!("walking {}", dir.display()))?;
        let meta = item.metadata().with_context(|| format!("reading {}", item.path().display()))?;
        let rel = item.path().strip_prefix(dir).expect("walk stays under its root");
        h.update(rel.as_os_str().as_encoded_bytes());
        h.update(b"\0");
        let stat = [
            u64::from(meta.mode()),
            u64::from(meta.uid()),
            u64::from(meta.gid()),
            meta.size(),
            meta.ino(),
            meta.nlink(),
            meta.rdev(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ];
        for n in stat {
            h.update(&n.to_le_bytes());
        }
        let changed = SystemTime::UNIX_EPOCH + Duration::new(meta.ctime().max(0) as u64, meta.ctime_nsec() as u32);
        racy |= changed >= recent;
    }
    Ok((h.finalize().to_hex().to_string(), racy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_spec::Digest;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use store::testing::test_store;

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// A cache directory with a bit of everything; `key` → `id`.
    fn make_cache(store: &Store, id: &str) -> (BTreeMap<String, String>, PathBuf) {
        let key = cache_key(id, None);
        let dir = store.root().join("cache-mounts").join(&key);
        std::fs::create_dir_all(dir.join("sub/deeper")).unwrap();
        std::fs::write(dir.join("a.txt"), "alpha").unwrap();
        std::fs::write(dir.join("sub/run.sh"), "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(dir.join("sub/run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::set_permissions(dir.join("sub/deeper"), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink("../a.txt", dir.join("sub/link")).unwrap();
        std::fs::hard_link(dir.join("a.txt"), dir.join("sub/hard")).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        let t = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        filetime::set_file_mtime(dir.join("a.txt"), t).unwrap();
        (BTreeMap::from([(key, id.to_string())]), dir)
    }

    fn export(store: &Store, keys: &BTreeMap<String, String>) -> Vec<ExportedMount> {
        export_mounts_waiting(store, keys, Compression::Gzip, Duration::from_millis(200)).unwrap()
    }

    #[test]
    fn keys_are_those_cache_mount_directories_always_had() {
        let old = blake3::hash(b"cache-mount\0npm").to_hex()[..32].to_string();
        assert_eq!(cache_key("npm", None), old);
        assert_ne!(cache_key("npm", Some(b"sha256:x\0/src")), old);
    }

    #[test]
    fn keys_of_a_graph_are_its_cache_mounts_without_from() {
        use solver::ir::{CacheSharing, ExecOp, Mount, NetworkMode, SourceOp};
        use solver::{Graph, Vertex};
        let cache = |id: &str, from| Mount {
            target: format!("/{id}"),
            kind: MountKind::Cache {
                id: id.to_string(),
                sharing: CacheSharing::Shared,
                from,
                source: String::new(),
                mode: None,
                uid: None,
                gid: None,
                readonly: false,
            },
        };
        let mut graph = Graph::new();
        let root = graph.add(Vertex::new(Op::Source(SourceOp::Scratch), vec![], "scratch"));
        let run = |mounts| ExecOp { network: NetworkMode::Host, mounts, ..ExecOp::new(vec!["true".into()]) };
        let ops =
            [run(vec![cache("apt", None), cache("seeded", Some(0))]), run(vec![cache("apt", None), cache("go", None)])];
        for op in ops {
            graph.add(Vertex::new(Op::Exec(op), vec![root], "run"));
        }
        let keys = cache_mount_keys(&graph);
        let expected: BTreeMap<_, _> =
            ["apt", "go"].into_iter().map(|id| (cache_key(id, None), id.to_string())).collect();
        assert_eq!(keys, expected);
    }

    #[test]
    fn an_unchanged_cache_exports_the_same_bytes() {
        let (_d, store) = test_store();
        let (keys, dir) = make_cache(&store, "npm");
        let first = export(&store, &keys);
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].id.as_str(), first[0].name.as_str()), (keys.keys().next().unwrap().as_str(), "npm"));
        // Each use of a cache touches its directory's mtime; the blob does not change.
        filetime::set_file_mtime(&dir, filetime::FileTime::now()).unwrap();
        std::fs::remove_file(dir.with_extension("export")).ok();
        assert_eq!(export(&store, &keys), first);
        // Without the store's copy of the blob, the memo is not trusted.
        std::fs::remove_file(store.blob_path(&first[0].blob.digest)).unwrap();
        assert_eq!(export(&store, &keys), first);
        assert!(store.has_blob(&first[0].blob.digest));

        std::fs::write(dir.join("sub/new"), "x").unwrap();
        let changed = export(&store, &keys);
        assert_ne!(changed[0].blob.digest, first[0].blob.digest);
    }

    #[test]
    fn an_unchanged_cache_is_not_read_again() {
        let (_d, store) = test_store();
        let (keys, dir) = make_cache(&store, "npm");
        let memo_path = dir.with_extension("export");
        export(&store, &keys);
        assert!(!memo_path.exists(), "files changed just now: nothing is remembered");
        // Past the window in which a change could hide in the same timestamp tick.
        std::thread::sleep(RACY_WINDOW + Duration::from_millis(100));
        let first = export(&store, &keys);
        let memo = read_memo(&memo_path).expect("the export is remembered");
        assert_eq!(memo.blob, first[0].blob);

        // The memo answers for an unchanged tree (a planted blob shows it)...
        let planted = LayerInfo { digest: store.write_blob_bytes(b"planted").unwrap(), ..memo.blob.clone() };
        write_memo(&store, &memo_path, &Memo { fingerprint: memo.fingerprint.clone(), blob: planted.clone() }).unwrap();
        assert_eq!(export(&store, &keys)[0].blob, planted);
        // ...but not for a changed one, and a damaged memo is ignored.
        std::fs::set_permissions(dir.join("a.txt"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(export(&store, &keys)[0].blob, planted);
        std::fs::write(&memo_path, b"{not json").unwrap();
        assert_eq!(export(&store, &keys).len(), 1);
    }

    #[test]
    fn missing_and_busy_caches_are_left_out() {
        let (_d, store) = test_store();
        let (mut keys, dir) = make_cache(&store, "npm");
        keys.insert(cache_key("never-used", None), "never-used".into());
        assert_eq!(export(&store, &keys).len(), 1);
        let busy = File::options().create(true).append(true).open(dir.with_extension("use")).unwrap();
        busy.lock_shared().unwrap();
        assert_eq!(export(&store, &keys), vec![]);
        drop(busy);
        assert_eq!(export(&store, &keys).len(), 1);
    }

    #[test]
    fn restore_reproduces_the_cache_and_exports_the_same_bytes() {
        let (_d, store) = test_store();
        let (keys, dir) = make_cache(&store, "npm");
        let exported = export(&store, &keys).pop().unwrap();

        let (_d2, other) = test_store();
        let bytes = store.read_blob(&exported.blob.digest).unwrap();
        other.write_blob(&mut &bytes[..], Some(&exported.blob.digest)).unwrap();
        let restored = other.root().join("cache-mounts").join(&exported.id);
        std::fs::create_dir_all(&restored).unwrap();
        restore_mount(&other, &exported.blob, &restored).unwrap();

        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(std::fs::read_to_string(restored.join("a.txt")).unwrap(), "alpha");
        assert_eq!(std::fs::read_to_string(restored.join("sub/hard")).unwrap(), "alpha");
        assert_eq!(
            std::fs::metadata(restored.join("sub/hard")).unwrap().ino(),
            std::fs::metadata(restored.join("a.txt")).unwrap().ino()
        );
        assert_eq!(std::fs::read_link(restored.join("sub/link")).unwrap(), Path::new("../a.txt"));
        assert_eq!(mode(&restored.join("sub/run.sh")), 0o750);
        assert_eq!(mode(&restored.join("sub/deeper")), 0o700);
        assert_eq!(mode(&restored), 0o770);
        assert_eq!(std::fs::metadata(restored.join("a.txt")).unwrap().mtime(), 1_600_000_000);
        if is_root() {
            let meta = std::fs::metadata(&dir).unwrap();
            let back = std::fs::metadata(&restored).unwrap();
            assert_eq!((back.uid(), back.gid()), (meta.uid(), meta.gid()));
        }
        assert_eq!(export(&other, &keys), vec![exported], "restored, then exported: the same blob");
    }

    /// A tar of one entry, its name written raw (`append_data` would refuse `..`).
    fn tar_of(name: &[u8], kind: tar::EntryType, data: &[u8]) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        if kind == tar::EntryType::Block {
            h.set_device_major(8).unwrap();
            h.set_device_minor(0).unwrap();
        }
        h.set_cksum();
        let mut b = tar::Builder::new(Vec::new());
        b.append(&h, data).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn hostile_or_broken_blobs_are_errors_and_stay_inside() {
        let (_d, store) = test_store();
        let blob_of = |bytes: &[u8], diff_id: Option<Digest>| LayerInfo {
            digest: store.write_blob_bytes(bytes).unwrap(),
            diff_id: diff_id.unwrap_or_else(|| Digest::of(bytes)),
            size: bytes.len() as u64,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        };
        let good = tar_of(b"fine", tar::EntryType::Regular, b"fine");
        let cases = [
            ("garbage", blob_of(b"\x1f\x8b not really gzip", None)),
            ("escape", blob_of(&tar_of(b"../escaped", tar::EntryType::Regular, b"evil"), None)),
            ("wrong diff id", blob_of(&good, Some(Digest::of(b"other")))),
            ("missing", LayerInfo { digest: Digest::of(b"absent"), ..blob_of(&good, None) }),
        ];
        for (what, blob) in cases {
            let parent = tempfile::tempdir().unwrap();
            let dir = parent.path().join("dir");
            std::fs::create_dir(&dir).unwrap();
            assert!(restore_mount(&store, &blob, &dir).is_err(), "{what}");
            assert!(!parent.path().join("escaped").exists(), "{what}");
        }

        // The unpacker makes device nodes only as root; a cache keeps none.
        if is_root() {
            let mut devices = tar_of(b"disk", tar::EntryType::Block, b"");
            devices.truncate(512);
            devices.extend(good);
            let dir = tempfile::tempdir().unwrap();
            restore_mount(&store, &blob_of(&devices, None), dir.path()).unwrap();
            assert!(!dir.path().join("disk").exists() && dir.path().join("fine").is_file());
        }
    }
}
