//! The native snapshotter's second half: what a step changed in the merged copy
//! (`merge.rs`), written into its upperdir in the form overlayfs gives an upperdir,
//! so that everything after a step (the layer's tar, the snapshot) is the same
//! whichever snapshotter ran it:
//! - an entry the copy did not have, or has under another inode (deleted and made
//!   again, renamed over; an inode number the filesystem reused has another birth
//!   time), is moved into the upperdir whole; a directory made where
//!   the lowers had an entry is opaque, as overlayfs makes a directory created over a
//!   whiteout;
//! - a non-directory whose ctime moved (written, chmod, chown, xattr, link) is moved
//!   into the upperdir, as overlayfs copies it up;
//! - a directory appears in the upperdir when anything below it changed or its mode
//!   or owner did (with its metadata; not its mtime alone, as containerd's differ,
//!   so mountpoint stubs made and removed again leave no trace);
//! - an entry the copy had and the step removed becomes a 0/0 character device.
//!
//! Like containerd's differ, a file made and removed again within the step leaves
//! nothing, where overlayfs would leave its directory copied up.

use std::ffi::{CStr, OsString};
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;

use super::merge::{Record, Stat};
use crate::overlay_meta as meta;

/// Writes the changes of `merged` since `record` into the (empty) `upper`, marking
/// opaque directories with `opaque_xattr`. Entries are moved out of `merged`, which is
/// only fit to be removed afterwards.
pub(crate) fn write(merged: &Path, record: &Record, upper: &Path, opaque_xattr: &CStr) -> io::Result<()> {
    Differ { record, opaque_xattr }.dir(merged, Path::new(""), upper).map(|_| ())
}

struct Differ<'a> {
    record: &'a Record,
    opaque_xattr: &'a CStr,
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

impl Differ<'_> {
    /// Diffs the directory `merged` (at `rel`, the same inode as when copied) into the
    /// existing directory `upper`. Returns whether it wrote anything there.
    fn dir(&self, merged: &Path, rel: &Path, upper: &Path) -> io::Result<bool> {
        let mut wrote = false;
        let mut names: Vec<OsString> = fs::read_dir(merged)
            .map_err(|e| at(merged, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()?;
        names.sort();
        let empty = Default::default();
        let before = self.record.dirs.get(rel).unwrap_or(&empty);
        for name in &names {
            let from = merged.join(name);
            let to = upper.join(name);
            let m = fs::symlink_metadata(&from).map_err(|e| at(&from, e))?;
            let old = before.get(name);
            let same = old.is_some_and(|old| old.ino == m.ino() && old.btime == meta::birth_time(&from));
            match old {
                Some(old) if same && old.dir && m.is_dir() => {
                    fs::DirBuilder::new().mode(0o700).create(&to).map_err(|e| at(&to, e))?;
                    let below = self.dir(&from, &rel.join(name), &to)?;
                    if below || own_metadata_changed(old, &m) {
                        meta::copy_metadata(&from, &m, &to).map_err(|e| at(&to, e))?;
                        wrote = true;
                    } else {
                        fs::remove_dir(&to).map_err(|e| at(&to, e))?;
                    }
                }
                Some(old) if same && !old.dir && old.ctime == (m.ctime(), m.ctime_nsec()) => {}
                _ => {
                    fs::rename(&from, &to).map_err(|e| at(&from, e))?;
                    if m.is_dir() && old.is_some() {
                        meta::mark_opaque(&to, self.opaque_xattr).map_err(|e| at(&to, e))?;
                    }
                    wrote = true;
                }
            }
        }
        // `names` is sorted: a directory of many entries must not cost their square.
        let mut gone: Vec<&OsString> = before.keys().filter(|n| names.binary_search(n).is_err()).collect();
        gone.sort();
        for name in gone {
            let to = upper.join(name);
            meta::make_whiteout(&to)?;
            wrote = true;
        }
        Ok(wrote)
    }
}

fn own_metadata_changed(old: &Stat, now: &fs::Metadata) -> bool {
    (old.mode, old.uid, old.gid) != (now.mode(), now.uid(), now.gid())
}

#[cfg(test)]
mod tests {
    use super::super::merge::merge;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            let mut paths: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
            paths.sort();
            for p in paths {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                let m = fs::symlink_metadata(&p).unwrap();
                if m.is_dir() {
                    let opaque = if meta::is_opaque(&p) { " opaque" } else { "" };
                    out.push(format!("{rel}/{opaque}"));
                    walk(root, &p, out);
                } else if meta::is_whiteout(&m) {
                    out.push(format!("{rel} whiteout"));
                } else {
                    out.push(format!("{rel}={}", fs::read_to_string(&p).unwrap()));
                }
            }
        }
        walk(root, root, &mut out);
        out
    }

    #[test]
    fn the_upperdir_holds_what_overlayfs_would_have_put_there() {
        let t = tempfile::tempdir().unwrap();
        let (lower, merged, upper) = (t.path().join("l"), t.path().join("m"), t.path().join("u"));
        for d in ["l/etc", "l/keep/deep", "l/replaced", "l/mode", "l/same", "l/tmp", "m", "u"] {
            fs::create_dir_all(t.path().join(d)).unwrap();
        }
        for f in ["etc/passwd", "etc/gone", "keep/deep/x", "replaced/old", "same/s", "tmp/t"] {
            fs::write(lower.join(f), "old").unwrap();
        }
        let record = merge(std::slice::from_ref(&lower), &merged).unwrap();
        // What a step does.
        fs::write(merged.join("etc/passwd"), "new").unwrap();
        fs::remove_file(merged.join("etc/gone")).unwrap();
        fs::remove_dir_all(merged.join("replaced")).unwrap();
        fs::create_dir(merged.join("replaced")).unwrap();
        fs::write(merged.join("replaced/fresh"), "new").unwrap();
        fs::set_permissions(merged.join("mode"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::create_dir_all(merged.join("added/sub")).unwrap();
        fs::write(merged.join("added/sub/f"), "new").unwrap();
        // Made and removed again (a mountpoint stub): no trace.
        fs::write(merged.join("tmp/stub"), "").unwrap();
        fs::remove_file(merged.join("tmp/stub")).unwrap();
        write(&merged, &record, &upper, c"trusted.overlay.opaque").unwrap();
        assert_eq!(
            listing(&upper),
            [
                "added/",
                "added/sub/",
                "added/sub/f=new",
                "etc/",
                "etc/gone whiteout",
                "etc/passwd=new",
                "mode/",
                "replaced/ opaque",
                "replaced/fresh=new",
            ]
        );
        assert_eq!(fs::metadata(upper.join("mode")).unwrap().mode() & 0o7777, 0o700);
    }
}
