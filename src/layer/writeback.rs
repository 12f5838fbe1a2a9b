//! Files that are written back to disk while they grow.
//!
//! A big blob or tarball is fsynced before it is renamed into place. Left alone, the
//! kernel starts writing its pages only much later (at 10% of memory dirty by
//! default), so that fsync then waits for the whole file after the CPU work is done.
//! [`WritebackFile`] starts an `fdatasync` on a thread of its own every
//! [`WRITEBACK_EVERY`] bytes, so the disk works while the writer goes on and the final
//! [`WritebackFile::sync_all`] finds little left to write.

use std::fs::File;
use std::io::{self, Read, Write};
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

    /// Appends `len` bytes of `src` (from its current offset) in the kernel
    /// (`copy_file_range`, which may share extents on filesystems that can), without
    /// passing them through user space.
    pub fn append_file(&mut self, src: &mut File, len: u64) -> io::Result<()> {
        let copied = io::copy(&mut Read::take(&mut *src, len), &mut &self.file)?;
        if copied != len {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("copied {copied} of {len} bytes")));
        }
        self.since_writeback += len;
        if self.since_writeback >= WRITEBACK_EVERY {
            self.start_writeback();
        }
        Ok(())
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

    #[test]
    fn append_file_copies_a_range_of_another_file() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&src_path, &data).unwrap();
        let path = dir.path().join("out");
        let mut out = WritebackFile::new(File::create(&path).unwrap());
        out.write_all(b"head").unwrap();
        let mut src = File::open(&src_path).unwrap();
        out.append_file(&mut src, 200_000).unwrap();
        out.write_all(b"tail").unwrap();
        let short = out.append_file(&mut src, 200_000).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
        out.sync_all().unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(&back[..4], b"head");
        assert_eq!(&back[4..200_004], &data[..200_000]);
        assert_eq!(&back[200_004..200_008], b"tail");
    }
}
