//! `builder save`: one tarball that `docker load` (via `manifest.json` and
//! `repositories`) and OCI tools (via `oci-layout` and `index.json`) both read. Every
//! file in it points into `blobs/sha256/`, as in Docker 25's `docker save`.

use crate::image::manifest::{MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_MANIFEST};
use crate::image::{Descriptor, Digest, Image, Index, Platform, Reference};
use crate::store::Store;
use anyhow::{Context as _, Result};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufWriter, Write};
use std::path::Path;

/// One entry of a docker-archive's `manifest.json`.
#[derive(Debug, Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifestEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

fn blob_name(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

/// Writes `images` (with the names they were asked by) to one tarball, atomically: a
/// temp file beside `out` renamed into place when complete.
pub fn save(store: &Store, images: &[(String, Image)], out: &Path) -> Result<()> {
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".builder-save-")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {}", dir.display()))?;
    {
        let writer = BufWriter::with_capacity(1 << 20, temp.as_file_mut());
        let writer = write_archive(store, images, writer)?;
        writer.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    temp.persist(out).with_context(|| format!("renaming into {}", out.display()))?;
    Ok(())
}

/// Writes the archive to any writer (a file, stdout).
pub fn write_archive<W: Write>(store: &Store, images: &[(String, Image)], out: W) -> Result<W> {
    // The names each manifest is saved under, in the order asked.
    let mut tags: BTreeMap<Digest, Vec<Reference>> = BTreeMap::new();
    let mut order: Vec<&Image> = Vec::new();
    for (name, image) in images {
        if !order.iter().any(|i| i.manifest_digest == image.manifest_digest) {
            order.push(image);
        }
        let names = tags.entry(image.manifest_digest.clone()).or_default();
        if let Some(reference) = saved_name(store, name, image)?
            && !names.contains(&reference)
        {
            names.push(reference);
        }
    }

    let mut blobs: BTreeSet<Digest> = BTreeSet::new();
    let mut index = Index {
        schema_version: 2,
        media_type: Some(MEDIA_TYPE_OCI_INDEX.into()),
        manifests: Vec::new(),
        annotations: None,
    };
    let mut docker_manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for image in &order {
        blobs.insert(image.manifest_digest.clone());
        blobs.insert(image.config_digest.clone());
        blobs.extend(image.layers.iter().map(|l| l.digest.clone()));
        let manifest_bytes = store.read_blob(&image.manifest_digest)?;
        let media_type = serde_json::from_slice::<serde_json::Value>(&manifest_bytes)?
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or(MEDIA_TYPE_OCI_MANIFEST)
            .to_string();
        let descriptor = Descriptor {
            media_type,
            digest: image.manifest_digest.clone(),
            size: manifest_bytes.len() as u64,
            annotations: None,
            platform: Some(Platform {
                architecture: image.config.architecture.clone(),
                os: image.config.os.clone(),
                variant: image.config.variant.clone(),
            }),
        };
        let names = &tags[&image.manifest_digest];
        if names.is_empty() {
            index.manifests.push(descriptor.clone());
        }
        for reference in names {
            let mut annotations = BTreeMap::new();
            annotations.insert("io.containerd.image.name".to_string(), reference.to_string());
            if let Some(tag) = &reference.tag {
                annotations.insert("org.opencontainers.image.ref.name".to_string(), tag.clone());
            }
            index.manifests.push(Descriptor { annotations: Some(annotations), ..descriptor.clone() });
            if let (Some(tag), Some(top)) = (&reference.tag, image.layers.last()) {
                let mut repo = reference.clone();
                repo.tag = None;
                repositories.entry(repo.familiar()).or_default().insert(tag.clone(), top.digest.hex().to_string());
            }
        }
        docker_manifest.push(DockerManifestEntry {
            config: blob_name(&image.config_digest),
            repo_tags: Some(names.iter().map(|r| r.familiar()).collect()),
            layers: image.layers.iter().map(|l| blob_name(&l.digest)).collect(),
        });
    }

    let mut tar = tar::Builder::new(out);
    dir_entry(&mut tar, "blobs/")?;
    dir_entry(&mut tar, "blobs/sha256/")?;
    for digest in &blobs {
        let mut file = store.open_blob(digest)?;
        let size = file.metadata()?.len();
        let mut h = header(size, 0o644);
        tar.append_data(&mut h, blob_name(digest), &mut file).with_context(|| format!("writing blob {digest}"))?;
    }
    file_entry(&mut tar, "index.json", &serde_json::to_vec(&index)?)?;
    file_entry(&mut tar, "manifest.json", &serde_json::to_vec(&docker_manifest)?)?;
    file_entry(&mut tar, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    if !repositories.is_empty() {
        file_entry(&mut tar, "repositories", &serde_json::to_vec(&repositories)?)?;
    }
    tar.into_inner().context("finishing the archive")
}

/// The name an image is saved under: the normalised reference when `name` is one of
/// the store's refs for this image, none when it was asked by id or digest.
fn saved_name(store: &Store, name: &str, image: &Image) -> Result<Option<Reference>> {
    let Ok(reference) = Reference::parse(name) else { return Ok(None) };
    if reference.digest.is_some() {
        return Ok(None);
    }
    Ok(match store.get_ref(&reference.to_string())? {
        Some(d) if d == image.manifest_digest => Some(reference),
        _ => None,
    })
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

fn dir_entry<W: Write>(tar: &mut tar::Builder<W>, name: &str) -> Result<()> {
    let mut h = header(0, 0o755);
    h.set_entry_type(tar::EntryType::Directory);
    tar.append_data(&mut h, name, std::io::empty())?;
    Ok(())
}

fn file_entry<W: Write>(tar: &mut tar::Builder<W>, name: &str, bytes: &[u8]) -> Result<()> {
    let mut h = header(bytes.len() as u64, 0o644);
    tar.append_data(&mut h, name, bytes)?;
    Ok(())
}
