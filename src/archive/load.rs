//! `builder load`: tarballs from `builder save` / `docker save` (Docker 25+ layout with
//! `index.json`, or older ones with `<id>/layer.tar` and `manifest.json`) and OCI
//! archives. Blobs stream straight into the store, each verified against its name;
//! layer diffIDs are verified when the layers are unpacked.

use super::save::DockerManifestEntry;
use crate::layer::compress::{decompress, detect};
use crate::layer::unpack::clean_path;
use anyhow::{Context as _, Result, anyhow, bail};
use image_spec::{Compression, Descriptor, Digest, Image, Index, LayerInfo, Reference};
use image_spec::{host_platform, is_index_type};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use store::{HashReader, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE, Store};

/// Small metadata files are kept in memory; everything else goes to the store.
const SMALL_FILE: u64 = 16 << 20;
/// At most this much of an archive is kept in memory in all: past it, metadata files
/// go to the store like layers (an archive of a thousand 16 MiB `.json` files
/// compresses to little).
const MAX_IN_MEMORY: u64 = 64 << 20;

/// What the archive held, by path inside it.
#[derive(Default)]
struct Contents {
    small: HashMap<PathBuf, Vec<u8>>,
    blobs: HashMap<PathBuf, Digest>,
    symlinks: HashMap<PathBuf, PathBuf>,
}

/// Loads every image of `tarball` (plain or compressed) into the store and returns
/// their names (normalised), or their ids for images without a name.
pub fn load(store: &Store, tarball: &Path) -> Result<Vec<String>> {
    let file = File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let reader = decompress(BufReader::new(file)).with_context(|| format!("reading {}", tarball.display()))?;
    load_from(store, reader)
}

pub fn load_from(store: &Store, reader: impl Read) -> Result<Vec<String>> {
    let contents = read_contents(store, reader)?;
    if contents.has(Path::new("index.json")) {
        load_oci(store, &contents)
    } else if contents.has(Path::new("manifest.json")) {
        load_docker(store, &contents)
    } else {
        bail!("not an image archive: it has neither index.json nor manifest.json")
    }
}

fn read_contents(store: &Store, reader: impl Read) -> Result<Contents> {
    let mut contents = Contents::default();
    let mut in_memory = 0u64;
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().context("reading the archive")? {
        let mut entry = entry.context("reading the archive")?;
        let raw = entry.path_bytes().into_owned();
        let shown = image_spec::shown(&String::from_utf8_lossy(&raw)).into_owned();
        let Some(path) = clean_path(&raw).with_context(|| format!("entry {shown}"))? else { continue };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink => {
                // Older `docker save` links shared layers: `<id>/layer.tar -> ../<id2>/layer.tar`.
                let target = entry.link_name_bytes().ok_or_else(|| anyhow!("entry {shown}: symlink without target"))?;
                let parent = path.parent().unwrap_or(Path::new(""));
                let target = link_target(parent, &target).with_context(|| format!("entry {shown}"))?;
                contents.symlinks.insert(path, target);
                continue;
            }
            _ => continue,
        }
        let size = entry.size();
        let blob_digest = blob_digest_of(&path);
        if blob_digest.is_none() && size <= SMALL_FILE && in_memory + size <= MAX_IN_MEMORY && is_metadata(&path) {
            in_memory += size;
            let mut bytes = Vec::with_capacity(size as usize);
            (&mut entry).take(size).read_to_end(&mut bytes).with_context(|| format!("reading {shown}"))?;
            contents.small.insert(path, bytes);
            continue;
        }
        let mut writer = store.blob_writer()?;
        std::io::copy(&mut entry, &mut writer).with_context(|| format!("reading {shown}"))?;
        let (digest, _) = writer.commit(blob_digest.as_ref()).with_context(|| format!("entry {shown}"))?;
        contents.blobs.insert(path, digest);
    }
    Ok(contents)
}

/// Where a symlink in the archive points, inside the archive: `..` may climb back
/// up from the link's directory, never above the archive's root.
fn link_target(parent: &Path, target: &[u8]) -> Result<PathBuf> {
    let mut out: Vec<&[u8]> = Vec::new();
    if !target.starts_with(b"/") {
        out.extend(parent.iter().map(|c| c.as_encoded_bytes()));
    }
    for part in target.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop().ok_or_else(|| anyhow!("symlink points outside the archive"))?;
            }
            p => out.push(p),
        }
    }
    Ok(out.iter().map(|c| Path::new(std::ffi::OsStr::from_bytes(c))).collect())
}

/// `blobs/sha256/<hex>` → its digest.
fn blob_digest_of(path: &Path) -> Option<Digest> {
    let rest = path.strip_prefix("blobs/sha256").ok()?;
    Digest::parse(&format!("sha256:{}", rest.to_str()?)).ok()
}

fn is_metadata(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.ends_with(".json") || matches!(name, "json" | "VERSION" | "repositories" | "oci-layout")
}

impl Contents {
    fn resolve<'a>(&'a self, mut path: &'a Path) -> &'a Path {
        for _ in 0..16 {
            match self.symlinks.get(path) {
                Some(target) => path = target,
                None => break,
            }
        }
        path
    }

    fn has(&self, path: &Path) -> bool {
        let path = self.resolve(path);
        self.small.contains_key(path) || self.blobs.contains_key(path)
    }

    /// A metadata file's bytes, refused when larger than `max` (a small archive may
    /// hold a compressed file of gigabytes; it is never read whole).
    fn bytes(&self, store: &Store, path: &Path, max: u64) -> Result<Vec<u8>> {
        let resolved = self.resolve(path);
        if let Some(b) = self.small.get(resolved) {
            if b.len() as u64 > max {
                bail!("{} is {} bytes, more than the {max} allowed", path.display(), b.len());
            }
            return Ok(b.clone());
        }
        match self.blobs.get(resolved) {
            Some(d) => Ok(store.read_metadata_blob("file", d, max).with_context(|| format!("{}", path.display()))?),
            None => bail!("{} is missing from the archive", path.display()),
        }
    }

    /// The digest of a file, storing it as a blob if it was kept in memory.
    fn digest(&self, store: &Store, path: &Path) -> Result<Digest> {
        let resolved = self.resolve(path);
        if let Some(d) = self.blobs.get(resolved) {
            return Ok(d.clone());
        }
        match self.small.get(resolved) {
            Some(bytes) => Ok(store.write_blob_bytes(bytes)?),
            None => bail!("{} is missing from the archive", path.display()),
        }
    }
}

fn load_oci(store: &Store, contents: &Contents) -> Result<Vec<String>> {
    let index: Index = serde_json::from_slice(&contents.bytes(store, Path::new("index.json"), MAX_MANIFEST_SIZE)?)
        .context("parsing index.json")?;
    // Names that only manifest.json gives (by config), for archives whose index has none.
    let mut docker_tags: HashMap<Digest, Vec<String>> = HashMap::new();
    if contents.has(Path::new("manifest.json")) {
        for entry in docker_manifest(store, contents)? {
            let config = contents.digest(store, Path::new(&entry.config))?;
            docker_tags.entry(config).or_default().extend(entry.repo_tags.unwrap_or_default());
        }
    }
    let mut loaded = Vec::new();
    for descriptor in &index.manifests {
        let image = image_of(store, descriptor, 0)?;
        let mut names: Vec<String> = Vec::new();
        if let Some(name) = descriptor_name(descriptor) {
            names.push(name);
        } else if let Some(tags) = docker_tags.get(&image.config_digest) {
            names.extend(tags.iter().cloned());
        }
        if names.is_empty() {
            loaded.push(image.config_digest.to_string());
        }
        for name in names {
            let name = Reference::parse(&name).map_err(|e| anyhow!(e))?.to_string();
            store.set_ref(&name, &image.manifest_digest)?;
            loaded.push(name);
        }
    }
    Ok(loaded)
}

/// The image name an index entry carries, if any.
fn descriptor_name(descriptor: &Descriptor) -> Option<String> {
    let annotations = descriptor.annotations.as_ref()?;
    if let Some(name) = annotations.get("io.containerd.image.name") {
        return Some(name.clone());
    }
    // `org.opencontainers.image.ref.name` may be a full reference or just a tag.
    let name = annotations.get("org.opencontainers.image.ref.name")?;
    (name.contains('/') || name.contains(':')).then(|| name.clone())
}

/// The image a descriptor leads to, choosing the host's platform in an index.
fn image_of(store: &Store, descriptor: &Descriptor, depth: usize) -> Result<Image> {
    if depth > 4 {
        bail!("indexes nested too deep");
    }
    let digest = &descriptor.digest;
    if !store.has_blob(digest) {
        bail!("manifest {digest} is missing from the archive");
    }
    if is_index_type(&descriptor.media_type) {
        let index: Index = serde_json::from_slice(&store.read_metadata_blob("index", digest, MAX_MANIFEST_SIZE)?)
            .with_context(|| format!("index {digest}"))?;
        let host = host_platform();
        let chosen = index
            .manifests
            .iter()
            .find(|m| m.platform.as_ref().is_some_and(|p| p.os == host.os && p.architecture == host.architecture))
            .or_else(|| index.manifests.first())
            .ok_or_else(|| anyhow!("index {digest} lists no manifest"))?;
        return image_of(store, chosen, depth + 1);
    }
    let image = store.image_from_manifest(digest)?;
    for layer in &image.layers {
        if !store.has_blob(&layer.digest) {
            bail!("layer {} of manifest {digest} is missing from the archive", layer.digest);
        }
        verify_layer(store, layer).with_context(|| format!("manifest {digest}"))?;
    }
    Ok(image)
}

/// A loaded layer is what its manifest and config say: the size its descriptor
/// gives and, uncompressed, the diff id its config gives. Checked now, as `docker
/// load` does, rather than at the first build or run that unpacks it.
fn verify_layer(store: &Store, layer: &LayerInfo) -> Result<()> {
    let size = store.blob_size(&layer.digest)?;
    if size != layer.size {
        bail!("layer {} is {size} bytes, its descriptor says {}", layer.digest, layer.size);
    }
    if layer.digest == layer.diff_id {
        // An uncompressed layer: the store verified that digest when writing it.
        return Ok(());
    }
    let blob = crate::layer::open_layer(store, layer)?;
    let reader =
        decompress(BufReader::with_capacity(1 << 20, blob)).with_context(|| format!("layer {}", layer.digest))?;
    let mut hashing = HashReader::new(reader);
    std::io::copy(&mut hashing, &mut std::io::sink()).with_context(|| format!("reading layer {}", layer.digest))?;
    let (diff_id, _) = hashing.finish().with_context(|| format!("reading layer {}", layer.digest))?;
    if diff_id != layer.diff_id {
        bail!("layer {} has diff id {diff_id}, the config says {}", layer.digest, layer.diff_id);
    }
    Ok(())
}

fn docker_manifest(store: &Store, contents: &Contents) -> Result<Vec<DockerManifestEntry>> {
    serde_json::from_slice(&contents.bytes(store, Path::new("manifest.json"), MAX_MANIFEST_SIZE)?)
        .context("parsing manifest.json")
}

fn load_docker(store: &Store, contents: &Contents) -> Result<Vec<String>> {
    let mut loaded = Vec::new();
    for entry in docker_manifest(store, contents)? {
        let config_bytes = contents.bytes(store, Path::new(&entry.config), MAX_CONFIG_SIZE)?;
        let config = store::parse_config(&config_bytes).with_context(|| format!("config {}", entry.config))?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            bail!(
                "{}: {} layers listed but the config has {} diff ids",
                entry.config,
                entry.layers.len(),
                config.rootfs.diff_ids.len()
            );
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let digest = contents.digest(store, Path::new(path))?;
            let mut magic = [0u8; 4];
            let n = crate::layer::open_blob_or_layer(store, &digest)?.read(&mut magic)?;
            let compression = detect(&magic[..n]);
            if compression == Compression::Uncompressed && digest != *diff_id {
                bail!("layer {path} is {digest} but the config says its diff id is {diff_id}");
            }
            let size = store.blob_size(&digest)?;
            let layer =
                LayerInfo { digest, diff_id: diff_id.clone(), size, media_type: compression.media_type().into() };
            verify_layer(store, &layer).with_context(|| format!("layer {path}"))?;
            layers.push(layer);
        }
        let image = store.write_image_raw(&config_bytes, &layers, None)?;
        let tags = entry.repo_tags.unwrap_or_default();
        if tags.is_empty() {
            loaded.push(image.config_digest.to_string());
        }
        for tag in tags {
            let name = Reference::parse(&tag).map_err(|e| anyhow!(e))?.to_string();
            store.set_ref(&name, &image.manifest_digest)?;
            loaded.push(name);
        }
    }
    Ok(loaded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_large_metadata_files_are_not_all_kept_in_memory() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(&d.path().join("store")).unwrap();
        // 40 files of 8 MiB: 320 MiB if all were kept in memory.
        let big = vec![b' '; 8 << 20];
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..40 {
            let mut h = tar::Header::new_ustar();
            h.set_size(big.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, format!("junk{i}.json"), big.as_slice()).unwrap();
        }
        let contents = read_contents(&store, std::io::Cursor::new(b.into_inner().unwrap())).unwrap();
        let kept: usize = contents.small.values().map(Vec::len).sum();
        assert!(kept as u64 <= MAX_IN_MEMORY, "{kept} bytes kept in memory");
        assert!((0..40).all(|i| contents.has(Path::new(&format!("junk{i}.json")))));
    }

    #[test]
    fn link_targets_stay_in_the_archive() {
        let t = |parent: &str, target: &str| link_target(Path::new(parent), target.as_bytes()).ok();
        assert_eq!(t("abc", "../def/layer.tar"), Some(PathBuf::from("def/layer.tar")));
        assert_eq!(t("a/b", "./c"), Some(PathBuf::from("a/b/c")));
        assert_eq!(t("abc", "/x.tar"), Some(PathBuf::from("x.tar")));
        assert_eq!(t("abc", "../../etc/passwd"), None);
    }
}
