//! The image specification: the bottom layer both the frontend and the builder use.
//!
//! It owns the formats and nothing else: [`Digest`] (`sha256:<hex>`), media types and
//! [`Compression`], the two families of media types ([`MediaTypeFamily`], OCI and
//! Docker, and the mapping between them), [`Descriptor`], the one [`Platform`] (with
//! [`host_platform`] and [`Platform::parse`]), image [`Reference`]s as Docker normalises them, the image
//! config ([`ImageConfig`], with Docker's [`ContainerConfig`], [`HealthConfig`] and
//! [`History`]), [`Manifest`] and [`Index`], and the layers and chain IDs of an
//! [`Image`]. It never touches the filesystem or the network.
//!
//! The types are our own rather than `oci-spec`'s: their JSON must stay byte for byte
//! what it is (image digests depend on field order and on which empty fields are
//! left out), and the image config carries Docker's fields that the OCI one lacks.

mod config;
mod descriptor;
mod digest;
mod family;
mod manifest;
mod media_type;
mod platform;
mod platform_match;
mod reference;
mod shown;

pub use config::{ContainerConfig, HealthConfig, History, ImageConfig, RootFs};
pub use descriptor::Descriptor;
pub use digest::{Digest, DigestError};
pub use family::{MediaTypeFamily, UnrepresentableLayer, is_single_family};
pub use manifest::{Image, Index, LayerInfo, Manifest, chain_ids};
pub use media_type::*;
pub use platform::{Platform, PlatformError, host_platform};
pub use platform_match::{compatible_platforms, platform_matches, select_manifest};
pub use reference::{MAX_NAME_LENGTH, Reference, ReferenceError};
pub use shown::{MAX_SHOWN, cut, shown};
