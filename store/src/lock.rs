//! A whole-store lock for concurrent `builder` processes: shared for work that only
//! adds content, exclusive for work that removes it (prune, GC).

use crate::Store;
use crate::error::{Result, io_at};
use std::fs::{File, TryLockError};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    Shared,
    Exclusive,
}

/// Held until dropped (closing the file releases the lock).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl Store {
    /// Takes the store lock (`<root>/lock`), telling the user on stderr when it has to
    /// wait for another process.
    pub fn lock(&self, mode: LockMode) -> Result<StoreLock> {
        lock_file(&self.root.join("lock"), mode)
    }
}

/// Locks `path` (created if needed), printing `waiting for lock on <path>` when blocked.
pub fn lock_file(path: &Path, mode: LockMode) -> Result<StoreLock> {
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
            eprintln!("waiting for lock on {}", path.display());
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
        let waiter = std::thread::spawn(move || {
            let _lock = lock_file(&root.join("lock"), LockMode::Shared).unwrap();
            tx.send(()).unwrap();
        });
        assert!(rx.recv_timeout(std::time::Duration::from_millis(200)).is_err(), "got the lock while held");
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
    }
}
