//! Whether the writer of a temp file still runs, told by a lock rather than a pid.
//!
//! A writer holds an exclusive `flock` on what it writes (an output's temp file) or on
//! an owner file (`tmp/<token>.owner`, one per process and store, whose token prefixes
//! every temp entry it makes) for as long as it runs; the kernel drops the lock when
//! the process ends, however it ends. So a temp whose lock can be taken is stale, and
//! unlike a pid a lock is never inherited by an unrelated process that reuses the pid.
//!
//! A cleaner takes the lock before it removes a file, and a writer checks after locking
//! that its path still names the file it created, so the two can never both win.

use crate::error::{Result, io_at};
use crate::{Store, remove_tree};
use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The prefixes of the temp files that outputs write beside their destination.
pub const OUTPUT_TEMP_PREFIXES: &[&str] = &[".builder-save-", ".builder-tar-"];

const OWNER_SUFFIX: &str = ".owner";

/// Attempts at creating a locked file before giving up (each fails only when a
/// cleaner removed the file between its creation and its lock).
const ATTEMPTS: usize = 5;

/// Creates a temp file `<prefix>XXXXXX` in `dir` and locks it for as long as it is
/// open: [`remove_stale_outputs`] leaves it alone meanwhile.
pub fn create_locked_temp(dir: &Path, prefix: &str, mode: u32) -> io::Result<tempfile::NamedTempFile> {
    use std::os::unix::fs::PermissionsExt as _;
    for _ in 0..ATTEMPTS {
        let temp = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(std::fs::Permissions::from_mode(mode))
            .tempfile_in(dir)?;
        if lock_created(temp.as_file(), temp.path())? {
            return Ok(temp);
        }
    }
    Err(io::Error::other(format!("a cleaner kept removing new temp files in {}", dir.display())))
}

/// Locks a file just created at `path`; false when a cleaner removed it first.
fn lock_created(file: &File, path: &Path) -> io::Result<bool> {
    // Blocking: a cleaner holds the lock only while it removes the file.
    file.lock()?;
    let ours = file.metadata()?;
    Ok(std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == ours.dev() && m.ino() == ours.ino()))
}

/// What the lock of a writer's file says.
enum Writer {
    /// Its lock is held: the writer runs.
    Running,
    /// No such file.
    Gone,
    /// Its lock was free and is now ours: the writer is gone.
    Dead(File),
}

fn writer_of(path: &Path) -> io::Result<Writer> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Writer::Gone),
        Err(e) => return Err(e),
    };
    match file.try_lock() {
        Ok(()) => Ok(Writer::Dead(file)),
        Err(TryLockError::WouldBlock) => Ok(Writer::Running),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Removes the output temp files in `dir` (named with [`OUTPUT_TEMP_PREFIXES`]) whose
/// writer is gone: a `save` or `-o dest=` killed before its rename. Returns the bytes
/// freed.
pub fn remove_stale_outputs(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut freed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if OUTPUT_TEMP_PREFIXES.iter().any(|p| name.to_string_lossy().starts_with(p)) {
            freed += remove_stale_output(&entry.path());
        }
    }
    freed
}

/// Removes one output temp file if its writer is gone; the bytes freed.
fn remove_stale_output(path: &Path) -> u64 {
    match writer_of(path) {
        Ok(Writer::Dead(locked)) => {
            let size = locked.metadata().map(|m| m.len()).unwrap_or(0);
            match std::fs::remove_file(path) {
                Ok(()) => size,
                Err(e) => {
                    tracing::warn!("removing stale {}: {e}", path.display());
                    0
                }
            }
        }
        Ok(Writer::Running | Writer::Gone) => 0,
        Err(e) => {
            tracing::warn!("checking {}: {e}", path.display());
            0
        }
    }
}

/// This process's owner in each store `tmp/` it opened. The owner file stays open
/// (locked) while a [`Store`] on that `tmp/` is open or an entry it made is left.
static OWNERS: Mutex<Option<HashMap<PathBuf, Owner>>> = Mutex::new(None);

#[derive(Default)]
struct Owner {
    /// The token and its locked owner file, made on first use.
    token: Option<(String, File)>,
    /// The open [`Store`]s on this `tmp/`.
    stores: usize,
}

fn owners() -> std::sync::MutexGuard<'static, Option<HashMap<PathBuf, Owner>>> {
    OWNERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// A [`Store`] on `tmp` opens.
pub(crate) fn open_store(tmp: &Path) {
    owners().get_or_insert_with(HashMap::new).entry(tmp.to_path_buf()).or_default().stores += 1;
}

/// A [`Store`] on `tmp` closes: when it was the last, and no entry of this process is
/// left in `tmp`, the owner file goes too, so that a clean exit leaves nothing.
pub(crate) fn close_store(tmp: &Path) {
    let mut owners = owners();
    let Some(map) = owners.as_mut() else { return };
    let Some(owner) = map.get_mut(tmp) else { return };
    owner.stores = owner.stores.saturating_sub(1);
    if owner.stores > 0 {
        return;
    }
    if let Some((token, _)) = &owner.token {
        let prefix = format!("{token}-");
        let Ok(entries) = std::fs::read_dir(tmp) else { return };
        if entries.flatten().any(|e| e.file_name().to_string_lossy().starts_with(&prefix)) {
            return;
        }
        // Removed while still locked: no cleaner can take it for a dead owner's.
        let _ = std::fs::remove_file(tmp.join(format!("{token}{OWNER_SUFFIX}")));
    }
    map.remove(tmp);
}

/// This process's token in `tmp` (an owner file made and locked on first use).
pub(crate) fn owner_token(tmp: &Path) -> Result<String> {
    let mut owners = owners();
    let owner = owners.get_or_insert_with(HashMap::new).entry(tmp.to_path_buf()).or_default();
    if let Some((token, _)) = &owner.token {
        return Ok(token.clone());
    }
    for _ in 0..ATTEMPTS {
        // `<pid>.<random>`: the pid for people reading the directory, the random part
        // so that no later process ever has the same token; the dot tells it apart
        // from the pid-only names of older versions.
        let token = format!("{}.{:08x}", std::process::id(), rand_u32());
        let path = tmp.join(format!("{token}{OWNER_SUFFIX}"));
        let file = match File::options().write(true).create_new(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_at("creating", &path)(e)),
        };
        if lock_created(&file, &path).map_err(io_at("locking", &path))? {
            owner.token = Some((token.clone(), file));
            return Ok(token);
        }
    }
    Err(io_at("creating an owner file in", tmp)(io::Error::other("removed by a cleaner every time")))
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish() as u32
}

impl Store {
    /// Removes the entries of `tmp/` whose writer is gone: those of owners whose lock
    /// can be taken (with the output temp files they recorded), and those of older
    /// versions (`<pid>-…`) whose pid is gone or now names a process started after the
    /// entry was last written (a reused pid). Never crosses a mount point.
    pub(crate) fn clean_stale_temps(&self) {
        let tmp = self.tmp();
        let Ok(entries) = std::fs::read_dir(&tmp) else { return };
        let mine = owners().as_ref().and_then(|o| o.get(&tmp)).and_then(|o| o.token.as_ref()).map(|t| t.0.clone());
        // Per token: `None` while its owner runs, else the owner file's lock (if any),
        // held until the owner file is removed.
        let mut owners: HashMap<String, Option<Option<File>>> = HashMap::new();
        let mut owner_of = |token: &str| {
            owners
                .entry(token.to_owned())
                .or_insert_with(|| {
                    if mine.as_deref() == Some(token) {
                        return None;
                    }
                    match writer_of(&tmp.join(format!("{token}{OWNER_SUFFIX}"))) {
                        Ok(Writer::Dead(lock)) => Some(Some(lock)),
                        // Never made, or removed by a cleaner: tokens are never reused.
                        Ok(Writer::Gone) => Some(None),
                        Ok(Writer::Running) | Err(_) => None,
                    }
                })
                .is_some()
        };
        let mut owner_files = Vec::new();
        for entry in entries.flatten() {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if let Some(token) = name.strip_suffix(OWNER_SUFFIX) {
                owner_files.push(token.to_owned());
                continue;
            }
            let Some((head, _)) = name.split_once('-') else { continue };
            let stale = if head.contains('.') {
                owner_of(head)
            } else {
                head.parse::<u32>().is_ok_and(|pid| legacy_owner_is_gone(pid, &entry.path()))
            };
            if stale {
                self.remove_stale_temp(&entry.path(), &name);
            }
        }
        for token in owner_files {
            if owner_of(&token) {
                // Removed while locked (the lock is dropped with `owners`).
                let _ = std::fs::remove_file(tmp.join(format!("{token}{OWNER_SUFFIX}")));
            }
        }
    }

    fn remove_stale_temp(&self, path: &Path, name: &str) {
        if name.contains(&format!("-{OUTPUT_RECORD}-")) {
            // A record of an output temp file written outside the store.
            if let Ok(output) = std::fs::read_to_string(path) {
                remove_stale_output(Path::new(&output));
            }
        }
        if let Err(e) = remove_tree(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!("removing stale {}: {e}", path.display());
        }
    }

    /// Notes in `tmp/` that this process writes the output temp file `temp` (outside
    /// the store), so that a later command removes it if this one is killed. The note
    /// goes when the returned guard drops.
    pub fn record_output_temp(&self, temp: &Path) -> Result<OutputRecord> {
        let temp = std::path::absolute(temp).map_err(io_at("resolving", temp))?;
        let prefix = self.temp_prefix(OUTPUT_RECORD)?;
        let record = tempfile::Builder::new()
            .prefix(&prefix)
            .tempfile_in(self.tmp())
            .map_err(io_at("creating a temp file in", self.tmp()))?;
        std::fs::write(record.path(), temp.as_os_str().as_encoded_bytes()).map_err(io_at("writing", record.path()))?;
        Ok(OutputRecord { _record: record.into_temp_path() })
    }

    /// `<token>-<prefix>-`: the token tells [`Store::clean_stale_temps`] whether the
    /// owner still runs.
    pub(crate) fn temp_prefix(&self, prefix: &str) -> Result<String> {
        Ok(format!("{}-{prefix}-", owner_token(&self.tmp())?))
    }
}

const OUTPUT_RECORD: &str = "output";

/// See [`Store::record_output_temp`]: removes its note when dropped.
pub struct OutputRecord {
    _record: tempfile::TempPath,
}

/// Whether the process that wrote the entry `<pid>-…` of an older version is gone: no
/// such pid, or a process started after the entry was last modified (the pid reused).
fn legacy_owner_is_gone(pid: u32, entry: &Path) -> bool {
    if pid == std::process::id() {
        return false;
    }
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return true };
    let (Some(started), Ok(entry)) = (process_start(&stat), std::fs::symlink_metadata(entry)) else {
        return false;
    };
    // A margin for the clocks' granularity: a live writer started before it wrote.
    started > entry.mtime() + 2
}

/// When a process started (seconds since the epoch), from its `/proc/<pid>/stat`.
fn process_start(stat: &str) -> Option<i64> {
    // Field 22, counted after the command name (which may hold spaces and parens).
    let ticks: i64 = stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()?;
    let boot: i64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + ticks / rustix::param::clock_ticks_per_second() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_store;

    #[test]
    fn a_locked_output_temp_is_kept_and_an_unlocked_one_removed() {
        let dir = tempfile::tempdir().unwrap();
        let live = create_locked_temp(dir.path(), ".builder-save-", 0o644).unwrap();
        std::fs::write(live.path(), "live").unwrap();
        let dead = dir.path().join(".builder-tar-dead");
        std::fs::write(&dead, "dead!").unwrap();
        let other = dir.path().join("unrelated");
        std::fs::write(&other, "x").unwrap();
        assert_eq!(remove_stale_outputs(dir.path()), 5);
        assert!(live.path().exists());
        assert!(!dead.exists());
        assert!(other.exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
    }

    #[test]
    fn legacy_entries_are_judged_by_pid_and_start_time() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("x");
        std::fs::write(&entry, "").unwrap();
        // pid 1 started long before the entry was written: alive.
        assert!(!legacy_owner_is_gone(1, &entry));
        // Written long before pid 1 started: pid 1 is a reuse, the writer is gone.
        filetime::set_file_mtime(&entry, filetime::FileTime::from_unix_time(1_000_000, 0)).unwrap();
        assert!(legacy_owner_is_gone(1, &entry));
        assert!(legacy_owner_is_gone(u32::MAX - 1, &entry));
    }

    #[test]
    fn a_recorded_output_temp_of_a_dead_owner_is_removed() {
        let (_d, store) = test_store();
        let out = tempfile::tempdir().unwrap();
        let temp = out.path().join(".builder-save-abc");
        std::fs::write(&temp, "partial").unwrap();
        // A record left by an owner that is gone (no owner file).
        std::fs::write(store.tmp().join("1.deadbeef-output-x"), temp.as_os_str().as_encoded_bytes()).unwrap();
        let live = create_locked_temp(out.path(), ".builder-save-", 0o644).unwrap();
        let _record = store.record_output_temp(live.path()).unwrap();
        store.clean_stale_temps();
        assert!(!temp.exists());
        assert!(!store.tmp().join("1.deadbeef-output-x").exists());
        assert!(live.path().exists());
    }
}
