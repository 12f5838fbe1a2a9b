//! The socket a `RUN --mount=type=ssh` step sees: a Unix socket made for that step
//! (so its mode and owner are the mount's, not the user's agent's), bind-mounted into
//! the sandbox, whose connections a thread forwards byte for byte to the agent. The
//! step never sees the agent's own path, and nothing of it is written anywhere.

use anyhow::{Context as _, Result};
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

/// A listening proxy socket; stops accepting when dropped.
pub struct Proxy {
    path: PathBuf,
    /// Where the socket is: a short path of its own, as a socket's path is limited
    /// to 107 bytes and a store's may be longer.
    _dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a new socket (mode and owner set) and forwards to the agent at `agent`.
    pub fn start(agent: &Path, mode: u32, uid: u32, gid: u32) -> Result<Proxy> {
        let dir = tempfile::Builder::new().prefix("builder-ssh-").tempdir()?;
        let path = dir.path().join("agent.sock");
        let listener = UnixListener::bind(&path).with_context(|| format!("listening on {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        std::os::unix::fs::chown(&path, Some(uid), Some(gid))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (agent, flag) = (agent.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || accept(&listener, &agent, &flag));
        Ok(Proxy { path, _dir: dir, stop, thread: Some(thread) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept; the thread sees the flag and returns.
        let _ = UnixStream::connect(&self.path);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept(listener: &UnixListener, agent: &Path, stop: &AtomicBool) {
    for client in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        match UnixStream::connect(agent) {
            Ok(upstream) => forward(client, upstream),
            // The client sees its connection closed, as with a dead agent.
            Err(e) => tracing::warn!("ssh agent {}: {e}", agent.display()),
        }
    }
}

/// Copies both ways until either side closes.
fn forward(client: UnixStream, upstream: UnixStream) {
    let pair = client.try_clone().and_then(|c| Ok((c, upstream.try_clone()?)));
    let Ok((client2, upstream2)) = pair else { return };
    std::thread::spawn(move || pipe(client, upstream));
    std::thread::spawn(move || pipe(upstream2, client2));
}

fn pipe(mut from: UnixStream, mut to: UnixStream) {
    if let Err(e) = std::io::copy(&mut from, &mut to)
        && e.kind() != ErrorKind::BrokenPipe
    {
        tracing::debug!("ssh agent proxy: {e}");
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    #[test]
    fn forwards_both_ways_with_the_mount_mode() {
        let dir = tempfile::tempdir().unwrap();
        let agent_path = dir.path().join("agent");
        let agent = UnixListener::bind(&agent_path).unwrap();
        // An echo "agent" that upper-cases what it gets.
        let echo = std::thread::spawn(move || {
            let (mut s, _) = agent.accept().unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf.to_ascii_uppercase()).unwrap();
        });
        let proxy = Proxy::start(&agent_path, 0o600, 0, 0).unwrap();
        let meta = std::fs::metadata(proxy.path()).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let mut client = UnixStream::connect(proxy.path()).unwrap();
        client.write_all(b"hello").unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"HELLO");
        echo.join().unwrap();
        let path = proxy.path().to_path_buf();
        drop(proxy);
        assert!(!path.exists());
    }
}
