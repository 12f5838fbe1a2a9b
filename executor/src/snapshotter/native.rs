//! A [`Spec`] or [`Rootfs`] rewritten for the native snapshotter: every overlay it
//! asks for becomes a merged copy of its lowerdirs (a plain directory, bound where
//! the overlay would have been mounted), and [`Copies::finish`] writes the changes of
//! a copy that stands for a rootfs with an upperdir into that upperdir. The copies
//! live beside the upperdir (the same filesystem, so the diff moves files rather than
//! copying them) and are removed with [`Copies`].

use std::path::{Path, PathBuf};

use super::merge::{self, Record};
use super::{Snapshotter, diff};
use crate::paths::resolve_in_root;
use crate::{Error, MountSource, Rootfs, Spec, Upper};

/// One merged copy: `dir/root` is what the overlay would show.
struct Copy {
    dir: tempfile::TempDir,
    record: Record,
    /// Where its changes go; `None` when they are thrown away.
    upper: Option<PathBuf>,
}

impl Copy {
    fn make(lowers: &[PathBuf], beside: Option<&Path>, upper: Option<PathBuf>) -> Result<Self, Error> {
        let builder = tempfile::Builder::new().prefix(".builder-native-").to_owned();
        let dir = match beside {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .map_err(|e| Error::sys("create a directory for the native snapshotter", e))?;
        let root = dir.path().join("root");
        std::fs::create_dir(&root).map_err(|e| Error::sys(format!("create {}", root.display()), e))?;
        let record = merge::merge(lowers, &root).map_err(|e| Error::sys("copy the layers (native snapshotter)", e))?;
        Ok(Copy { dir, record, upper })
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// As an upper: the sandbox and the rootfs views bind it and make their mountpoint
    /// stubs in it.
    fn as_upper(&self) -> Upper {
        Upper { upperdir: self.root(), workdir: self.dir.path().join("work") }
    }
}

/// The merged copies a rewritten spec or rootfs uses; dropped, they are removed.
#[derive(Default)]
pub(crate) struct Copies(Vec<Copy>);

impl Copies {
    /// Writes each copy's changes into its upperdir (call it once the sandbox, or the
    /// view, is gone and its mountpoint stubs removed).
    pub fn finish(self) -> Result<(), Error> {
        for copy in &self.0 {
            if let Some(upper) = &copy.upper {
                diff::write(&copy.root(), &copy.record, upper, super::opaque_xattr())
                    .map_err(|e| Error::sys(format!("diff the step's changes into {}", upper.display()), e))?;
            }
        }
        Ok(())
    }
}

/// How a sandbox's spec is run with the snapshotter in use.
pub(crate) enum Prepared {
    /// As it is: overlayfs, or nothing to mount.
    AsGiven,
    /// Its overlays mounted by this fuse-overlayfs.
    Fuse(PathBuf),
    /// This spec instead, on these copies.
    Native(Box<Spec>, Copies),
}

/// `spec` for the snapshotter in use.
pub(crate) fn prepare_spec(spec: &Spec) -> Result<Prepared, Error> {
    let beside = spec.rootfs.upper.as_ref().and_then(|u| u.upperdir.parent());
    let overlays = !spec.rootfs.lowerdirs.is_empty()
        || spec.mounts.iter().any(|m| matches!(m.source, MountSource::Overlay { .. }));
    if !overlays {
        return Ok(Prepared::AsGiven);
    }
    match super::current(beside.unwrap_or(&std::env::temp_dir()))? {
        Snapshotter::Overlayfs => return Ok(Prepared::AsGiven),
        Snapshotter::FuseOverlayfs => {
            return Ok(crate::fuse_overlay::program().map_or(Prepared::AsGiven, Prepared::Fuse));
        }
        Snapshotter::Native => {}
    }
    let mut copies = Copies::default();
    let mut spec = spec.clone();
    spec.rootfs = rewrite(&spec.rootfs, &mut copies, true)?;
    for m in &mut spec.mounts {
        if let MountSource::Overlay { lowerdirs, upperdir, subpath, readonly, .. } = &m.source {
            let copy = Copy::make(lowerdirs, upperdir.parent(), None)?;
            let root = copy.root();
            let source = resolve_in_root(&root, Path::new(subpath))
                .map(|rel| root.join(rel))
                .map_err(|e| Error::sys(format!("resolve {subpath} in the mount source"), e))?;
            if let Err(e) = std::fs::symlink_metadata(&source) {
                return Err(Error::sys(format!("mount source {subpath}"), e));
            }
            m.source = MountSource::Bind { source, readonly: *readonly };
            copies.0.push(copy);
        }
    }
    Ok(Prepared::Native(Box::new(spec), copies))
}

/// `rootfs` for the snapshotter in use, with the copies it needs, or the
/// fuse-overlayfs to mount them with (for [`crate::with_rootfs_mounted`]).
pub(crate) fn prepare_rootfs(rootfs: &[Rootfs]) -> Result<(Vec<Rootfs>, Copies, Option<PathBuf>), Error> {
    let mut copies = Copies::default();
    if rootfs.iter().all(|r| r.lowerdirs.is_empty()) {
        return Ok((rootfs.to_vec(), copies, None));
    }
    let beside = rootfs.iter().find_map(|r| r.upper.as_ref()).and_then(|u| u.upperdir.parent());
    match super::current(beside.unwrap_or(&std::env::temp_dir()))? {
        Snapshotter::Overlayfs => Ok((rootfs.to_vec(), copies, None)),
        Snapshotter::FuseOverlayfs => Ok((rootfs.to_vec(), copies, crate::fuse_overlay::program())),
        Snapshotter::Native => {
            let rewritten = rootfs.iter().map(|r| rewrite(r, &mut copies, false)).collect::<Result<_, _>>()?;
            Ok((rewritten, copies, None))
        }
    }
}

/// A rootfs with layers as a copy of them. `writable_view`: a rootfs without upper is
/// still written to (a sandbox's throwaway writes); else one lower is bound as is,
/// read-only, with no copy.
fn rewrite(rootfs: &Rootfs, copies: &mut Copies, writable_view: bool) -> Result<Rootfs, Error> {
    match (rootfs.lowerdirs.as_slice(), &rootfs.upper) {
        ([], _) => Ok(rootfs.clone()),
        ([_], None) if !writable_view => Ok(rootfs.clone()),
        (lowers, upper) => {
            let beside = upper.as_ref().and_then(|u| u.upperdir.parent());
            let copy = Copy::make(lowers, beside, upper.as_ref().map(|u| u.upperdir.clone()))?;
            let rewritten = Rootfs { lowerdirs: Vec::new(), upper: Some(copy.as_upper()), readonly: rootfs.readonly };
            copies.0.push(copy);
            Ok(rewritten)
        }
    }
}
