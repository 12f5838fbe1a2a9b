//! Image archives: `builder import` of a rootfs tar, `builder save` to a tarball that
//! is both a docker-archive and an OCI layout (as `docker save` writes since Docker
//! 25), and `builder load` of such tarballs, older `docker save` output and OCI
//! archives.

// Some of this API is not called yet: `load` waits for its CLI command.
#![allow(dead_code)]

mod load;
mod save;

#[allow(unused_imports)]
pub use load::load;
pub use save::save;

use crate::image::manifest::host_platform;
use crate::image::{Compression, Image, ImageConfig};
use crate::layer::compress::{Compressor, HashWriter, decompress};
use crate::store::Store;
use anyhow::{Context as _, Result};
use frontend::image::History;
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;

/// Imports a root filesystem tarball (plain, gzip or zstd) as a one-layer image named
/// `name`. The tar bytes are kept as they are (gzip-compressed), after checking that
/// they are a tar.
pub fn import_rootfs(store: &Store, tarball: &Path, name: &str) -> Result<Image> {
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
    let layer = crate::image::LayerInfo { digest, diff_id, size, media_type: compression.media_type().into() };

    let platform = host_platform();
    let created = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let config = ImageConfig {
        created: Some(created.clone()),
        architecture: platform.architecture,
        os: platform.os,
        variant: platform.variant,
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
mod tests;
