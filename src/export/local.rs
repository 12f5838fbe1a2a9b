//! `type=local`: the final filesystem as a directory. The layer snapshots are mounted
//! read-only as one overlay (so whiteouts and opaque directories are applied by the
//! kernel, exactly as a container sees them), written as a deterministic tar, and
//! unpacked into `dest` on another thread.

use super::{BuildResult, Dest, OutputSpec};
use crate::layer::tar_writer::{TarOptions, write_tar};
use crate::layer::unpack::{UnpackOptions, unpack};
use anyhow::{Context as _, Result, anyhow};
use std::io::Write;
use std::path::Path;
use store::Store;

/// Writes the flattened filesystem of `result` as a tar to `out` (mtimes clamped to
/// `SOURCE_DATE_EPOCH` when set).
pub fn write_flattened<W: Write + Send>(store: &Store, result: &BuildResult, out: W) -> Result<W> {
    let snapshots = crate::layer::ensure_snapshots(store, &result.layers)?;
    let rootfs = executor::Rootfs { lowerdirs: snapshots.into_iter().rev().collect(), upper: None, readonly: true };
    let options = TarOptions { overlay: false, mtime_clamp: result.epoch };
    executor::with_rootfs_mounted(std::slice::from_ref(&rootfs), move |paths| write_tar(&paths[0], out, &options))
        .map_err(|e| anyhow!(e))
        .context("mounting the image's layers")?
        .context("writing the image's filesystem")
}

pub fn export(store: &Store, spec: &OutputSpec, result: &BuildResult) -> Result<()> {
    let Some(Dest::Path(dest)) = &spec.dest else { anyhow::bail!("type=local needs dest=DIR") };
    std::fs::create_dir_all(dest).with_context(|| format!("creating {}", dest.display()))?;
    let (reader, writer) = std::io::pipe().context("creating a pipe")?;
    let unpacker = unpack_thread(reader, dest);
    let written = write_flattened(store, result, writer).map(drop);
    let unpacked = unpacker.join().map_err(|_| anyhow!("unpacking thread panicked"))?;
    // A failed unpack closes the pipe, which fails the writer: its error says more.
    unpacked.with_context(|| format!("writing {}", dest.display()))?;
    written
}

fn unpack_thread(reader: std::io::PipeReader, dest: &Path) -> std::thread::JoinHandle<Result<()>> {
    let dest = dest.to_path_buf();
    std::thread::spawn(move || {
        let options = UnpackOptions { overlay: false, follow_symlinks: false };
        unpack(std::io::BufReader::with_capacity(1 << 20, reader), &dest, options)
    })
}
