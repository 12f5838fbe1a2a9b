//! How a cache record keeps a filesystem result: written by the ops, read by cache
//! import/export and by the cache's answer to the store's GC ([`super::holder`]),
//! which must name every layer a record holds.

use image_spec::LayerInfo;

/// A filesystem result as a cache record keeps it (and a cache export carries it).
/// Records written before the time was kept are a bare list of layers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecordedLayers {
    pub layers: Vec<LayerInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub made: Option<String>,
}

impl RecordedLayers {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("layers serialize")
    }

    pub fn decode(bytes: &[u8]) -> Option<RecordedLayers> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Any {
            Recorded(RecordedLayers),
            Bare(Vec<LayerInfo>),
        }
        match serde_json::from_slice(bytes).ok()? {
            Any::Recorded(recorded) => Some(recorded),
            Any::Bare(layers) => Some(RecordedLayers { layers, made: None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_spec::Digest;

    #[test]
    fn both_forms_decode() {
        let layer = LayerInfo {
            digest: Digest::of(b"blob"),
            diff_id: Digest::of(b"tar"),
            size: 4,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        };
        let recorded = RecordedLayers { layers: vec![layer.clone()], made: Some("2026-11-24T00:00:00Z".into()) };
        assert_eq!(RecordedLayers::decode(&recorded.encode()), Some(recorded));
        // Written before the time was kept: a bare list.
        let bare = serde_json::to_vec(&vec![layer.clone()]).unwrap();
        assert_eq!(RecordedLayers::decode(&bare), Some(RecordedLayers { layers: vec![layer], made: None }));
        assert_eq!(RecordedLayers::decode(b"{\"nonsense\":1}"), None);
    }
}
