//! A blocking handle on one repository, for callers that move things other than whole
//! images (the build cache): fetch a manifest and small blobs, stream a blob into the
//! caller's [`Content`], push blobs and a manifest.
//!
//! The handle owns its network runtime; its methods may be called from several
//! threads at once (lazy cache fetches run on the build's worker threads).

use crate::auth::Scope;
use crate::client::{Client, Request};
use crate::content::Content;
use crate::error::{Error, Result};
use crate::pull::{Fetched, download_blob, fetch_manifest};
use crate::push::{Pushed, push_blobs, put_manifest};
use crate::{RegistryOptions, Transfer, runtime};
use futures_util::StreamExt as _;
use image_spec::{Descriptor, Digest, Reference};
use reqwest::{Method, StatusCode};
use std::collections::HashSet;

pub struct Repository {
    runtime: tokio::runtime::Runtime,
    client: Client,
    pub reference: Reference,
}

/// What a push of several blobs did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PushStats {
    /// Skipped without a request: known to be in the repository.
    pub known: usize,
    /// The registry answered HEAD with 200.
    pub existed: usize,
    pub mounted: usize,
    pub uploaded: usize,
}

impl Repository {
    pub fn open(reference: &Reference, opts: &RegistryOptions) -> Result<Repository> {
        Ok(Repository {
            runtime: runtime()?,
            client: Client::new(&reference.registry, opts)?,
            reference: reference.clone(),
        })
    }

    fn repository(&self) -> &str {
        &self.reference.repository
    }

    /// The tag or digest the reference names (`latest` when neither).
    fn target(&self) -> String {
        match (&self.reference.digest, &self.reference.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The manifest or index the reference names; `None` when the registry has none
    /// (404), so a first `--cache-from` of a cache not yet exported is quiet.
    pub fn manifest(&self) -> Result<Option<Fetched>> {
        let scopes = [Scope::pull(self.repository())];
        let target = self.target();
        let fetched = self.runtime.block_on(fetch_manifest(
            &self.client,
            self.repository(),
            &target,
            self.reference.digest.as_ref(),
            &scopes,
        ));
        match fetched {
            Err(e) if e.status() == Some(404) => Ok(None),
            other => other.map(Some),
        }
    }

    /// A manifest of the repository by digest.
    pub fn manifest_by_digest(&self, digest: &Digest) -> Result<Fetched> {
        let scopes = [Scope::pull(self.repository())];
        self.runtime.block_on(fetch_manifest(&self.client, self.repository(), digest.as_str(), Some(digest), &scopes))
    }

    /// A small blob (a config), read whole and verified; at most `max` bytes.
    pub fn blob_bytes(&self, descriptor: &Descriptor, max: u64) -> Result<Vec<u8>> {
        let digest = &descriptor.digest;
        let op = self.client.op(self.repository(), &format!("fetching blob {digest} of"));
        if descriptor.size > max {
            return Err(op.error(None, format!("{} bytes is more than the {max} allowed", descriptor.size)).into());
        }
        let scopes = [Scope::pull(self.repository())];
        self.runtime.block_on(async {
            let url = self.client.url(&format!("{}/blobs/{digest}", self.repository()))?;
            let response = self.client.send(&op, &Request::new(Method::GET, url, &scopes).follow_redirects()).await?;
            if response.status() != StatusCode::OK {
                return Err(op.status_error(response).await.into());
            }
            let mut bytes = Vec::new();
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| op.caused("reading the body", e))?;
                bytes.extend_from_slice(&chunk);
                if bytes.len() as u64 > max {
                    return Err(op.error(None, format!("the body is larger than the {max} bytes allowed")).into());
                }
            }
            let found = Digest::of(&bytes);
            if found != *digest {
                return Err(op.error(None, format!("digest mismatch: the content hashes to {found}")).into());
            }
            Ok::<_, Error>(bytes)
        })
    }

    /// Streams a blob into `content` (verified, resumed after dropped connections).
    pub fn fetch_blob(
        &self,
        content: &dyn Content,
        descriptor: &Descriptor,
        progress: &dyn Fn(Transfer<'_>),
    ) -> Result<()> {
        let scopes = [Scope::pull(self.repository())];
        std::thread::scope(|threads| {
            self.runtime.block_on(download_blob(
                &self.client,
                content,
                self.repository(),
                descriptor,
                &scopes,
                progress,
                threads,
            ))
        })
    }

    /// Pushes blobs (read from `content`, fetched there first only when they must be
    /// uploaded), a bounded number at once. Blobs in `known` are taken to be in the
    /// repository already and cost no request.
    pub fn push_blobs(
        &self,
        content: &dyn Content,
        blobs: &[Descriptor],
        known: &HashSet<Digest>,
        progress: &dyn Fn(Transfer<'_>),
    ) -> Result<PushStats> {
        let todo: Vec<&Descriptor> = blobs.iter().filter(|d| !known.contains(&d.digest)).collect();
        let mut stats = PushStats { known: blobs.len() - todo.len(), ..PushStats::default() };
        let pushed = self.runtime.block_on(push_blobs(&self.client, content, self.repository(), &todo, progress))?;
        for pushed in pushed {
            match pushed {
                Pushed::Existed => stats.existed += 1,
                Pushed::Mounted => stats.mounted += 1,
                Pushed::Uploaded => stats.uploaded += 1,
            }
        }
        Ok(stats)
    }

    /// Puts a manifest byte-exact under the reference's tag; returns its digest.
    pub fn put_manifest(&self, bytes: Vec<u8>, media_type: &str) -> Result<Digest> {
        let target = self.target();
        self.runtime.block_on(put_manifest(&self.client, self.repository(), &target, bytes, media_type))
    }

    /// Notes that these blobs live in this repository, so pushes to other
    /// repositories of the registry can mount them rather than upload.
    pub fn remember(&self, content: &dyn Content, digests: &[Digest]) {
        content.add_blob_sources(digests, &format!("{}/{}", self.client.registry, self.repository()));
    }
}
