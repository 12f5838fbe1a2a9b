//! Files that are written back to disk while they grow.
//!
//! A big blob or tarball is fsynced before it is renamed into place. Left alone, the
//! kernel starts writing its pages only much later (at 10% of memory dirty by
//! default), so that fsync then waits for the whole file after the CPU work is done.
//! [`WritebackFile`] starts an `fdatasync` on a thread of its own every
//! [`WRITEBACK_EVERY`] bytes, so the disk works while the writer goes on and the final
//! [`WritebackFile::sync_all`] finds little left to write.

use std::fs::File;
use std::io::{self, Write};
use std::thread::JoinHandle;

/// How many bytes may be written between two background writebacks.
pub const WRITEBACK_EVERY: u64 = 32 << 20;

/// A file being written, with its data written back in the background as it grows.
pub struct WritebackFile {
    file: File,
    since_writeback: u64,
    /// The running writeback, if any (dropped, it is left to finish on its own
    /// descriptor).
    writeback: Option<JoinHandle<io::Result<()>>>,
    /// A background writeback failed. The error must reach the caller of
    /// [`WritebackFile::sync_all`]: the kernel reports a write error once per open
    /// file, and the background sync (on a duplicate of the same open file) may have
    /// been the one to see it.
    failed: Option<io::Error>,
}

impl WritebackFile {
    pub fn new(file: File) -> Self {
        WritebackFile { file, since_writeback: 0, writeback: None, failed: None }
    }

    /// Makes everything written so far durable (`fsync`), or reports the first error
    /// any writeback met.
    pub fn sync_all(&mut self) -> io::Result<()> {
        self.wait_writeback();
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.file.sync_all()
    }

    fn wait_writeback(&mut self) {
        if let Some(thread) = self.writeback.take() {
            let result = thread.join().unwrap_or_else(|_| Err(io::Error::other("writeback thread panicked")));
            if let Err(e) = result {
                self.failed.get_or_insert(e);
            }
        }
    }

    /// Starts writing back what was written so far, unless the last writeback is
    /// still running (the next write will try again).
    fn start_writeback(&mut self) {
        if self.writeback.as_ref().is_some_and(|t| !t.is_finished()) {
            return;
        }
        self.wait_writeback();
        // Best effort: without a duplicate or a thread, sync_all does all the work.
        let Ok(file) = self.file.try_clone() else { return };
        let spawned = std::thread::Builder::new().name("writeback".into()).spawn(move || file.sync_data());
        if let Ok(thread) = spawned {
            self.writeback = Some(thread);
            self.since_writeback = 0;
        }
    }
}

impl Write for WritebackFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.since_writeback += n as u64;
        if self.since_writeback >= WRITEBACK_EVERY {
            self.start_writeback();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn writes_everything_and_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = WritebackFile::new(File::create(&path).unwrap());
        let chunk = vec![7u8; 1 << 20];
        // Enough to start background writebacks on the way.
        for _ in 0..((2 * WRITEBACK_EVERY) >> 20) + 3 {
            file.write_all(&chunk).unwrap();
        }
        file.sync_all().unwrap();
        drop(file);
        let mut back = Vec::new();
        File::open(&path).unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back.len() as u64, 2 * WRITEBACK_EVERY + (3 << 20));
        assert!(back.iter().all(|&b| b == 7));
    }
}
