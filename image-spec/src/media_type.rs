//! Media types of manifests, indexes, configs and layers (OCI and Docker schema 2),
//! and the compression a layer's media type names.

use serde::{Deserialize, Serialize};

pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_TYPE_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Non-distributable ("foreign") layers: deprecated by OCI, still found in Windows bases.
pub const MEDIA_TYPE_OCI_LAYER_NONDIST: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar";
pub const MEDIA_TYPE_OCI_LAYER_NONDIST_GZIP: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
pub const MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD: &str = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const MEDIA_TYPE_DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// Not part of Docker's schema 2, but containerd and BuildKit read it.
pub const MEDIA_TYPE_DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
pub const MEDIA_TYPE_DOCKER_LAYER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar";
pub const MEDIA_TYPE_DOCKER_LAYER_FOREIGN_GZIP: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Whether a media type names an image manifest (OCI or Docker schema 2).
pub fn is_manifest_type(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_MANIFEST || media_type == MEDIA_TYPE_DOCKER_MANIFEST
}

/// Whether a media type names an index or a manifest list.
pub fn is_index_type(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_LIST
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    Uncompressed,
}

impl Compression {
    /// The OCI layer media type of a blob compressed this way.
    pub fn media_type(self) -> &'static str {
        match self {
            Compression::Gzip => MEDIA_TYPE_OCI_LAYER_GZIP,
            Compression::Zstd => MEDIA_TYPE_OCI_LAYER_ZSTD,
            Compression::Uncompressed => MEDIA_TYPE_OCI_LAYER,
        }
    }
}

/// The compression a layer media type names (OCI or Docker), `None` when it names
/// none we know.
pub fn compression_of(media_type: &str) -> Option<Compression> {
    if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
        Some(Compression::Zstd)
    } else if media_type.ends_with("+gzip") || media_type.ends_with(".gzip") {
        Some(Compression::Gzip)
    } else if media_type.ends_with(".tar") {
        Some(Compression::Uncompressed)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_media_types_name_their_compression() {
        for c in [Compression::Gzip, Compression::Zstd, Compression::Uncompressed] {
            assert_eq!(compression_of(c.media_type()), Some(c));
        }
        assert_eq!(compression_of(MEDIA_TYPE_DOCKER_LAYER_GZIP), Some(Compression::Gzip));
        assert_eq!(compression_of(MEDIA_TYPE_DOCKER_LAYER), Some(Compression::Uncompressed));
        assert_eq!(compression_of(MEDIA_TYPE_DOCKER_LAYER_ZSTD), Some(Compression::Zstd));
        assert_eq!(compression_of(MEDIA_TYPE_DOCKER_LAYER_FOREIGN_GZIP), Some(Compression::Gzip));
        assert_eq!(compression_of(MEDIA_TYPE_OCI_LAYER_NONDIST), Some(Compression::Uncompressed));
        assert_eq!(compression_of(MEDIA_TYPE_OCI_LAYER_NONDIST_ZSTD), Some(Compression::Zstd));
        assert_eq!(compression_of(MEDIA_TYPE_OCI_CONFIG), None);
        assert_eq!(compression_of("application/json"), None);
    }
}
