//! `ADD` of a local archive: a tar, plain or gzip/bzip2/xz/zstd-compressed, is extracted into
//! the destination instead of copied. Extraction is a security boundary: no entry
//! may land outside the destination (`..`, absolute paths and symlinked parents are
//! refused by `tar`'s `unpack_in`, which checks every parent stays inside).

use super::owner::Ids;
use anyhow::{Context as _, Result};
use filetime::FileTime;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::lchown;
use std::path::{Component, Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

/// What compression `path` uses if it is a tar archive, `None` if it is not one
/// (Docker's test: it decompresses and a first tar header reads).
fn detect(path: &Path) -> Result<Option<Compression>> {
    let mut head = Vec::with_capacity(6);
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    (&file).take(6).read_to_end(&mut head).with_context(|| format!("reading {}", path.display()))?;
    let compression = match head.as_slice() {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [b'B', b'Z', b'h', ..] => Compression::Bzip2,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00] => Compression::Xz,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Compression::Zstd,
        _ => Compression::None,
    };
    let reader = match open(path, compression) {
        Ok(reader) => reader,
        Err(_) => return Ok(None),
    };
    let mut archive = tar::Archive::new(reader);
    let first_entry_reads = match archive.entries() {
        Ok(mut entries) => matches!(entries.next(), Some(Ok(_))),
        Err(_) => false,
    };
    Ok(first_entry_reads.then_some(compression))
}

fn open(path: &Path, compression: Compression) -> Result<Box<dyn Read>> {
    let file = BufReader::new(File::open(path).with_context(|| format!("opening {}", path.display()))?);
    Ok(match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(file)),
        Compression::Xz => Box::new(lzma_rust2::XzReader::new(file, true)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
    })
}

/// Whether `path` is a tar archive ADD extracts.
pub(crate) fn is_archive(path: &Path) -> Result<bool> {
    Ok(detect(path)?.is_some())
}

/// Extracts the tar `archive` into the existing directory `dest`. Entries keep the
/// archive's owners unless `owner` (`--chown`) is given.
pub(crate) fn unpack(archive: &Path, dest: &Path, owner: Option<Ids>) -> Result<()> {
    let compression = detect(archive)?.with_context(|| format!("{} is not a tar archive", archive.display()))?;
    let reader: Box<dyn BufRead> = Box::new(BufReader::new(open(archive, compression)?));
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(true);
    tar.set_unpack_xattrs(true);
    tar.set_overwrite(true);
    tar.set_preserve_ownerships(owner.is_none());
    let mut dir_times: Vec<(PathBuf, FileTime)> = Vec::new();
    for entry in tar.entries().with_context(|| format!("reading archive {}", archive.display()))? {
        let mut entry = entry.with_context(|| format!("reading archive {}", archive.display()))?;
        let name = entry.path().with_context(|| format!("reading archive {}", archive.display()))?.into_owned();
        let is_dir = entry.header().entry_type().is_dir();
        let mtime = entry.header().mtime().unwrap_or(0);
        let unpacked = entry
            .unpack_in(dest)
            .with_context(|| format!("extracting {} from {}", name.display(), archive.display()))?;
        if !unpacked {
            tracing::warn!(
                "skipped archive entry {} of {}: outside the destination",
                name.display(),
                archive.display()
            );
            continue;
        }
        let target = dest.join(contained(&name));
        if let Some(ids) = owner {
            lchown(&target, Some(ids.uid), Some(ids.gid))
                .with_context(|| format!("chown {}:{} {}", ids.uid, ids.gid, target.display()))?;
        }
        if is_dir {
            dir_times.push((target, FileTime::from_unix_time(mtime as i64, 0)));
        }
    }
    // Later entries may have changed a directory's mtime after it was unpacked.
    for (dir, mtime) in dir_times.into_iter().rev() {
        match filetime::set_symlink_file_times(&dir, mtime, mtime) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("setting times of {}", dir.display())),
        }
    }
    Ok(())
}

/// An entry name as `unpack_in` places it: leading `/` and `.` dropped.
fn contained(name: &Path) -> PathBuf {
    name.components().filter(|c| matches!(c, Component::Normal(_))).collect()
}
