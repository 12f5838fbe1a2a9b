//! Images in the store: config + manifest blobs, looked up by name, manifest digest
//! or image id (config digest) prefix.

use crate::Store;
use crate::error::{Error, Result};
use image_spec::{
    Descriptor, Digest, Image, ImageConfig, LayerInfo, Manifest, MediaTypeFamily, Reference, is_manifest_type,
};
use std::collections::BTreeMap;

/// Manifests are small JSON documents; registries cap them at 4 MiB.
pub const MAX_MANIFEST_SIZE: u64 = 4 << 20;
/// Configs are JSON too, but carry history and environment: a larger cap, still one
/// that keeps a hostile archive or registry from making us read gigabytes.
pub const MAX_CONFIG_SIZE: u64 = 32 << 20;

/// How an image's manifest is written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFormat {
    /// The media types of manifest, config and every layer (OCI unless told).
    pub media_types: MediaTypeFamily,
    /// Manifest annotations (OCI only).
    pub annotations: BTreeMap<String, String>,
}

impl Store {
    /// Writes config and manifest blobs for an image made of `layers` and returns it.
    /// The config's `rootfs` is filled in from `layers` when empty, and must match it
    /// otherwise.
    pub fn write_image(&self, config: &ImageConfig, layers: &[LayerInfo]) -> Result<Image> {
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        let mut config = config.clone();
        if config.rootfs.diff_ids.is_empty() {
            config.rootfs.diff_ids = diff_ids;
        } else if config.rootfs.diff_ids != diff_ids {
            return Err(Error::ConfigLayers { diff_ids: config.rootfs.diff_ids.len(), layers: layers.len() });
        }
        if config.rootfs.kind.is_empty() {
            config.rootfs.kind = "layers".into();
        }
        let bytes = serde_json::to_vec(&config).expect("image configs serialize");
        self.write_image_in(&bytes, layers, &ImageFormat::default())
    }

    /// Writes an image whose config bytes are given as they are (a loaded or pulled
    /// config keeps its digest, the image id). `annotations` go on the manifest.
    pub fn write_image_raw(
        &self,
        config_bytes: &[u8],
        layers: &[LayerInfo],
        annotations: Option<BTreeMap<String, String>>,
    ) -> Result<Image> {
        let format = ImageFormat { media_types: MediaTypeFamily::Oci, annotations: annotations.unwrap_or_default() };
        self.write_image_in(config_bytes, layers, &format)
    }

    /// Writes an image (config bytes as given) with its manifest in `format`. Every
    /// descriptor takes the media types of `format`'s family, whatever the layers
    /// came with (a base pulled with Docker types, a build with OCI ones): only the
    /// types change, the blobs stay as they are.
    pub fn write_image_in(&self, config_bytes: &[u8], layers: &[LayerInfo], format: &ImageFormat) -> Result<Image> {
        let config = parse_config(config_bytes)?;
        check_layers(&config, layers)?;
        // An image in the store is whole: layers of an imported cache come in now.
        self.ensure_blobs(layers)?;
        let family = format.media_types;
        if family == MediaTypeFamily::Docker && !format.annotations.is_empty() {
            return Err(Error::DockerAnnotations);
        }
        let layers = layers
            .iter()
            .map(|l| Ok(LayerInfo { media_type: family.layer_type(&l.media_type)?.to_string(), ..l.clone() }))
            .collect::<Result<Vec<LayerInfo>>>()?;
        let config_digest = self.write_blob_bytes(config_bytes)?;
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(family.manifest_type().into()),
            config: Descriptor {
                media_type: family.config_type().into(),
                digest: config_digest.clone(),
                size: config_bytes.len() as u64,
                annotations: None,
                platform: None,
            },
            layers: layers.iter().map(LayerInfo::descriptor).collect(),
            annotations: (!format.annotations.is_empty()).then(|| format.annotations.clone()),
        };
        let manifest_bytes = serde_json::to_vec(&manifest).expect("manifests serialize");
        let manifest_digest = self.write_blob_bytes(&manifest_bytes)?;
        Ok(Image { manifest_digest, config_digest, config, layers })
    }

    /// Reads the image whose manifest is the blob `manifest_digest`.
    /// An index (a multi-platform build's) stands for its image for this machine's
    /// platform ([`Store::image_for_platform`] chooses another).
    pub fn image_from_manifest(&self, manifest_digest: &Digest) -> Result<Image> {
        let bytes = self.read_metadata_blob("manifest", manifest_digest, MAX_MANIFEST_SIZE)?;
        if crate::index::parse_index(&bytes).is_some() {
            return self.image_for_platform(manifest_digest, &image_spec::host_platform());
        }
        let manifest = parse_manifest(&bytes)
            .map_err(|e| Error::Manifest { digest: manifest_digest.clone(), source: Box::new(e) })?;
        let config_digest = manifest.config.digest.clone();
        let in_config = |e: Error| Error::Config { digest: config_digest.clone(), source: Box::new(e) };
        let config_bytes = self.read_metadata_blob("config", &config_digest, MAX_CONFIG_SIZE).map_err(in_config)?;
        let config = parse_config(&config_bytes).map_err(in_config)?;
        if manifest.layers.len() != config.rootfs.diff_ids.len() {
            return Err(Error::ManifestLayers {
                manifest: manifest_digest.clone(),
                layers: manifest.layers.len(),
                diff_ids: config.rootfs.diff_ids.len(),
            });
        }
        let layers = manifest
            .layers
            .iter()
            .zip(&config.rootfs.diff_ids)
            .map(|(d, diff_id)| LayerInfo {
                digest: d.digest.clone(),
                diff_id: diff_id.clone(),
                size: d.size,
                media_type: d.media_type.clone(),
            })
            .collect();
        Ok(Image { manifest_digest: manifest_digest.clone(), config_digest, config, layers })
    }

    /// Loads an image by name (`busybox`, `app:1`, `app@sha256:..`), by manifest
    /// digest, or by a unique prefix of its id (config digest) as `docker` accepts.
    /// The image by name or id if the store has one: `None` only when nothing by that
    /// name is there; a name whose image is damaged (a missing or unreadable blob) is
    /// an error, never taken for a missing image.
    pub fn find_image(&self, name_or_id: &str) -> Result<Option<Image>> {
        match self.load_image(name_or_id) {
            Ok(image) => Ok(Some(image)),
            Err(Error::NoSuchImage { source: None, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The image `name_or_id` names (a name, a manifest digest or an id prefix), held by
    /// this process's lease (if it took one) from now on.
    pub fn load_image(&self, name_or_id: &str) -> Result<Image> {
        let image = self.find_image_unleased(name_or_id)?;
        self.lease_image(&image.manifest_digest)?;
        Ok(image)
    }

    fn find_image_unleased(&self, name_or_id: &str) -> Result<Image> {
        if let Ok(digest) = Digest::parse(name_or_id)
            && self.has_blob(&digest)
            // A layer blob is no manifest, and too big to read whole.
            && self.blob_size(&digest)? < MAX_MANIFEST_SIZE
            && is_manifest_blob(&self.read_blob(&digest)?)
        {
            return self.image_from_manifest(&digest);
        }
        if let Ok(reference) = Reference::parse(name_or_id) {
            if let Some(digest) = &reference.digest {
                return self
                    .image_from_manifest(digest)
                    .map_err(|e| Error::NoSuchImage { name: name_or_id.to_string(), source: Some(Box::new(e)) });
            }
            if let Some(digest) = self.get_ref(&reference.to_string())? {
                // An index (a pull keeps it) may hold other platforms only: say which name.
                return self.image_from_manifest(&digest).map_err(|e| match e {
                    Error::NoPlatform { wanted, available, .. } => {
                        Error::NoPlatform { image: name_or_id.to_string(), wanted, available }
                    }
                    other => other,
                });
            }
        }
        let id = name_or_id.strip_prefix("sha256:").unwrap_or(name_or_id);
        if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            let mut found: BTreeMap<Digest, Digest> = BTreeMap::new();
            // Every platform's image of a name that is an index, not only this machine's.
            for (_, named) in self.refs()? {
                for (_, manifest) in self.platforms_of(&named)? {
                    let image = self.image_from_manifest(&manifest)?;
                    if image.config_digest.hex().starts_with(id) {
                        found.entry(image.config_digest).or_insert(manifest);
                    }
                }
            }
            match found.len() {
                0 => {}
                1 => return self.image_from_manifest(found.values().next().expect("one")),
                count => return Err(Error::AmbiguousId { prefix: id.to_string(), count }),
            }
        }
        Err(Error::NoSuchImage { name: name_or_id.to_string(), source: None })
    }
}

pub fn parse_config(bytes: &[u8]) -> Result<ImageConfig> {
    serde_json::from_slice(bytes).map_err(|source| Error::Parse { what: "image config".into(), source })
}

pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest> {
    let manifest: Manifest =
        serde_json::from_slice(bytes).map_err(|source| Error::Parse { what: "image manifest".into(), source })?;
    if manifest.schema_version != 2 {
        return Err(Error::SchemaVersion { version: manifest.schema_version });
    }
    if let Some(mt) = &manifest.media_type
        && !is_manifest_type(mt)
    {
        return Err(Error::NotManifest { media_type: mt.clone() });
    }
    Ok(manifest)
}

fn is_manifest_blob(bytes: &[u8]) -> bool {
    parse_manifest(bytes).is_ok() || crate::index::parse_index(bytes).is_some()
}

fn check_layers(config: &ImageConfig, layers: &[LayerInfo]) -> Result<()> {
    let ok = config.rootfs.diff_ids.len() == layers.len()
        && config.rootfs.diff_ids.iter().zip(layers).all(|(d, l)| *d == l.diff_id);
    if !ok {
        return Err(Error::DiffIds { layers: layers.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::test_store;

    pub(crate) fn fake_layer(store: &Store, content: &[u8]) -> LayerInfo {
        let digest = store.write_blob_bytes(content).unwrap();
        LayerInfo {
            digest: digest.clone(),
            diff_id: digest,
            size: content.len() as u64,
            media_type: image_spec::MEDIA_TYPE_OCI_LAYER.into(),
        }
    }

    fn config() -> ImageConfig {
        ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..Default::default() }
    }

    #[test]
    fn write_then_load_by_name_digest_and_id() {
        let (_d, store) = test_store();
        let layers = vec![fake_layer(&store, b"one"), fake_layer(&store, b"two")];
        let image = store.write_image(&config(), &layers).unwrap();
        // The digests are over the exact bytes stored.
        let manifest_bytes = store.read_blob(&image.manifest_digest).unwrap();
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).unwrap();
        assert_eq!(manifest.config.digest, image.config_digest);
        assert_eq!(manifest.config.size, store.blob_size(&image.config_digest).unwrap());
        assert_eq!(manifest.layers.len(), 2);
        assert_eq!(image.config.rootfs.kind, "layers");

        store.set_ref("app", &image.manifest_digest).unwrap();
        let by_name = store.load_image("app:latest").unwrap();
        assert_eq!(by_name.manifest_digest, image.manifest_digest);
        assert_eq!(by_name.layers, layers);
        let by_digest = store.load_image(image.manifest_digest.as_str()).unwrap();
        assert_eq!(by_digest.config_digest, image.config_digest);
        let by_id = store.load_image(&image.config_digest.hex()[..12]).unwrap();
        assert_eq!(by_id.manifest_digest, image.manifest_digest);
        let by_full_id = store.load_image(image.config_digest.as_str()).unwrap();
        assert_eq!(by_full_id.manifest_digest, image.manifest_digest);
        let msg = format!("{:#}", store.load_image("nothere").unwrap_err());
        assert!(msg.contains("no such image: nothere"), "{msg}");

        let docker = ImageFormat { media_types: MediaTypeFamily::Docker, ..Default::default() };
        let bytes = store.read_blob(&image.config_digest).unwrap();
        let as_docker = store.write_image_in(&bytes, &layers, &docker).unwrap();
        assert_eq!(as_docker.config_digest, image.config_digest);
        let manifest: Manifest = serde_json::from_slice(&store.read_blob(&as_docker.manifest_digest).unwrap()).unwrap();
        assert_eq!(manifest.media_type.as_deref(), Some(image_spec::MEDIA_TYPE_DOCKER_MANIFEST));
        assert_eq!(manifest.config.media_type, image_spec::MEDIA_TYPE_DOCKER_CONFIG);
        assert_eq!(manifest.layers[0].media_type, "application/vnd.docker.image.rootfs.diff.tar");
        assert_eq!(store.image_from_manifest(&as_docker.manifest_digest).unwrap().layers, as_docker.layers);
    }

    /// A base pulled with Docker media types, built on and written with OCI types:
    /// the manifest must not keep the base's Docker layer type (umoci refuses it).
    #[test]
    fn docker_typed_layers_take_the_manifest_family() {
        let (_d, store) = test_store();
        let mut base = fake_layer(&store, b"base");
        base.media_type = image_spec::MEDIA_TYPE_DOCKER_LAYER_GZIP.into();
        let mut foreign = fake_layer(&store, b"foreign");
        foreign.media_type = image_spec::MEDIA_TYPE_DOCKER_LAYER_FOREIGN_GZIP.into();
        let top = fake_layer(&store, b"top");
        let layers = vec![base, foreign, top];
        let image = store.write_image(&config(), &layers).unwrap();
        let manifest: Manifest = serde_json::from_slice(&store.read_blob(&image.manifest_digest).unwrap()).unwrap();
        let types: Vec<&str> = manifest.layers.iter().map(|l| l.media_type.as_str()).collect();
        assert_eq!(
            types,
            [
                image_spec::MEDIA_TYPE_OCI_LAYER_GZIP,
                image_spec::MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP,
                image_spec::MEDIA_TYPE_OCI_LAYER
            ]
        );
        assert!(image_spec::is_single_family(&manifest));
        // Same blobs: only the descriptors' types changed.
        assert!(manifest.layers.iter().zip(&layers).all(|(d, l)| d.digest == l.digest && d.size == l.size));
        assert_eq!(image.layers[0].media_type, image_spec::MEDIA_TYPE_OCI_LAYER_GZIP);

        let mut zstd = fake_layer(&store, b"zstd");
        zstd.media_type = image_spec::MEDIA_TYPE_OCI_LAYER_ZSTD.into();
        let mut c = config();
        c.rootfs.diff_ids = vec![zstd.diff_id.clone()];
        c.rootfs.kind = "layers".into();
        let bytes = serde_json::to_vec(&c).unwrap();
        let docker = ImageFormat { media_types: MediaTypeFamily::Docker, ..Default::default() };
        let err = store.write_image_in(&bytes, &[zstd], &docker).unwrap_err();
        assert!(err.to_string().contains("has no Docker equivalent"), "{err}");
    }

    #[test]
    fn mismatched_diff_ids_are_rejected() {
        let (_d, store) = test_store();
        let layers = vec![fake_layer(&store, b"one")];
        let mut c = config();
        c.rootfs.diff_ids = vec![Digest::of(b"other")];
        assert!(store.write_image(&c, &layers).is_err());
    }
}
