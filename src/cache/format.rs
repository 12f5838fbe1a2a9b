//! The exported cache format: an OCI image manifest whose config (media type
//! [`CONFIG_MEDIA_TYPE`]) is a [`CacheConfig`] listing the exported records, and
//! whose layers are the layer blobs the records' results are made of. The same
//! manifest is written to a local OCI layout and pushed to registries (a plain
//! manifest, not an index, which some registries refuse).

use super::RecordedLayers;
use anyhow::{Context as _, Result, bail};
use image_spec::MEDIA_TYPE_OCI_MANIFEST;
use image_spec::{Descriptor, Digest, LayerInfo, Manifest, MediaTypeFamily};
use serde::{Deserialize, Serialize};
use solver::cache::DepRecord;
use solver::ir::Op;
use solver::{CacheKey, CacheRecord};
use std::collections::{BTreeMap, HashSet};

pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.builder.cache.config.v1+json";
const VERSION: u32 = 1;

/// The config blob of an exported cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheConfig {
    pub version: u32,
    /// Sorted by key, so an unchanged build exports the same bytes.
    pub records: Vec<ExportedRecord>,
    /// `RUN --mount=type=cache` directories by id, each a tar blob among the layers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<ExportedMount>,
}

/// A [`CacheRecord`] whose result is spelled out as the layers it stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedRecord {
    pub key: CacheKey,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_id: Option<String>,
    pub name: String,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub facts: Vec<(String, String)>,
    pub deps: Vec<DepRecord>,
    pub layers: Vec<LayerInfo>,
    /// When the step made its top layer, so that a build from this cache gives the
    /// image (history times included) the exporting build gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made: Option<String>,
}

/// A cache mount's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportedMount {
    /// The cache key: the name of the mount's directory under `cache-mounts/`.
    pub id: String,
    /// The `id=` the Dockerfile gave it, for people reading the config.
    #[serde(default)]
    pub name: String,
    /// A tar of the directory (see `cache::mounts`).
    pub blob: LayerInfo,
}

impl ExportedRecord {
    /// `None` for a record whose result is not a list of layers.
    pub fn from_record(record: &CacheRecord) -> Option<ExportedRecord> {
        let RecordedLayers { layers, made } = RecordedLayers::decode(&record.result)?;
        Some(ExportedRecord {
            key: record.key,
            step_id: record.step_id.clone(),
            name: record.name.clone(),
            op: record.op.clone(),
            facts: record.facts.clone(),
            deps: record.deps.clone(),
            layers,
            made,
        })
    }

    /// The record as the solver stores it; the result is encoded the way
    /// `BuildWorker::encode_result` encodes layers.
    pub fn to_record(&self) -> CacheRecord {
        CacheRecord {
            key: self.key,
            step_id: self.step_id.clone(),
            name: self.name.clone(),
            op: self.op.clone(),
            facts: self.facts.clone(),
            deps: self.deps.clone(),
            result: RecordedLayers { layers: self.layers.clone(), made: self.made.clone() }.encode(),
        }
    }
}

impl CacheConfig {
    pub fn new(mut records: Vec<ExportedRecord>, mut mounts: Vec<ExportedMount>) -> CacheConfig {
        records.sort_by_key(|r| r.key);
        records.dedup_by_key(|r| r.key);
        mounts.sort_by(|a, b| a.id.cmp(&b.id));
        CacheConfig { version: VERSION, records, mounts }
    }

    pub fn parse(bytes: &[u8]) -> Result<CacheConfig> {
        let config: CacheConfig = serde_json::from_slice(bytes).context("parsing the cache config")?;
        if config.version != VERSION {
            bail!("unsupported cache config version {} (want {VERSION})", config.version);
        }
        Ok(config)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("cache config serializes")
    }

    /// Every blob the cache refers to, each once, in a stable order.
    pub fn blobs(&self) -> Vec<LayerInfo> {
        let mut seen = HashSet::new();
        let all = self.records.iter().flat_map(|r| r.layers.iter()).chain(self.mounts.iter().map(|m| &m.blob));
        all.filter(|l| seen.insert(l.digest.clone())).cloned().collect()
    }

    /// The manifest that carries this config (given as bytes) and its blobs.
    pub fn manifest(&self, config_bytes: &[u8]) -> Manifest {
        // An OCI manifest throughout: a base layer pulled with a Docker type is named
        // by its OCI equivalent (OCI has one for every layer type).
        let oci = |l: &LayerInfo| Descriptor {
            media_type: MediaTypeFamily::Oci.layer_type(&l.media_type).unwrap_or(&l.media_type).to_string(),
            ..l.descriptor()
        };
        let layers = self.blobs().iter().map(oci).collect();
        Manifest {
            schema_version: 2,
            media_type: Some(MEDIA_TYPE_OCI_MANIFEST.to_string()),
            config: Descriptor {
                media_type: CONFIG_MEDIA_TYPE.to_string(),
                digest: Digest::of(config_bytes),
                size: config_bytes.len() as u64,
                annotations: None,
                platform: None,
            },
            layers,
            annotations: Some(BTreeMap::from([(
                "org.opencontainers.image.description".to_string(),
                "builder build cache".to_string(),
            )])),
        }
    }
}

/// Checks that a manifest carries a cache config.
pub fn check_manifest(manifest: &Manifest) -> Result<()> {
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        bail!(
            "not a builder cache: its config has media type {:?} (want {CONFIG_MEDIA_TYPE})",
            manifest.config.media_type
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use solver::ir::SourceOp;

    fn layer(n: u8) -> LayerInfo {
        LayerInfo {
            digest: Digest::of(&[n]),
            diff_id: Digest::of(&[n, n]),
            size: n as u64,
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        }
    }

    fn record(n: u32, layers: Vec<LayerInfo>) -> CacheRecord {
        CacheRecord {
            key: CacheKey::of("test", &n),
            step_id: Some(format!("s{n}")),
            name: format!("step {n}"),
            op: Op::Source(SourceOp::Scratch),
            facts: vec![],
            deps: vec![],
            result: RecordedLayers { layers, made: Some(format!("2026-11-24T00:00:0{n}Z")) }.encode(),
        }
    }

    #[test]
    fn records_round_trip_byte_for_byte() {
        let r = record(1, vec![layer(1), layer(2)]);
        let exported = ExportedRecord::from_record(&r).unwrap();
        assert_eq!(exported.to_record(), r);
        let config = CacheConfig::new(vec![exported.clone(), exported], vec![]);
        assert_eq!(config.records.len(), 1);
        assert_eq!(CacheConfig::parse(&config.to_bytes()).unwrap(), config);
    }

    #[test]
    fn a_docker_typed_base_layer_gets_its_oci_type_in_the_manifest() {
        let mut base = layer(1);
        base.media_type = image_spec::MEDIA_TYPE_DOCKER_LAYER_GZIP.into();
        let exported = ExportedRecord::from_record(&record(1, vec![base, layer(2)])).unwrap();
        let config = CacheConfig::new(vec![exported], vec![]);
        let manifest = config.manifest(&config.to_bytes());
        assert!(manifest.layers.iter().all(|l| l.media_type == image_spec::MEDIA_TYPE_OCI_LAYER_GZIP));
        assert!(image_spec::is_single_family(&manifest));
    }

    #[test]
    fn blobs_are_listed_once_and_the_bytes_are_stable() {
        let a = ExportedRecord::from_record(&record(1, vec![layer(1), layer(2)])).unwrap();
        let b = ExportedRecord::from_record(&record(2, vec![layer(1), layer(3)])).unwrap();
        let one = CacheConfig::new(vec![a.clone(), b.clone()], vec![]);
        let two = CacheConfig::new(vec![b, a], vec![]);
        assert_eq!(one.to_bytes(), two.to_bytes());
        assert_eq!(one.blobs().len(), 3);
        let bytes = one.to_bytes();
        let manifest = one.manifest(&bytes);
        assert_eq!(manifest.layers.len(), 3);
        check_manifest(&manifest).unwrap();
    }
}
