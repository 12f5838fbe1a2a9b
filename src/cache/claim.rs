//! Claims on cache keys between processes sharing a store (BuildKit runs an identical
//! vertex of concurrent builds once; so do we): `cache/claims/<key hex>`, a file its
//! claimant keeps locked while it computes the key and unlinks (still locked) when
//! done, so the claims directory stays empty between builds.

use solver::CacheKey;
use solver::cache::{CacheStoreError, Claim, ClaimAttempt};
use std::fs::{File, TryLockError};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A held claim: unlinked, then unlocked (closed), when dropped.
struct ClaimFile {
    path: PathBuf,
    _file: File,
}

impl Drop for ClaimFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Claims `key` under the cache directory `dir`, without waiting.
pub fn try_claim(dir: &Path, key: &CacheKey) -> Result<ClaimAttempt, CacheStoreError> {
    let claims = dir.join("claims");
    let path = claims.join(key.to_hex());
    let error = |action, e: std::io::Error| CacheStoreError::new(action, path.display(), e);
    std::fs::create_dir_all(&claims).map_err(|e| error("creating", e))?;
    // A holder unlinks its file before it lets go: a lock taken on a file no longer at
    // `path` is no claim, so look again.
    for _ in 0..100 {
        let file = File::options().create(true).write(true).truncate(false).open(&path);
        let file = file.map_err(|e| error("opening", e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(ClaimAttempt::Busy),
            Err(TryLockError::Error(e)) => return Err(error("locking", e)),
        }
        let held = file.metadata().map_err(|e| error("reading", e))?;
        let current = std::fs::metadata(&path);
        if current.is_ok_and(|m| (m.dev(), m.ino()) == (held.dev(), held.ino())) {
            return Ok(ClaimAttempt::Claimed(Claim::new(Box::new(ClaimFile { path, _file: file }))));
        }
    }
    Ok(ClaimAttempt::Busy)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_claimed_once_at_a_time_and_the_file_goes_with_the_claim() {
        let dir = tempfile::tempdir().unwrap();
        let key = CacheKey::of("k", &"v".to_string());
        let first = try_claim(dir.path(), &key).unwrap();
        assert!(matches!(first, ClaimAttempt::Claimed(_)));
        assert!(matches!(try_claim(dir.path(), &key).unwrap(), ClaimAttempt::Busy));
        let other = CacheKey::of("k", &"w".to_string());
        assert!(matches!(try_claim(dir.path(), &other).unwrap(), ClaimAttempt::Claimed(_)));
        drop(first);
        assert!(matches!(try_claim(dir.path(), &key).unwrap(), ClaimAttempt::Claimed(_)));
        assert_eq!(std::fs::read_dir(dir.path().join("claims")).unwrap().count(), 0);
    }
}
