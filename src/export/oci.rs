//! `type=oci`: an OCI image layout, as a tarball (`dest=FILE` or `-`) or, with
//! `tar=false`, as a directory.

use super::image::{names, prepare, prepare_with};
use super::{BuildResult, Dest, OutputSpec};
use crate::archive::{ArchiveFormat, ArchiveImage, TarArchive};
use anyhow::{Context as _, Result};
use image_spec::Image;
use store::Store;

pub fn export(store: &Store, spec: &OutputSpec, result: &BuildResult) -> Result<Image> {
    export_archive(store, spec, result, ArchiveFormat::Oci)
}

/// Prepares the image and writes it as an archive of `format` where `spec.dest` says.
/// Into a tarball file or a layout directory, the archive is written as the image is
/// prepared: a layer compressed for this export goes into the store and the output
/// at once. A pipe gets the image once prepared (a tar header needs the blob's size).
pub fn export_archive(store: &Store, spec: &OutputSpec, result: &BuildResult, format: ArchiveFormat) -> Result<Image> {
    let names = names(spec, result)?;
    let entries = |image: &Image| [ArchiveImage { image: image.clone(), names: names.clone() }];
    match spec.dest.as_ref().expect("validated: a dest") {
        Dest::Stdout => {
            let image = prepare(store, spec, result)?;
            let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            let mut out = crate::archive::write_archive(store, &entries(&image), format, out)?;
            std::io::Write::flush(&mut out).context("writing to stdout")?;
            Ok(image)
        }
        Dest::Path(dir) if !spec.tar => {
            let written = (|| -> Result<Image> {
                let add =
                    &mut |layer: &_, compression| crate::archive::add_layer_to_dir(store, layer, compression, dir);
                let image = prepare_with(store, spec, result, add)?;
                crate::archive::write_layout_dir(store, &entries(&image), format, dir)?;
                Ok(image)
            })();
            written.with_context(|| format!("writing {}", dir.display()))
        }
        Dest::Path(file) => {
            let mut prepared = None;
            crate::archive::write_file_atomically(file, |out| {
                let mut archive = TarArchive::new(out)?;
                let add = &mut |layer: &_, compression| archive.add_layer(store, layer, compression);
                let image = prepare_with(store, spec, result, add)?;
                archive.finish(store, &entries(&image), format)?;
                prepared = Some(image);
                Ok(())
            })
            .with_context(|| format!("writing {}", file.display()))?;
            Ok(prepared.expect("written: prepared"))
        }
    }
}
