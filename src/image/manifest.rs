//! Manifests and the layers they list.

use super::{Digest, ImageConfig};
use serde::{Deserialize, Serialize};

pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const MEDIA_TYPE_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_TYPE_DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const MEDIA_TYPE_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    Uncompressed,
}

/// One layer of an image: its blob and what it unpacks to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerInfo {
    /// Digest of the (compressed) blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar.
    pub diff_id: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    pub media_type: String,
}

impl LayerInfo {
    /// The layer's blob as a manifest lists it.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: None,
            platform: None,
        }
    }
}

/// An image in the store: its manifest, config and layers, all by digest.
#[derive(Debug, Clone)]
pub struct Image {
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<LayerInfo>,
}

/// The chain IDs of a stack of layers, bottom first (OCI image spec: ChainID(L0) =
/// DiffID(L0), ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))).
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// An OCI content descriptor (also Docker's, which has the same JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest, OCI or Docker schema 2.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// An image index (OCI) or manifest list (Docker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

/// Whether a media type names an image manifest (OCI or Docker schema 2).
pub fn is_manifest_type(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_MANIFEST || media_type == MEDIA_TYPE_DOCKER_MANIFEST
}

/// Whether a media type names an index or a manifest list.
pub fn is_index_type(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_LIST
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

/// The host's architecture in Go's naming (`amd64`, `arm64`...), as image configs
/// and platforms spell it, with the variant where one is customary.
pub fn host_platform() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "x86" => ("386", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "powerpc64" => ("ppc64", None),
        "loongarch64" => ("loong64", None),
        "mips64" if cfg!(target_endian = "little") => ("mips64le", None),
        other => (other, None),
    };
    Platform { architecture: architecture.to_string(), os: "linux".to_string(), variant: variant.map(String::from) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], Digest::of(format!("{a} {b}").as_bytes()));
    }

    #[test]
    fn manifest_round_trips_with_camel_case() {
        let json = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},
            "layers":[]}"#;
        let m: Manifest = serde_json::from_str(json).unwrap();
        assert_eq!(m.schema_version, 2);
        let out = serde_json::to_string(&m).unwrap();
        assert!(out.contains("\"schemaVersion\":2") && out.contains("\"mediaType\""));
    }
}
