//! Response bodies read with a running cap: a registry that streams a body with
//! chunked encoding and no length must not make us buffer it whole before the size
//! check (a hostile registry would send gigabytes).

use futures_util::StreamExt as _;
use reqwest::Response;

/// Error bodies and token responses are short; anything past this is not read.
pub const MAX_SMALL_BODY: usize = 64 * 1024;

/// Why a capped read stopped.
#[derive(Debug)]
pub enum CappedError {
    /// More than the cap arrived; nothing past the cap was kept.
    TooLarge,
    Transport(reqwest::Error),
}

/// Reads `response`'s body, failing as soon as more than `max` bytes have arrived
/// (or the announced length already says so).
pub async fn read_capped(response: Response, max: usize) -> Result<Vec<u8>, CappedError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(CappedError::TooLarge);
    }
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(CappedError::Transport)?;
        if out.len() + chunk.len() > max {
            return Err(CappedError::TooLarge);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The first `max` bytes of a body that is only shown (an error text): the rest is
/// dropped unread and a failed read gives what arrived.
pub async fn read_prefix(response: Response, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = max - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() == max {
            break;
        }
    }
    out
}
