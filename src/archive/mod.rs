//! Image archives: `builder import` of a rootfs tar, `builder save` to a tarball that
//! is both a docker-archive and an OCI layout (as `docker save` writes since Docker
//! 25), and `builder load` of such tarballs, older `docker save` output and OCI
//! archives.

mod load;
mod save;

pub use load::load;
pub use save::{
    ArchiveFormat, ArchiveImage, TarArchive, add_layer_to_dir, output_temp, save, user_file_mode, write_archive,
    write_file_atomically, write_layout_dir,
};

use crate::layer::compress::{Compressor, decompress};
use anyhow::{Context as _, Result};
use image_spec::History;
use image_spec::host_platform;
use image_spec::{Compression, Image, ImageConfig};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use store::HashWriter;
use store::Store;

/// Imports a root filesystem tarball (plain, gzip or zstd) as a one-layer image named
/// `name`. The tar bytes are kept as they are (gzip-compressed), after checking that
/// they are a tar.
pub fn import_rootfs(store: &Store, tarball: &Path, name: &str) -> Result<Image> {
    import_rootfs_for(store, tarball, name, &host_platform())
}

/// [`import_rootfs`] of files for `platform` (`builder import --platform`).
pub fn import_rootfs_for(store: &Store, tarball: &Path, name: &str, platform: &image_spec::Platform) -> Result<Image> {
    let file = File::open(tarball).with_context(|| format!("opening {}", tarball.display()))?;
    let reader = decompress(BufReader::new(file)).context("reading the tarball")?;
    let compression = Compression::Gzip;
    let blob = store.blob_writer()?;
    let mut hashing = HashWriter::new(Compressor::new(compression, blob)?);
    {
        // The tar reader sees every byte on its way to the blob, so a file that is not
        // a tar is refused rather than stored.
        let mut tee = TeeReader { inner: reader, out: &mut hashing };
        let mut archive = tar::Archive::new(&mut tee);
        for entry in archive.entries().context("not a tar archive")? {
            entry.context("not a valid tar archive")?;
        }
        io::copy(&mut tee, &mut io::sink()).context("reading the tarball")?;
    }
    let (compressor, diff_id, _) = hashing.finish();
    let (digest, size) = compressor.finish()?.commit(None)?;
    let layer = image_spec::LayerInfo { digest, diff_id, size, media_type: compression.media_type().into() };

    let created = created_time(source_date_epoch()?);
    let config = ImageConfig {
        created: Some(created.clone()),
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        history: vec![History {
            created: Some(created),
            created_by: Some(format!("imported from {}", tarball.display())),
            ..Default::default()
        }],
        ..Default::default()
    };
    let image = store.write_image(&config, &[layer])?;
    store.set_ref(name, &image.manifest_digest)?;
    Ok(image)
}

/// A `SOURCE_DATE_EPOCH` (environment or build arg) that is not a time: the user's
/// mistake, found where the value is read; `builder::main` makes it a usage error.
#[derive(Debug, thiserror::Error)]
#[error("SOURCE_DATE_EPOCH={value:?} is not a number of seconds")]
pub struct InvalidEpoch {
    pub value: String,
}

/// `SOURCE_DATE_EPOCH` from the environment, if set.
pub fn source_date_epoch() -> Result<Option<i64>, InvalidEpoch> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) if !s.trim().is_empty() => parse_epoch(&s).map(Some),
        _ => Ok(None),
    }
}

/// A `SOURCE_DATE_EPOCH` value: seconds since 1970.
pub fn parse_epoch(s: &str) -> Result<i64, InvalidEpoch> {
    s.trim()
        .parse::<i64>()
        .ok()
        .filter(|&secs| chrono::DateTime::from_timestamp(secs, 0).is_some())
        .ok_or_else(|| InvalidEpoch { value: s.to_string() })
}

/// RFC 3339 `created` time: the epoch when given (reproducible builds), else now.
pub fn created_time(epoch: Option<i64>) -> String {
    let time = epoch.and_then(|secs| chrono::DateTime::from_timestamp(secs, 0)).unwrap_or_else(chrono::Utc::now);
    time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Copies what is read from `inner` to `out`.
struct TeeReader<R, W> {
    inner: R,
    out: W,
}

impl<R: Read, W: Write> Read for TeeReader<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
