//! Exporters: what `builder build -o` does with the result of a build.
//!
//! A build ends with a [`BuildResult`] (the layer stack and the image config); each
//! [`OutputSpec`] turns it into one output, one file per exporter:
//! [`image`] (the store, and a registry with `push=true`), [`oci`] (an OCI layout as a
//! tarball or a directory), [`docker`] (a tarball `docker load` accepts that is also an
//! OCI layout), [`local`] and [`tar`] (the final filesystem, flattened).
//!
//! Image outputs share [`image::prepare`]: layers made by the build are brought to the
//! wanted compression (base image layers too with `force-compression=true`), reusing a
//! blob made before for the same diffID and compression; then config and manifest are
//! written with OCI or Docker media types, every descriptor in the one family (a base
//! layer pulled with the other family's type is re-described, not recompressed). Outputs that go to a file are written to a
//! temp file beside it and renamed, so a killed build leaves no half-written file.

mod docker;
mod history;
mod image;
mod lazy;
mod local;
pub mod multi;
mod oci;
mod oci_index;
mod spec;
mod tar;

pub use history::image_config;
pub use image::InvalidName;
pub use lazy::{for_push, index_for_push};
pub use spec::{Dest, OutputKind, OutputSpec, add_annotations, parse_output};

use crate::progress::Task;
use anyhow::Result;
use image_spec::{Image, ImageConfig, LayerInfo};
use store::Store;

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub config: ImageConfig,
    /// The final stage's layers, bottom first.
    pub layers: Vec<LayerInfo>,
    /// How many of `layers` come from the base image (kept as they are unless
    /// `force-compression=true`).
    pub base_layers: usize,
    /// The `-t` names, normalised.
    pub tags: Vec<String>,
    /// `SOURCE_DATE_EPOCH`: clamps file times of `local` and `tar` outputs.
    pub epoch: Option<i64>,
}

/// What the progress display calls an output's step, as BuildKit names it.
pub fn step_name(spec: &OutputSpec) -> &'static str {
    match spec.kind {
        OutputKind::Image | OutputKind::Registry => "exporting to image",
        OutputKind::Oci => "exporting to oci image format",
        OutputKind::Docker => "exporting to docker image format",
        OutputKind::Local => "exporting to client directory",
        OutputKind::Tar => "exporting to client tarball",
    }
}

/// Runs one output, reporting to its step of the progress display. Returns the image
/// it wrote, for image outputs.
pub fn export(store: &Store, spec: &OutputSpec, result: &BuildResult, task: &Task<'_>) -> Result<Option<Image>> {
    match spec.kind {
        OutputKind::Image | OutputKind::Registry => image::export(store, spec, result, task).map(Some),
        OutputKind::Oci => oci::export(store, spec, result).map(Some),
        OutputKind::Docker => docker::export(store, spec, result).map(Some),
        OutputKind::Local => local::export(store, spec, result).map(|()| None),
        OutputKind::Tar => tar::export(store, spec, result).map(|()| None),
    }
}
