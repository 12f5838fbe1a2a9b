//! `type=oci` of several platforms, as BuildKit writes it: an OCI layout whose
//! `index.json` names one image index (with the `-t` name in its annotations), that
//! index listing each platform's manifest. Blobs go in platform order (each image's
//! layers, config and manifest, then the index), each once, so the same images give
//! the same bytes.

use anyhow::{Context as _, Result};
use image_spec::{Descriptor, Digest, Image, Index, MEDIA_TYPE_OCI_INDEX, Reference};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use store::Store;

/// The layout's files, in order: `(path, content)` where content is a store blob or
/// bytes.
enum Content {
    Blob(Digest),
    Bytes(Vec<u8>),
}

/// The index as `index.json` names it: its descriptor's annotations
/// (`--annotation index-descriptor:`) beside the names.
pub struct Named<'a> {
    pub index: &'a Digest,
    pub names: &'a [Reference],
    pub annotations: &'a BTreeMap<String, String>,
}

fn layout(store: &Store, images: &[Image], named: &Named<'_>) -> Result<Vec<(String, Content)>> {
    let Named { index, names, annotations: descriptor_annotations } = *named;
    let mut blobs: Vec<Digest> = Vec::new();
    for image in images {
        for digest in image.layers.iter().map(|l| &l.digest).chain([&image.config_digest, &image.manifest_digest]) {
            if !blobs.contains(digest) {
                blobs.push(digest.clone());
            }
        }
    }
    blobs.push(index.clone());
    let descriptor = Descriptor {
        media_type: MEDIA_TYPE_OCI_INDEX.into(),
        digest: index.clone(),
        size: store.blob_size(index)?,
        annotations: (!descriptor_annotations.is_empty()).then(|| descriptor_annotations.clone()),
        platform: None,
    };
    let mut manifests = Vec::new();
    if names.is_empty() {
        manifests.push(descriptor.clone());
    }
    for name in names {
        let mut annotations = descriptor_annotations.clone();
        annotations.insert("io.containerd.image.name".to_string(), name.to_string());
        if let Some(tag) = &name.tag {
            annotations.insert("org.opencontainers.image.ref.name".to_string(), tag.clone());
        }
        manifests.push(Descriptor { annotations: Some(annotations), ..descriptor.clone() });
    }
    let top = Index { schema_version: 2, media_type: Some(MEDIA_TYPE_OCI_INDEX.into()), manifests, annotations: None };
    let mut files: Vec<(String, Content)> =
        blobs.into_iter().map(|d| (format!("blobs/sha256/{}", d.hex()), Content::Blob(d))).collect();
    files.push(("oci-layout".into(), Content::Bytes(br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec())));
    // Last: a reader of a directory layout never sees an index without its blobs.
    files.push(("index.json".into(), Content::Bytes(serde_json::to_vec(&top)?)));
    Ok(files)
}

/// Writes the layout as a tar to `out`.
pub fn write_tar<W: Write>(store: &Store, images: &[Image], named: &Named<'_>, out: W) -> Result<W> {
    let mut tar = tar::Builder::new(out);
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut header = header(0, 0o755);
        header.set_entry_type(tar::EntryType::Directory);
        tar.append_data(&mut header, dir, std::io::empty())?;
    }
    for (path, content) in layout(store, images, named)? {
        match content {
            Content::Blob(digest) => {
                let size = store.blob_size(&digest)?;
                let blob = crate::layer::open_blob_or_layer(store, &digest)?;
                tar.append_data(&mut header(size, 0o644), &path, blob)
                    .with_context(|| format!("writing blob {digest}"))?;
            }
            Content::Bytes(bytes) => {
                tar.append_data(&mut header(bytes.len() as u64, 0o644), &path, bytes.as_slice())?
            }
        }
    }
    tar.into_inner().context("finishing the archive")
}

/// Writes the layout into the directory `dir`.
pub fn write_dir(store: &Store, images: &[Image], named: &Named<'_>, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("blobs/sha256")).with_context(|| format!("creating {}", dir.display()))?;
    for (path, content) in layout(store, images, named)? {
        let target = dir.join(&path);
        match content {
            Content::Blob(digest) => {
                let mut blob = crate::layer::open_blob_or_layer(store, &digest)?;
                let mut file =
                    std::fs::File::create(&target).with_context(|| format!("creating {}", target.display()))?;
                std::io::copy(&mut blob, &mut file).with_context(|| format!("writing {}", target.display()))?;
            }
            Content::Bytes(bytes) => {
                std::fs::write(&target, bytes).with_context(|| format!("writing {}", target.display()))?
            }
        }
    }
    Ok(())
}

fn header(size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(0);
    header.set_uid(0);
    header.set_gid(0);
    header
}
