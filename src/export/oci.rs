//! `type=oci`: an OCI image layout, as a tarball (`dest=FILE` or `-`) or, with
//! `tar=false`, as a directory.

use super::image::{names, prepare, prepare_with};
use super::{BuildResult, Dest, OutputSpec};
use crate::archive::{ArchiveFormat, ArchiveImage, TarArchive};
use crate::image::Image;
use crate::store::Store;
use anyhow::{Context as _, Result};

pub fn export(store: &Store, spec: &OutputSpec, result: &BuildResult) -> Result<Image> {
    export_archive(store, spec, result, ArchiveFormat::Oci)
}

/// Prepares the image and writes it as an archive of `format` where `spec.dest` says.
/// Into a tarball file or a layout directory, the archive is written as the image is
/// prepared: a layer compressed for this export goes into the store and the output
/// at once.
pub fn export_archive(store: &Store, spec: &OutputSpec, result: &BuildResult, format: ArchiveFormat) -> Result<Image> {
    let names = names(spec, result)?;
    if let (Some(Dest::Path(dir)), false) = (spec.dest.as_ref(), spec.tar) {
        // A layout directory: layers compressed for it go there as they are made.
        let add = &mut |layer: &_, compression| crate::archive::add_layer_to_dir(store, layer, compression, dir);
        let image = prepare_with(store, spec, result, add).with_context(|| format!("writing {}", dir.display()))?;
        write(store, &ArchiveImage { image: image.clone(), names }, format, spec)?;
        return Ok(image);
    }
    let Some(Dest::Path(file)) = spec.dest.as_ref().filter(|_| spec.tar) else {
        let image = prepare(store, spec, result)?;
        write(store, &ArchiveImage { image: image.clone(), names }, format, spec)?;
        return Ok(image);
    };
    let mut prepared = None;
    crate::archive::write_file_atomically(file, |out| {
        let mut archive = TarArchive::new(out)?;
        let image =
            prepare_with(store, spec, result, &mut |layer, compression| archive.add_layer(store, layer, compression))?;
        archive.finish(store, &[ArchiveImage { image: image.clone(), names }], format)?;
        prepared = Some(image);
        Ok(())
    })
    .with_context(|| format!("writing {}", file.display()))?;
    Ok(prepared.expect("written: prepared"))
}

/// Writes an archive of `entry` where `spec.dest` says.
pub fn write(store: &Store, entry: &ArchiveImage, format: ArchiveFormat, spec: &OutputSpec) -> Result<()> {
    let entries = std::slice::from_ref(entry);
    match spec.dest.as_ref().expect("validated: a dest") {
        Dest::Stdout => {
            let out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
            let mut out = crate::archive::write_archive(store, entries, format, out)?;
            std::io::Write::flush(&mut out).context("writing to stdout")?;
        }
        Dest::Path(dir) if !spec.tar => crate::archive::write_layout_dir(store, entries, format, dir)
            .with_context(|| format!("writing {}", dir.display()))?,
        Dest::Path(file) => crate::archive::write_file_atomically(file, |w| {
            crate::archive::write_archive(store, entries, format, w).map(|_| ())
        })
        .with_context(|| format!("writing {}", file.display()))?,
    }
    Ok(())
}
