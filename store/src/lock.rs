//! A whole-store lock for concurrent `builder` processes: a short gate that prune
//! holds exclusively while it decides and removes, and that registering a lease
//! takes shared (see `lease.rs`); and the refs lock around a change of `refs.json`.
//!
//! The store prints nothing: when a lock has to be waited for, it tells the observer
//! the caller set ([`Store::on_lock_wait`]), which says it in its own display.

use crate::Store;
use crate::error::{Result, io_at};
use std::fs::{File, TryLockError};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// Which lock of the store a process waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLockKind {
    /// `<root>/lock`: taken shared, it waits for a prune to finish; taken exclusive
    /// (by prune), for another prune or a process registering its lease.
    Gate,
    /// `<root>/refs.lock`: another process is changing the refs.
    Refs,
}

/// A lock that was held by another process when this one asked for it: it waits.
#[derive(Debug, Clone, Copy)]
pub struct LockWait<'a> {
    pub kind: StoreLockKind,
    pub mode: LockMode,
    pub path: &'a Path,
}

/// What the caller wants done when a lock has to be waited for.
pub(crate) struct WaitObserver(Box<dyn Fn(&LockWait<'_>) + Send + Sync>);

impl std::fmt::Debug for WaitObserver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitObserver")
    }
}

/// Held until dropped (closing the file releases the lock).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl Store {
    /// Takes the store lock (`<root>/lock`), telling the [`Store::on_lock_wait`]
    /// observer when it has to wait for another process.
    pub fn lock(&self, mode: LockMode) -> Result<StoreLock> {
        self.lock_kind(StoreLockKind::Gate, &self.root.join("lock"), mode)
    }

    /// Sets what is done when this store has to wait for a lock another process holds
    /// (once; later calls are ignored). Without it, the wait is silent.
    pub fn on_lock_wait(&self, observer: impl Fn(&LockWait<'_>) + Send + Sync + 'static) {
        let _ = self.on_lock_wait.set(WaitObserver(Box::new(observer)));
    }

    pub(crate) fn lock_kind(&self, kind: StoreLockKind, path: &Path, mode: LockMode) -> Result<StoreLock> {
        lock_file(path, mode, &|| {
            if let Some(WaitObserver(observer)) = self.on_lock_wait.get() {
                observer(&LockWait { kind, mode, path });
            }
        })
    }
}

/// Locks `path` (created if needed), calling `on_wait` first when it has to wait.
pub(crate) fn lock_file(path: &Path, mode: LockMode, on_wait: &dyn Fn()) -> Result<StoreLock> {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_at("opening lock", path))?;
    let attempt = match mode {
        LockMode::Shared => file.try_lock_shared(),
        LockMode::Exclusive => file.try_lock(),
    };
    match attempt {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            on_wait();
            match mode {
                LockMode::Shared => file.lock_shared(),
                LockMode::Exclusive => file.lock(),
            }
            .map_err(io_at("locking", path))?;
        }
        Err(TryLockError::Error(e)) => return Err(io_at("locking", path)(e)),
    }
    Ok(StoreLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_store;

    #[test]
    fn shared_locks_coexist_and_exclusive_waits() {
        let (_d, store) = test_store();
        let a = store.lock(LockMode::Shared).unwrap();
        let b = store.lock(LockMode::Shared).unwrap();
        let f = File::open(store.root().join("lock")).unwrap();
        assert!(matches!(f.try_lock(), Err(TryLockError::WouldBlock)));
        drop((a, b));
        assert!(f.try_lock().is_ok());
    }

    #[test]
    fn a_blocked_lock_waits_for_the_holder() {
        let (_d, store) = test_store();
        let held = store.lock(LockMode::Exclusive).unwrap();
        let root = store.root().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let (waits_tx, waits) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let other = Store::open(&root).unwrap();
            other.on_lock_wait(move |wait| {
                waits_tx.send((wait.kind, wait.mode, wait.path.to_path_buf())).unwrap();
            });
            let _lock = other.lock(LockMode::Shared).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "got the lock while held");
        let wait = waits.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        assert_eq!(wait, (StoreLockKind::Gate, LockMode::Shared, store.root().join("lock")));
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
        // Not held: no wait to tell.
        store.on_lock_wait(|wait| panic!("waited for {}", wait.path.display()));
        drop(store.lock(LockMode::Exclusive).unwrap());
    }
}
