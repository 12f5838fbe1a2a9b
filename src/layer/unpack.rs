//! Unpacking tars into directories. This is a security boundary: the tar may come from
//! anywhere, and no entry may create, change or read anything outside `root`.
//!
//! - Paths are made relative (`/a` → `a`); a `..` component is an error.
//! - Parents are checked component by component with `lstat`: a missing one is
//!   created, a symlink one is an error for layers; for `ADD` it is resolved by hand
//!   inside `root` (never by the kernel), as `securejoin` does. Files are created with
//!   `O_EXCL|O_NOFOLLOW` after removing what was there.
//! - Hardlink targets are checked the same way and must already exist under `root`.
//! - Device nodes are created only when running as root; overlay's xattrs in the tar
//!   are dropped (only whiteout conversion may make them).
//!
//! The checks are free of races because `root` is a fresh private directory that no
//! other process writes while it is unpacked.

use super::tar_writer::{OPAQUE_MARKER, WHITEOUT_PREFIX, is_overlay_xattr};
use anyhow::{Context as _, Result, anyhow, bail};
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Options of one unpack.
#[derive(Debug, Clone, Copy, Default)]
pub struct UnpackOptions {
    /// Convert `.wh.NAME` to 0/0 char devices and `.wh..wh..opq` to the opaque xattr
    /// (unpacking a layer into an overlay lowerdir).
    pub overlay: bool,
    /// Follow symlinks met in parent paths, staying inside the root (`ADD` into an
    /// existing filesystem). Off for layers: there a symlinked parent is an error.
    pub follow_symlinks: bool,
}

struct Unpacker<'a> {
    root: &'a Path,
    options: UnpackOptions,
    is_root: bool,
    /// Directories whose mode and mtime are set at the end (children change mtimes,
    /// and a read-only mode would stop children from being created).
    dirs: Vec<(PathBuf, u32, u64)>,
}

/// Unpacks a tar stream (already decompressed) into `root`, which must exist.
pub fn unpack(reader: impl Read, root: &Path, options: UnpackOptions) -> Result<()> {
    let mut unpacker = Unpacker { root, options, is_root: rustix::process::geteuid().is_root(), dirs: Vec::new() };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().context("reading tar")? {
        let mut entry = entry.context("reading tar entry")?;
        let raw = entry.path_bytes().into_owned();
        let shown = image_spec::shown(&String::from_utf8_lossy(&raw)).into_owned();
        unpacker.entry(&mut entry, &raw).with_context(|| format!("entry {shown}"))?;
    }
    // Consume the end-of-archive blocks so that a caller hashing the stream sees it all.
    io::copy(&mut archive.into_inner(), &mut io::sink()).context("reading tar")?;
    unpacker.finish_dirs()
}

/// A numeric header field; blank counts as 0, as Go's archive/tar reads it.
fn numeric(value: io::Result<u64>, raw: &[u8]) -> Result<u64> {
    match value {
        Ok(v) => Ok(v),
        Err(_) if raw.iter().all(|&b| b == 0 || b == b' ') => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// `a/./b//c` → `a/b/c`, `/a` → `a`; `..` is refused. `None` for the root itself.
pub fn clean_path(raw: &[u8]) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => bail!("path contains \"..\""),
            p => out.push(std::ffi::OsStr::from_bytes(p)),
        }
    }
    Ok(if out.as_os_str().is_empty() { None } else { Some(out) })
}

impl Unpacker<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, raw: &[u8]) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
            return Ok(());
        }
        let Some(rel) = clean_path(raw)? else {
            // The root itself (`./`): take its metadata, like containerd.
            if kind.is_dir() {
                let h = entry.header();
                let (mode, mtime) = (h.mode()?, numeric(h.mtime(), &h.as_old().mtime)?);
                self.set_owner_and_xattrs(entry, self.root)?;
                self.dirs.push((self.root.to_path_buf(), mode, mtime));
            }
            return Ok(());
        };
        let name = rel.file_name().expect("a cleaned path has a name").as_bytes();
        if self.options.overlay && name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(entry, &rel, name);
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let path = self.walk_dirs(parent, true)?.join(rel.file_name().expect("has a name"));
        if kind.is_dir() && self.options.follow_symlinks && self.walk_dirs(&rel, false).is_ok() {
            // ADD over a symlink to a directory (merged /usr: `lib -> usr/lib`): the
            // entries go into the directory it points to, which keeps its metadata.
            return Ok(());
        }
        self.clear(&path, kind.is_dir())?;
        let header = entry.header();
        let mode = header.mode()? & 0o7777;
        let mtime = numeric(header.mtime(), &header.as_old().mtime)?;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                    .open(&path)?;
                let size = entry.size();
                let copied = io::copy(entry, &mut file)?;
                if copied != size {
                    bail!("truncated: {copied} of {size} bytes");
                }
            }
            tar::EntryType::Directory => {
                if !path.is_dir() {
                    std::fs::create_dir(&path)?;
                }
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| anyhow!("symlink without a target"))?;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &path)?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| anyhow!("hardlink without a target"))?;
                let target_rel = clean_path(&target)?.ok_or_else(|| anyhow!("hardlink to the root directory"))?;
                let not_in_layer =
                    || format!("hardlink target {} is not in the layer", String::from_utf8_lossy(&target));
                let target_dir =
                    self.walk_dirs(target_rel.parent().unwrap_or(Path::new("")), false).with_context(not_in_layer)?;
                let target_path = target_dir.join(target_rel.file_name().expect("has a name"));
                let meta = std::fs::symlink_metadata(&target_path).with_context(not_in_layer)?;
                if meta.is_dir() {
                    bail!("hardlink to a directory");
                }
                std::fs::hard_link(&target_path, &path)?;
                // A link shares its target's inode: nothing more to set.
                return Ok(());
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let file_type = match kind {
                    tar::EntryType::Char => rustix::fs::FileType::CharacterDevice,
                    tar::EntryType::Block => rustix::fs::FileType::BlockDevice,
                    _ => rustix::fs::FileType::Fifo,
                };
                if file_type != rustix::fs::FileType::Fifo && !self.is_root {
                    tracing::warn!("skipping device node {} (not running as root)", rel.display());
                    return Ok(());
                }
                if file_type != rustix::fs::FileType::Fifo && super::userns::in_user_namespace() {
                    tracing::warn!(
                        "skipping device node {} (rootless: a user namespace cannot make one)",
                        rel.display()
                    );
                    return Ok(());
                }
                let dev = rustix::fs::makedev(header.device_major()?.unwrap_or(0), header.device_minor()?.unwrap_or(0));
                let mode = rustix::fs::Mode::from_raw_mode(mode);
                rustix::fs::mknodat(rustix::fs::CWD, &path, file_type, mode, dev).map_err(io::Error::from)?;
            }
            tar::EntryType::GNUSparse => bail!("GNU sparse files are not supported"),
            other => bail!("unsupported entry type {:?}", other.as_byte() as char),
        }
        self.set_owner_and_xattrs(entry, &path)?;
        if kind.is_dir() {
            self.dirs.push((path, mode, mtime));
        } else {
            if !kind.is_symlink() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            }
            let t = filetime::FileTime::from_unix_time(mtime as i64, 0);
            filetime::set_symlink_file_times(&path, t, t)?;
        }
        Ok(())
    }

    /// `.wh..wh..opq` marks its directory opaque; `.wh.NAME` hides NAME of lower layers.
    fn whiteout<R: Read>(&mut self, entry: &tar::Entry<'_, R>, rel: &Path, name: &[u8]) -> Result<()> {
        let parent = rel.parent().unwrap_or(Path::new(""));
        let dir = self.walk_dirs(parent, true)?;
        if name == OPAQUE_MARKER.as_bytes() {
            return xattr::set(&dir, super::userns::opaque_xattr(), b"y")
                .with_context(|| format!("marking {} opaque (needs root)", parent.display()));
        }
        let hidden = &name[WHITEOUT_PREFIX.len()..];
        if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) || hidden.is_empty() {
            // aufs metadata (`.wh..wh.plnk`...): nothing for overlay.
            return Ok(());
        }
        if hidden == b"." || hidden == b".." {
            // `.wh..` and `.wh...` would hide the directory itself or its parent.
            bail!("whiteout {} names no file", String::from_utf8_lossy(name));
        }
        let path = dir.join(std::ffi::OsStr::from_bytes(hidden));
        self.clear(&path, false)?;
        let dev = rustix::fs::makedev(0, 0);
        rustix::fs::mknodat(rustix::fs::CWD, &path, rustix::fs::FileType::CharacterDevice, 0.into(), dev)
            .map_err(io::Error::from)
            .with_context(|| format!("creating whiteout {} (needs root)", path.display()))?;
        if self.is_root {
            let h = entry.header();
            let uid = numeric(h.uid(), &h.as_old().uid)?;
            let gid = numeric(h.gid(), &h.as_old().gid)?;
            super::userns::chown(&path, uid as u32, gid as u32)?;
        }
        Ok(())
    }

    /// The real directory `rel` names under the root, walked one component at a time
    /// with `lstat`. A symlink is refused in layer mode; in ADD mode it is followed
    /// *inside the root* (an absolute target starts again from the root, `..` never
    /// climbs above it), so the result is always under the root. Missing directories
    /// are created when `create` says so.
    fn walk_dirs(&self, rel: &Path, create: bool) -> Result<PathBuf> {
        let mut todo: Vec<OsString> = rel.iter().rev().map(OsString::from).collect();
        let mut real: Vec<OsString> = Vec::new();
        let mut links = 0;
        while let Some(part) = todo.pop() {
            match part.as_bytes() {
                b"" | b"." | b"/" => continue,
                b".." => {
                    real.pop();
                    continue;
                }
                _ => {}
            }
            let path: PathBuf =
                self.root.iter().chain(real.iter().map(|p| p.as_os_str())).chain([part.as_os_str()]).collect();
            let shown =
                || image_spec::shown(&path.strip_prefix(self.root).unwrap_or(&path).to_string_lossy()).into_owned();
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => real.push(part),
                Ok(m) if m.file_type().is_symlink() => {
                    if !self.options.follow_symlinks {
                        bail!("parent {} is a symlink", shown());
                    }
                    links += 1;
                    if links > 40 {
                        bail!("too many levels of symlinks at {}", shown());
                    }
                    let target = std::fs::read_link(&path)?;
                    if target.is_absolute() {
                        real.clear();
                    }
                    todo.extend(target.iter().rev().map(OsString::from));
                }
                Ok(_) => bail!("parent {} is not a directory", shown()),
                Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                    std::fs::create_dir(&path)?;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
                    real.push(part);
                }
                Err(e) => return Err(e).with_context(|| format!("{} is missing", shown())),
            }
        }
        Ok(self.root.iter().chain(real.iter().map(|p| p.as_os_str())).collect())
    }

    /// Removes what is at `path` unless both it and the new entry are directories.
    fn clear(&self, path: &Path, new_is_dir: bool) -> Result<()> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.is_dir() && new_is_dir => Ok(()),
            Ok(m) if m.is_dir() => store::remove_tree(path).map_err(Into::into),
            Ok(_) => std::fs::remove_file(path).map_err(Into::into),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn set_owner_and_xattrs<R: Read>(&self, entry: &mut tar::Entry<'_, R>, path: &Path) -> Result<()> {
        let header = entry.header();
        let mut uid = numeric(header.uid(), &header.as_old().uid)?;
        let mut gid = numeric(header.gid(), &header.as_old().gid)?;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions()? {
            for ext in pax {
                let ext = ext?;
                let key = ext.key_bytes();
                if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                    if !is_overlay_xattr(name) {
                        xattrs.push((name.to_vec(), ext.value_bytes().to_vec()));
                    }
                } else if key == b"uid" {
                    uid = ext.value().ok().and_then(|v| v.parse().ok()).unwrap_or(uid);
                } else if key == b"gid" {
                    gid = ext.value().ok().and_then(|v| v.parse().ok()).unwrap_or(gid);
                }
            }
        }
        if self.is_root {
            let (uid, gid) = (u32::try_from(uid).context("uid")?, u32::try_from(gid).context("gid")?);
            super::userns::chown(path, uid, gid)?;
        }
        for (name, value) in xattrs {
            let name = std::ffi::OsStr::from_bytes(&name);
            if let Err(e) = xattr::set(path, name, &value) {
                // Unprivileged unpacks cannot set trusted.* or security.*, some
                // filesystems take no xattrs, symlinks take no user.*: say so, go on.
                if self.is_root && !matches!(e.raw_os_error(), Some(95 | 1)) {
                    return Err(e).with_context(|| format!("setting xattr {}", name.to_string_lossy()));
                }
                tracing::warn!("{}: xattr {} not set: {e}", path.display(), name.to_string_lossy());
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<()> {
        // Deepest first, so that setting a parent's mtime comes after its children.
        self.dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
        for (path, mode, mtime) in &self.dirs {
            // A later entry may have replaced the directory.
            if !std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))
                .with_context(|| format!("setting mode of {}", path.display()))?;
            let t = filetime::FileTime::from_unix_time(*mtime as i64, 0);
            filetime::set_symlink_file_times(path, t, t)?;
        }
        Ok(())
    }
}
