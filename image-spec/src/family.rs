//! The two families of media types, OCI and Docker schema 2, and the mapping between
//! them. A manifest uses one family throughout: an image written in the other family
//! changes only its descriptors' media types, never a blob or a digest of a layer.
//! The layer mapping is BuildKit's (`util/compression`'s `toOCILayerType` and
//! `toDockerLayerType`), except that zstd has no Docker type here: a zstd layer needs
//! OCI media types (or recompressing, which is the exporter's business).

use crate::media_type::*;
use crate::{Descriptor, Manifest};
use std::fmt;

/// Which family of media types a manifest, its config and its layers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum MediaTypeFamily {
    /// OCI image spec types: what BuildKit writes by default, and the store's default.
    #[default]
    Oci,
    /// Docker image manifest schema 2 types (`docker save`, `type=docker`).
    Docker,
}

impl fmt::Display for MediaTypeFamily {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MediaTypeFamily::Oci => "OCI",
            MediaTypeFamily::Docker => "Docker",
        })
    }
}

/// A layer media type that the other family cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("layer media type {media_type} has no {family} equivalent")]
pub struct UnrepresentableLayer {
    pub media_type: String,
    pub family: MediaTypeFamily,
}

/// (OCI, Docker) layer media types that name the same kind of blob.
const LAYER_PAIRS: [(&str, &str); 4] = [
    (MEDIA_TYPE_OCI_LAYER, MEDIA_TYPE_DOCKER_LAYER),
    (MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_DOCKER_LAYER_GZIP),
    (MEDIA_TYPE_OCI_LAYER_NONDIST, MEDIA_TYPE_DOCKER_LAYER_FOREIGN),
    (MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP, MEDIA_TYPE_DOCKER_LAYER_FOREIGN_GZIP),
];

/// Layer media types only OCI has a standard name for.
const OCI_ONLY_LAYERS: [&str; 3] =
    [MEDIA_TYPE_OCI_LAYER_ZSTD, MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD, MEDIA_TYPE_DOCKER_LAYER_ZSTD];

impl MediaTypeFamily {
    /// The family a media type belongs to, `None` for a type of neither (an artifact,
    /// a builder cache config).
    pub fn of(media_type: &str) -> Option<MediaTypeFamily> {
        if media_type.starts_with("application/vnd.oci.") {
            Some(MediaTypeFamily::Oci)
        } else if media_type.starts_with("application/vnd.docker.") {
            Some(MediaTypeFamily::Docker)
        } else {
            None
        }
    }

    pub fn manifest_type(self) -> &'static str {
        match self {
            MediaTypeFamily::Oci => MEDIA_TYPE_OCI_MANIFEST,
            MediaTypeFamily::Docker => MEDIA_TYPE_DOCKER_MANIFEST,
        }
    }

    pub fn index_type(self) -> &'static str {
        match self {
            MediaTypeFamily::Oci => MEDIA_TYPE_OCI_INDEX,
            MediaTypeFamily::Docker => MEDIA_TYPE_DOCKER_LIST,
        }
    }

    pub fn config_type(self) -> &'static str {
        match self {
            MediaTypeFamily::Oci => MEDIA_TYPE_OCI_CONFIG,
            MediaTypeFamily::Docker => MEDIA_TYPE_DOCKER_CONFIG,
        }
    }

    /// This family's name for a layer of `media_type` (of either family). A type we
    /// do not know as a layer type is kept as it is, as BuildKit keeps it.
    pub fn layer_type(self, media_type: &str) -> Result<&str, UnrepresentableLayer> {
        if OCI_ONLY_LAYERS.contains(&media_type) {
            return match self {
                MediaTypeFamily::Oci if media_type == MEDIA_TYPE_DOCKER_LAYER_ZSTD => Ok(MEDIA_TYPE_OCI_LAYER_ZSTD),
                MediaTypeFamily::Oci => Ok(media_type),
                MediaTypeFamily::Docker => {
                    Err(UnrepresentableLayer { media_type: media_type.to_string(), family: self })
                }
            };
        }
        let pair = LAYER_PAIRS.iter().find(|(oci, docker)| media_type == *oci || media_type == *docker);
        Ok(match (pair, self) {
            (Some((oci, _)), MediaTypeFamily::Oci) => oci,
            (Some((_, docker)), MediaTypeFamily::Docker) => docker,
            (None, _) => media_type,
        })
    }

    /// `manifest` with every media type in this family: the manifest's own, its
    /// config's (an image config; another config type, such as an artifact's, is
    /// kept) and its layers'. Digests and sizes are untouched.
    pub fn convert_manifest(self, manifest: &Manifest) -> Result<Manifest, UnrepresentableLayer> {
        let config_type = &manifest.config.media_type;
        let config = Descriptor {
            media_type: if config_type == MEDIA_TYPE_OCI_CONFIG || config_type == MEDIA_TYPE_DOCKER_CONFIG {
                self.config_type().to_string()
            } else {
                config_type.clone()
            },
            ..manifest.config.clone()
        };
        let layers = manifest
            .layers
            .iter()
            .map(|l| Ok(Descriptor { media_type: self.layer_type(&l.media_type)?.to_string(), ..l.clone() }))
            .collect::<Result<Vec<_>, UnrepresentableLayer>>()?;
        Ok(Manifest {
            schema_version: manifest.schema_version,
            media_type: Some(self.manifest_type().to_string()),
            config,
            layers,
            annotations: manifest.annotations.clone(),
        })
    }
}

/// Whether every media type of `manifest` that belongs to a family (its own, its
/// config's, its layers') belongs to the same one.
pub fn is_single_family(manifest: &Manifest) -> bool {
    let mut families = manifest
        .media_type
        .iter()
        .chain(std::iter::once(&manifest.config.media_type))
        .chain(manifest.layers.iter().map(|l| &l.media_type))
        .filter_map(|t| MediaTypeFamily::of(t));
    let first = families.next();
    families.all(|f| Some(f) == first)
}

#[cfg(test)]
mod tests {
    use super::MediaTypeFamily::{Docker, Oci};
    use super::*;
    use crate::Digest;

    #[test]
    fn docker_layers_map_to_their_oci_equivalents() {
        let cases = [
            (MEDIA_TYPE_DOCKER_LAYER_GZIP, MEDIA_TYPE_OCI_LAYER_GZIP),
            (MEDIA_TYPE_DOCKER_LAYER, MEDIA_TYPE_OCI_LAYER),
            (MEDIA_TYPE_DOCKER_LAYER_FOREIGN, MEDIA_TYPE_OCI_LAYER_NONDIST),
            (MEDIA_TYPE_DOCKER_LAYER_FOREIGN_GZIP, MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP),
            (MEDIA_TYPE_DOCKER_LAYER_ZSTD, MEDIA_TYPE_OCI_LAYER_ZSTD),
        ];
        for (docker, oci) in cases {
            assert_eq!(Oci.layer_type(docker), Ok(oci), "{docker}");
            assert_eq!(Oci.layer_type(oci), Ok(oci), "{oci} stays");
        }
    }

    #[test]
    fn oci_layers_map_to_their_docker_equivalents() {
        let cases = [
            (MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_DOCKER_LAYER_GZIP),
            (MEDIA_TYPE_OCI_LAYER, MEDIA_TYPE_DOCKER_LAYER),
            (MEDIA_TYPE_OCI_LAYER_NONDIST, MEDIA_TYPE_DOCKER_LAYER_FOREIGN),
            (MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP, MEDIA_TYPE_DOCKER_LAYER_FOREIGN_GZIP),
        ];
        for (oci, docker) in cases {
            assert_eq!(Docker.layer_type(oci), Ok(docker), "{oci}");
            assert_eq!(Docker.layer_type(docker), Ok(docker), "{docker} stays");
        }
    }

    #[test]
    fn zstd_layers_have_no_docker_type() {
        for zstd in [MEDIA_TYPE_OCI_LAYER_ZSTD, MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD, MEDIA_TYPE_DOCKER_LAYER_ZSTD] {
            let err = Docker.layer_type(zstd).unwrap_err();
            assert_eq!(err.to_string(), format!("layer media type {zstd} has no Docker equivalent"));
        }
        assert_eq!(Oci.layer_type(MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD), Ok(MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD));
    }

    #[test]
    fn unknown_layer_types_are_kept() {
        for family in [Oci, Docker] {
            assert_eq!(family.layer_type("application/vnd.in-toto+json"), Ok("application/vnd.in-toto+json"));
        }
    }

    fn descriptor(media_type: &str, byte: u8) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: Digest::of(&[byte]),
            size: 1,
            annotations: None,
            platform: None,
        }
    }

    fn docker_manifest() -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_DOCKER_MANIFEST.into()),
            config: descriptor(MEDIA_TYPE_DOCKER_CONFIG, 0),
            layers: vec![descriptor(MEDIA_TYPE_DOCKER_LAYER_GZIP, 1), descriptor(MEDIA_TYPE_DOCKER_LAYER, 2)],
            annotations: None,
        }
    }

    #[test]
    fn manifests_convert_whole_and_back() {
        let docker = docker_manifest();
        let oci = Oci.convert_manifest(&docker).unwrap();
        assert_eq!(oci.media_type.as_deref(), Some(MEDIA_TYPE_OCI_MANIFEST));
        assert_eq!(oci.config.media_type, MEDIA_TYPE_OCI_CONFIG);
        let layer_types: Vec<&str> = oci.layers.iter().map(|l| l.media_type.as_str()).collect();
        assert_eq!(layer_types, [MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_OCI_LAYER]);
        // Only media types change: the blobs are the same.
        assert_eq!((&oci.config.digest, oci.config.size), (&docker.config.digest, docker.config.size));
        assert!(oci.layers.iter().zip(&docker.layers).all(|(a, b)| a.digest == b.digest && a.size == b.size));
        assert!(is_single_family(&oci) && is_single_family(&docker));
        assert_eq!(Docker.convert_manifest(&oci).unwrap(), docker);
    }

    #[test]
    fn a_mixed_manifest_is_detected() {
        let mut mixed = docker_manifest();
        mixed.media_type = Some(MEDIA_TYPE_OCI_MANIFEST.into());
        assert!(!is_single_family(&mixed));
        assert!(is_single_family(&Oci.convert_manifest(&mixed).unwrap()));
    }

    #[test]
    fn a_zstd_manifest_cannot_become_docker() {
        let mut manifest = Oci.convert_manifest(&docker_manifest()).unwrap();
        manifest.layers.push(descriptor(MEDIA_TYPE_OCI_LAYER_ZSTD, 3));
        assert_eq!(
            Docker.convert_manifest(&manifest).unwrap_err(),
            UnrepresentableLayer { media_type: MEDIA_TYPE_OCI_LAYER_ZSTD.into(), family: Docker }
        );
    }

    #[test]
    fn families_of_media_types() {
        assert_eq!(MediaTypeFamily::of(MEDIA_TYPE_DOCKER_LAYER_FOREIGN), Some(Docker));
        assert_eq!(MediaTypeFamily::of(MEDIA_TYPE_OCI_INDEX), Some(Oci));
        assert_eq!(MediaTypeFamily::of("application/vnd.builder.cache.config.v1+json"), None);
        assert_eq!((Docker.index_type(), Oci.index_type()), (MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_OCI_INDEX));
    }
}
