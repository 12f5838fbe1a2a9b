//! The outputs of a build for several platforms, as BuildKit writes them: each
//! platform's image is prepared as for a single-platform build, then
//! - `type=image`/`registry`: an image index (OCI, or a Docker manifest list with
//!   `oci-mediatypes=false`) in the store under the names; a push sends every
//!   manifest by digest, then the index under each name;
//! - `type=oci`: an OCI layout whose `index.json` names the index (`oci_index.rs`);
//! - `type=local`/`tar`: one subdirectory per platform, named as BuildKit names them
//!   (`linux_amd64/`, `linux_arm_v7/`); the tar is made from such a directory in the
//!   store's temp space, the platform directories dated 0 (or `SOURCE_DATE_EPOCH`);
//! - `type=docker`: refused, as buildx refuses loading a manifest list into Docker:
//!   build one platform for it, or use `type=oci`.

use super::image::{names, prepare};
use super::oci_index;
use super::{BuildResult, Dest, OutputKind, OutputSpec};
use crate::layer::tar_writer::{TarOptions, write_tar};
use crate::progress::Task;
use anyhow::{Context as _, Result, anyhow, bail};
use image_spec::{Digest, Image, MediaTypeFamily, Platform};
use registry::{RegistryOptions, Transfer};
use std::path::Path;
use store::Store;

/// One platform's result.
pub type PlatformResult = (Platform, BuildResult);

/// `linux/arm/v7` → `linux_arm_v7`, BuildKit's directory for a platform.
pub fn platform_dir(platform: &Platform) -> String {
    platform.to_string().replace('/', "_")
}

/// Runs one output for every platform; returns the index it wrote, for image outputs.
pub fn export(store: &Store, spec: &OutputSpec, results: &[PlatformResult], task: &Task<'_>) -> Result<Option<Digest>> {
    match spec.kind {
        OutputKind::Image | OutputKind::Registry => image_index(store, spec, results, task).map(Some),
        OutputKind::Oci => oci(store, spec, results).map(Some),
        OutputKind::Docker => bail!(crate::usage_error(anyhow!(
            "type=docker holds one platform, and this build is for {}: build it with --platform set to one of \
             them, or use type=oci",
            list(results)
        ))),
        OutputKind::Local | OutputKind::Tar => per_platform(store, spec, results).map(|()| None),
    }
}

fn list(results: &[PlatformResult]) -> String {
    results.iter().map(|(p, _)| p.to_string()).collect::<Vec<_>>().join(", ")
}

/// Each platform's image prepared as `spec` wants it, and the index of them.
pub fn write_index(store: &Store, spec: &OutputSpec, results: &[PlatformResult]) -> Result<(Vec<Image>, Digest)> {
    let mut images = Vec::with_capacity(results.len());
    for (platform, result) in results {
        images.push(prepare(store, spec, result).with_context(|| format!("the image for {platform}"))?);
    }
    let family = if spec.oci_media_types { MediaTypeFamily::Oci } else { MediaTypeFamily::Docker };
    let entries: Vec<(Platform, Image)> = results.iter().map(|(p, _)| p.clone()).zip(images.iter().cloned()).collect();
    let index = store.write_index(&entries, family, &spec.index_annotations)?;
    Ok((images, index))
}

fn image_index(store: &Store, spec: &OutputSpec, results: &[PlatformResult], task: &Task<'_>) -> Result<Digest> {
    let names = names(spec, &results[0].1)?;
    task.part("exporting layers", false);
    let (_, index) = write_index(store, spec, results)?;
    task.part("exporting layers", true);
    task.part(&format!("exporting manifest list {index}"), true);
    for name in &names {
        store.set_ref(&name.to_string(), &index)?;
        task.part(&format!("naming to {}", name.familiar()), true);
    }
    if spec.push {
        for name in &names {
            let part = format!("pushing manifest list for {}@{index}", name.familiar());
            task.part("pushing layers", false);
            let progress = |transfer: Transfer<'_>| match transfer {
                Transfer::Manifest(_) => {}
                other => task.transfer(other),
            };
            registry::push_index(
                &crate::transfer::StoreContent(store),
                &index,
                name,
                &RegistryOptions::default(),
                &progress,
            )
            .with_context(|| format!("pushing {}", name.familiar()))?;
            task.part("pushing layers", true);
            task.part(&part, true);
        }
    }
    Ok(index)
}

fn oci(store: &Store, spec: &OutputSpec, results: &[PlatformResult]) -> Result<Digest> {
    let names = names(spec, &results[0].1)?;
    let (images, index) = write_index(store, spec, results)?;
    let named = oci_index::Named { index: &index, names: &names, annotations: &spec.index_descriptor_annotations };
    match spec.dest.as_ref().expect("validated: a dest") {
        Dest::Stdout => {
            let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            let mut out = oci_index::write_tar(store, &images, &named, out)?;
            std::io::Write::flush(&mut out).context("writing to stdout")?;
        }
        Dest::Path(dir) if !spec.tar => oci_index::write_dir(store, &images, &named, dir)?,
        Dest::Path(file) => {
            crate::archive::write_file_atomically(store, file, |out| {
                oci_index::write_tar(store, &images, &named, out).map(drop)
            })
            .with_context(|| format!("writing {}", file.display()))?;
        }
    }
    Ok(index)
}

/// `type=local` into `dest/PLATFORM/`; `type=tar` as one tar with those directories.
fn per_platform(store: &Store, spec: &OutputSpec, results: &[PlatformResult]) -> Result<()> {
    let dest = spec.dest.as_ref().expect("validated: a dest");
    if spec.kind == OutputKind::Local {
        let Dest::Path(dir) = dest else { bail!(crate::usage_error(anyhow!("type=local needs dest=DIR"))) };
        return write_platform_dirs(store, spec, results, dir);
    }
    let temp = store.temp_dir("tar-platforms")?;
    write_platform_dirs(store, spec, results, temp.path())?;
    let epoch = results[0].1.epoch;
    for (platform, _) in results {
        let time = filetime::FileTime::from_unix_time(epoch.unwrap_or(0), 0);
        filetime::set_file_mtime(temp.path().join(platform_dir(platform)), time)?;
    }
    let options = TarOptions { overlay: false, mtime_clamp: epoch };
    match dest {
        Dest::Stdout => {
            let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            let mut out = write_tar(temp.path(), out, &options)?;
            std::io::Write::flush(&mut out).context("writing to stdout")?;
        }
        Dest::Path(file) => {
            crate::archive::write_file_atomically(store, file, |out| write_tar(temp.path(), out, &options).map(drop))
                .with_context(|| format!("writing {}", file.display()))?;
        }
    }
    Ok(())
}

fn write_platform_dirs(store: &Store, spec: &OutputSpec, results: &[PlatformResult], dir: &Path) -> Result<()> {
    for (platform, result) in results {
        let sub = OutputSpec { dest: Some(Dest::Path(dir.join(platform_dir(platform)))), ..spec.clone() };
        super::local::export(store, &sub, result).with_context(|| format!("the files for {platform}"))?;
    }
    Ok(())
}
