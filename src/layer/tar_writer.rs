//! Deterministic tars of a directory: entries sorted by name with parents first,
//! numeric uid/gid only, no atime/ctime, mtimes optionally clamped, PAX records for
//! long or non-ASCII names, large ids and xattrs, hardlinks kept as links.
//!
//! In overlay mode the directory is an overlayfs upperdir: a 0/0 char device becomes a
//! `.wh.NAME` whiteout, an opaque directory gets a `.wh..wh..opq` entry, and overlay's
//! own xattrs are dropped.

use super::tar_sink::Copying;
pub use super::tar_sink::TarSink;
use super::tar_walk::{self, XattrsOf, is_opaque, read_xattrs};
use anyhow::{Context as _, Result, bail};
use rustix::fs::FileType;
use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Debug, Clone, Copy, Default)]
pub struct TarOptions {
    /// Read the directory as an overlay upperdir (whiteouts, opaque dirs).
    pub overlay: bool,
    /// `SOURCE_DATE_EPOCH`: no timestamp in the tar is later than this (seconds).
    pub mtime_clamp: Option<i64>,
}

/// Whether an xattr is overlayfs bookkeeping rather than file content.
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// Whether an xattr should not travel in a layer (host-specific labels).
pub(super) fn skip_xattr(name: &[u8]) -> bool {
    is_overlay_xattr(name) || name == b"security.selinux"
}

/// One tar entry to write.
struct Entry {
    path: Vec<u8>,
    kind: tar::EntryType,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    size: u64,
    link: Option<Vec<u8>>,
    device: Option<(u32, u32)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// A regular file's (dev, inode): where its data comes from.
    inode: Option<(u64, u64)>,
}

/// A regular file's data, as an [`EntryObserver`] sees it.
pub struct FileData<'a> {
    pub path: &'a Path,
    /// The file, open and not read yet (the tar reads it only if the entry is written).
    pub file: &'a File,
    /// (dev, inode): where the data comes from.
    pub inode: (u64, u64),
    pub size: u64,
}

/// Sees each entry before it is written, and may leave it out (its bytes were
/// accounted for before: [`super::resume`] resumes a hash after them).
pub trait EntryObserver {
    /// `offset`: where the entry starts in the tar; `headers`: the bytes it starts
    /// with (PAX header and records, the ustar header); `data`: a regular file's data.
    /// Returns whether to write the entry.
    fn entry(&mut self, offset: u64, headers: &[u8], data: Option<FileData<'_>>) -> bool;
}

/// Writes every entry.
struct All;

impl EntryObserver for All {
    fn entry(&mut self, _: u64, _: &[u8], _: Option<FileData<'_>>) -> bool {
        true
    }
}

/// The writer of a tar: where the next entry starts.
struct TarOut<'a, W> {
    out: W,
    offset: u64,
    observer: &'a mut dyn EntryObserver,
    /// Files are read through this, up to [`READ`] bytes at a time.
    buf: Vec<u8>,
}

/// The most of a file read at once: most files in one read (`io::copy` would take
/// 8 KiB at a time, four reads for a 25 kB file and one more to see its end), and
/// small enough to be still in the cache when the output copies and hashes it.
const READ: usize = 128 << 10;

/// Writes the tar of everything under `dir` (not `dir` itself) to `out`.
pub fn write_tar<W: Write>(dir: &Path, out: W, options: &TarOptions) -> Result<W> {
    Ok(write_tar_with(dir, Copying(out), options, &mut All)?.0)
}

/// [`write_tar`] into a [`TarSink`], which may read the files' bytes straight into
/// its own buffers.
pub fn write_tar_to<S: TarSink>(dir: &Path, out: S, options: &TarOptions) -> Result<S> {
    write_tar_with(dir, out, options, &mut All)
}

/// [`write_tar`], asking `observer` before each entry.
pub fn write_tar_observed<W: Write>(
    dir: &Path,
    out: W,
    options: &TarOptions,
    observer: &mut dyn EntryObserver,
) -> Result<W> {
    Ok(write_tar_with(dir, Copying(out), options, observer)?.0)
}

fn write_tar_with<S: TarSink>(dir: &Path, out: S, options: &TarOptions, observer: &mut dyn EntryObserver) -> Result<S> {
    let mut builder = TarOut { out, offset: 0, observer, buf: Vec::new() };
    let mut links: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    tar_walk::walk(dir, &mut |item| {
        let rel = item.rel;
        let rel_bytes = rel.as_os_str().as_bytes().to_vec();
        let meta = item.meta;
        let mtime = clamp(meta.mtime(), options.mtime_clamp);
        let ft = meta.file_type();
        let mut entry = Entry {
            path: rel_bytes.clone(),
            kind: tar::EntryType::Regular,
            mode: meta.mode() & 0o7777,
            uid: meta.uid().into(),
            gid: meta.gid().into(),
            mtime,
            size: 0,
            link: None,
            device: None,
            xattrs: Vec::new(),
            inode: None,
        };
        if options.overlay && rel.file_name().is_some_and(|n| n.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes())) {
            // In a layer such a name reads as a whiteout (or the opaque marker): what
            // the step made would hide or delete files after a save/load or a push.
            bail!(
                "{}: names starting with {WHITEOUT_PREFIX} are reserved for whiteouts in layers",
                image_spec::shown(&rel.to_string_lossy())
            );
        }
        if options.overlay && ft == FileType::CharacterDevice && meta.rdev() == 0 {
            entry.path = whiteout_name(rel);
            entry.mode = 0o600;
            return append(&mut builder, &entry, None);
        }
        if ft == FileType::Socket {
            return Ok(());
        }
        let xattrs_of = match item.open {
            Some(file) => XattrsOf::File(file, item.path),
            None => XattrsOf::Path(item.path),
        };
        entry.xattrs = read_xattrs(xattrs_of)?;
        if ft != FileType::Directory && meta.nlink() > 1 {
            if let Some(first) = links.get(&meta.inode()) {
                entry.kind = tar::EntryType::Link;
                entry.link = Some(first.clone());
                entry.xattrs.clear();
                return append(&mut builder, &entry, None);
            }
            links.insert(meta.inode(), rel_bytes.clone());
        }
        if ft == FileType::Directory {
            entry.kind = tar::EntryType::Directory;
            entry.path.push(b'/');
            append(&mut builder, &entry, None)?;
            if options.overlay && is_opaque(xattrs_of)? {
                let mode = entry.mode & 0o777;
                let mut marker =
                    Entry { path: rel_bytes, kind: tar::EntryType::Regular, mode, xattrs: Vec::new(), ..entry };
                marker.path.extend_from_slice(b"/");
                marker.path.extend_from_slice(OPAQUE_MARKER.as_bytes());
                append(&mut builder, &marker, None)?;
            }
        } else if let (FileType::RegularFile, Some(file)) = (ft, item.open) {
            entry.size = meta.len();
            entry.inode = Some(meta.inode());
            append(&mut builder, &entry, Some((item.path, file)))?;
        } else if ft == FileType::Symlink {
            entry.kind = tar::EntryType::Symlink;
            let target = item.read_link()?;
            entry.link = Some(target.as_os_str().as_bytes().to_vec());
            append(&mut builder, &entry, None)?;
        } else if ft == FileType::CharacterDevice || ft == FileType::BlockDevice {
            entry.kind = if ft == FileType::CharacterDevice { tar::EntryType::Char } else { tar::EntryType::Block };
            entry.device = Some(split_dev(meta.rdev()));
            append(&mut builder, &entry, None)?;
        } else if ft == FileType::Fifo {
            entry.kind = tar::EntryType::Fifo;
            append(&mut builder, &entry, None)?;
        }
        Ok(())
    })?;
    // Two zero blocks end a tar.
    builder.out.write_all(&[0; 1024]).context("finishing tar")?;
    Ok(builder.out)
}

fn clamp(mtime: i64, limit: Option<i64>) -> u64 {
    let t = match limit {
        Some(limit) => mtime.min(limit),
        None => mtime,
    };
    t.max(0) as u64
}

fn whiteout_name(rel: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(parent) = rel.parent().filter(|p| !p.as_os_str().is_empty()) {
        out.extend_from_slice(parent.as_os_str().as_bytes());
        out.push(b'/');
    }
    out.extend_from_slice(WHITEOUT_PREFIX.as_bytes());
    out.extend_from_slice(rel.file_name().expect("entry has a name").as_bytes());
    out
}

/// Linux `dev_t` → (major, minor).
pub fn split_dev(rdev: u64) -> (u32, u32) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major as u32, minor as u32)
}

const USTAR_ID_MAX: u64 = 0o7777777;
const USTAR_SIZE_MAX: u64 = 0o77777777777;

fn append<S: TarSink>(builder: &mut TarOut<'_, S>, e: &Entry, data: Option<(&Path, &File)>) -> Result<()> {
    let mut headers = Vec::with_capacity(512);
    let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
    let needs_pax = |s: &[u8]| s.len() > 100 || !s.is_ascii() || s.contains(&0);
    if needs_pax(&e.path) {
        pax.push(("path", e.path.clone()));
    }
    if let Some(link) = &e.link
        && needs_pax(link)
    {
        pax.push(("linkpath", link.clone()));
    }
    if e.uid > USTAR_ID_MAX {
        pax.push(("uid", e.uid.to_string().into_bytes()));
    }
    if e.gid > USTAR_ID_MAX {
        pax.push(("gid", e.gid.to_string().into_bytes()));
    }
    if e.size > USTAR_SIZE_MAX {
        pax.push(("size", e.size.to_string().into_bytes()));
    }
    let xattr_keys: Vec<String> =
        e.xattrs.iter().map(|(k, _)| format!("SCHILY.xattr.{}", String::from_utf8_lossy(k))).collect();
    let mut records = Vec::new();
    for (k, v) in pax
        .iter()
        .map(|(k, v)| (*k, v.as_slice()))
        .chain(xattr_keys.iter().map(|k| k.as_str()).zip(e.xattrs.iter().map(|(_, v)| v.as_slice())))
    {
        pax_record(&mut records, k, v);
    }
    if !records.is_empty() {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::XHeader);
        set_name(&mut h, b"././@PaxHeader");
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(records.len() as u64);
        h.set_cksum();
        headers.extend_from_slice(h.as_bytes());
        headers.extend_from_slice(&records);
        headers.resize(headers.len().next_multiple_of(512), 0);
    }

    let mut h = tar::Header::new_ustar();
    h.set_entry_type(e.kind);
    set_name(&mut h, &e.path);
    h.set_mode(e.mode);
    h.set_uid(e.uid.min(USTAR_ID_MAX));
    h.set_gid(e.gid.min(USTAR_ID_MAX));
    h.set_mtime(e.mtime);
    h.set_size(e.size.min(USTAR_SIZE_MAX));
    if let Some(link) = &e.link {
        let n = link.len().min(100);
        h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
    }
    if let Some((major, minor)) = e.device {
        h.set_device_major(major).context("device major")?;
        h.set_device_minor(minor).context("device minor")?;
    }
    h.set_cksum();
    headers.extend_from_slice(h.as_bytes());
    let size = if data.is_some() { e.size } else { 0 };
    let offset = builder.offset;
    builder.offset += headers.len() as u64 + size.next_multiple_of(512);
    let identity = data.map(|(path, file)| FileData { path, file, inode: e.inode.unwrap_or_default(), size });
    if !builder.observer.entry(offset, &headers, identity) {
        return Ok(());
    }
    builder.out.write_all(&headers).context("writing tar")?;
    if let Some((_, mut file)) = data {
        if builder.buf.is_empty() {
            builder.buf = vec![0; READ];
        }
        // Exactly the size in the header: a file that grew since is cut there (as
        // tar does), one that shrank fails (the tar would be corrupt).
        let mut left = size;
        while left > 0 {
            let want = left.min(READ as u64) as usize;
            let n = builder
                .out
                .write_from(&mut file, &mut builder.buf[..want])
                .with_context(|| format!("archiving {}", String::from_utf8_lossy(&e.path)))?
                .len();
            if n == 0 {
                bail!("{} shrank while it was archived", String::from_utf8_lossy(&e.path));
            }
            left -= n as u64;
        }
        let padding = (size.next_multiple_of(512) - size) as usize;
        builder.out.write_all(&[0; 512][..padding]).context("writing tar")?;
    }
    Ok(())
}

/// Puts a name in the ustar name field; longer names travel in a PAX `path` record and
/// the field keeps a truncated copy for old readers.
fn set_name(h: &mut tar::Header, name: &[u8]) {
    let n = name.len().min(100);
    h.as_old_mut().name = [0; 100];
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
}

/// `"<len> key=value\n"` where len counts the whole record.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let body = key.len() + value.len() + 3; // space, '=', '\n'
    let mut len = body + body.to_string().len();
    if len.to_string().len() != body.to_string().len() {
        len = body + len.to_string().len();
    }
    out.extend_from_slice(len.to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// Whether metadata says "whiteout" in overlay's format.
pub fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for value_len in [0, 1, 5, 80, 89, 90, 95, 96, 97, 98, 99, 100, 994, 995, 996, 997, 9990] {
            let mut out = Vec::new();
            pax_record(&mut out, "path", &vec![b'a'; value_len]);
            let (len, _) = std::str::from_utf8(&out[..out.iter().position(|&b| b == b' ').unwrap()])
                .map(|s| (s.parse::<usize>().unwrap(), ()))
                .unwrap();
            assert_eq!(len, out.len(), "value_len {value_len}");
        }
    }

    #[test]
    fn dev_split_matches_linux_encoding() {
        assert_eq!(split_dev(rustix::fs::makedev(1, 3)), (1, 3));
        assert_eq!(split_dev(rustix::fs::makedev(259, 70000)), (259, 70000));
    }
}
