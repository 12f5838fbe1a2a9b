//! Uploads of blobs the caller's store makes as they are read (a layer kept as its
//! snapshot, whose tar is made again on every read) rather than keeps as files.
//!
//! Such bytes cannot be seeked, so one reader is kept across a chunked upload: each
//! request takes it where the previous one left it. A request that starts anywhere
//! else (a retry, a resume at the registry's offset after a dropped connection) opens
//! the blob again and discards the bytes before its offset — making the tar again,
//! which costs what reading it did, but retries are rare. Bytes flow through a small
//! bounded channel from a thread that reads, so memory stays a few chunks whatever the
//! blob's size, and the runtime's threads never block on the store.

use crate::content::Content;
use bytes::Bytes;
use futures_util::Stream;
use image_spec::Digest;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes sent per message to the HTTP body.
const PIECE: usize = 256 * 1024;
/// Messages in flight between the reading thread and the body.
const IN_FLIGHT: usize = 4;

/// A reader of the blob and how far it has been read.
type Cursor = (u64, Box<dyn Read + Send>);

/// One blob's made bytes, shared by the requests of its upload.
#[derive(Clone)]
pub struct BlobStream<'a> {
    content: &'a dyn Content,
    digest: Digest,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// The reader left by the last request that read to its end.
    cursor: Mutex<Option<Cursor>>,
    /// What went wrong in the store (not the network) while a body was read.
    failure: Mutex<Option<String>>,
    /// How many times the blob was opened.
    opens: AtomicU32,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<'a> BlobStream<'a> {
    pub fn new(content: &'a dyn Content, digest: &Digest) -> Self {
        BlobStream { content, digest: digest.clone(), shared: Arc::default() }
    }

    /// The store's error that broke a body (a layer that no longer gives its bytes):
    /// not something a retry mends.
    pub fn failure(&self) -> Option<String> {
        lock(&self.shared.failure).clone()
    }

    /// How many times the blob was opened.
    #[cfg(test)]
    pub fn opens(&self) -> u32 {
        self.shared.opens.load(Ordering::Relaxed)
    }

    /// The reader at `offset`: the one kept when it is there, else the blob opened
    /// again (on the caller's thread: opening is cheap, the skipping happens in
    /// [`BlobStream::body`]'s thread).
    fn reader_at(&self, offset: u64) -> Result<(u64, Box<dyn Read + Send>), String> {
        if let Some((at, reader)) = lock(&self.shared.cursor).take()
            && at == offset
        {
            return Ok((at, reader));
        }
        self.shared.opens.fetch_add(1, Ordering::Relaxed);
        let reader = self.content.open_blob(&self.digest).map_err(|e| format!("opening blob {}: {e}", self.digest))?;
        Ok((0, reader))
    }

    /// `len` bytes of the blob from `offset`, as a body stream. A store error ends the
    /// stream with an error and is kept for [`BlobStream::failure`].
    pub fn body(&self, offset: u64, len: u64) -> impl Stream<Item = io::Result<Bytes>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(IN_FLIGHT);
        let opened = self.reader_at(offset);
        let shared = self.shared.clone();
        let digest = self.digest.clone();
        let spawned = std::thread::Builder::new().name("blob-upload".into()).spawn({
            let tx = tx.clone();
            move || {
                let failed = |message: String| {
                    *lock(&shared.failure) = Some(message.clone());
                    let _ = tx.blocking_send(Err(io::Error::other(message)));
                };
                let (at, mut reader) = match opened {
                    Ok(r) => r,
                    Err(message) => return failed(message),
                };
                match io::copy(&mut (&mut reader).take(offset - at), &mut io::sink()) {
                    Ok(n) if n == offset - at => {}
                    Ok(n) => return failed(format!("blob {digest} ends at {} bytes, before {offset}", at + n)),
                    Err(e) => return failed(format!("blob {digest}: {e}")),
                }
                let mut left = len;
                while left > 0 {
                    let mut piece = vec![0u8; PIECE.min(usize::try_from(left).unwrap_or(PIECE))];
                    if let Err(e) = reader.read_exact(&mut piece) {
                        let message = match e.kind() {
                            io::ErrorKind::UnexpectedEof => {
                                format!("blob {digest} ends before {} bytes", offset + len)
                            }
                            _ => format!("blob {digest}: {e}"),
                        };
                        return failed(message);
                    }
                    left -= piece.len() as u64;
                    if left == 0 {
                        // Kept before the last bytes go: by the time the registry has
                        // them all, the next request finds the reader in place.
                        *lock(&shared.cursor) = Some((offset + len, reader));
                        let _ = tx.blocking_send(Ok(Bytes::from(piece)));
                        return;
                    }
                    if tx.blocking_send(Ok(Bytes::from(piece))).is_err() {
                        // The request was dropped: the reader is left mid-way, unkept.
                        return;
                    }
                }
                // Nothing to send: the reader stays where it is.
                *lock(&shared.cursor) = Some((offset, reader));
            }
        });
        if let Err(e) = spawned {
            let _ = tx.try_send(Err(io::Error::other(format!("starting a thread: {e}"))));
        }
        drop(tx);
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BoxError;
    use futures_util::StreamExt as _;
    use std::sync::atomic::AtomicBool;

    /// A blob of `size` bytes made by a function of the offset; `broken` makes it fail
    /// near its end, as a layer whose snapshot changed does.
    struct Made {
        size: u64,
        broken: AtomicBool,
    }

    fn byte(i: u64) -> u8 {
        (i.wrapping_mul(2_654_435_761) >> 13) as u8
    }

    struct MadeReader {
        at: u64,
        size: u64,
        broken: bool,
    }

    impl Read for MadeReader {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.broken && self.at + buf.len() as u64 + 10 >= self.size {
                return Err(io::Error::other("layer sha256:abc: snapshot changed"));
            }
            let n = (buf.len() as u64).min(self.size - self.at) as usize;
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = byte(self.at + i as u64);
            }
            self.at += n as u64;
            Ok(n)
        }
    }

    impl Content for Made {
        fn has_blob(&self, _: &Digest) -> bool {
            true
        }
        fn write_blob(&self, _: &mut dyn Read, _: &Digest) -> Result<u64, BoxError> {
            Err("read only".into())
        }
        fn read_blob(&self, _: &Digest) -> Result<Vec<u8>, BoxError> {
            Err("not small".into())
        }
        fn blob_upload(&self, _: &Digest) -> Result<(crate::UploadFrom, u64), BoxError> {
            Ok((crate::UploadFrom::Made, self.size))
        }
        fn open_blob(&self, _: &Digest) -> Result<Box<dyn Read + Send>, BoxError> {
            let broken = self.broken.load(Ordering::Relaxed);
            Ok(Box::new(MadeReader { at: 0, size: self.size, broken }))
        }
        fn blob_sources(&self, _: &Digest) -> Vec<String> {
            Vec::new()
        }
        fn add_blob_sources(&self, _: &[Digest], _: &str) {}
    }

    fn made(size: u64) -> Made {
        Made { size, broken: AtomicBool::new(false) }
    }

    async fn collect(stream: impl Stream<Item = io::Result<Bytes>>) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut stream = std::pin::pin!(stream);
        while let Some(piece) = stream.next().await {
            out.extend_from_slice(&piece?);
        }
        Ok(out)
    }

    fn expected(offset: u64, len: u64) -> Vec<u8> {
        (offset..offset + len).map(byte).collect()
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    fn digest() -> Digest {
        Digest::of(b"made")
    }

    #[test]
    fn chunks_in_order_read_the_blob_once() {
        let content = made(3 * PIECE as u64 + 17);
        let stream = BlobStream::new(&content, &digest());
        let chunk = PIECE as u64 + 5;
        let mut offset = 0;
        run(async {
            while offset < content.size {
                let len = chunk.min(content.size - offset);
                assert_eq!(collect(stream.body(offset, len)).await.unwrap(), expected(offset, len), "at {offset}");
                offset += len;
            }
        });
        assert_eq!(stream.opens(), 1);
        assert_eq!(stream.failure(), None);
    }

    #[test]
    fn a_resume_elsewhere_opens_again_and_skips_to_its_offset() {
        let content = made(2 * PIECE as u64);
        let stream = BlobStream::new(&content, &digest());
        run(async {
            assert_eq!(collect(stream.body(0, 1000)).await.unwrap(), expected(0, 1000));
            // The registry kept fewer bytes than were sent: back to 700.
            assert_eq!(collect(stream.body(700, PIECE as u64)).await.unwrap(), expected(700, PIECE as u64));
            assert_eq!(stream.opens(), 2);
            // A retry of the same chunk (its bytes were taken by a dropped request).
            assert_eq!(collect(stream.body(700, PIECE as u64)).await.unwrap(), expected(700, PIECE as u64));
            assert_eq!(stream.opens(), 3);
            // And on from there without opening.
            let rest = 2 * PIECE as u64 - 700 - PIECE as u64;
            assert_eq!(
                collect(stream.body(700 + PIECE as u64, rest)).await.unwrap(),
                expected(700 + PIECE as u64, rest)
            );
        });
        assert_eq!(stream.opens(), 3);
    }

    #[test]
    fn a_dropped_body_leaves_no_reader_behind() {
        let content = made(8 * PIECE as u64);
        let stream = BlobStream::new(&content, &digest());
        run(async {
            let mut body = std::pin::pin!(stream.body(0, 8 * PIECE as u64));
            assert_eq!(body.next().await.unwrap().unwrap().len(), PIECE);
        });
        run(async {
            let at = 3 * PIECE as u64;
            assert_eq!(collect(stream.body(at, 10)).await.unwrap(), expected(at, 10));
        });
        assert_eq!(stream.opens(), 2);
    }

    #[test]
    fn a_store_error_ends_the_body_and_is_kept() {
        let content = made(PIECE as u64 + 100);
        content.broken.store(true, Ordering::Relaxed);
        let stream = BlobStream::new(&content, &digest());
        let err = run(collect(stream.body(0, content.size))).unwrap_err();
        assert!(err.to_string().contains("snapshot changed"), "{err}");
        assert!(stream.failure().is_some_and(|f| f.contains("layer sha256:abc")), "{:?}", stream.failure());
    }

    #[test]
    fn a_blob_shorter_than_asked_fails() {
        let content = made(1000);
        let stream = BlobStream::new(&content, &digest());
        let err = run(collect(stream.body(500, 600))).unwrap_err();
        assert!(err.to_string().contains("ends before 1100 bytes"), "{err}");
        let stream = BlobStream::new(&content, &digest());
        let err = run(collect(stream.body(2000, 1))).unwrap_err();
        assert!(err.to_string().contains("ends at 1000 bytes, before 2000"), "{err}");
    }
}
