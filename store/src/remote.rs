//! Blobs the store can fetch when asked for them: the layers of an imported build
//! cache (`--cache-from`) stay where they are until something reads them.
//!
//! A cache hit only needs a layer's digests to compute the keys of the steps after it;
//! its bytes are needed when a snapshot is unpacked from it, when an image that holds
//! it is written to the store, or when an export reads it. Those readers go through
//! [`Store::open_blob`] / [`Store::blob_size`] / [`Store::ensure_blob`], which fetch a
//! registered blob on first use, once, however many threads ask at the same time.

use crate::Store;
use crate::error::{BoxError, Error, Result};
use image_spec::{Digest, LayerInfo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where a blob that is not in the store can be fetched from.
pub trait BlobSource: Send + Sync {
    /// How the source is named in messages (`type=registry,ref=...`).
    fn name(&self) -> String;
    /// Puts the layer's blob into the store, verified against its digest.
    fn fetch(&self, store: &Store, layer: &LayerInfo) -> Result<(), BoxError>;
}

/// A registered blob: its descriptor and where to fetch it.
type Registered = (LayerInfo, Arc<dyn BlobSource>);

#[derive(Default)]
pub(crate) struct Remote {
    sources: Mutex<HashMap<Digest, Registered>>,
    /// One lock per digest being fetched, so concurrent readers wait for one fetch.
    fetching: Mutex<HashMap<Digest, Arc<Mutex<()>>>>,
}

impl Store {
    /// Registers `source` as the place to fetch `layer`'s blob from when the store
    /// lacks it. The first registration of a digest wins.
    pub fn add_remote_blob(&self, layer: &LayerInfo, source: Arc<dyn BlobSource>) {
        let mut sources = self.remote.sources.lock().unwrap();
        sources.entry(layer.digest.clone()).or_insert_with(|| (layer.clone(), source));
    }

    /// Whether the blob is in the store or can be fetched into it.
    pub fn can_get_blob(&self, digest: &Digest) -> bool {
        self.has_blob(digest) || self.remote.sources.lock().unwrap().contains_key(digest)
    }

    /// Fetches the blob into the store if it is missing and a source is registered for
    /// it. Without a source this does nothing: the reader reports the missing blob.
    pub fn ensure_blob(&self, digest: &Digest) -> Result<()> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let Some((layer, source)) = self.remote.sources.lock().unwrap().get(digest).cloned() else {
            return Ok(());
        };
        let lock = self.remote.fetching.lock().unwrap().entry(digest.clone()).or_default().clone();
        let _guard = lock.lock().unwrap();
        if self.has_blob(digest) {
            return Ok(());
        }
        tracing::info!("fetching {} from {}", digest, source.name());
        source.fetch(self, &layer).map_err(|e| Error::Fetch { digest: digest.clone(), from: source.name(), source: e })
    }

    /// Fetches every missing blob of `layers` that has a source, in parallel.
    pub fn ensure_blobs(&self, layers: &[LayerInfo]) -> Result<()> {
        use rayon::prelude::*;
        layers.par_iter().try_for_each(|l| self.ensure_blob(&l.digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        bytes: Vec<u8>,
        fetches: AtomicUsize,
    }

    impl BlobSource for Counting {
        fn name(&self) -> String {
            "memory".into()
        }
        fn fetch(&self, store: &Store, layer: &LayerInfo) -> Result<(), BoxError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
            store.write_blob(&mut &self.bytes[..], Some(&layer.digest))?;
            Ok(())
        }
    }

    fn layer(bytes: &[u8]) -> LayerInfo {
        LayerInfo {
            digest: Digest::of(bytes),
            diff_id: Digest::of(bytes),
            size: bytes.len() as u64,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        }
    }

    #[test]
    fn registered_blobs_are_fetched_once_on_first_read() {
        let (_dir, store) = crate::testing::test_store();
        let layer = layer(b"remote bytes");
        assert!(!store.can_get_blob(&layer.digest));
        assert!(store.open_blob(&layer.digest).is_err());
        let source = Arc::new(Counting { bytes: b"remote bytes".to_vec(), fetches: AtomicUsize::new(0) });
        store.add_remote_blob(&layer, source.clone());
        assert!(store.can_get_blob(&layer.digest) && !store.has_blob(&layer.digest));
        assert_eq!(source.fetches.load(Ordering::SeqCst), 0, "nothing is fetched up front");
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| assert_eq!(store.read_blob(&layer.digest).unwrap(), b"remote bytes"));
            }
        });
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1);
        assert_eq!(store.blob_size(&layer.digest).unwrap(), 12);
    }

    #[test]
    fn a_failed_fetch_names_the_blob_and_the_source() {
        let (_dir, store) = crate::testing::test_store();
        let wanted = layer(b"wanted");
        let source = Arc::new(Counting { bytes: b"something else".to_vec(), fetches: AtomicUsize::new(0) });
        store.add_remote_blob(&wanted, source);
        let err = format!("{:#}", store.open_blob(&wanted.digest).unwrap_err());
        assert!(err.contains(wanted.digest.as_str()) && err.contains("memory"), "{err}");
        assert!(!store.has_blob(&wanted.digest));
    }
}
