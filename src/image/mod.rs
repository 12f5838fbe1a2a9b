//! Image formats: digests, the OCI image config, manifests and references.

// Some of this API is not called yet: media types and helpers used as the exporters and registry grow.
#![allow(dead_code)]

pub mod config;
pub mod digest;
pub mod manifest;
pub mod reference;

pub use config::{ImageConfig, RootFs};
pub use digest::Digest;
pub use manifest::{Compression, Descriptor, Image, Index, LayerInfo, Manifest, Platform};
pub use reference::Reference;
