//! A registry that lies: a tiny HTTP server on 127.0.0.1 answering every request
//! with what the test tells it (no `docker-registry` needed).

use crate::{Content, RegistryOptions, pull};
use image_spec::{Digest, Platform, Reference};
use std::io::{BufRead as _, BufReader, Read, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A store that holds nothing and takes nothing: the tests here fail before a blob.
struct NoContent;

impl Content for NoContent {
    fn has_blob(&self, _: &Digest) -> bool {
        false
    }
    fn write_blob(&self, reader: &mut dyn Read, _: &Digest) -> Result<u64, crate::BoxError> {
        Ok(std::io::copy(reader, &mut std::io::sink())?)
    }
    fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, crate::BoxError> {
        Err(format!("no blob {digest}").into())
    }
    fn blob_upload(&self, digest: &Digest) -> Result<(crate::UploadFrom, u64), crate::BoxError> {
        Err(format!("no blob {digest}").into())
    }
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, crate::BoxError> {
        Err(format!("no blob {digest}").into())
    }
    fn blob_sources(&self, _: &Digest) -> Vec<String> {
        Vec::new()
    }
    fn add_blob_sources(&self, _: &[Digest], _: &str) {}
}

/// Serves `/v2/` with 200 and every other GET with `body_chunks` chunks of 64 KiB
/// in chunked encoding without a length. Returns the port and the bytes written.
fn endless_server(body_chunks: usize) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    return;
                }
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                }
                if request_line.contains(" /v2/ ") {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
                    return;
                }
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.oci.image.manifest.v1+json\r\n\
                            transfer-encoding: chunked\r\nconnection: close\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                for _ in 0..body_chunks {
                    let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                    if stream.write_all(&framed).is_err() {
                        return;
                    }
                    counter.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                let _ = stream.write_all(b"0\r\n\r\n");
            });
        }
    });
    (port, written)
}

#[test]
fn a_chunked_manifest_without_length_is_cut_at_the_cap() {
    // 64 MiB offered; the client must stop reading soon after 4 MiB.
    let (port, written) = endless_server(1024);
    let reference = Reference::parse(&format!("127.0.0.1:{port}/hostile/app:1")).unwrap();
    let opts = RegistryOptions { retries: 0, ..RegistryOptions::default() };
    let error = pull(&NoContent, &reference, &Platform::parse("linux/amd64").unwrap(), &opts, &|_| {}).unwrap_err();
    let message = crate::error::chain(&error);
    assert!(message.contains("manifest larger than"), "{message}");
    // What the kernel buffers besides: well under the 64 MiB the server would send.
    let sent = written.load(Ordering::Relaxed);
    assert!(sent < 16 << 20, "the server wrote {sent} bytes before the client stopped");
}
