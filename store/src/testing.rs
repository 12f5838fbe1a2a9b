//! Helpers for tests of the store and of its users.

use crate::Store;

/// A store in a fresh temp dir (removed when the returned guard is dropped).
pub fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let store = Store::open(&dir.path().join("store")).expect("opening a store");
    (dir, store)
}
