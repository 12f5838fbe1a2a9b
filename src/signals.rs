//! Signals sent to the builder process itself. `builder build` turns SIGINT/SIGTERM
//! into a cancelled solve (running sandboxes are killed, their mounts and temp dirs
//! removed) and then exits 128+N; `builder run` passes them on to the container.

use anyhow::Result;
use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::flag;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;

/// Watches for SIGINT/SIGTERM while a build runs.
pub struct Interrupt {
    signal: Arc<AtomicUsize>,
}

/// Set by the first SIGINT/SIGTERM of a build, for work outside the solver's own
/// cancellation (a download that the cache key needs).
static INTERRUPTED: std::sync::LazyLock<Arc<AtomicBool>> = std::sync::LazyLock::new(Arc::default);

/// Whether a SIGINT/SIGTERM came since [`cancel_on_interrupt`].
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Sets `cancel` on SIGINT or SIGTERM. A second one exits at once: the sandboxes die
/// with us (parent-death signal) and the next `builder` removes our temp dirs.
pub fn cancel_on_interrupt(cancel: Arc<AtomicBool>) -> Result<Interrupt> {
    let signal = Arc::new(AtomicUsize::new(0));
    for sig in [SIGINT, SIGTERM] {
        flag::register(sig, INTERRUPTED.clone())?;
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        // Handlers run in the order registered: the exit checks the flag the first
        // signal sets after it.
        flag::register_conditional_shutdown(sig, 128 + sig, interrupted.clone())?;
        flag::register(sig, interrupted.clone())?;
        flag::register_usize(sig, signal.clone(), sig as usize)?;
        flag::register(sig, cancel.clone())?;
    }
    Ok(Interrupt { signal })
}

impl Interrupt {
    /// The error to end with if a signal came: exit code 128+N.
    pub fn error(&self) -> Option<anyhow::Error> {
        let sig = self.signal.load(Ordering::SeqCst) as i32;
        let name = match sig {
            0 => return None,
            SIGINT => "SIGINT",
            _ => "SIGTERM",
        };
        let error = Some(anyhow::anyhow!("build interrupted by {name}"));
        Some(crate::ExitError { code: (128 + sig) as u8, error, hint: None }.into())
    }

    /// Once the solve is over: an error if a signal came meanwhile; from now on one
    /// ends the process at once (there are no more sandboxes to stop).
    pub fn finish(self) -> Result<()> {
        if let Some(e) = self.error() {
            return Err(e);
        }
        let always = Arc::new(AtomicBool::new(true));
        for sig in [SIGINT, SIGTERM] {
            flag::register_conditional_shutdown(sig, 128 + sig, always.clone())?;
        }
        Ok(())
    }
}

/// Passes SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 (and SIGWINCH, for a
/// terminal) on to a container while it runs; stops when dropped.
pub struct Forwarder {
    handle: signal_hook::iterator::Handle,
    thread: Option<JoinHandle<()>>,
}

pub fn forward_to(target: executor::Signals, terminal: bool) -> Result<Forwarder> {
    let mut list = vec![SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];
    if terminal {
        list.push(SIGWINCH);
    }
    let mut signals = signal_hook::iterator::Signals::new(&list)?;
    let handle = signals.handle();
    let thread = std::thread::Builder::new().name("signals".into()).spawn(move || {
        for sig in signals.forever() {
            target.raise(sig);
        }
    })?;
    Ok(Forwarder { handle, thread: Some(thread) })
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
