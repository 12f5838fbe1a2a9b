//! When to try a request again, and how long to wait first.

use crate::error::Error;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use std::time::Duration;

pub fn is_retriable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT
}

/// Whether a failure came from the connection (connect, timeout, a broken body)
/// rather than from what the registry answered.
pub fn is_retriable_error(e: &Error) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = next {
        let transport = c
            .downcast_ref::<reqwest::Error>()
            .is_some_and(|e| e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
            || c.downcast_ref::<std::io::Error>().is_some();
        if transport {
            return true;
        }
        next = c.source();
    }
    false
}

/// `Retry-After` in seconds (HTTP dates are rare from registries; they count as
/// absent), capped so that a registry cannot stall a build for long.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

/// 250ms, 500ms, 1s, 2s... capped at 8s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_and_backoff() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(10), Duration::from_secs(8));
    }
}
