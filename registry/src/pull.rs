//! Pull: manifest (by tag or digest, index → platform), then config and layers
//! streamed into the caller's [`Content`] in parallel, each verified against its
//! digest and resumed with `Range` after a dropped connection. Manifests are stored
//! byte-exact.

use crate::auth::Scope;
use crate::body::{CappedError, read_capped};
use crate::client::{Client, Request};
use crate::content::Content;
use crate::error::{Error, Result, UnsupportedManifest, chain};
use crate::op::Op;
use crate::retry::backoff;
use crate::{RegistryOptions, Transfer, runtime};
use futures_util::{StreamExt as _, TryStreamExt as _};
use image_spec::{
    Descriptor, Digest, Index, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST, Manifest, Platform, Reference,
    is_index_type, is_manifest_type,
};
use reqwest::{Method, StatusCode};
use std::io::{self, Read};

/// Manifests and indexes larger than this are refused (the spec suggests 4 MiB).
const MAX_MANIFEST: usize = 4 * 1024 * 1024;
/// Configs larger than this are refused before they are downloaded (the store
/// refuses to read larger ones).
const MAX_CONFIG: u64 = 32 * 1024 * 1024;

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// What a pull stored: the image manifest for the platform asked for and, when the
/// reference names an index, that index (byte-exact, its other platforms' images not
/// fetched).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    pub manifest: Digest,
    pub index: Option<Digest>,
}

/// Pulls `reference` for `platform` into `content`: the config and layers, then the
/// manifest (and the index it was chosen from).
pub fn pull(
    content: &dyn Content,
    reference: &Reference,
    platform: &Platform,
    opts: &RegistryOptions,
    progress: &dyn Fn(Transfer<'_>),
) -> Result<Pulled> {
    let runtime = runtime()?;
    let client = Client::new(&reference.registry, opts)?;
    std::thread::scope(|threads| runtime.block_on(pull_async(&client, content, reference, platform, progress, threads)))
}

async fn pull_async<'scope>(
    client: &Client,
    content: &'scope dyn Content,
    reference: &Reference,
    platform: &Platform,
    progress: &dyn Fn(Transfer<'_>),
    threads: &'scope std::thread::Scope<'scope, '_>,
) -> Result<Pulled> {
    let repository = &reference.repository;
    let scopes = [Scope::pull(repository)];
    let wanted = match (&reference.digest, &reference.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".to_string(),
    };
    progress(Transfer::Line(&format!("resolving {reference}")));
    let mut fetched = fetch_manifest(client, repository, &wanted, reference.digest.as_ref(), &scopes).await?;
    let mut index_bytes = None;
    if is_index_type(&fetched.media_type) {
        let index: Index = serde_json::from_slice(&fetched.bytes)
            .map_err(|e| client.op(repository, "reading the index of").error(None, format!("{e}")))?;
        let chosen = select_platform(&index, platform).ok_or_else(|| {
            let available: Vec<String> =
                index.manifests.iter().filter_map(|d| d.platform.as_ref()).map(ToString::to_string).collect();
            client.op(repository, "resolving").error(
                None,
                format!("{reference} has no image for platform {platform} (it has: {})", available.join(", ")),
            )
        })?;
        progress(Transfer::Line(&format!("platform {platform}: {}", chosen.digest)));
        let digest = chosen.digest.clone();
        index_bytes = Some(fetched);
        fetched = fetch_manifest(client, repository, digest.as_str(), Some(&digest), &scopes).await?;
        if !is_manifest_type(&fetched.media_type) {
            let detail = format!("{digest} is a {}, not an image manifest", fetched.media_type);
            return Err(client.op(repository, "pulling").error(None, detail).into());
        }
    }
    let manifest: Manifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| client.op(repository, "reading the manifest of").error(None, format!("{e}")))?;
    progress(Transfer::Manifest(&fetched.digest));
    if manifest.config.size > MAX_CONFIG {
        let detail = format!(
            "config {} is {} bytes, more than the {MAX_CONFIG} allowed",
            manifest.config.digest, manifest.config.size
        );
        return Err(client.op(repository, "pulling").error(None, detail).into());
    }

    let mut blobs: Vec<&Descriptor> = vec![&manifest.config];
    blobs.extend(manifest.layers.iter());
    let concurrency = client.opts.concurrency.max(1);
    futures_util::stream::iter(
        blobs.iter().map(|d| download_blob(client, content, repository, d, &scopes, progress, threads)),
    )
    .buffer_unordered(concurrency)
    .try_collect::<Vec<()>>()
    .await?;

    let digests: Vec<Digest> = blobs.iter().map(|d| d.digest.clone()).collect();
    content.add_blob_sources(&digests, &format!("{}/{repository}", client.registry));
    let mut index_digest = None;
    if let Some(index) = index_bytes {
        content.write_blob(&mut index.bytes.as_slice(), &index.digest).map_err(|source| Error::Content {
            action: "storing index",
            digest: index.digest.clone(),
            source,
        })?;
        index_digest = Some(index.digest);
    }
    content.write_blob(&mut fetched.bytes.as_slice(), &fetched.digest).map_err(|source| Error::Content {
        action: "storing manifest",
        digest: fetched.digest.clone(),
        source,
    })?;
    progress(Transfer::Line(&format!("pulled {reference}: {}", fetched.digest)));
    Ok(Pulled { manifest: fetched.digest, index: index_digest })
}

/// A manifest or index as fetched: raw bytes, media type and digest over the bytes.
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

/// GETs `/v2/<repository>/manifests/<reference>`; verifies the digest when the
/// reference is one. A body that does not hash to the digest asked for (or the one
/// the registry names) is fetched once more before the mismatch fails the pull.
pub async fn fetch_manifest(
    client: &Client,
    repository: &str,
    reference: &str,
    expected: Option<&Digest>,
    scopes: &[Scope],
) -> Result<Fetched> {
    match fetch_manifest_once(client, repository, reference, expected, scopes).await {
        Err(Mismatch::Digest(_)) => {
            tracing::debug!("manifest {reference} of {repository}: digest mismatch, fetching it again");
            fetch_manifest_once(client, repository, reference, expected, scopes).await.map_err(Error::from)
        }
        other => other.map_err(Error::from),
    }
}

/// Why one fetch of a manifest failed: a digest mismatch is worth another try.
enum Mismatch {
    Digest(Error),
    Other(Error),
}

impl From<Error> for Mismatch {
    fn from(e: Error) -> Self {
        Mismatch::Other(e)
    }
}

impl From<crate::error::RegistryError> for Mismatch {
    fn from(e: crate::error::RegistryError) -> Self {
        Mismatch::Other(e.into())
    }
}

impl From<Mismatch> for Error {
    fn from(m: Mismatch) -> Self {
        match m {
            Mismatch::Digest(e) | Mismatch::Other(e) => e,
        }
    }
}

async fn fetch_manifest_once(
    client: &Client,
    repository: &str,
    reference: &str,
    expected: Option<&Digest>,
    scopes: &[Scope],
) -> Result<Fetched, Mismatch> {
    let op = client.op(repository, &format!("fetching manifest {reference} of"));
    let url = client.url(&format!("{repository}/manifests/{reference}"))?;
    let request = Request::new(Method::GET, url, scopes).header("accept", MANIFEST_ACCEPT)?.follow_redirects();
    let response = client.send(&op, &request).await?;
    if response.status() != StatusCode::OK {
        return Err(op.status_error(response).await.into());
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string());
    let header_digest = response.headers().get("docker-content-digest").and_then(|v| v.to_str().ok()).map(String::from);
    let bytes = read_capped(response, MAX_MANIFEST).await.map_err(|e| match e {
        CappedError::TooLarge => op.error(None, format!("manifest larger than {MAX_MANIFEST} bytes")),
        CappedError::Transport(e) => op.caused("reading the body", e),
    })?;
    let digest = Digest::of(&bytes);
    if let Some(expected) = expected
        && *expected != digest
    {
        let detail = format!("digest mismatch: expected {expected}, the registry sent content hashing to {digest}");
        return Err(Mismatch::Digest(op.error(None, detail).into()));
    }
    if let Some(header) = header_digest
        && header.starts_with("sha256:")
        && header != digest.as_str()
    {
        let detail = format!("digest mismatch: the registry says {header}, the content hashes to {digest}");
        return Err(Mismatch::Digest(op.error(None, detail).into()));
    }
    let media_type = media_type_of(content_type.as_deref(), &bytes).map_err(|e| op.error(None, e.to_string()))?;
    Ok(Fetched { bytes, media_type, digest })
}

/// The media type of a manifest: its `Content-Type` when that is a known type, else
/// its `mediaType` field, else guessed from its shape (OCI allows it to be absent).
pub fn media_type_of(content_type: Option<&str>, bytes: &[u8]) -> Result<String, UnsupportedManifest> {
    let known = |t: &str| is_manifest_type(t) || is_index_type(t);
    if let Some(t) = content_type
        && known(t)
    {
        return Ok(t.to_string());
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(UnsupportedManifest::NotJson)?;
    if let Some(t) = value.get("mediaType").and_then(|v| v.as_str()) {
        if known(t) {
            return Ok(t.to_string());
        }
        if t.starts_with("application/vnd.docker.distribution.manifest.v1") {
            return Err(UnsupportedManifest::SchemaV1);
        }
    }
    if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Err(UnsupportedManifest::SchemaV1);
    }
    if value.get("manifests").is_some() {
        return Ok(MEDIA_TYPE_OCI_INDEX.to_string());
    }
    if value.get("config").is_some() && value.get("layers").is_some() {
        return Ok(MEDIA_TYPE_OCI_MANIFEST.to_string());
    }
    Err(UnsupportedManifest::UnknownType { content_type: content_type.map(String::from) })
}

/// The index entry for `want`: same OS and architecture; among those the exact
/// variant, else one without a variant, else the first. `arm64` treats `v8` as no
/// variant.
pub fn select_platform<'i>(index: &'i Index, want: &Platform) -> Option<&'i Descriptor> {
    let normalize = |arch: &str, variant: Option<&str>| -> Option<String> {
        match (arch, variant) {
            ("arm64", Some("v8")) => None,
            (_, v) => v.filter(|v| !v.is_empty()).map(String::from),
        }
    };
    let want_variant = normalize(&want.architecture, want.variant.as_deref());
    let candidates: Vec<(&Descriptor, Option<String>)> = index
        .manifests
        .iter()
        .filter(|d| is_manifest_type(&d.media_type) || d.media_type.is_empty())
        .filter_map(|d| {
            let p = d.platform.as_ref()?;
            (p.os == want.os && p.architecture == want.architecture)
                .then(|| (d, normalize(&p.architecture, p.variant.as_deref())))
        })
        .collect();
    if let Some(v) = &want_variant
        && let Some((d, _)) = candidates.iter().find(|(_, pv)| pv.as_ref() == Some(v))
    {
        return Some(d);
    }
    candidates.iter().find(|(_, pv)| pv.is_none()).or(candidates.first()).map(|(d, _)| *d)
}

/// Downloads one blob into `content` unless it is there. A writer thread streams it
/// into [`Content::write_blob`] (which verifies the digest); dropped connections
/// resume with `Range`.
pub async fn download_blob<'scope>(
    client: &Client,
    content: &'scope dyn Content,
    repository: &str,
    descriptor: &Descriptor,
    scopes: &[Scope],
    progress: &dyn Fn(Transfer<'_>),
    threads: &'scope std::thread::Scope<'scope, '_>,
) -> Result<()> {
    let digest = descriptor.digest.clone();
    if content.has_blob(&digest) {
        progress(Transfer::Line(&format!("{}: already exists", digest.short())));
        return Ok(());
    }
    let op = client.op(repository, &format!("downloading blob {digest} of"));
    // Content that arrives whole but does not hash to its digest was most likely
    // damaged in transit: one fresh download, then the store's refusal stands.
    let mut refused = false;
    let size = loop {
        progress(Transfer::Blob { digest: &digest, current: 0, total: descriptor.size });
        let (sender, receiver) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(16);
        let (done_sender, done) = tokio::sync::oneshot::channel();
        let expected = digest.clone();
        threads.spawn(move || {
            let mut reader = ChannelReader { receiver, chunk: bytes::Bytes::new() };
            let _ = done_sender.send(content.write_blob(&mut reader, &expected));
        });
        let fetched = fetch_blob(client, &op, repository, descriptor, scopes, &sender, progress).await;
        if let Err(e) = &fetched {
            let _ = sender.send(Err(io::Error::other(chain(e)))).await;
        }
        drop(sender);
        let written = done.await.map_err(|_| Error::WriterStopped { digest: digest.clone() })?;
        fetched?;
        match written {
            Ok(size) => break size,
            Err(e) if !refused => {
                refused = true;
                progress(Transfer::Line(&format!("{}: {e}; downloading it again", digest.short())));
            }
            Err(e) => return Err(op.caused("storing", e).into()),
        }
    };
    if size != descriptor.size {
        let detail = format!("size mismatch: the manifest says {} bytes, got {size}", descriptor.size);
        return Err(op.error(None, detail).into());
    }
    progress(Transfer::Blob { digest: &digest, current: size, total: size });
    Ok(())
}

async fn fetch_blob(
    client: &Client,
    op: &Op,
    repository: &str,
    descriptor: &Descriptor,
    scopes: &[Scope],
    sender: &tokio::sync::mpsc::Sender<io::Result<bytes::Bytes>>,
    progress: &dyn Fn(Transfer<'_>),
) -> Result<()> {
    let url = client.url(&format!("{repository}/blobs/{}", descriptor.digest))?;
    let size = descriptor.size;
    let mut received: u64 = 0;
    let mut interruptions = 0u32;
    loop {
        let mut request = Request::new(Method::GET, url.clone(), scopes).follow_redirects();
        if received > 0 {
            request = request.header("range", &format!("bytes={received}-"))?;
        }
        let response = client.send(op, &request).await?;
        // A server that ignores Range sends everything again: skip what we have.
        let mut skip = match response.status() {
            StatusCode::OK => received,
            StatusCode::PARTIAL_CONTENT => {
                let start = response
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes "))
                    .and_then(|v| v.split('-').next())
                    .and_then(|v| v.parse::<u64>().ok());
                if start != Some(received) {
                    let detail = format!("asked for bytes from {received}, got {start:?}");
                    return Err(op.error(Some(StatusCode::PARTIAL_CONTENT), detail).into());
                }
                0
            }
            _ => return Err(op.status_error(response).await.into()),
        };
        let mut stream = response.bytes_stream();
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            let mut chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            if skip > 0 {
                let n = skip.min(chunk.len() as u64);
                skip -= n;
                chunk = chunk.slice(n as usize..);
                if chunk.is_empty() {
                    continue;
                }
            }
            received += chunk.len() as u64;
            if received > size {
                let detail = format!("the registry sent more than the {size} bytes the manifest lists");
                return Err(op.error(None, detail).into());
            }
            if sender.send(Ok(chunk)).await.is_err() {
                // The writer stopped (its error is reported by the caller).
                return Ok(());
            }
            // The last count is reported once the blob is stored.
            if received < size {
                progress(Transfer::Blob { digest: &descriptor.digest, current: received, total: size });
            }
        }
        if failure.is_none() && received == size {
            return Ok(());
        }
        interruptions += 1;
        let reason = match failure {
            Some(e) => chain(&e),
            None => format!("the body ended after {received} of {size} bytes"),
        };
        if interruptions > client.opts.retries {
            let detail = format!("giving up after {interruptions} interrupted transfers: {reason}");
            return Err(op.error(None, detail).into());
        }
        let line = format!("{}: interrupted at {received}/{size} bytes, resuming", descriptor.digest.short());
        progress(Transfer::Line(&line));
        tracing::debug!("blob {} interrupted: {reason}", descriptor.digest);
        tokio::time::sleep(backoff(interruptions - 1)).await;
    }
}

/// A blocking reader over the chunks a download sends; an `Err` chunk fails the
/// read (and so the blob), the end of the channel is the end of the blob.
struct ChannelReader {
    receiver: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.receiver.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_spec::{MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_DOCKER_MANIFEST};

    fn index(platforms: &[(&str, &str, Option<&str>)]) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_INDEX.into()),
            manifests: platforms
                .iter()
                .enumerate()
                .map(|(i, (os, arch, variant))| Descriptor {
                    media_type: MEDIA_TYPE_OCI_MANIFEST.into(),
                    digest: Digest::of(&[i as u8]),
                    size: 1,
                    annotations: None,
                    platform: Some(image_spec::Platform {
                        architecture: arch.to_string(),
                        os: os.to_string(),
                        variant: variant.map(String::from),
                    }),
                })
                .collect(),
            annotations: None,
        }
    }

    fn want(arch: &str, variant: Option<&str>) -> image_spec::Platform {
        image_spec::Platform { os: "linux".into(), architecture: arch.into(), variant: variant.map(String::from) }
    }

    #[test]
    fn platform_selection() {
        let idx = index(&[
            ("linux", "amd64", None),
            ("linux", "arm", Some("v6")),
            ("linux", "arm", Some("v7")),
            ("linux", "arm64", Some("v8")),
        ]);
        assert_eq!(select_platform(&idx, &want("amd64", None)).unwrap().digest, Digest::of(&[0]));
        assert_eq!(select_platform(&idx, &want("arm", Some("v7"))).unwrap().digest, Digest::of(&[2]));
        assert_eq!(select_platform(&idx, &want("arm", None)).unwrap().digest, Digest::of(&[1]));
        assert_eq!(select_platform(&idx, &want("arm64", None)).unwrap().digest, Digest::of(&[3]));
        assert!(select_platform(&idx, &want("s390x", None)).is_none());
    }

    #[test]
    fn media_types() {
        assert_eq!(media_type_of(Some(MEDIA_TYPE_DOCKER_MANIFEST), b"{}").unwrap(), MEDIA_TYPE_DOCKER_MANIFEST);
        assert_eq!(media_type_of(Some("application/json"), br#"{"manifests":[]}"#).unwrap(), MEDIA_TYPE_OCI_INDEX);
        assert_eq!(
            media_type_of(None, format!(r#"{{"mediaType":"{MEDIA_TYPE_DOCKER_LIST}"}}"#).as_bytes()).unwrap(),
            MEDIA_TYPE_DOCKER_LIST
        );
        let err = media_type_of(None, br#"{"schemaVersion":1,"fsLayers":[]}"#).unwrap_err();
        assert!(matches!(err, UnsupportedManifest::SchemaV1) && err.to_string().contains("schema 1"), "{err}");
    }
}
