//! `ADD <url>`'s download: a stall (no byte for the registry stall timeout,
//! `BUILDER_REGISTRY_TIMEOUT`) fails it, and so does an interrupt, checked while it
//! waits on the server: a silent server must not hang a build nor make it ignore
//! SIGINT/SIGTERM.

use anyhow::{Result, bail};
use image_spec::Digest;
use std::future::Future;
use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

/// How often a wait on the server looks at the interrupt flag.
const POLL: Duration = Duration::from_millis(100);

/// Streams `url` into `path`; returns the sha256 of the bytes and Last-Modified.
/// `stall` bounds each wait for a byte (a slow transfer that moves is never cut);
/// `cancelled` is polled while waiting.
pub fn fetch(url: &str, path: &Path, stall: Duration, cancelled: fn() -> bool) -> Result<(Digest, Option<i64>)> {
    use sha2::Digest as _;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .connect_timeout(stall.min(Duration::from_secs(30)))
            .read_timeout(stall)
            .user_agent(concat!("builder/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut response = interruptible(client.get(url).send(), cancelled).await?.map_err(stalled(stall))?;
        if !response.status().is_success() {
            bail!("GET {url}: HTTP {}", response.status());
        }
        let modified = response
            .headers()
            .get(reqwest::header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
            .map(|t| t.timestamp());
        let mut file = std::fs::File::create(path)?;
        let mut hasher = sha2::Sha256::new();
        while let Some(chunk) = interruptible(response.chunk(), cancelled).await?.map_err(stalled(stall))? {
            hasher.update(&chunk);
            file.write_all(&chunk)?;
        }
        file.sync_all()?;
        Ok((Digest::from_sha256(hasher.finalize().into()), modified))
    })
}

/// A timeout says how long nothing came; other errors stay as they are.
fn stalled(stall: Duration) -> impl Fn(reqwest::Error) -> anyhow::Error {
    move |e| {
        if e.is_timeout() {
            anyhow::anyhow!("no data for {}s (BUILDER_REGISTRY_TIMEOUT): {e}", stall.as_secs_f32())
        } else {
            e.into()
        }
    }
}

/// `work`, or an error as soon as `cancelled` says so.
async fn interruptible<T>(work: impl Future<Output = T>, cancelled: fn() -> bool) -> Result<T> {
    let watch = async {
        loop {
            if cancelled() {
                return;
            }
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::select! {
        out = work => Ok(out),
        () = watch => bail!("interrupted"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    /// A server that accepts, reads the request and never answers.
    fn silent_server() -> (TcpListener, String) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/file", listener.local_addr().unwrap());
        (listener, url)
    }

    #[test]
    fn a_silent_server_fails_after_the_stall_timeout() {
        let (listener, url) = silent_server();
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        let error = fetch(&url, &dir.path().join("f"), Duration::from_secs(1), || false).unwrap_err();
        drop(listener);
        assert!(format!("{error:#}").contains("no data for 1s"), "{error:#}");
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    }

    static CANCEL: AtomicBool = AtomicBool::new(false);

    #[test]
    fn an_interrupt_ends_the_wait_on_a_silent_server() {
        let (listener, url) = silent_server();
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        std::thread::spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            CANCEL.store(true, Ordering::SeqCst);
        });
        let error =
            fetch(&url, &dir.path().join("f"), Duration::from_secs(600), || CANCEL.load(Ordering::SeqCst)).unwrap_err();
        drop(listener);
        assert_eq!(error.to_string(), "interrupted");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    }
}
