//! The registry client: the OCI distribution protocol over our own thin layer on
//! reqwest + tokio. It knows the image formats (`image-spec`) and the protocol, and
//! moves blobs in and out of the caller's [`Content`] (the builder's store), whose
//! layout it never sees.
//!
//! - `op.rs` / `error.rs`: what a request is for, and how its failure reads.
//! - `retry.rs`: when to try again, and after how long.
//! - `credentials.rs`: Docker's `config.json` and credential helpers.
//! - `auth.rs`: `WWW-Authenticate` challenges, bearer tokens per scope, Basic.
//! - `client.rs`: transport per registry host (scheme, CAs, retries, redirects).
//! - `pull.rs` / `push.rs`: images between a registry and a [`Content`].
//! - `repo.rs`: a blocking handle on one repository (the build cache uses it).
//! - `testing.rs` (feature `testing`): a real `docker-registry` on 127.0.0.1 and a
//!   fault-injecting proxy, for tests here and in the builder.
//!
//! The public functions are blocking: each builds a tokio runtime for its duration,
//! so callers (the CLI, the build) stay synchronous.

mod auth;
mod body;
mod client;
mod content;
mod credentials;
mod error;
#[cfg(test)]
mod hostile_tests;
mod op;
mod pull;
mod push;
mod push_index;
mod repo;
mod retry;
mod stream;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use content::{Content, UploadFrom};
pub use credentials::CredentialsError;
pub use error::{BoxError, Error, RegistryError, Result};
pub use pull::{Pulled, pull, select_platform};
pub use push::push;
pub use push_index::push_index;
pub use repo::{PushStats, Repository};

use image_spec::Digest;
use std::path::PathBuf;
use std::time::Duration;

/// What a pull or push reports as it goes, to the `progress` callback of [`pull`],
/// [`push`] and [`Repository`]'s transfers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer<'a> {
    /// A line about the transfer: `resolving REF`, `3ed246eb60b7: mounted from
    /// lib/busybox`, a retry.
    Line(&'a str),
    /// The image manifest: a pull has it (the platform's, when it was an index) and
    /// fetches its blobs next; a push has sent its blobs and puts it next.
    Manifest(&'a Digest),
    /// `current` of a blob's `total` bytes have moved: 0 when it starts, `total` once
    /// it is stored (or uploaded), and counts in between as it moves.
    Blob { digest: &'a Digest, current: u64, total: u64 },
}

/// The environment variable naming extra hosts that are spoken to over plain HTTP.
pub const INSECURE_ENV: &str = "BUILDER_INSECURE_REGISTRIES";

/// The environment variable bounding a stall: seconds without a byte from a registry
/// (or to connect) before an attempt is given up and retried.
pub const TIMEOUT_ENV: &str = "BUILDER_REGISTRY_TIMEOUT";

/// The environment variable bounding the retries of a request.
pub const RETRIES_ENV: &str = "BUILDER_REGISTRY_RETRIES";

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Hosts (`host[:port]`) spoken to over plain HTTP, besides loopback ones
    /// and those in `BUILDER_INSECURE_REGISTRIES`.
    pub insecure_hosts: Vec<String>,
    /// The directory holding `config.json`; `None` means `$DOCKER_CONFIG` or
    /// `~/.docker`.
    pub docker_config: Option<PathBuf>,
    /// Extra CAs per host, Docker style: `DIR/HOST/*.crt`.
    pub certs_dir: PathBuf,
    /// Retries of a request after a connection error, a stall, 5xx or 429
    /// (`BUILDER_REGISTRY_RETRIES`, 5 by default).
    pub retries: u32,
    /// How long an attempt may go without a byte (or take to connect) before it is
    /// given up: a slow transfer that moves is never cut (`BUILDER_REGISTRY_TIMEOUT`
    /// in seconds, 60 by default).
    pub stall_timeout: Duration,
    /// Blobs transferred at once.
    pub concurrency: usize,
    /// Blobs larger than this are uploaded in PATCH chunks of this size (or the
    /// registry's `OCI-Chunk-Min-Length`, if larger); smaller ones in one PUT.
    pub chunk_size: u64,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure_hosts: Vec::new(),
            docker_config: None,
            certs_dir: PathBuf::from("/etc/docker/certs.d"),
            retries: from_env(RETRIES_ENV, |v| v.parse().ok()).unwrap_or(5),
            stall_timeout: from_env(TIMEOUT_ENV, parse_seconds).unwrap_or(Duration::from_secs(60)),
            concurrency: 4,
            chunk_size: 16 * 1024 * 1024,
        }
    }
}

/// The value of `name` parsed, or `None` when unset; a value that does not parse is
/// reported once and ignored.
fn from_env<T>(name: &str, parse: impl Fn(&str) -> Option<T>) -> Option<T> {
    let value = std::env::var(name).ok()?;
    let parsed = parse(value.trim());
    if parsed.is_none() {
        static WARNED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        if !warned.iter().any(|w| w == name) {
            warned.push(name.to_string());
            eprintln!("warning: ignoring {name}={value:?}: not a number");
        }
    }
    parsed
}

/// `30`, `2.5` or `30s`: seconds, more than zero.
fn parse_seconds(value: &str) -> Option<Duration> {
    let secs: f64 = value.strip_suffix('s').unwrap_or(value).parse().ok()?;
    (secs > 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs))
}

impl RegistryOptions {
    /// Whether `registry` is spoken to over plain HTTP: loopback hosts, and hosts
    /// named insecure here or in `BUILDER_INSECURE_REGISTRIES=host1,host2`, unless
    /// `certs_dir` has CAs for the host (then it clearly speaks TLS).
    pub fn is_plain_http(&self, registry: &str) -> bool {
        if self.certs_dir.join(registry).is_dir() {
            return false;
        }
        if client::is_loopback(registry) {
            return true;
        }
        let from_env = std::env::var(INSECURE_ENV).unwrap_or_default();
        let named = |h: &str| {
            let h = h.trim();
            !h.is_empty() && (h == registry || client::api_host(h) == client::api_host(registry))
        };
        self.insecure_hosts.iter().any(|h| named(h)) || from_env.split(',').any(named)
    }
}

/// Logs in: checks the credentials against the registry's `/v2/` (through its token
/// server when it has one), then saves them in Docker's `config.json`.
pub fn login(host: &str, username: &str, password: &str, opts: &RegistryOptions) -> Result<()> {
    let host = normalize_host(host);
    let credential = credentials::Credential::Basic { username: username.to_string(), password: password.to_string() };
    let runtime = runtime()?;
    runtime.block_on(async {
        let client = client::Client::with_credential(&host, opts, credential)?;
        let op = client.op("", "logging in to");
        let request = client::Request::new(reqwest::Method::GET, client.url("")?, &[]);
        let response = client.send(&op, &request).await?;
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            let body = body::read_prefix(response, body::MAX_SMALL_BODY).await;
            let detail = op::describe_status(status, &body);
            return Err(op
                .error(Some(status), format!("authentication failed for user {username:?}: {detail}"))
                .into());
        }
        if !status.is_success() {
            return Err(op.status_error(response).await.into());
        }
        Ok::<_, Error>(())
    })?;
    credentials::store(&host, username, password, opts)
        .map_err(|source| Error::SaveCredentials { path: credentials::config_path(opts), source })
}

/// Removes saved credentials for `host`; `false` when there were none.
pub fn logout(host: &str, opts: &RegistryOptions) -> Result<bool> {
    Ok(credentials::erase(&normalize_host(host), opts)?)
}

/// `https://index.docker.io/v1/` → `docker.io`, `http://localhost:5000/` →
/// `localhost:5000`.
pub fn normalize_host(host: &str) -> String {
    let rest = host.strip_prefix("https://").or_else(|| host.strip_prefix("http://")).unwrap_or(host);
    let rest = rest.split('/').next().unwrap_or(rest);
    match rest {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "" => "docker.io".to_string(),
        other => other.to_string(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("builder-registry")
        .enable_all()
        .build()
        .map_err(|source| Error::Runtime { source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_timeouts_parse_as_seconds() {
        assert_eq!(parse_seconds("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_seconds("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_seconds("30s"), Some(Duration::from_secs(30)));
        for bad in ["0", "-1", "abc", "", "inf"] {
            assert_eq!(parse_seconds(bad), None, "{bad}");
        }
    }
}
