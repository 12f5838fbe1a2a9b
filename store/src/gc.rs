//! What the store holds and why: `builder du`, `builder prune` (GC) and `builder fsck`.
//!
//! Content is held by refs (an image name holds its manifest, config, layer blobs and
//! the snapshots of its layer stack), by the holds of a [`Holder`] (a cache record's
//! result is a layer stack: its blobs and snapshots), or by nothing. A layer's
//! other-compression blobs (the variant index) are held by whoever holds its diffID.
//!
//! Prune runs beside builds and containers: it holds the store lock exclusively only
//! while it decides and removes (processes take it shared to register a lease, so
//! none starts meanwhile), and it spares what their leases (`lease.rs`) cover: images
//! held, and whatever changed or was used since the oldest open window. It releases
//! holds first, then removes what they held, so a `kill -9` at any point leaves
//! records that at worst miss; snapshots are renamed into `tmp/` before they are
//! emptied, so a half-removed one is never seen.

use crate::error::{Error, Result, chain, io_at};
use crate::holders::{Hold, HoldKind, Holder};
use crate::lease::LiveLeases;
use crate::sizes::{SizeMemo, disk_size, tree_size};
use crate::{LayerUnpacker, LockMode, Store, remove_tree};
use image_spec::{Digest, LayerInfo, chain_ids};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// `builder prune` options.
#[derive(Debug, Clone, Default)]
pub struct PruneOptions {
    /// Also drop every cache record (and cache mounts).
    pub all: bool,
    /// Drop least recently used cache records (then cache mounts) until the build data
    /// takes at most this many bytes.
    pub keep_storage: Option<u64>,
    /// Only drop what was last used (or made) longer ago than this.
    pub until: Option<Duration>,
}

#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    pub records: usize,
    pub snapshots: usize,
    pub blobs: usize,
    pub cache_mounts: usize,
    pub reclaimed: u64,
    /// Build data left (see [`DiskUsage::build_total`]).
    pub remaining: u64,
}

/// A count of things and the bytes they take on disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    pub count: usize,
    pub size: u64,
}

impl Usage {
    fn add(&mut self, size: u64) {
        self.count += 1;
        self.size += size;
    }
}

/// Who holds a piece of content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HeldBy {
    Refs,
    Cache,
    Nothing,
}

/// Content split by who holds it.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Held {
    pub refs: Usage,
    pub cache_only: Usage,
    pub unreferenced: Usage,
}

impl Held {
    fn add(&mut self, holder: HeldBy, size: u64) {
        match holder {
            HeldBy::Refs => self.refs.add(size),
            HeldBy::Cache => self.cache_only.add(size),
            HeldBy::Nothing => self.unreferenced.add(size),
        }
    }

    pub fn total(&self) -> Usage {
        Usage {
            count: self.refs.count + self.cache_only.count + self.unreferenced.count,
            size: self.refs.size + self.cache_only.size + self.unreferenced.size,
        }
    }
}

/// `builder du`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DiskUsage {
    pub blobs: Held,
    pub snapshots: Held,
    pub cache_records: Usage,
    pub cache_mounts: Usage,
    pub volumes: Usage,
    /// Scratch space of running (or killed) builds and containers.
    pub temp: Usage,
}

impl DiskUsage {
    /// What prune's `--keep-storage` bounds: blobs, snapshots, cache records and cache
    /// mounts (volumes are user data and never pruned).
    pub fn build_total(&self) -> u64 {
        self.blobs.total().size + self.snapshots.total().size + self.cache_records.size + self.cache_mounts.size
    }
}

/// `builder fsck`.
#[derive(Debug, Clone, Default)]
pub struct FsckReport {
    pub blobs: usize,
    pub refs: usize,
    pub snapshots: usize,
    pub snapshots_verified: usize,
    /// Damage: each names the digest or path.
    pub problems: Vec<String>,
    /// Harmless findings (stale cache records: misses).
    pub notes: Vec<String>,
}

struct Item {
    path: PathBuf,
    size: u64,
    mtime: SystemTime,
    /// When its inode last changed: made, renamed into place (a lease's window is
    /// compared with this, which no `utimensat` of an unpacker or a clamp can move).
    ctime: SystemTime,
}

/// What a ref or record holds.
#[derive(Default)]
struct Holdings {
    blobs: HashSet<Digest>,
    diff_ids: HashSet<Digest>,
    snapshots: HashSet<String>,
}

impl Holdings {
    fn add_stack(&mut self, layers: &[LayerInfo]) {
        self.blobs.extend(layers.iter().map(|l| l.digest.clone()));
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        self.diff_ids.extend(diff_ids.iter().cloned());
        self.snapshots.extend(chain_ids(&diff_ids).iter().map(|c| c.hex().to_string()));
    }
}

/// Everything in the store, with what holds what.
struct Inventory {
    blobs: BTreeMap<Digest, Item>,
    snapshots: BTreeMap<String, Item>,
    /// The holder's cache records.
    records: Vec<Hold>,
    /// The holder's cache mounts.
    mounts: Vec<Hold>,
    refs: Holdings,
    /// Problems met while following refs (for fsck).
    ref_problems: Vec<String>,
    ref_count: usize,
    /// Variant blobs by the diffID they hold.
    variants: Vec<(PathBuf, Option<LayerInfo>)>,
    /// The layer (top of its stack) each known snapshot holds, for fsck.
    snapshot_layers: HashMap<String, LayerInfo>,
    /// Packed layers (`packed.rs`): blobs whose record is the file and whose
    /// snapshot (hex, `None` when the record is unreadable) is held with them.
    packed: BTreeMap<Digest, (Item, Option<String>)>,
}

impl Inventory {
    /// The snapshots that the packed layers among `blobs` are made from.
    fn packed_snapshots<'a>(&'a self, blobs: impl Iterator<Item = &'a Digest>) -> Vec<String> {
        blobs.filter_map(|d| self.packed.get(d).and_then(|(_, s)| s.clone())).collect()
    }
}

fn mtime(meta: &std::fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}

fn ctime(meta: &std::fs::Metadata) -> SystemTime {
    let nanos = u32::try_from(meta.ctime_nsec()).unwrap_or(0);
    u64::try_from(meta.ctime()).map_or(SystemTime::UNIX_EPOCH, |s| SystemTime::UNIX_EPOCH + Duration::new(s, nanos))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<std::fs::DirEntry>> {
    let mut entries = match std::fs::read_dir(dir) {
        Ok(rd) => rd.collect::<std::io::Result<Vec<_>>>().map_err(io_at("listing", dir))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io_at("listing", dir)(e)),
    };
    entries.sort_by_key(|e| e.file_name());
    Ok(entries)
}

/// GC over a store and its holder: `builder du`, `builder prune`, `builder fsck`.
pub struct Gc<'a> {
    store: &'a Store,
    holder: &'a dyn Holder,
}

impl Store {
    /// GC of this store, asking `holder` what it holds besides the refs.
    pub fn gc<'a>(&'a self, holder: &'a dyn Holder) -> Gc<'a> {
        Gc { store: self, holder }
    }
}

impl Gc<'_> {
    fn inventory(&self, sizes: bool, leases: &LiveLeases) -> Result<Inventory> {
        let holds = self.holder.holds(self.store).map_err(|source| Error::Holds { source })?;
        let (records, mounts) = holds.into_iter().partition(|h| h.kind == HoldKind::CacheRecord);
        let mut inv = Inventory {
            blobs: BTreeMap::new(),
            snapshots: BTreeMap::new(),
            records,
            mounts,
            refs: Holdings::default(),
            ref_problems: Vec::new(),
            ref_count: 0,
            variants: self.store.layer_variants()?,
            snapshot_layers: HashMap::new(),
            packed: BTreeMap::new(),
        };
        for (digest, path, snapshot) in self.store.packed_records()? {
            let meta = std::fs::metadata(&path).map_err(io_at("reading", &path))?;
            let item = Item { path, size: disk_size(&meta), mtime: mtime(&meta), ctime: ctime(&meta) };
            inv.packed.insert(digest, (item, snapshot));
        }
        for entry in read_dir_sorted(&self.store.blobs_dir())? {
            let name = entry.file_name();
            let Ok(digest) = Digest::parse(&format!("sha256:{}", name.to_string_lossy())) else { continue };
            let meta = entry.metadata().map_err(io_at("reading", entry.path()))?;
            let item = Item { path: entry.path(), size: disk_size(&meta), mtime: mtime(&meta), ctime: ctime(&meta) };
            inv.blobs.insert(digest, item);
        }
        let mut memo = sizes.then(|| SizeMemo::load(self.store));
        for entry in read_dir_sorted(&self.store.root.join("snapshots"))? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let meta = entry.metadata().map_err(io_at("reading", entry.path()))?;
            let size = memo.as_mut().map_or(0, |m| m.size(&name, &entry.path(), ctime(&meta)));
            inv.snapshots.insert(name, Item { path: entry.path(), size, mtime: mtime(&meta), ctime: ctime(&meta) });
        }
        if let Some(memo) = memo {
            memo.save(self.store);
        }
        for record in inv.records.iter().filter(|r| !r.damaged) {
            if let Some(top) = record.layers.last() {
                let diff_ids: Vec<Digest> = record.layers.iter().map(|l| l.diff_id.clone()).collect();
                let chain = chain_ids(&diff_ids);
                inv.snapshot_layers.insert(chain.last().expect("one").hex().to_string(), top.clone());
            }
        }
        for (name, manifest) in self.store.refs()? {
            inv.ref_count += 1;
            if let Err(e) = self.store.hold_manifest(&manifest, &mut inv, 0) {
                inv.ref_problems.push(format!("image {name}: {}", chain(&e)));
            }
        }
        // Images that running processes hold count as refs.
        for manifest in &leases.images {
            if let Err(e) = self.store.hold_manifest(manifest, &mut inv, 0) {
                tracing::debug!("leased image {manifest}: {}", chain(&e));
            }
        }
        // A packed layer the refs hold holds the snapshot it is made from.
        let backing = inv.packed_snapshots(inv.refs.blobs.iter());
        inv.refs.snapshots.extend(backing);
        Ok(inv)
    }
}

impl Store {
    /// Adds what `digest` (a manifest or an index) holds to the refs' holdings.
    fn hold_manifest(&self, digest: &Digest, inv: &mut Inventory, depth: usize) -> Result<()> {
        inv.refs.blobs.insert(digest.clone());
        let in_manifest = |e: Error| Error::Manifest { digest: digest.clone(), source: Box::new(e) };
        let bytes = self.read_blob(digest).map_err(in_manifest)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|source| Error::Parse { what: format!("manifest {digest}"), source })?;
        if let Some(children) = value.get("manifests").and_then(|m| m.as_array()) {
            // An index: only the platforms that were pulled are in the store.
            for child in children {
                if let Some(d) = child.get("digest").and_then(|d| d.as_str()).and_then(|d| Digest::parse(d).ok())
                    && self.has_blob(&d)
                    && depth < 4
                {
                    self.hold_manifest(&d, inv, depth + 1)?;
                }
            }
            return Ok(());
        }
        let manifest = crate::parse_manifest(&bytes).map_err(in_manifest)?;
        inv.refs.blobs.insert(manifest.config.digest.clone());
        inv.refs.blobs.extend(manifest.layers.iter().map(|l| l.digest.clone()));
        let image = self.image_from_manifest(digest)?;
        for layer in &image.layers {
            if !self.has_blob(&layer.digest) {
                return Err(Error::MissingLayer { layer: layer.digest.clone(), manifest: digest.clone() });
            }
        }
        let diff_ids: Vec<Digest> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
        for (layer, chain_id) in image.layers.iter().zip(chain_ids(&diff_ids)) {
            inv.snapshot_layers.insert(chain_id.hex().to_string(), layer.clone());
        }
        inv.refs.add_stack(&image.layers);
        Ok(())
    }
}

impl Gc<'_> {
    /// `builder du`.
    pub fn disk_usage(&self) -> Result<DiskUsage> {
        let inv = self.inventory(true, &LiveLeases::default())?;
        let mut cache = Holdings::default();
        for r in inv.records.iter().filter(|r| r.is_live(self.store)) {
            cache.add_stack(&r.layers);
        }
        let backing = inv.packed_snapshots(cache.blobs.iter());
        cache.snapshots.extend(backing);
        let holders = BlobHolders::new(&inv, &cache);
        let mut usage = DiskUsage::default();
        for (digest, item) in inv.blobs.iter().chain(inv.packed.iter().map(|(d, (i, _))| (d, i))) {
            usage.blobs.add(holders.blob(digest), item.size);
        }
        for (name, item) in &inv.snapshots {
            let holder = if inv.refs.snapshots.contains(name) {
                HeldBy::Refs
            } else if cache.snapshots.contains(name) {
                HeldBy::Cache
            } else {
                HeldBy::Nothing
            };
            usage.snapshots.add(holder, item.size);
        }
        for r in &inv.records {
            usage.cache_records.add(r.size);
        }
        for m in &inv.mounts {
            usage.cache_mounts.add(m.size);
        }
        usage.volumes = dirs_usage(&self.store.root.join("volumes"))?;
        // `tmp/` holds partial blobs (files) as well as directories.
        let (tmp, containers) = (entries_usage(&self.store.tmp())?, dirs_usage(&self.store.root.join("containers"))?);
        usage.temp = Usage { count: tmp.count + containers.count, size: tmp.size + containers.size };
        Ok(usage)
    }

    /// `builder prune`: holds the store lock exclusively while it decides and removes,
    /// which waits only for processes registering their leases, never for running
    /// builds or containers: what their leases cover is spared.
    pub fn prune(&self, options: &PruneOptions) -> Result<PruneReport> {
        let _lock = self.store.lock(LockMode::Exclusive)?;
        // Temp entries of killed processes (and the output temp files they recorded).
        self.store.clean_stale_temps();
        let leases = self.store.live_leases()?;
        let inv = self.inventory(true, &leases)?;
        let now = SystemTime::now();
        let old = |t: SystemTime| options.until.is_none_or(|u| now.duration_since(t).is_ok_and(|age| age >= u));
        // Used (a record or mount) or made (a blob or snapshot) in a running process's
        // window: spared, whatever the options say.
        let old_enough = |t: SystemTime| old(t) && !leases.spares(t);
        let leased = |hold: &Hold| leases.holds.contains(&hold.id);

        // Records: dead ones (damaged, or their blobs gone) always go; with --all, all.
        let mut drop_record = vec![false; inv.records.len()];
        for (i, r) in inv.records.iter().enumerate() {
            drop_record[i] = !r.is_live(self.store) || (options.all && old_enough(r.last_used) && !leased(r));
        }
        // How many kept records hold each blob and snapshot.
        let mut counts: HashMap<ItemId, usize> = HashMap::new();
        let items_of: Vec<Vec<ItemId>> = inv.records.iter().map(|r| record_items(r, &inv)).collect();
        for (i, items) in items_of.iter().enumerate() {
            if !drop_record[i] {
                for item in items {
                    *counts.entry(item.clone()).or_default() += 1;
                }
            }
        }
        let held_by_refs = |id: &ItemId| match id {
            ItemId::Blob(d) => BlobHolders::ref_held(&inv, d),
            ItemId::Snapshot(s) => inv.refs.snapshots.contains(s),
        };
        // A blob's items: its file and its packed record (either or both).
        let items = |id: &ItemId| -> Vec<&Item> {
            match id {
                ItemId::Blob(d) => inv.blobs.get(d).into_iter().chain(inv.packed.get(d).map(|(i, _)| i)).collect(),
                ItemId::Snapshot(s) => inv.snapshots.get(s).into_iter().collect(),
            }
        };
        let size_of = |id: &ItemId| items(id).iter().map(|i| i.size).sum::<u64>();
        let spared = |id: &ItemId| items(id).iter().any(|i| leases.spares(i.ctime) || leases.spares(i.mtime));
        let mut doomed: HashSet<ItemId> = HashSet::new();
        let all_items = inv
            .blobs
            .iter()
            .chain(inv.packed.iter().map(|(d, (i, _))| (d, i)))
            .map(|(d, i)| (ItemId::Blob(d.clone()), i))
            .chain(inv.snapshots.iter().map(|(s, i)| (ItemId::Snapshot(s.clone()), i)));
        for (id, item) in all_items {
            if !held_by_refs(&id) && counts.get(&id).copied().unwrap_or(0) == 0 && old(item.mtime) && !spared(&id) {
                doomed.insert(id);
            }
        }

        let mut mounts: Vec<&Hold> = inv.mounts.iter().collect();
        mounts.sort_by_key(|m| m.last_used);
        let mut drop_mount = vec![false; mounts.len()];
        if options.all {
            for (i, m) in mounts.iter().enumerate() {
                drop_mount[i] = old_enough(m.last_used) && !leased(m);
            }
        }

        let total: u64 = inv.blobs.values().map(|i| i.size).sum::<u64>()
            + inv.packed.values().map(|(i, _)| i.size).sum::<u64>()
            + inv.snapshots.values().map(|i| i.size).sum::<u64>()
            + inv.records.iter().map(|r| r.size).sum::<u64>()
            + mounts.iter().map(|m| m.size).sum::<u64>();
        let mut size = total
            - doomed.iter().map(size_of).sum::<u64>()
            - inv.records.iter().zip(&drop_record).filter(|(_, d)| **d).map(|(r, _)| r.size).sum::<u64>()
            - mounts.iter().zip(&drop_mount).filter(|(_, d)| **d).map(|(m, _)| m.size).sum::<u64>();

        if let Some(bound) = options.keep_storage {
            let mut order: Vec<usize> = (0..inv.records.len()).filter(|&i| !drop_record[i]).collect();
            order.sort_by_key(|&i| inv.records[i].last_used);
            for i in order {
                if size <= bound {
                    break;
                }
                if !old_enough(inv.records[i].last_used) || leased(&inv.records[i]) {
                    continue;
                }
                drop_record[i] = true;
                size -= inv.records[i].size;
                for item in &items_of[i] {
                    let count = counts.get_mut(item).expect("counted");
                    *count -= 1;
                    if *count == 0 && !held_by_refs(item) && !spared(item) && doomed.insert(item.clone()) {
                        size -= size_of(item);
                    }
                }
            }
            for (i, m) in mounts.iter().enumerate() {
                if size <= bound {
                    break;
                }
                if !drop_mount[i] && old_enough(m.last_used) && !leased(m) {
                    drop_mount[i] = true;
                    size -= m.size;
                }
            }
        }

        let mut report = PruneReport { remaining: size, reclaimed: total - size, ..Default::default() };
        // Records first: from here on, nothing points at what goes next.
        for (r, _) in inv.records.iter().zip(&drop_record).filter(|(_, d)| **d) {
            self.holder.release(self.store, r).map_err(|source| Error::Release { id: r.id.clone(), source })?;
            report.records += 1;
        }
        // Packed records before their snapshots: a record never names a snapshot
        // that is gone, whatever point a kill stops this at.
        for id in &doomed {
            if let ItemId::Blob(digest) = id
                && let Some((item, _)) = inv.packed.get(digest)
            {
                remove_file(&item.path)?;
                if !inv.blobs.contains_key(digest) {
                    report.blobs += 1;
                }
            }
        }
        // (A record may name snapshots that were never unpacked.)
        for id in &doomed {
            if let ItemId::Snapshot(name) = id
                && let Some(item) = inv.snapshots.get(name)
            {
                self.store.remove_dir_atomically(&item.path)?;
                report.snapshots += 1;
            }
        }
        for id in &doomed {
            if let ItemId::Blob(digest) = id
                && let Some(item) = inv.blobs.get(digest)
            {
                remove_file(&item.path)?;
                report.blobs += 1;
            }
        }
        for (m, _) in mounts.iter().zip(&drop_mount).filter(|(_, d)| **d) {
            self.holder.release(self.store, m).map_err(|source| Error::Release { id: m.id.clone(), source })?;
            report.cache_mounts += 1;
        }
        self.holder.tidy(self.store);
        // Index entries whose blob is gone.
        for (path, layer) in &inv.variants {
            if layer.as_ref().is_none_or(|l| !self.store.has_blob(&l.digest)) {
                let _ = std::fs::remove_file(path);
            }
        }
        Ok(report)
    }

    /// `builder fsck`: every blob re-hashed, every ref's content present, snapshots
    /// well-formed, and with `snapshots` given compared with their layers (packed
    /// layers are re-hashed only when it is given: see [`Gc::fsck_layers`]).
    pub fn fsck(&self, snapshots: Option<&dyn LayerUnpacker>) -> Result<FsckReport> {
        self.store.fsck_with(self.holder, snapshots, snapshots.is_some())
    }

    /// `builder fsck` with the layer formats: packed layers re-hashed from their
    /// snapshots, and with `compare_snapshots` every snapshot compared with its layer.
    pub fn fsck_layers(&self, layers: &dyn LayerUnpacker, compare_snapshots: bool) -> Result<FsckReport> {
        self.store.fsck_with(self.holder, Some(layers), compare_snapshots)
    }
}

impl Store {
    /// Renames a directory into `tmp/` (atomic) before emptying it, so it is either
    /// whole under its name or gone.
    pub fn remove_dir_atomically(&self, path: &Path) -> Result<()> {
        let name = path.file_name().expect("has a name").to_string_lossy().into_owned();
        let temp = self.tmp().join(format!("{}gc-{name}", self.temp_prefix("prune")?));
        std::fs::rename(path, &temp).map_err(io_at("removing", path))?;
        crate::sync_dir(path.parent().expect("has a parent"));
        remove_tree(&temp).map_err(io_at("removing", &temp))
    }

    fn fsck_with(&self, holder: &dyn Holder, layers: Option<&dyn LayerUnpacker>, compare: bool) -> Result<FsckReport> {
        let inv = self.gc(holder).inventory(false, &LiveLeases::default())?;
        let snapshots = layers.filter(|_| compare);
        let mut report = FsckReport {
            blobs: inv.blobs.len() + inv.packed.keys().filter(|d| !inv.blobs.contains_key(d)).count(),
            refs: inv.ref_count,
            snapshots: inv.snapshots.len(),
            ..Default::default()
        };
        for digest in self.verify_blobs()? {
            report.problems.push(format!("blob {digest} is corrupt: its content does not hash to its name"));
        }
        for (digest, (item, snapshot)) in &inv.packed {
            let Some(packed) = self.read_packed(digest) else {
                report.problems.push(format!("packed layer {} is unreadable", item.path.display()));
                continue;
            };
            if snapshot.is_none() || !self.has_snapshot(&packed.snapshot) {
                // Only a ref or record that holds it makes this damage (reported there).
                report.notes.push(format!("packed layer {digest}: its snapshot {} is gone", packed.snapshot));
                continue;
            }
            let Some(layers) = layers else { continue };
            match layers.packed_digest(self, &packed) {
                Ok(found) if found == *digest => {}
                Ok(found) => report.problems.push(format!(
                    "blob {digest} (packed in snapshot {}) is corrupt: the snapshot's tar hashes to {found}",
                    packed.snapshot
                )),
                Err(e) => report.problems.push(format!(
                    "blob {digest} (packed in snapshot {}): {}",
                    packed.snapshot,
                    chain(e.as_ref())
                )),
            }
        }
        report.problems.extend(inv.ref_problems.iter().cloned());
        for (name, item) in &inv.snapshots {
            if Digest::parse(&format!("sha256:{name}")).is_err() || !item.path.is_dir() {
                report.problems.push(format!("snapshot {} is not a snapshot directory", item.path.display()));
                continue;
            }
            let Some(unpacker) = snapshots else { continue };
            match inv.snapshot_layers.get(name) {
                Some(layer) if self.has_blob(&layer.digest) => {
                    let found = unpacker
                        .compare(self, layer, &item.path)
                        .map_err(|source| Error::Compare { chain_id: name.clone(), source })?;
                    report.snapshots_verified += 1;
                    for problem in found {
                        report.problems.push(format!("snapshot {name}: {problem}"));
                    }
                }
                _ => report.notes.push(format!("snapshot {name}: no layer blob known for it, not compared")),
            }
        }
        for r in &inv.records {
            if r.damaged {
                report.notes.push(format!("cache record {}: damaged (a cache miss)", r.id));
            } else if let Some(l) = r.layers.iter().find(|l| !self.has_blob(&l.digest)) {
                report.notes.push(format!("cache record {}: blob {} is gone (a cache miss)", r.id, l.digest));
            }
        }
        Ok(report)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ItemId {
    Blob(Digest),
    Snapshot(String),
}

/// The blobs and snapshots a record holds, variants of its layers included.
fn record_items(record: &Hold, inv: &Inventory) -> Vec<ItemId> {
    let mut holdings = Holdings::default();
    if !record.damaged {
        holdings.add_stack(&record.layers);
    }
    let backing = inv.packed_snapshots(holdings.blobs.iter());
    holdings.snapshots.extend(backing);
    for (_, variant) in &inv.variants {
        if let Some(v) = variant
            && holdings.diff_ids.contains(&v.diff_id)
        {
            holdings.blobs.insert(v.digest.clone());
        }
    }
    let mut items: Vec<ItemId> = holdings.blobs.into_iter().map(ItemId::Blob).collect();
    items.extend(holdings.snapshots.into_iter().map(ItemId::Snapshot));
    items
}

/// Who holds each blob, variants counted with their diffID.
struct BlobHolders<'a> {
    inv: &'a Inventory,
    cache: &'a Holdings,
}

impl<'a> BlobHolders<'a> {
    fn new(inv: &'a Inventory, cache: &'a Holdings) -> Self {
        BlobHolders { inv, cache }
    }

    fn variant_diff_id<'b>(inv: &'b Inventory, digest: &Digest) -> Option<&'b Digest> {
        inv.variants.iter().filter_map(|(_, v)| v.as_ref()).find(|v| v.digest == *digest).map(|v| &v.diff_id)
    }

    fn ref_held(inv: &Inventory, digest: &Digest) -> bool {
        inv.refs.blobs.contains(digest)
            || Self::variant_diff_id(inv, digest).is_some_and(|d| inv.refs.diff_ids.contains(d))
    }

    fn blob(&self, digest: &Digest) -> HeldBy {
        if Self::ref_held(self.inv, digest) {
            HeldBy::Refs
        } else if self.cache.blobs.contains(digest)
            || Self::variant_diff_id(self.inv, digest).is_some_and(|d| self.cache.diff_ids.contains(d))
        {
            HeldBy::Cache
        } else {
            HeldBy::Nothing
        }
    }
}

/// The directories in `dir`, and their size.
fn dirs_usage(dir: &Path) -> Result<Usage> {
    let mut usage = Usage::default();
    for entry in read_dir_sorted(dir)? {
        if entry.file_type().map_err(io_at("reading", entry.path()))?.is_dir() {
            usage.add(tree_size(&entry.path()));
        }
    }
    Ok(usage)
}

/// Every entry in `dir` but owner files (empty), and their size.
fn entries_usage(dir: &Path) -> Result<Usage> {
    let mut usage = Usage::default();
    for entry in read_dir_sorted(dir)? {
        if !entry.file_name().to_string_lossy().ends_with(".owner") {
            usage.add(tree_size(&entry.path()));
        }
    }
    Ok(usage)
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_at("removing", path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoxError;
    use crate::testing::test_store;
    use image_spec::{Compression, ImageConfig, MEDIA_TYPE_OCI_LAYER};
    use std::cell::RefCell;

    /// Holds what it is told to; releasing forgets.
    #[derive(Default)]
    struct Holds(RefCell<Vec<Hold>>);

    impl Holds {
        fn record(&self, id: &str, layers: &[LayerInfo], last_used: SystemTime) {
            self.0.borrow_mut().push(Hold {
                kind: HoldKind::CacheRecord,
                id: id.into(),
                size: 4096,
                last_used,
                layers: layers.to_vec(),
                damaged: false,
            });
        }

        fn ids(&self) -> Vec<String> {
            self.0.borrow().iter().map(|h| h.id.clone()).collect()
        }
    }

    impl Holder for Holds {
        fn holds(&self, _: &Store) -> Result<Vec<Hold>, BoxError> {
            Ok(self.0.borrow().clone())
        }
        fn release(&self, _: &Store, hold: &Hold) -> Result<(), BoxError> {
            self.0.borrow_mut().retain(|h| h.id != hold.id);
            Ok(())
        }
    }

    fn layer(store: &Store, content: &str) -> LayerInfo {
        let digest = store.write_blob_bytes(content.as_bytes()).unwrap();
        LayerInfo {
            digest: digest.clone(),
            diff_id: digest,
            size: content.len() as u64,
            media_type: MEDIA_TYPE_OCI_LAYER.into(),
        }
    }

    #[test]
    fn prune_keeps_what_refs_and_holds_hold() {
        let (_d, store) = test_store();
        let by_ref = layer(&store, "ref");
        let by_cache = layer(&store, "cache");
        let loose = layer(&store, "loose");
        let config = ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..Default::default() };
        let image = store.write_image(&config, std::slice::from_ref(&by_ref)).unwrap();
        store.set_ref("app", &image.manifest_digest).unwrap();
        let holds = Holds::default();
        holds.record("a", std::slice::from_ref(&by_cache), SystemTime::now());
        // Another compression of the ref's layer: held through its diffID.
        let zstd = LayerInfo { media_type: Compression::Zstd.media_type().into(), ..layer(&store, "zstd") };
        let zstd = LayerInfo { diff_id: by_ref.diff_id.clone(), ..zstd };
        store.record_layer_variant(&zstd, Compression::Zstd, None).unwrap();

        let du = store.gc(&holds).disk_usage().unwrap();
        assert_eq!(du.blobs.refs.count, 4, "manifest, config, layer and its zstd variant");
        assert_eq!(du.blobs.cache_only.count, 1);
        assert_eq!(du.blobs.unreferenced.count, 1);
        assert_eq!(du.cache_records.count, 1);

        let report = store.gc(&holds).prune(&PruneOptions::default()).unwrap();
        assert_eq!((report.blobs, report.records), (1, 0));
        assert!(!store.has_blob(&loose.digest));
        assert!(store.has_blob(&by_cache.digest) && store.has_blob(&zstd.digest));

        let report = store.gc(&holds).prune(&PruneOptions { all: true, ..Default::default() }).unwrap();
        assert_eq!((report.blobs, report.records), (1, 1));
        assert!(holds.ids().is_empty());
        assert!(!store.has_blob(&by_cache.digest));
        assert!(store.has_blob(&by_ref.digest));
        assert!(store.gc(&holds).fsck(None).unwrap().problems.is_empty());
    }

    #[test]
    fn a_blob_found_by_a_writer_is_spared_by_a_prune_beside_it() {
        let (_d, store) = test_store();
        let claimed = store.write_blob_bytes(b"claimed").unwrap();
        let unclaimed = store.write_blob_bytes(b"unclaimed").unwrap();
        // Another process starts (a pull) after both were written, and finds one of
        // them instead of downloading it; the coarse clock of inode times moves on.
        std::thread::sleep(Duration::from_millis(30));
        let writer = Store::open(store.root()).unwrap();
        writer.take_lease().unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert!(writer.claim_blob(&claimed).unwrap());
        assert!(!writer.claim_blob(&Digest::of(b"never written")).unwrap());
        store.gc(&Holds::default()).prune(&PruneOptions::default()).unwrap();
        assert!(store.has_blob(&claimed), "a claimed blob is spared");
        assert!(!store.has_blob(&unclaimed), "an unclaimed one is not (the test can fail)");
        // Found again once the prune removed it: not there, so the writer writes it.
        assert!(!writer.claim_blob(&unclaimed).unwrap());
    }

    #[test]
    fn du_counts_partial_blob_files_in_tmp() {
        let (_d, store) = test_store();
        let mut partial = store.blob_writer().unwrap();
        std::io::Write::write_all(&mut partial, &vec![7; 1 << 20]).unwrap();
        std::io::Write::flush(&mut partial).unwrap();
        let dir = store.temp_dir("exec").unwrap();
        std::fs::write(dir.path().join("f"), vec![1; 1 << 20]).unwrap();
        let du = store.gc(&Holds::default()).disk_usage().unwrap();
        assert_eq!(du.temp.count, 2, "a partial blob and a directory");
        assert!(du.temp.size >= 2 << 20, "{}", du.temp.size);
        drop(partial);
    }

    #[test]
    fn prune_removes_temps_of_dead_owners_only() {
        let (_d, store) = test_store();
        let live = store.temp_dir("live").unwrap();
        // An entry of a dead owner, whose owner file is free to lock.
        std::fs::write(store.root().join("tmp/7.0badf00d.owner"), "").unwrap();
        let dead = store.root().join("tmp/7.0badf00d-blob-x");
        std::fs::write(&dead, "partial").unwrap();
        store.gc(&Holds::default()).prune(&PruneOptions::default()).unwrap();
        assert!(!dead.exists());
        assert!(!store.root().join("tmp/7.0badf00d.owner").exists());
        assert!(live.path().exists());
    }

    #[test]
    fn damaged_holds_and_holds_whose_blobs_are_gone_are_released() {
        let (_d, store) = test_store();
        let kept = layer(&store, "kept");
        let holds = Holds::default();
        holds.record("live", std::slice::from_ref(&kept), SystemTime::now());
        holds.record("gone", &[LayerInfo { digest: Digest::of(b"gone"), ..kept.clone() }], SystemTime::now());
        let damaged = Hold { id: "damaged".into(), damaged: true, ..holds.0.borrow()[0].clone() };
        holds.0.borrow_mut().push(damaged);
        let notes = store.gc(&holds).fsck(None).unwrap().notes;
        assert!(notes.iter().any(|n| n.contains("cache record damaged: damaged")), "{notes:?}");
        assert!(notes.iter().any(|n| n.contains("cache record gone: blob")), "{notes:?}");
        let report = store.gc(&holds).prune(&PruneOptions::default()).unwrap();
        assert_eq!(report.records, 2);
        assert_eq!(holds.ids(), ["live"]);
        assert!(store.has_blob(&kept.digest));
    }

    #[test]
    fn keep_storage_releases_least_recently_used_holds_first() {
        let (_d, store) = test_store();
        let old = layer(&store, &"old".repeat(100_000));
        let new = layer(&store, &"new!".repeat(100_000));
        let holds = Holds::default();
        holds.record("old", std::slice::from_ref(&old), SystemTime::now() - Duration::from_secs(3600));
        holds.record("new", std::slice::from_ref(&new), SystemTime::now());
        let total = store.gc(&holds).disk_usage().unwrap().build_total();
        let report =
            store.gc(&holds).prune(&PruneOptions { keep_storage: Some(total - 1), ..Default::default() }).unwrap();
        assert_eq!(report.records, 1);
        assert_eq!(holds.ids(), ["new"]);
        assert!(!store.has_blob(&old.digest) && store.has_blob(&new.digest));
        // Until: nothing is old enough.
        let options =
            PruneOptions { keep_storage: Some(0), until: Some(Duration::from_secs(600)), ..Default::default() };
        assert_eq!(store.gc(&holds).prune(&options).unwrap().records, 0);
    }

    #[test]
    fn fsck_names_a_missing_layer_and_a_corrupt_blob() {
        let (_d, store) = test_store();
        let l = layer(&store, "x");
        let config = ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..Default::default() };
        let image = store.write_image(&config, std::slice::from_ref(&l)).unwrap();
        store.set_ref("app", &image.manifest_digest).unwrap();
        let holds = Holds::default();
        assert!(store.gc(&holds).fsck(None).unwrap().problems.is_empty());
        std::fs::write(store.blob_path(&image.config_digest), b"{}").unwrap();
        std::fs::remove_file(store.blob_path(&l.digest)).unwrap();
        let problems = store.gc(&holds).fsck(None).unwrap().problems;
        assert!(
            problems.iter().any(|p| p.contains(image.config_digest.as_str()) && p.contains("corrupt")),
            "{problems:?}"
        );
        assert!(problems.iter().any(|p| p.contains("docker.io/library/app:latest")), "{problems:?}");
    }

    #[test]
    fn a_packed_layer_holds_its_snapshot_and_goes_with_it() {
        let (_d, store) = test_store();
        // A step's layer made on one stack (its snapshot at `made_at`), then used by
        // an image at another place: the ref holds the snapshot the record names.
        let diff_id = Digest::of(b"tar");
        let made_at = Digest::of(b"first chain");
        let dir = store.temp_dir("t").unwrap().keep();
        store.commit_snapshot(dir, &made_at).unwrap();
        let packed = crate::PackedLayer {
            diff_id: diff_id.clone(),
            snapshot: made_at.clone(),
            size: 3,
            mtime_clamp: None,
            resume: None,
        };
        store.record_packed_layer(&packed).unwrap();
        let layer = LayerInfo {
            digest: diff_id.clone(),
            diff_id: diff_id.clone(),
            size: 3,
            media_type: MEDIA_TYPE_OCI_LAYER.into(),
        };
        let config = ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..Default::default() };
        let image = store.write_image(&config, std::slice::from_ref(&layer)).unwrap();
        store.set_ref("app", &image.manifest_digest).unwrap();
        let holds = Holds::default();
        let du = store.gc(&holds).disk_usage().unwrap();
        assert_eq!(du.blobs.refs.count, 3, "manifest, config and the packed layer");
        store.gc(&holds).prune(&PruneOptions::default()).unwrap();
        assert!(store.has_snapshot(&made_at) && store.has_blob(&diff_id));

        store.remove_ref("app").unwrap();
        let report = store.gc(&holds).prune(&PruneOptions::default()).unwrap();
        assert_eq!(report.blobs, 3);
        assert!(!store.has_snapshot(&made_at) && !store.has_blob(&diff_id));
        assert!(!store.packed_path(&diff_id).exists());
    }
}
