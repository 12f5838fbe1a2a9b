//! `type=oci`: an OCI image layout, as a tarball (`dest=FILE` or `-`) or, with
//! `tar=false`, as a directory.

use super::image::{names, prepare};
use super::{BuildResult, Dest, OutputSpec};
use crate::archive::{ArchiveFormat, ArchiveImage};
use crate::image::Image;
use crate::store::Store;
use anyhow::{Context as _, Result};

pub fn export(store: &Store, spec: &OutputSpec, result: &BuildResult) -> Result<Image> {
    let image = prepare(store, spec, result)?;
    let entry = ArchiveImage { image: image.clone(), names: names(spec, result)? };
    write(store, &entry, ArchiveFormat::Oci, spec)?;
    Ok(image)
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
