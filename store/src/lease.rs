//! Leases: what running `builder` processes use, so that GC runs beside them.
//!
//! A process that works with the store takes a lease ([`Store::take_lease`]): a file
//! `leases/<pid>.<random>` that it keeps locked while it runs, saying
//! - since when it may have made or taken content (its *window*): GC spares every
//!   blob and snapshot changed since the oldest open window, and every cache record or
//!   cache mount used since, so a build's fresh layers (not yet recorded) and its cache
//!   hits (about to be mounted) survive a prune;
//! - which images it holds besides the refs ([`Store::lease_image`]): a base image
//!   that `rmi` may untag while a build uses it, the image of a running container;
//! - which holds of the store's [`crate::Holder`] it uses ([`Store::lease_hold`]): a
//!   cache record it hit, a cache mount it mounts — spared even when their last use,
//!   as GC read it, was old.
//!
//! The file is a log of lines, appended to (`window <nanos>`, `image <digest>`, `hold
//! <id>`, `close`), so a build with a thousand cache hits writes a thousand short lines.
//!
//! A `builder run` closes its window once its container is set up
//! ([`Store::close_lease_window`]), so a container that runs for days holds its image
//! and nothing else. Registering and leasing go through the store lock (shared), which
//! prune holds exclusively only while it decides and removes: prune never waits for a
//! running build or container, and what registers meanwhile waits for it.
//!
//! A lease whose lock can be taken belongs to a process that is gone: GC removes it.

use crate::error::{Error, Result, io_at};
use crate::{LockMode, Store};
use image_spec::Digest;
use std::collections::BTreeSet;
use std::fs::{File, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// This process's lease on a store.
#[derive(Debug)]
pub(crate) struct Lease {
    path: PathBuf,
    state: Mutex<LeaseFile>,
}

#[derive(Debug)]
struct LeaseFile {
    file: File,
    window_open: bool,
    images: BTreeSet<Digest>,
    holds: BTreeSet<String>,
}

/// What the live leases of a store hold, as GC sees them.
#[derive(Debug, Default)]
pub(crate) struct LiveLeases {
    /// The oldest open window: content changed or used since is spared.
    pub since: Option<SystemTime>,
    pub images: BTreeSet<Digest>,
    pub holds: BTreeSet<String>,
}

impl LiveLeases {
    /// Whether something last changed or used at `time` falls in an open window.
    pub fn spares(&self, time: SystemTime) -> bool {
        self.since.is_some_and(|since| time >= since)
    }
}

fn leases_dir(root: &Path) -> PathBuf {
    root.join("leases")
}

impl Store {
    /// Registers this process as a user of the store (waiting while a prune runs), with
    /// its window open from now. Idempotent; the lease ends when the store is dropped.
    pub fn take_lease(&self) -> Result<()> {
        if self.lease.get().is_some() {
            return Ok(());
        }
        let _gate = self.lock(LockMode::Shared)?;
        let dir = leases_dir(&self.root);
        std::fs::create_dir_all(&dir).map_err(io_at("creating", &dir))?;
        let token = crate::owner::owner_token(&self.tmp())?;
        let path = dir.join(&token);
        let file = File::options().read(true).append(true).create(true).truncate(false).open(&path);
        let file = file.map_err(io_at("creating", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            // The token is this process's own: another `Store` of this process on the
            // same root holds the lease already, and it lasts as long as that one.
            Err(TryLockError::WouldBlock) => return Ok(()),
            Err(TryLockError::Error(e)) => return Err(io_at("locking", &path)(e)),
        }
        file.set_len(0).map_err(io_at("truncating", &path))?;
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let mut state = LeaseFile { file, window_open: true, images: BTreeSet::new(), holds: BTreeSet::new() };
        state.append(&path, &format!("window {since}"))?;
        let _ = self.lease.set(Lease { path, state: Mutex::new(state) });
        Ok(())
    }

    /// Holds `manifest` (an image's manifest or index) for as long as this process runs,
    /// whatever happens to the refs. Errors if a prune removed it before it was held.
    /// Without a lease, does nothing.
    pub fn lease_image(&self, manifest: &Digest) -> Result<()> {
        let Some(lease) = self.lease.get() else { return Ok(()) };
        let mut state = lease.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.images.contains(manifest) {
            return Ok(());
        }
        let _gate = self.lock(LockMode::Shared)?;
        // Under the gate no prune runs: present now means held from now on.
        if !self.has_blob(manifest) {
            return Err(Error::Removed { digest: manifest.clone() });
        }
        state.append(&lease.path, &format!("image {manifest}"))?;
        state.images.insert(manifest.clone());
        Ok(())
    }

    /// Holds the [`crate::Holder`]'s hold `id` (a cache record's or a cache mount's) for
    /// as long as this process runs. Call it before looking the hold up: what is found
    /// after it returns stays. Without a lease, does nothing.
    pub fn lease_hold(&self, id: &str) -> Result<()> {
        let Some(lease) = self.lease.get() else { return Ok(()) };
        let mut state = lease.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.holds.contains(id) || id.contains(char::is_whitespace) {
            return Ok(());
        }
        let _gate = self.lock(LockMode::Shared)?;
        state.append(&lease.path, &format!("hold {id}"))?;
        state.holds.insert(id.to_string());
        Ok(())
    }

    /// Ends this process's window: from now on its lease holds only its images and holds.
    pub fn close_lease_window(&self) -> Result<()> {
        let Some(lease) = self.lease.get() else { return Ok(()) };
        let mut state = lease.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.window_open {
            return Ok(());
        }
        let _gate = self.lock(LockMode::Shared)?;
        state.append(&lease.path, "close")?;
        state.window_open = false;
        Ok(())
    }

    /// The leases of running processes (the caller holds the store lock exclusively, so
    /// none is being written); those of processes that are gone are removed.
    pub(crate) fn live_leases(&self) -> Result<LiveLeases> {
        let dir = leases_dir(&self.root);
        let mut live = LiveLeases::default();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(live),
            Err(e) => return Err(io_at("reading", &dir)(e)),
        };
        let mine = self.lease.get().map(|l| l.path.clone());
        for entry in entries {
            let path = entry.map_err(io_at("reading", &dir))?.path();
            // Our own lease is locked by us: read it as any live one.
            let text = if mine.as_ref() == Some(&path) {
                Some(std::fs::read_to_string(&path).map_err(io_at("reading", &path))?)
            } else {
                read_live(&path)?
            };
            let Some(text) = text else { continue };
            parse_lease(&text, &path, &mut live)?;
        }
        Ok(live)
    }
}

/// Adds what the lease `text` holds to `live`.
fn parse_lease(text: &str, path: &Path, live: &mut LiveLeases) -> Result<()> {
    let bad = |line: &str| Error::Lease { path: path.to_path_buf(), line: line.chars().take(100).collect() };
    let mut window = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("window", nanos)) => {
                let nanos: u64 = nanos.parse().map_err(|_| bad(line))?;
                window = Some(UNIX_EPOCH + Duration::from_nanos(nanos));
            }
            Some(("image", digest)) => {
                live.images.insert(Digest::parse(digest).map_err(|_| bad(line))?);
            }
            Some(("hold", id)) => {
                live.holds.insert(id.to_string());
            }
            None if line == "close" => window = None,
            _ => return Err(bad(line)),
        }
    }
    if let Some(since) = window {
        live.since = Some(live.since.map_or(since, |s| s.min(since)));
    }
    Ok(())
}

/// The text of a running process's lease; `None` (and the file removed) when its
/// process is gone.
fn read_live(path: &Path) -> Result<Option<String>> {
    let mut file = match File::options().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at("opening", path)(e)),
    };
    match file.try_lock_shared() {
        // Taken: its process is gone.
        Ok(()) => {
            let _ = std::fs::remove_file(path);
            return Ok(None);
        }
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(e)) => return Err(io_at("locking", path)(e)),
    }
    // Appended to under the shared store lock, read under the exclusive one: whole.
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io_at("reading", path))?;
    Ok(Some(text))
}

impl LeaseFile {
    fn append(&mut self, path: &Path, line: &str) -> Result<()> {
        self.file.write_all(format!("{line}\n").as_bytes()).map_err(io_at("writing", path))
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        // Removed while still locked, so no GC takes it for a dead process's.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_store;

    #[test]
    fn a_live_lease_is_seen_and_a_dead_one_removed() {
        let (_d, store) = test_store();
        let other = Store::open(store.root()).unwrap();
        // A lease file nobody holds: a process that was killed.
        let dir = leases_dir(store.root());
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("0.dead"), "window 1\n").unwrap();
        let before = SystemTime::now();
        store.take_lease().unwrap();
        let manifest = store.write_blob_bytes(b"{}").unwrap();
        store.lease_image(&manifest).unwrap();
        store.lease_hold("abc").unwrap();
        let live = other.live_leases().unwrap();
        assert_eq!(live.holds.iter().collect::<Vec<_>>(), vec!["abc"]);
        assert!(live.since.unwrap() >= before - Duration::from_secs(1));
        assert!(live.spares(SystemTime::now()));
        assert!(!live.spares(before - Duration::from_secs(60)));
        assert_eq!(live.images.iter().collect::<Vec<_>>(), vec![&manifest]);
        assert!(!dir.join("0.dead").exists());

        store.close_lease_window().unwrap();
        let live = other.live_leases().unwrap();
        assert_eq!(live.since, None);
        assert_eq!(live.images.len(), 1);
        drop(store);
        assert!(other.live_leases().unwrap().images.is_empty());
    }

    #[test]
    fn a_second_store_of_the_same_process_shares_the_first_one_s_lease() {
        let (_d, store) = test_store();
        store.take_lease().unwrap();
        let other = Store::open(store.root()).unwrap();
        other.take_lease().unwrap();
        let manifest = store.write_blob_bytes(b"{}").unwrap();
        store.lease_image(&manifest).unwrap();
        assert_eq!(other.live_leases().unwrap().images.len(), 1);
    }

    #[test]
    fn leasing_an_image_that_is_gone_is_an_error() {
        let (_d, store) = test_store();
        store.take_lease().unwrap();
        let err = store.lease_image(&Digest::of(b"gone")).unwrap_err();
        assert!(err.to_string().contains("removed"), "{err}");
    }
}
