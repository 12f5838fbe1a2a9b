//! Push: each blob is checked with HEAD and skipped when present, mounted from
//! another repository of the same registry when known to be there, else uploaded
//! (one PUT when small, PATCH chunks when large, resuming from the registry's
//! `Range` after a 416 or a dropped connection). The manifest goes last, byte-exact.
//! An upload session that is given up (a restart, a failure, a push that fails
//! elsewhere) is cancelled with a `DELETE`, best effort, so that the registry does not
//! keep its partial content until its own purge.

use crate::auth::Scope;
use crate::client::{Client, Payload, Request};
use crate::content::{Content, UploadFrom};
use crate::error::{Error, Result, chain};
use crate::op::Op;
use crate::pull::media_type_of;
use crate::retry::backoff;
use crate::stream::BlobStream;
use crate::{RegistryOptions, Transfer, runtime};
use futures_util::StreamExt as _;
use image_spec::{Descriptor, Digest, Manifest, Reference};
use reqwest::{Method, Response, StatusCode, Url};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Pushes the image whose manifest is `manifest_digest` in `content` to `reference`
/// and returns the manifest digest.
pub fn push(
    content: &dyn Content,
    manifest_digest: &Digest,
    reference: &Reference,
    opts: &RegistryOptions,
    progress: &dyn Fn(Transfer<'_>),
) -> Result<Digest> {
    let manifest_bytes = content.read_blob(manifest_digest).map_err(|source| Error::Content {
        action: "reading manifest",
        digest: manifest_digest.clone(),
        source,
    })?;
    let unsupported = |reason: String| Error::Manifest { digest: manifest_digest.clone(), reason };
    let media_type = media_type_of(None, &manifest_bytes).map_err(|e| unsupported(e.to_string()))?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| unsupported(e.to_string()))?;
    let runtime = runtime()?;
    let client = Client::new(&reference.registry, opts)?;
    let repository = &reference.repository;
    runtime.block_on(async {
        let mut blobs: Vec<&Descriptor> = vec![&manifest.config];
        blobs.extend(manifest.layers.iter());
        push_blobs(&client, content, repository, &blobs, progress).await?;
        let target = match (&reference.tag, &reference.digest) {
            (Some(tag), _) => tag.clone(),
            (None, Some(digest)) => digest.to_string(),
            (None, None) => "latest".to_string(),
        };
        progress(Transfer::Manifest(manifest_digest));
        put_manifest(&client, repository, &target, manifest_bytes, &media_type).await
    })
}

/// Pushes blobs, `concurrency` at once, and notes that they now live in `repository`
/// (so pushes to other repositories of the registry can mount them).
pub async fn push_blobs(
    client: &Client,
    content: &dyn Content,
    repository: &str,
    blobs: &[&Descriptor],
    progress: &dyn Fn(Transfer<'_>),
) -> Result<Vec<Pushed>> {
    let sessions = Sessions::default();
    // On a failure the other blobs stop at their next request rather than being
    // dropped midway: a request dropped in flight may open (or write to) a session
    // after it was cancelled.
    let results = futures_util::stream::iter(
        blobs.iter().map(|d| push_unless_aborted(client, content, repository, d, &sessions, progress)),
    )
    .buffer_unordered(client.opts.concurrency.max(1))
    .collect::<Vec<_>>()
    .await;
    sessions.cancel_all(client, repository).await;
    let mut pushed = Vec::new();
    let mut failure = None;
    for result in results {
        match result {
            Ok(p) => pushed.extend(p),
            // The first failure, not those it caused.
            Err((first, e)) if first || failure.is_none() => failure = Some(e),
            Err(_) => {}
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    let digests: Vec<Digest> = blobs.iter().map(|d| d.digest.clone()).collect();
    content.add_blob_sources(&digests, &format!("{}/{repository}", client.registry));
    Ok(pushed)
}

/// [`push_blob`] unless the push has failed already (`None`); a failure comes with
/// whether it was the push's first.
async fn push_unless_aborted(
    client: &Client,
    content: &dyn Content,
    repository: &str,
    descriptor: &Descriptor,
    sessions: &Sessions,
    progress: &dyn Fn(Transfer<'_>),
) -> Result<Option<Pushed>, (bool, Error)> {
    if sessions.aborted() {
        return Ok(None);
    }
    match push_blob(client, content, repository, descriptor, sessions, progress).await {
        Ok(pushed) => Ok(Some(pushed)),
        Err(e) => Err((sessions.abort(), e)),
    }
}

/// PUTs a manifest or index byte-exact under a tag or digest; returns its digest.
pub async fn put_manifest(
    client: &Client,
    repository: &str,
    target: &str,
    bytes: Vec<u8>,
    media_type: &str,
) -> Result<Digest> {
    let digest = Digest::of(&bytes);
    let scopes = [Scope::push(repository)];
    let op = client.op(repository, &format!("pushing manifest {target} to"));
    let url = client.url(&format!("{repository}/manifests/{target}"))?;
    let request =
        Request::new(Method::PUT, url, &scopes).header("content-type", media_type)?.payload(Payload::Bytes(bytes));
    let response = client.send(&op, &request).await?;
    if !response.status().is_success() {
        return Err(op.status_error(response).await.into());
    }
    check_digest_header(&op, &response, &digest)?;
    Ok(digest)
}

fn check_digest_header(op: &Op, response: &Response, digest: &Digest) -> Result<()> {
    if let Some(header) = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok())
        && header.starts_with("sha256:")
        && header != digest.as_str()
    {
        return Err(op.error(None, format!("the registry stored {header} instead of {digest}")).into());
    }
    Ok(())
}

/// What pushing a blob took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The registry had it (HEAD).
    Existed,
    /// Mounted from another repository of the registry.
    Mounted,
    Uploaded,
}

/// Pushes one blob: skipped when the registry has it, mounted from another repository
/// when known to be there (without reading it locally, so a blob the store would
/// have to fetch first is not needed), else uploaded from `content`.
pub async fn push_blob(
    client: &Client,
    content: &dyn Content,
    repository: &str,
    descriptor: &Descriptor,
    sessions: &Sessions,
    progress: &dyn Fn(Transfer<'_>),
) -> Result<Pushed> {
    let digest = &descriptor.digest;
    let scopes = [Scope::push(repository)];
    let op = client.op(repository, &format!("checking blob {digest} in"));
    let url = client.url(&format!("{repository}/blobs/{digest}"))?;
    let response = client.send(&op, &Request::new(Method::HEAD, url, &scopes).follow_redirects()).await?;
    match response.status() {
        StatusCode::OK => {
            progress(Transfer::Line(&format!("{}: already exists", digest.short())));
            return Ok(Pushed::Existed);
        }
        StatusCode::NOT_FOUND => {}
        _ => return Err(op.status_error(response).await.into()),
    }
    let mut session = None;
    for source in mount_candidates(content, digest, &client.registry, repository).into_iter().take(3) {
        match mount(client, repository, &source, digest, sessions).await? {
            Mount::Mounted => {
                progress(Transfer::Line(&format!("{}: mounted from {source}", digest.short())));
                return Ok(Pushed::Mounted);
            }
            Mount::Upload(s) => {
                session = Some(s);
                break;
            }
            Mount::Refused => {}
        }
    }
    let (from, size) = content.blob_upload(digest).map_err(|source| Error::Content {
        action: "reading",
        digest: digest.clone(),
        source,
    })?;
    if size != descriptor.size {
        return Err(Error::BlobSize { digest: digest.clone(), found: size, expected: descriptor.size });
    }
    progress(Transfer::Blob { digest, current: 0, total: size });
    let bytes = match from {
        UploadFrom::File(path) => Bytes::File(path),
        UploadFrom::Made => Bytes::Made(BlobStream::new(content, digest)),
    };
    let blob = Upload { client, repository, digest, bytes, size, sessions, progress };
    blob.upload(session).await?;
    progress(Transfer::Blob { digest, current: size, total: size });
    Ok(Pushed::Uploaded)
}

/// The repositories of `registry` other than `repository` that `digest` is known to
/// be in, most recent first.
fn mount_candidates(content: &dyn Content, digest: &Digest, registry: &str, repository: &str) -> Vec<String> {
    let prefix = format!("{registry}/");
    content
        .blob_sources(digest)
        .into_iter()
        .filter_map(|name| name.strip_prefix(&prefix).map(String::from))
        .filter(|repo| repo != repository)
        .collect()
}

/// An upload session: where to send the bytes, and the registry's minimum chunk.
struct Session {
    /// Its entry in [`Sessions`].
    id: u64,
    location: Url,
    min_chunk: u64,
}

/// The upload sessions of a push that are open in the registry, at their latest
/// `Location` (a registry may carry the session's state in it), so that those given
/// up can be cancelled.
#[derive(Default)]
pub struct Sessions {
    next: AtomicU64,
    open: Mutex<HashMap<u64, Url>>,
    /// A blob failed: the push fails, the others stop at their next request.
    aborted: AtomicBool,
}

impl Sessions {
    /// Marks the push failed; whether this was the first failure.
    fn abort(&self) -> bool {
        !self.aborted.swap(true, Ordering::SeqCst)
    }

    fn aborted(&self) -> bool {
        self.aborted.load(Ordering::SeqCst)
    }

    /// An error when the push has failed elsewhere (the caller reports that failure).
    fn check(&self, op: &Op) -> Result<()> {
        if self.aborted() {
            return Err(op.error(None, "stopped: another blob failed").into());
        }
        Ok(())
    }

    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Url>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn opened(&self, location: &Url) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.open().insert(id, location.clone());
        id
    }

    fn moved(&self, id: u64, location: &Url) {
        if let Some(at) = self.open().get_mut(&id) {
            *at = location.clone();
        }
    }

    /// The session is complete: the registry closed it.
    fn closed(&self, id: u64) {
        self.open().remove(&id);
    }

    /// Cancels a session given up (`DELETE` on its location), best effort.
    async fn cancel(&self, client: &Client, repository: &str, id: u64) {
        let location = self.open().remove(&id);
        if let Some(location) = location {
            cancel_upload(client, repository, location).await;
        }
    }

    async fn cancel_all(&self, client: &Client, repository: &str) {
        let open: Vec<Url> = self.open().drain().map(|(_, url)| url).collect();
        futures_util::future::join_all(open.into_iter().map(|url| cancel_upload(client, repository, url))).await;
    }
}

/// `DELETE` on an upload session (the distribution spec's cancel), best effort: the
/// push has already failed or moved on, and the registry purges old sessions anyway.
async fn cancel_upload(client: &Client, repository: &str, location: Url) {
    let scopes = [Scope::push(repository)];
    let op = client.op(repository, "cancelling an upload to");
    let request = Request::new(Method::DELETE, location, &scopes).no_retry();
    match client.send(&op, &request).await {
        Ok(response) if response.status().is_success() || response.status() == StatusCode::NOT_FOUND => {}
        Ok(response) => tracing::debug!("{}", op.status_error(response).await),
        Err(e) => tracing::debug!("{}", chain(&e)),
    }
}

enum Mount {
    Mounted,
    /// The registry could not mount and opened an ordinary upload instead (202).
    Upload(Session),
    Refused,
}

/// `POST /blobs/uploads/?mount=D&from=SOURCE`, with pull scope on the source.
async fn mount(client: &Client, repository: &str, source: &str, digest: &Digest, sessions: &Sessions) -> Result<Mount> {
    let scopes = [Scope::push(repository), Scope::pull(source)];
    let op = client.op(repository, &format!("mounting blob {digest} from {source} into"));
    let mut url = client.url(&format!("{repository}/blobs/uploads/"))?;
    url.query_pairs_mut().append_pair("mount", digest.as_str()).append_pair("from", source);
    let response = match client.send(&op, &Request::new(Method::POST, url, &scopes)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("{}", chain(&e));
            return Ok(Mount::Refused);
        }
    };
    match response.status() {
        StatusCode::CREATED => Ok(Mount::Mounted),
        StatusCode::ACCEPTED => Ok(Mount::Upload(session_of(client, &op, &response, sessions)?)),
        status => {
            tracing::debug!("mount refused: HTTP {status}");
            Ok(Mount::Refused)
        }
    }
}

fn session_of(client: &Client, op: &Op, response: &Response, sessions: &Sessions) -> Result<Session> {
    let location = location_of(client, op, response)?;
    let min_chunk = response
        .headers()
        .get("oci-chunk-min-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(Session { id: sessions.opened(&location), location, min_chunk })
}

fn location_of(client: &Client, op: &Op, response: &Response) -> Result<Url> {
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| Error::from(op.error(Some(response.status()), "the registry sent no upload Location")))?;
    client.resolve(location)
}

async fn start_upload(client: &Client, repository: &str, digest: &Digest, sessions: &Sessions) -> Result<Session> {
    let scopes = [Scope::push(repository)];
    let op = client.op(repository, &format!("starting the upload of {digest} to"));
    let url = client.url(&format!("{repository}/blobs/uploads/"))?;
    let response = client.send(&op, &Request::new(Method::POST, url, &scopes)).await?;
    if response.status() != StatusCode::ACCEPTED {
        return Err(op.status_error(response).await.into());
    }
    session_of(client, &op, &response, sessions)
}

/// What ended an attempt at an upload session.
enum Attempt {
    Done,
    /// The session is unusable (lost, or its content went wrong): start a new one.
    Restart(String),
}

/// Where an upload's bytes come from.
enum Bytes<'a> {
    File(PathBuf),
    /// Made by the store as they are read; one reader goes on from chunk to chunk.
    Made(BlobStream<'a>),
}

/// One blob's upload: what is sent where, and the push it belongs to.
struct Upload<'a> {
    client: &'a Client,
    repository: &'a str,
    digest: &'a Digest,
    /// The blob's bytes, `size` of them.
    bytes: Bytes<'a>,
    size: u64,
    /// The push's open sessions (to cancel them when it fails).
    sessions: &'a Sessions,
    progress: &'a dyn Fn(Transfer<'_>),
}

impl Upload<'_> {
    /// Uploads through `session` (or a new one), restarting in a new session when one
    /// goes wrong, at most `retries` times.
    async fn upload(&self, mut session: Option<Session>) -> Result<()> {
        let Upload { client, repository, digest, size, sessions, progress, .. } = *self;
        let op = client.op(repository, &format!("uploading blob {digest} to"));
        let mut restarts = 0;
        loop {
            if let Err(e) = sessions.check(&op) {
                if let Some(s) = session {
                    sessions.cancel(client, repository, s.id).await;
                }
                return Err(e);
            }
            let current = match session.take() {
                Some(s) => s,
                None => start_upload(client, repository, digest, sessions).await?,
            };
            let id = current.id;
            let attempt = if size <= client.opts.chunk_size {
                self.upload_whole(&op, current).await
            } else {
                self.upload_chunked(&op, current).await
            };
            let attempt = attempt.and_then(|a| self.unless_broken().map(|()| a));
            match attempt {
                Ok(Attempt::Done) => {
                    sessions.closed(id);
                    return Ok(());
                }
                Err(e) => {
                    sessions.cancel(client, repository, id).await;
                    return Err(e);
                }
                Ok(Attempt::Restart(reason)) => {
                    sessions.cancel(client, repository, id).await;
                    restarts += 1;
                    if restarts > client.opts.retries {
                        return Err(op.error(None, format!("giving up after {restarts} attempts: {reason}")).into());
                    }
                    progress(Transfer::Line(&format!("{}: {reason}; restarting the upload", digest.short())));
                    tokio::time::sleep(backoff(restarts - 1)).await;
                }
            }
        }
    }
}

impl<'a> Upload<'a> {
    /// The request body for `len` bytes from `offset`.
    fn payload(&self, offset: u64, len: u64) -> Payload<'a> {
        match &self.bytes {
            Bytes::File(path) => Payload::File { path: path.clone(), offset, len },
            Bytes::Made(blob) => Payload::Made { blob: blob.clone(), offset, len },
        }
    }

    /// An error when the store failed to make the blob's bytes (a layer whose
    /// snapshot changed): a retry would fail the same way.
    fn unless_broken(&self) -> Result<()> {
        match &self.bytes {
            Bytes::Made(blob) => match blob.failure() {
                Some(failure) => {
                    Err(Error::Content { action: "uploading", digest: self.digest.clone(), source: failure.into() })
                }
                None => Ok(()),
            },
            Bytes::File(_) => Ok(()),
        }
    }
}

fn with_digest(mut location: Url, digest: &Digest) -> Url {
    location.query_pairs_mut().append_pair("digest", digest.as_str());
    location
}

impl Upload<'_> {
    /// One PUT with the whole blob. A failure midway leaves the session in an unknown
    /// state, so it is not retried in place.
    async fn upload_whole(&self, op: &Op, session: Session) -> Result<Attempt> {
        let Upload { client, repository, digest, size, .. } = *self;
        let scopes = [Scope::push(repository)];
        let request = Request::new(Method::PUT, with_digest(session.location, digest), &scopes)
            .header("content-type", "application/octet-stream")?
            .payload(self.payload(0, size))
            .no_retry();
        finish(client, op, request, digest).await
    }
}

async fn finish(client: &Client, op: &Op, request: Request<'_>, digest: &Digest) -> Result<Attempt> {
    let response = match client.send(op, &request).await {
        Ok(r) => r,
        Err(e) => return Ok(Attempt::Restart(chain(&e))),
    };
    let status = response.status();
    if status == StatusCode::CREATED || status == StatusCode::NO_CONTENT || status == StatusCode::OK {
        check_digest_header(op, &response, digest)?;
        return Ok(Attempt::Done);
    }
    if status.is_server_error() || status == StatusCode::NOT_FOUND || status == StatusCode::TOO_MANY_REQUESTS {
        return Ok(Attempt::Restart(format!("{}", op.status_error(response).await)));
    }
    let error = op.status_error(response).await;
    if status == StatusCode::BAD_REQUEST && error.detail.contains("DIGEST_INVALID") {
        return Ok(Attempt::Restart(format!("{error}")));
    }
    Err(error.into())
}

impl Upload<'_> {
    /// PATCH chunks, then a closing PUT. After a dropped connection, a 416 or a 5xx
    /// the registry is asked how much it has (`GET` on the session: `Range: 0-N`) and
    /// the upload goes on from there.
    async fn upload_chunked(&self, op: &Op, session: Session) -> Result<Attempt> {
        let Upload { client, repository, digest, size, sessions, progress, .. } = *self;
        let scopes = [Scope::push(repository)];
        let chunk = client.opts.chunk_size.max(session.min_chunk).max(1);
        let mut location = session.location;
        let mut offset = 0u64;
        let mut failures = 0u32;
        while offset < size {
            sessions.check(op)?;
            let end = (offset + chunk).min(size);
            let request = Request::new(Method::PATCH, location.clone(), &scopes)
                .header("content-type", "application/octet-stream")?
                .header("content-range", &format!("{offset}-{}", end - 1))?
                .payload(self.payload(offset, end - offset))
                .no_retry();
            let problem = match client.send(op, &request).await {
                Ok(response) if response.status() == StatusCode::ACCEPTED => {
                    location = location_of(client, op, &response).unwrap_or(location);
                    sessions.moved(session.id, &location);
                    offset = range_end(&response).unwrap_or(end);
                    failures = 0;
                    if offset < size {
                        progress(Transfer::Blob { digest, current: offset, total: size });
                    }
                    continue;
                }
                Ok(response) if response.status() == StatusCode::NOT_FOUND => {
                    return Ok(Attempt::Restart(format!("{}", op.status_error(response).await)));
                }
                Ok(response)
                    if response.status() == StatusCode::RANGE_NOT_SATISFIABLE
                        || response.status().is_server_error()
                        || response.status() == StatusCode::TOO_MANY_REQUESTS =>
                {
                    format!("{}", op.status_error(response).await)
                }
                Ok(response) => return Err(op.status_error(response).await.into()),
                Err(e) => {
                    self.unless_broken()?;
                    chain(&e)
                }
            };
            failures += 1;
            if failures > client.opts.retries {
                return Ok(Attempt::Restart(problem));
            }
            tokio::time::sleep(backoff(failures - 1)).await;
            match upload_status(client, op, &location, &scopes).await {
                Some((at, new_location)) => {
                    let line = format!("{}: chunk failed ({problem}); resuming at {at}/{size} bytes", digest.short());
                    progress(Transfer::Line(&line));
                    offset = at;
                    location = new_location.unwrap_or(location);
                    sessions.moved(session.id, &location);
                }
                None => return Ok(Attempt::Restart(problem)),
            }
        }
        let request = Request::new(Method::PUT, with_digest(location, digest), &scopes).payload(Payload::Empty);
        finish(client, op, request, digest).await
    }
}

/// How many bytes an upload session holds and its new Location, if the registry
/// sent one; `None` when the session cannot go on (gone, or its state disputed).
async fn upload_status(client: &Client, op: &Op, location: &Url, scopes: &[Scope]) -> Option<(u64, Option<Url>)> {
    let response = match client.send(op, &Request::new(Method::GET, location.clone(), scopes)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!("upload status: {}", chain(&e));
            return None;
        }
    };
    match response.status() {
        StatusCode::NO_CONTENT | StatusCode::OK | StatusCode::ACCEPTED => {
            let at = range_end(&response).unwrap_or(0);
            Some((at, location_of(client, op, &response).ok()))
        }
        _ => {
            tracing::debug!("upload status: {}", op.status_error(response).await);
            None
        }
    }
}

/// The offset after `Range: 0-N` (N+1). `0-0` is what an empty session reports.
fn range_end(response: &Response) -> Option<u64> {
    let value = response.headers().get(reqwest::header::RANGE)?.to_str().ok()?;
    parse_range_end(value)
}

fn parse_range_end(value: &str) -> Option<u64> {
    let value = value.trim().strip_prefix("bytes=").unwrap_or(value.trim());
    let (start, end) = value.split_once('-')?;
    let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
    if start != 0 {
        return None;
    }
    Some(if end == 0 { 0 } else { end + 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers() {
        assert_eq!(parse_range_end("0-0"), Some(0));
        assert_eq!(parse_range_end("0-1023"), Some(1024));
        assert_eq!(parse_range_end("bytes=0-9"), Some(10));
        assert_eq!(parse_range_end("5-9"), None);
        assert_eq!(parse_range_end("junk"), None);
    }
}
