//! `--build-context NAME=oci-layout://PATH[:TAG|@DIGEST]`: an image in an OCI layout
//! directory (what `-o type=oci,tar=false` writes), used as `FROM NAME` or `--from=NAME`
//! uses an image. The manifest is chosen when the request is read (by digest, by the
//! `org.opencontainers.image.ref.name` tag, `latest` by default, or the layout's only
//! image; the host's platform in an index); its blobs are copied into the store, each
//! verified, before the build, and the frontend sees `NAME@<manifest digest>`: no ref
//! is added to the store.

use anyhow::{Context as _, Result, anyhow, bail};
use image_spec::{Descriptor, Digest, Index, Manifest, Reference, host_platform, is_index_type};
use std::path::{Path, PathBuf};
use store::Store;

const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image of a layout directory.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    dir: PathBuf,
    manifest: Digest,
    /// What the frontend resolves: `NAME@DIGEST`.
    pub reference: String,
}

/// Reads `spec` (after `oci-layout://`) for the context named `name`.
pub fn parse(name: &str, spec: &str) -> Result<LayoutImage> {
    let (path, selector) = split(spec);
    let dir = Path::new(path).canonicalize().with_context(|| format!("oci layout {path}"))?;
    let index: Index = serde_json::from_slice(&read(&dir, "index.json")?)
        .with_context(|| format!("oci layout {}: index.json", dir.display()))?;
    let descriptor = match &selector {
        Selector::Digest(digest) => {
            index.manifests.iter().find(|d| d.digest == *digest).cloned().unwrap_or_else(|| Descriptor {
                media_type: String::new(),
                digest: digest.clone(),
                size: 0,
                annotations: None,
                platform: None,
            })
        }
        Selector::Tag(tag) => {
            pick_tag(&index, tag.as_deref()).with_context(|| format!("oci layout {}", dir.display()))?.clone()
        }
    };
    let manifest = platform_manifest(&dir, &descriptor)?;
    let short = name.split(['@', ':']).next().unwrap_or(name);
    let base = if Reference::parse(short).is_ok() { short } else { "oci-layout" };
    Ok(LayoutImage { reference: format!("{base}@{manifest}"), dir, manifest })
}

/// Copies the image's manifest, config and layers into the store.
pub fn load(store: &Store, image: &LayoutImage) -> Result<()> {
    let bytes = blob(&image.dir, &image.manifest)?;
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("oci layout {}: manifest {}", image.dir.display(), image.manifest))?;
    for digest in std::iter::once(&image.manifest)
        .chain(std::iter::once(&manifest.config.digest))
        .chain(manifest.layers.iter().map(|l| &l.digest))
    {
        if store.has_blob(digest) {
            continue;
        }
        let path = blob_path(&image.dir, digest);
        let mut file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let mut writer = store.blob_writer()?;
        std::io::copy(&mut file, &mut writer).with_context(|| format!("reading {}", path.display()))?;
        writer.commit(Some(digest)).with_context(|| format!("blob {}", path.display()))?;
    }
    Ok(())
}

enum Selector {
    Tag(Option<String>),
    Digest(Digest),
}

/// `PATH@sha256:...`, `PATH:TAG` (a `:` after the last `/`) or `PATH`.
fn split(spec: &str) -> (&str, Selector) {
    if let Some((path, digest)) = spec.rsplit_once('@')
        && let Ok(digest) = Digest::parse(digest)
    {
        return (path, Selector::Digest(digest));
    }
    let name_start = spec.rfind('/').map_or(0, |i| i + 1);
    match spec[name_start..].rfind(':') {
        Some(i) => (&spec[..name_start + i], Selector::Tag(Some(spec[name_start + i + 1..].to_string()))),
        None => (spec, Selector::Tag(None)),
    }
}

/// The descriptor tagged `tag` (`latest` when none is given), or the only one.
fn pick_tag<'a>(index: &'a Index, tag: Option<&str>) -> Result<&'a Descriptor> {
    let wanted = tag.unwrap_or("latest");
    let tagged = |d: &&Descriptor| {
        d.annotations
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .is_some_and(|r| r == wanted || r.rsplit_once(':').is_some_and(|(_, t)| t == wanted && !t.contains('/')))
    };
    if let Some(d) = index.manifests.iter().find(tagged) {
        return Ok(d);
    }
    match (tag, index.manifests.as_slice()) {
        (None, [only]) => Ok(only),
        (Some(tag), _) => bail!("no image tagged {tag:?} ({REF_NAME})"),
        (None, _) => bail!("{} images and none tagged latest: give :TAG or @DIGEST", index.manifests.len()),
    }
}

/// The manifest `descriptor` leads to: itself, or the host platform's in an index.
fn platform_manifest(dir: &Path, descriptor: &Descriptor) -> Result<Digest> {
    let bytes = blob(dir, &descriptor.digest)?;
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_string))
        .unwrap_or_else(|| descriptor.media_type.clone());
    if !is_index_type(&media_type) {
        return Ok(descriptor.digest.clone());
    }
    let index: Index = serde_json::from_slice(&bytes).with_context(|| format!("index {}", descriptor.digest))?;
    let host = host_platform();
    let found = index.manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| p.normalized() == host));
    let found = found.ok_or_else(|| anyhow!("index {} has no image for {host}", descriptor.digest))?;
    platform_manifest(dir, found)
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

fn blob(dir: &Path, digest: &Digest) -> Result<Vec<u8>> {
    let path = blob_path(dir, digest);
    let bytes =
        std::fs::read(&path).with_context(|| format!("oci layout {}: reading {}", dir.display(), path.display()))?;
    if Digest::of(&bytes) != *digest {
        bail!("oci layout {}: {} does not match its digest", dir.display(), path.display());
    }
    Ok(bytes)
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    std::fs::read(dir.join(name)).with_context(|| format!("oci layout {}: reading {name}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_split_into_path_and_selector() {
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        assert!(matches!(split(&format!("/a/b@{d}")), ("/a/b", Selector::Digest(_))));
        assert!(matches!(split("/a:b/c:v1"), ("/a:b/c", Selector::Tag(Some(t))) if t == "v1"));
        assert!(matches!(split("/a:b/c"), ("/a:b/c", Selector::Tag(None))));
        assert!(matches!(split("rel"), ("rel", Selector::Tag(None))));
    }
}
