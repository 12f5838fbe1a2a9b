//! Who holds content in the store besides its refs, as GC asks them.
//!
//! An image name holds its manifest, config and layers: those are the store's own
//! refs. Everything else that keeps content alive answers through [`Holder`]: the
//! build cache (its records hold layer stacks, its cache mounts are directories of
//! their own), whose file formats the store never reads. Running builds hold the store
//! lock shared, so none runs while prune (which takes it exclusively) removes anything.

use crate::{BoxError, Store};
use image_spec::LayerInfo;
use std::time::SystemTime;

/// What kind of hold, which decides when prune lets it go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    /// A cache record: holds a layer stack (its blobs and snapshots). Released when
    /// damaged or when its blobs are gone, with `--all`, and least recently used first
    /// under `--keep-storage`.
    CacheRecord,
    /// A cache mount: holds only its own directory. Released with `--all`, and oldest
    /// first under `--keep-storage` once no record is left to release.
    CacheMount,
}

/// One thing a holder keeps.
#[derive(Debug, Clone)]
pub struct Hold {
    pub kind: HoldKind,
    /// How the holder names it (a record's key, a mount's directory name): in reports,
    /// and to [`Holder::release`].
    pub id: String,
    /// Bytes the hold itself takes on disk (a record's file, a mount's tree).
    pub size: u64,
    pub last_used: SystemTime,
    /// The layer stack it holds, bottom first.
    pub layers: Vec<LayerInfo>,
    /// Unreadable: it holds nothing (a cache miss), and prune releases it.
    pub damaged: bool,
}

/// Something outside the store that holds content in it (the build cache).
pub trait Holder {
    /// Everything it holds now.
    fn holds(&self, store: &Store) -> Result<Vec<Hold>, BoxError>;

    /// Gives up a hold. Prune releases holds before it removes what only they held, so
    /// a crash in between leaves content that nothing holds, never a dangling hold.
    fn release(&self, store: &Store, hold: &Hold) -> Result<(), BoxError>;

    /// Called once a prune has released what it would: tidies bookkeeping left by
    /// holds that are gone.
    fn tidy(&self, _store: &Store) {}
}

impl Hold {
    /// Whether every blob it holds is in the store (a record whose blobs were removed
    /// is a miss: it holds nothing worth keeping).
    pub(crate) fn is_live(&self, store: &Store) -> bool {
        !self.damaged && self.layers.iter().all(|l| store.has_blob(&l.digest))
    }
}
