//! The OCI image config (`application/vnd.oci.image.config.v1+json`), our own struct
//! so that Docker's fields (Healthcheck, OnBuild, Shell) survive a round trip.

use super::Digest;
use frontend::image::{ContainerConfig, History};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    /// Build cache records travelling with the image (`--cache-to type=inline`).
    #[serde(rename = "builder.cache.v1", default, skip_serializing_if = "Option::is_none")]
    pub inline_cache: Option<serde_json::Value>,
}
