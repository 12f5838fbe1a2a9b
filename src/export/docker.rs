//! `type=docker`: one tarball that `docker load` accepts (`manifest.json`,
//! `repositories`) and that is also an OCI layout, as Docker 25's `docker save` writes.
//! Docker media types unless `oci-mediatypes=true`, which `compression=zstd` needs.

use super::{BuildResult, OutputSpec};
use crate::archive::ArchiveFormat;
use anyhow::Result;
use image_spec::Image;
use store::Store;

pub fn export(store: &Store, spec: &OutputSpec, result: &BuildResult) -> Result<Image> {
    super::oci::export_archive(store, spec, result, ArchiveFormat::Docker)
}
