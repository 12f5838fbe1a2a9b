//! The native snapshotter's first half: the lowerdirs of a rootfs (snapshots in
//! upperdir form: 0/0 character devices for deletions, opaque directories marked by
//! xattr) merged into one plain directory, as overlayfs would show them, by copying
//! every visible entry once. What was copied is remembered ([`Record`]: inode and
//! ctime of each entry), so that the diff afterwards (`diff.rs`) finds what the step
//! changed without comparing file contents: any write, chmod, chown, xattr or link
//! changes an inode's ctime, and a deleted and re-made entry has another inode.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::overlay_meta as meta;

/// What one entry of the merged copy was just after the copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    pub ino: u64,
    /// With `ino`, the entry's identity (`meta::birth_time`), where the filesystem
    /// keeps it.
    pub btime: Option<(i64, u32)>,
    pub ctime: (i64, i64),
    pub dir: bool,
    /// Mode and owner, compared for directories (whose ctime also moves with their
    /// children).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Stat {
    pub fn of(path: &Path, m: &fs::Metadata) -> Self {
        Stat {
            ino: m.ino(),
            btime: meta::birth_time(path),
            ctime: (m.ctime(), m.ctime_nsec()),
            dir: m.is_dir(),
            mode: m.mode(),
            uid: m.uid(),
            gid: m.gid(),
        }
    }
}

/// The merged copy's entries, per directory (relative to the copy's root, `""` for
/// the root itself).
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub dirs: HashMap<PathBuf, HashMap<OsString, Stat>>,
}

#[cfg(test)]
impl Record {
    pub fn get(&self, dir: &Path, name: &std::ffi::OsStr) -> Option<Stat> {
        self.dirs.get(dir).and_then(|d| d.get(name)).copied()
    }
}

/// Copies what the overlay of `lowers` (topmost first) would show into the existing,
/// empty directory `dest`.
pub(crate) fn merge(lowers: &[PathBuf], dest: &Path) -> io::Result<Record> {
    let mut record = Record::default();
    if let Some(top) = lowers.first() {
        let m = fs::symlink_metadata(top)?;
        meta::copy_metadata(top, &m, dest).map_err(|e| at(dest, e))?;
    }
    merge_dir(lowers, dest, Path::new(""), &mut record)?;
    Ok(record)
}

fn at(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// `stack`: the same directory in each layer that has it, topmost first, down to
/// the first opaque one.
fn merge_dir(stack: &[PathBuf], dest: &Path, rel: &Path, record: &mut Record) -> io::Result<()> {
    let mut seen: HashSet<OsString> = HashSet::new();
    let mut entries: HashMap<OsString, Stat> = HashMap::new();
    for (i, dir) in stack.iter().enumerate() {
        let mut names: Vec<OsString> =
            fs::read_dir(dir).map_err(|e| at(dir, e))?.map(|e| e.map(|e| e.file_name())).collect::<Result<_, _>>()?;
        // Directory order is the filesystem's: sorted, the copy is the same every time.
        names.sort();
        for name in names {
            if !seen.insert(name.clone()) {
                continue;
            }
            let src = dir.join(&name);
            let m = fs::symlink_metadata(&src).map_err(|e| at(&src, e))?;
            if meta::is_whiteout(&m) {
                continue;
            }
            let target = dest.join(&name);
            if m.is_dir() {
                let mut sub = vec![src.clone()];
                if !meta::is_opaque(&src) {
                    for lower in &stack[i + 1..] {
                        let p = lower.join(&name);
                        match fs::symlink_metadata(&p) {
                            Ok(lm) if lm.is_dir() => {
                                let opaque = meta::is_opaque(&p);
                                sub.push(p);
                                if opaque {
                                    break;
                                }
                            }
                            // Not in this layer: a lower one may still have it.
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            // A file or a deletion: nothing below shows through.
                            _ => break,
                        }
                    }
                }
                fs::DirBuilder::new().mode(0o700).create(&target).map_err(|e| at(&target, e))?;
                merge_dir(&sub, &target, &rel.join(&name), record)?;
                // After the children: making them moved the directory's times.
                meta::copy_metadata(&src, &m, &target).map_err(|e| at(&target, e))?;
            } else if !meta::copy_entry(&src, &m, &target).map_err(|e| at(&src, e))? {
                continue;
            }
            let copied = fs::symlink_metadata(&target).map_err(|e| at(&target, e))?;
            entries.insert(name, Stat::of(&target, &copied));
        }
    }
    record.dirs.insert(rel.to_path_buf(), entries);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
            let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
            names.sort();
            for p in names {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                if p.is_dir() && !p.is_symlink() {
                    out.push(format!("{rel}/"));
                    walk(root, &p, out);
                } else {
                    out.push(format!("{rel}={}", fs::read_to_string(&p).unwrap_or_default()));
                }
            }
        }
        walk(root, root, &mut out);
        out
    }

    #[test]
    fn whiteouts_hide_and_opaque_directories_stop_the_lower_layers() {
        let t = tempfile::tempdir().unwrap();
        let (l0, l1, dest) = (t.path().join("l0"), t.path().join("l1"), t.path().join("dest"));
        for d in ["l0/etc", "l0/opq", "l0/gone", "l1/etc", "l1/opq", "dest"] {
            fs::create_dir_all(t.path().join(d)).unwrap();
        }
        fs::write(l0.join("etc/a"), "0").unwrap();
        fs::write(l0.join("etc/b"), "0").unwrap();
        fs::write(l0.join("etc/c"), "0").unwrap();
        fs::write(l0.join("opq/old"), "0").unwrap();
        fs::write(l0.join("gone/x"), "0").unwrap();
        fs::write(l1.join("etc/a"), "1").unwrap();
        meta::make_whiteout(&l1.join("etc/b")).unwrap();
        meta::make_whiteout(&l1.join("gone")).unwrap();
        fs::write(l1.join("opq/new"), "1").unwrap();
        meta::set_xattr(&l1.join("opq"), c"trusted.overlay.opaque", b"y").unwrap();
        let record = merge(&[l1, l0], &dest).unwrap();
        assert_eq!(tree(&dest), ["etc/", "etc/a=1", "etc/c=0", "opq/", "opq/new=1"]);
        assert!(!meta::is_opaque(&dest.join("opq")), "markers are not copied");
        let etc = record.get(Path::new(""), "etc".as_ref()).unwrap();
        assert_eq!(etc.ino, fs::symlink_metadata(dest.join("etc")).unwrap().ino());
        assert!(record.get(Path::new("etc"), "b".as_ref()).is_none());
    }
}
