//! `builder fsck --snapshots`: does a snapshot directory still hold what its layer
//! says? Every entry of the layer's tar must be there with its type, and regular files
//! with their bytes; whiteouts as overlay's 0/0 char devices. Metadata that the
//! snapshot may legitimately differ in (mtimes, which a build clamps only in the tar)
//! is not compared.

use super::compress::decompress;
use super::tar_writer::{OPAQUE_MARKER, WHITEOUT_PREFIX, is_whiteout};
use super::unpack::clean_path;
use anyhow::{Context as _, Result};
use image_spec::LayerInfo;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use store::{HashReader, Store};

/// Compares the snapshot `dir` with the blob of `layer`; returns what differs (empty:
/// the snapshot is complete). An unreadable blob is an error.
pub fn verify_snapshot(store: &Store, layer: &LayerInfo, dir: &Path) -> Result<Vec<String>> {
    if !store.has_blob_file(&layer.digest)
        && let Some(packed) = store.packed_layer(&layer.digest)
    {
        // A packed layer's blob is a snapshot's tar: this snapshot (the same one or a
        // linked copy) is whole when its tar is that blob.
        let options = super::tar_writer::TarOptions { overlay: true, mtime_clamp: packed.mtime_clamp };
        let (found, size) = super::packed::hash_tar(dir, &options)?;
        if found != layer.diff_id || size != packed.size {
            return Ok(vec![format!(
                "its tar hashes to {found} ({size} bytes), not to its layer {} ({} bytes)",
                layer.diff_id, packed.size
            )]);
        }
        return Ok(Vec::new());
    }
    let blob = store.open_blob(&layer.digest).with_context(|| format!("layer {}", layer.digest))?;
    let reader = decompress(BufReader::new(blob)).with_context(|| format!("layer {}", layer.digest))?;
    let mut hashing = HashReader::new(reader);
    // By path, so that a later entry for the same path replaces an earlier finding.
    let mut problems: BTreeMap<PathBuf, String> = BTreeMap::new();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().context("reading tar")? {
            let mut entry = entry.context("reading tar entry")?;
            let raw = entry.path_bytes().into_owned();
            let Some(rel) = clean_path(&raw)? else { continue };
            // What the unpacker does with this entry replaces what earlier entries
            // left at its path: a whiteout counts for the name it hides, and a file or
            // whiteout where a directory was removes that directory's contents.
            let target = whiteout_target(&rel);
            let replaced = target.as_ref().unwrap_or(&rel).clone();
            problems.remove(&replaced);
            if target.is_some() || !entry.header().entry_type().is_dir() {
                let below: Vec<PathBuf> = problems
                    .range(replaced.clone()..)
                    .map(|(p, _)| p.clone())
                    .take_while(|p| p.starts_with(&replaced))
                    .collect();
                below.iter().for_each(|p| drop(problems.remove(p)));
            }
            if let Some(problem) = check_entry(&mut entry, &rel, dir)? {
                problems.insert(replaced, problem);
            }
        }
    }
    let (diff_id, _) = hashing.finish().with_context(|| format!("reading layer {}", layer.digest))?;
    let mut out: Vec<String> =
        problems.into_iter().map(|(path, problem)| format!("{}: {problem}", path.display())).collect();
    if diff_id != layer.diff_id {
        out.push(format!("layer blob {} has diff id {diff_id}, expected {}", layer.digest, layer.diff_id));
    }
    Ok(out)
}

/// The path a `.wh.NAME` entry hides (`None` for other entries, the opaque marker
/// and aufs metadata).
fn whiteout_target(rel: &Path) -> Option<PathBuf> {
    let name = rel.file_name()?.as_bytes();
    let hidden = name.strip_prefix(WHITEOUT_PREFIX.as_bytes())?;
    if hidden.is_empty() || hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) || name == OPAQUE_MARKER.as_bytes() {
        return None;
    }
    Some(rel.with_file_name(std::ffi::OsStr::from_bytes(hidden)))
}

fn check_entry<R: Read>(entry: &mut tar::Entry<'_, R>, rel: &Path, dir: &Path) -> Result<Option<String>> {
    let kind = entry.header().entry_type();
    if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader) {
        return Ok(None);
    }
    let name = rel.file_name().expect("a cleaned path has a name").as_bytes();
    if name == OPAQUE_MARKER.as_bytes() {
        return Ok(None);
    }
    if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
        if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) || hidden.is_empty() {
            return Ok(None);
        }
        let path = dir.join(rel.with_file_name(std::ffi::OsStr::from_bytes(hidden)));
        return Ok(match std::fs::symlink_metadata(&path) {
            Ok(m) if is_whiteout(&m) => None,
            Ok(_) => Some("whiteout is not a 0/0 character device".into()),
            Err(_) => Some("whiteout is missing".into()),
        });
    }
    let path = dir.join(rel);
    let meta = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(_) => return Ok(Some("missing".into())),
    };
    let ft = meta.file_type();
    let ok_type = match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous => ft.is_file(),
        // The unpacker links to whatever the target is but a directory: a hardlink
        // to a symlink is a symlink.
        tar::EntryType::Link => !ft.is_dir(),
        tar::EntryType::Directory => ft.is_dir(),
        tar::EntryType::Symlink => ft.is_symlink(),
        tar::EntryType::Char => ft.is_char_device(),
        tar::EntryType::Block => ft.is_block_device(),
        tar::EntryType::Fifo => ft.is_fifo(),
        _ => true,
    };
    if !ok_type {
        return Ok(Some(format!("is not a {kind:?} entry as in the layer")));
    }
    match kind {
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            if meta.len() != entry.size() {
                return Ok(Some(format!("has {} bytes, the layer {}", meta.len(), entry.size())));
            }
            let file = File::open(&path).with_context(|| format!("reading {}", path.display()))?;
            if !same_bytes(entry, file).with_context(|| format!("comparing {}", path.display()))? {
                return Ok(Some("content differs from the layer".into()));
            }
        }
        tar::EntryType::Symlink => {
            let target = std::fs::read_link(&path)?;
            if entry.link_name_bytes().as_deref() != Some(target.as_os_str().as_bytes()) {
                return Ok(Some("symlink target differs from the layer".into()));
            }
        }
        _ => {}
    }
    Ok(None)
}

fn same_bytes(mut a: impl Read, mut b: impl Read) -> io::Result<bool> {
    let mut buf_a = vec![0u8; 64 * 1024];
    let mut buf_b = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut a, &mut buf_a)?;
        let m = read_full(&mut b, &mut buf_b)?;
        if n != m || buf_a[..n] != buf_b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image_spec::Compression;

    #[test]
    fn a_damaged_snapshot_is_reported_by_path() {
        let (dir, store) = store::testing::test_store();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap();
        std::fs::write(tree.join("sub/f"), "content").unwrap();
        std::fs::write(tree.join("g"), "gg").unwrap();
        std::os::unix::fs::symlink("sub/f", tree.join("link")).unwrap();
        let layer = super::super::diff_to_layer(&store, &tree, Compression::Zstd).unwrap().unwrap();
        assert!(verify_snapshot(&store, &layer, &tree).unwrap().is_empty());
        std::fs::write(tree.join("sub/f"), "contenT").unwrap();
        std::fs::remove_file(tree.join("g")).unwrap();
        let problems = verify_snapshot(&store, &layer, &tree).unwrap();
        assert_eq!(problems, ["g: missing", "sub/f: content differs from the layer"]);
    }

    /// A layer blob (plain tar) of the given entries: (path, type, link target or
    /// content).
    fn layer_of(store: &Store, entries: &[(&str, tar::EntryType, &str)]) -> LayerInfo {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
            h.set_mtime(0);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, path, data).unwrap();
                }
                _ if kind.is_dir() => {
                    h.set_size(0);
                    b.append_data(&mut h, path, io::empty()).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_bytes()).unwrap();
                }
            }
        }
        let tar = b.into_inner().unwrap();
        let digest = store.write_blob_bytes(&tar).unwrap();
        LayerInfo { digest: digest.clone(), diff_id: digest, size: tar.len() as u64, media_type: String::new() }
    }

    #[test]
    fn fsck_agrees_with_the_unpacker_on_valid_layers() {
        if !rustix::process::geteuid().is_root() {
            println!("SKIPPED fsck_agrees_with_the_unpacker_on_valid_layers: whiteouts need root");
            return;
        }
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        let (dir, store) = store::testing::test_store();
        type Entries<'a> = Vec<(&'a str, tar::EntryType, &'a str)>;
        let cases: [(&str, Entries<'_>); 3] = [
            ("a hardlink to a symlink", vec![("target", Regular, "t"), ("s", Symlink, "target"), ("h", Link, "s")]),
            (
                "a parent later replaced by a file",
                vec![
                    ("d/", Directory, ""),
                    ("d/x", Regular, "x"),
                    ("d/e/", Directory, ""),
                    ("d", Regular, "now a file"),
                ],
            ),
            (
                "a whiteout followed by an entry of the same name",
                vec![
                    ("sub/", Directory, ""),
                    ("sub/.wh.w", Regular, ""),
                    ("sub/w", Regular, "back"),
                    (".wh.v", Regular, ""),
                    ("v/", Directory, ""),
                ],
            ),
        ];
        for (i, (what, entries)) in cases.iter().enumerate() {
            let layer = layer_of(&store, entries);
            let snapshot = dir.path().join(format!("snap{i}"));
            std::fs::create_dir(&snapshot).unwrap();
            super::super::unpack_layer(&store, &layer, &snapshot).unwrap();
            let problems = verify_snapshot(&store, &layer, &snapshot).unwrap();
            assert!(problems.is_empty(), "{what}: {problems:?}");
        }
        // Real damage is still found: the file that replaced the directory removed.
        let layer = layer_of(&store, &cases[1].1);
        let snapshot = dir.path().join("snap1");
        std::fs::remove_file(snapshot.join("d")).unwrap();
        assert_eq!(verify_snapshot(&store, &layer, &snapshot).unwrap(), ["d: missing"]);
    }

    #[test]
    fn whiteouts_of_dot_and_dot_dot_are_refused_and_delete_nothing() {
        let (dir, store) = store::testing::test_store();
        for name in [".wh..", ".wh...", "sub/.wh..", "sub/.wh..."] {
            let layer =
                layer_of(&store, &[("sub/", tar::EntryType::Directory, ""), (name, tar::EntryType::Regular, "")]);
            let parent = dir.path().join("parent");
            let snapshot = parent.join("snap");
            std::fs::create_dir_all(&snapshot).unwrap();
            std::fs::write(parent.join("sibling"), "keep").unwrap();
            let error = format!("{:#}", super::super::unpack_layer(&store, &layer, &snapshot).unwrap_err());
            assert!(error.contains("names no file"), "{name}: {error}");
            assert!(snapshot.is_dir() && parent.join("sibling").exists(), "{name} deleted something");
            std::fs::remove_dir_all(&parent).unwrap();
        }
    }
}
