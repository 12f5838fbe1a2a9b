//! `type=docker`: one tarball that `docker load` accepts (`manifest.json`,
//! `repositories`) and that is also an OCI layout, as Docker 25's `docker save` writes.
//! Docker media types unless `oci-mediatypes=true`.

use super::image::{names, prepare};
use super::{BuildResult, OutputSpec};
use crate::archive::{ArchiveFormat, ArchiveImage};
use crate::image::Image;
use crate::store::Store;
use anyhow::Result;

pub fn export(store: &Store, spec: &OutputSpec, result: &BuildResult) -> Result<Image> {
    let image = prepare(store, spec, result)?;
    let entry = ArchiveImage { image: image.clone(), names: names(spec, result)? };
    super::oci::write(store, &entry, ArchiveFormat::Docker, spec)?;
    Ok(image)
}
