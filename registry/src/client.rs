//! Transport: one [`Client`] per registry host, with the scheme and CAs chosen for
//! that host, authentication (see `auth.rs`), retries with backoff and redirects that
//! never carry `Authorization` to another host.

use crate::RegistryOptions;
use crate::auth::{Auth, Scope};
use crate::credentials::Credential;
use crate::error::{Error, Result};
use crate::op::{Op, safe_url};
use crate::retry::{backoff, is_retriable, is_retriable_error, retry_after};
use crate::stream::BlobStream;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{Method, Response, StatusCode, Url};
use std::path::PathBuf;
use std::time::Duration;

/// A request body that can be sent again on a retry.
#[derive(Clone)]
pub enum Payload<'a> {
    Empty,
    Bytes(Vec<u8>),
    /// `len` bytes of a file from `offset`.
    File {
        path: PathBuf,
        offset: u64,
        len: u64,
    },
    /// `len` bytes from `offset` of a blob the caller's store makes as it is read.
    Made {
        blob: BlobStream<'a>,
        offset: u64,
        len: u64,
    },
}

impl Payload<'_> {
    fn len(&self) -> u64 {
        match self {
            Payload::Empty => 0,
            Payload::Bytes(b) => b.len() as u64,
            Payload::File { len, .. } | Payload::Made { len, .. } => *len,
        }
    }

    async fn body(&self) -> Result<reqwest::Body> {
        Ok(match self {
            Payload::Empty => reqwest::Body::from(Vec::new()),
            Payload::Bytes(b) => reqwest::Body::from(b.clone()),
            Payload::File { path, offset, len } => {
                use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};
                let io = |source| Error::Io { action: "opening", path: path.clone(), source };
                let mut file = tokio::fs::File::open(path).await.map_err(io)?;
                file.seek(std::io::SeekFrom::Start(*offset)).await.map_err(io)?;
                let stream = tokio_util::io::ReaderStream::with_capacity(file.take(*len), 256 * 1024);
                reqwest::Body::wrap_stream(stream)
            }
            Payload::Made { blob, offset, len } => reqwest::Body::wrap_stream(blob.body(*offset, *len)),
        })
    }
}

/// One request: method, URL, headers, body, and the scopes its token needs.
pub struct Request<'a> {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub payload: Payload<'a>,
    pub scopes: &'a [Scope],
    /// Follow redirects (blob downloads may be sent to a storage host).
    pub follow_redirects: bool,
    /// Retry after connection errors, 5xx and 429. Off for upload bodies, whose
    /// session state after a failure only the caller can recover.
    pub retry: bool,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, url: Url, scopes: &'a [Scope]) -> Self {
        Request {
            method,
            url,
            headers: HeaderMap::new(),
            payload: Payload::Empty,
            scopes,
            follow_redirects: false,
            retry: true,
        }
    }

    pub fn header(mut self, name: &'static str, value: &str) -> Result<Self> {
        let value = HeaderValue::from_str(value).map_err(|source| Error::Header { name, source })?;
        self.headers.insert(name, value);
        Ok(self)
    }

    pub fn payload(mut self, payload: Payload<'a>) -> Self {
        self.payload = payload;
        self
    }

    pub fn follow_redirects(mut self) -> Self {
        self.follow_redirects = true;
        self
    }

    pub fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }
}

/// A client for one registry.
pub struct Client {
    http: reqwest::Client,
    /// `host[:port]` as written in references (`docker.io`, `localhost:5000`).
    pub registry: String,
    /// The base URL of the API, e.g. `https://registry-1.docker.io`.
    base: Url,
    pub auth: Auth,
    retries: u32,
    pub opts: RegistryOptions,
}

const MAX_REDIRECTS: usize = 10;

impl Client {
    pub fn new(registry: &str, opts: &RegistryOptions) -> Result<Client> {
        Client::build(registry, opts, Auth::new(registry, opts))
    }

    /// A client that authenticates with `credential` rather than the saved ones.
    pub fn with_credential(registry: &str, opts: &RegistryOptions, credential: Credential) -> Result<Client> {
        Client::build(registry, opts, Auth::with_credential(registry, opts, credential))
    }

    fn build(registry: &str, opts: &RegistryOptions, auth: Auth) -> Result<Client> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let api_host = api_host(registry);
        let scheme = if opts.is_plain_http(registry) { "http" } else { "https" };
        let base = Url::parse(&format!("{scheme}://{api_host}/"))
            .map_err(|source| Error::Host { registry: registry.to_string(), source })?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // Per read, so a stall is cut and a slow transfer that moves is not.
            .connect_timeout(opts.stall_timeout.min(Duration::from_secs(30)))
            .read_timeout(opts.stall_timeout)
            .user_agent(concat!("builder/", env!("CARGO_PKG_VERSION")));
        if scheme == "https" {
            let certs = extra_ca_certs(&opts.certs_dir, registry)?;
            if !certs.is_empty() {
                builder = builder.tls_certs_merge(certs);
            }
        }
        let http = builder.build().map_err(|source| Error::HttpClient { source })?;
        Ok(Client { http, registry: registry.to_string(), base, auth, retries: opts.retries, opts: opts.clone() })
    }

    /// `base/v2/<path>`.
    pub fn url(&self, path: &str) -> Result<Url> {
        self.base.join(&format!("v2/{path}")).map_err(|source| Error::Path { path: path.to_string(), source })
    }

    /// A URL the registry handed back (an upload `Location`), resolved against the
    /// API base.
    pub fn resolve(&self, location: &str) -> Result<Url> {
        self.base.join(location).map_err(|source| Error::Location {
            location: location.to_string(),
            registry: self.registry.clone(),
            source,
        })
    }

    pub fn op(&self, repository: &str, action: &str) -> Op {
        Op { host: self.registry.clone(), repository: repository.to_string(), action: action.to_string() }
    }

    /// Whether a URL points at the registry itself (where credentials may go).
    fn same_origin(&self, url: &Url) -> bool {
        url.scheme() == self.base.scheme()
            && url.host_str() == self.base.host_str()
            && url.port_or_known_default() == self.base.port_or_known_default()
    }

    /// Sends a request with authentication, retries and redirects. Returns the final
    /// response whatever its status, except retriable failures that never recovered.
    pub async fn send(&self, op: &Op, request: &Request<'_>) -> Result<Response> {
        let mut attempt = 0u32;
        let mut reauthenticated = false;
        loop {
            let mut sent_auth = None;
            let result = self.send_once(op, request, &mut sent_auth).await;
            let retry_after = match &result {
                Ok(r) if r.status() == StatusCode::UNAUTHORIZED && !reauthenticated && self.same_origin(r.url()) => {
                    let challenge = r.headers().get_all("www-authenticate").iter().cloned().collect::<Vec<_>>();
                    if self.auth.on_challenge(&challenge, request.scopes, sent_auth.as_ref()).await? {
                        reauthenticated = true;
                        continue;
                    }
                    return result;
                }
                Ok(r) if is_retriable(r.status()) => retry_after(r.headers()),
                Ok(_) => return result,
                Err(e) if is_retriable_error(e) => None,
                Err(_) => return result,
            };
            if !request.retry {
                return result;
            }
            if attempt >= self.retries {
                let tries = attempt + 1;
                return match result {
                    Ok(r) => Ok(r),
                    Err(e) => Err(op.wrap(format!("giving up after {tries} attempts"), e)),
                };
            }
            let delay = retry_after.unwrap_or_else(|| backoff(attempt));
            match &result {
                Ok(r) => {
                    tracing::debug!("{} {}: HTTP {}, retrying in {delay:?}", request.method, r.url().path(), r.status())
                }
                Err(e) => tracing::debug!(
                    "{} {}: {}, retrying in {delay:?}",
                    request.method,
                    request.url.path(),
                    crate::error::chain(e)
                ),
            }
            drop(result);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    /// One request, following redirects; `sent_auth` records the credentials sent
    /// to the registry, so that a 401 can tell a stale token from a fresh one.
    async fn send_once(&self, op: &Op, request: &Request<'_>, sent_auth: &mut Option<HeaderValue>) -> Result<Response> {
        let mut url = request.url.clone();
        let mut method = request.method.clone();
        for _ in 0..MAX_REDIRECTS {
            let mut builder = self.http.request(method.clone(), url.clone()).headers(request.headers.clone());
            // Credentials go only to the registry itself, never to a storage host
            // that a redirect points at.
            if self.same_origin(&url)
                && let Some(value) = self.auth.header_for(&self.http, op, request.scopes).await?
            {
                *sent_auth = Some(value.clone());
                builder = builder.header(reqwest::header::AUTHORIZATION, value);
            }
            if !matches!(request.payload, Payload::Empty)
                || matches!(method, Method::PUT | Method::POST | Method::PATCH)
            {
                builder = builder.header(reqwest::header::CONTENT_LENGTH, request.payload.len());
                builder = builder.body(request.payload.body().await?);
            }
            let response =
                builder.send().await.map_err(|e| op.caused(format!("{method} {}", safe_url(&url)), e.without_url()))?;
            let status = response.status();
            if request.follow_redirects && status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                let Some(location) = response.headers().get(reqwest::header::LOCATION) else {
                    return Ok(response);
                };
                let location = location.to_str().map_err(|_| op.error(Some(status), "redirect with a bad Location"))?;
                url = url.join(location).map_err(|_| op.error(Some(status), "redirect with a bad Location"))?;
                if status == StatusCode::SEE_OTHER {
                    method = Method::GET;
                }
                continue;
            }
            return Ok(response);
        }
        Err(op.error(None, format!("more than {MAX_REDIRECTS} redirects")).into())
    }
}

/// `docker.io` is served by `registry-1.docker.io`.
pub fn api_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        other => other,
    }
}

/// Whether `host[:port]` is a loopback name, where plain HTTP is allowed.
pub fn is_loopback(registry: &str) -> bool {
    if registry.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        return true;
    }
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry
            .rsplit_once(':')
            .map_or(registry, |(h, p)| if p.bytes().all(|b| b.is_ascii_digit()) { h } else { registry }),
    };
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// CA certificates for a host from `DIR/HOST/*.crt` (Docker's `certs.d` layout).
fn extra_ca_certs(certs_dir: &std::path::Path, registry: &str) -> Result<Vec<reqwest::Certificate>> {
    let dir = certs_dir.join(registry);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { action: "reading", path: dir, source }),
    };
    let mut paths: Vec<PathBuf> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "crt")).collect();
    paths.sort();
    let mut out = Vec::new();
    for path in paths {
        let pem = std::fs::read(&path).map_err(|source| Error::Io { action: "reading", path: path.clone(), source })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| Error::Certificates { path, source })?;
        out.extend(certs);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["localhost", "localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "::1"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["docker.io", "example.com:5000", "10.0.0.1:5000", "localhost.example.com"] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn docker_hub_api_host() {
        assert_eq!(api_host("docker.io"), "registry-1.docker.io");
        assert_eq!(api_host("ghcr.io"), "ghcr.io");
    }
}
