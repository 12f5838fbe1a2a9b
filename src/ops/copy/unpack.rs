//! `ADD` of a local archive: a tar, plain or gzip/bzip2/xz/zstd-compressed, is extracted into
//! the destination instead of copied. Extraction is a security boundary: no entry
//! may land outside the destination, so it is placed the way a chroot into the
//! destination would place it.

use super::owner::Ids;
use super::write::{chown, mkdir_all};
use crate::ops::context::tree::resolve_in_root;
use anyhow::{Context as _, Result, ensure};
use filetime::FileTime;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
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

/// Extracts the tar `archive` into the existing directory `dest`, as if `dest` were
/// the root (Docker extracts in a chroot there): entry names and hardlink targets
/// that climb out with `..` are refused, and symlinks already on disk are resolved
/// inside `dest`. Entries keep the archive's owners unless `owner` (`--chown`).
pub(crate) fn unpack(archive: &Path, dest: &Path, owner: Option<Ids>) -> Result<()> {
    let compression = detect(archive)?.with_context(|| format!("{} is not a tar archive", archive.display()))?;
    let reader: Box<dyn BufRead> = Box::new(BufReader::new(open(archive, compression)?));
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_mtime(true);
    tar.set_unpack_xattrs(true);
    tar.set_overwrite(true);
    tar.set_preserve_ownerships(false);
    let mut dir_times: Vec<(PathBuf, FileTime)> = Vec::new();
    for entry in tar.entries().with_context(|| format!("reading archive {}", archive.display()))? {
        let mut entry = entry.with_context(|| format!("reading archive {}", archive.display()))?;
        let name = entry.path().with_context(|| format!("reading archive {}", archive.display()))?.into_owned();
        let extracted = extract(&mut entry, &name, dest, owner)
            .with_context(|| format!("extracting {} from {}", name.display(), archive.display()))?;
        if let Some(dir) = extracted {
            let mtime = entry.header().mtime().unwrap_or(0) as i64;
            dir_times.push((dir, FileTime::from_unix_time(mtime, 0)));
        }
    }
    // Later entries change a directory's mtime after it was unpacked.
    for (dir, mtime) in dir_times.into_iter().rev() {
        match filetime::set_symlink_file_times(&dir, mtime, mtime) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("setting times of {}", dir.display())),
        }
    }
    Ok(())
}

/// Places one entry; returns its path when it is a directory (for its mtime).
fn extract<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &Path,
    dest: &Path,
    owner: Option<Ids>,
) -> Result<Option<PathBuf>> {
    use tar::EntryType::*;
    let kind = entry.header().entry_type();
    if !matches!(kind, Regular | Continuous | Directory | Symlink | Link | Char | Block | Fifo) {
        // Global PAX headers and the like carry no file.
        return Ok(None);
    }
    let rel = contained(name)?;
    let path = match rel.file_name() {
        None => dest.to_path_buf(),
        Some(file_name) => {
            let parent = rel.parent().unwrap_or(Path::new(""));
            mkdir_all(dest, parent, 0o755, owner)?.join(file_name)
        }
    };
    // Whatever is in the way goes, unless a directory meets a directory.
    if let Ok(existing) = fs::symlink_metadata(&path)
        && !(existing.is_dir() && kind == Directory)
    {
        let removed = if existing.is_dir() { fs::remove_dir_all(&path) } else { fs::remove_file(&path) };
        removed.with_context(|| format!("replacing {}", path.display()))?;
    }
    if kind == Link {
        let target = entry.link_name()?.context("hardlink without a target")?.into_owned();
        let target_rel = contained(&target)?;
        let file_name = target_rel.file_name().context("hardlink to the destination root")?;
        let target_parent = resolve_in_root(dest, target_rel.parent().unwrap_or(Path::new("")), true)?;
        let source = dest.join(target_parent).join(file_name);
        fs::hard_link(&source, &path).with_context(|| format!("linking {} to {}", path.display(), target.display()))?;
        return Ok(None);
    }
    entry.unpack(&path)?;
    // Owners are set here rather than by `tar`, which rejects an empty uid field
    // that Go's reader (and so Docker) reads as 0.
    let header = entry.header();
    let ids = owner.unwrap_or(Ids { uid: header.uid().unwrap_or(0) as u32, gid: header.gid().unwrap_or(0) as u32 });
    chown(&path, ids, owner.is_some())?;
    // chown clears set-id bits; put the archive's mode back.
    if kind != Symlink {
        let mode = header.mode().unwrap_or(if kind == Directory { 0o755 } else { 0o644 });
        fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))?;
    }
    Ok((kind == Directory).then_some(path))
}

/// An entry name relative to the extraction root: `/` and `.` dropped, `..` refused
/// when it would climb out (Docker's breakout check).
fn contained(name: &Path) -> Result<PathBuf> {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in name.components() {
        match component {
            Component::Normal(part) => parts.push(part),
            Component::ParentDir => {
                let climbed = parts.pop();
                ensure!(climbed.is_some(), "{} points outside the destination", name.display());
            }
            _ => {}
        }
    }
    Ok(parts.iter().collect())
}
