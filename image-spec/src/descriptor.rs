//! Content descriptors: what a manifest or an index says about the blobs it names.

use crate::{Digest, Platform};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An OCI content descriptor (also Docker's, which has the same JSON shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}
