//! Layer tests: determinism, whiteouts both ways, and hostile tars.

use super::*;
use image_spec::{Digest, MEDIA_TYPE_OCI_LAYER};
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

fn test_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn skip_unless_root(test: &str) -> bool {
    if !is_root() {
        eprintln!("skipping {test}: needs root (0/0 char devices, trusted.* xattrs)");
        return true;
    }
    false
}

/// A small tree with every kind of entry that needs no privilege.
fn make_tree(dir: &Path) {
    fs::create_dir_all(dir.join("etc/app")).unwrap();
    fs::write(dir.join("etc/app/config"), "key=value\n").unwrap();
    fs::write(dir.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
    fs::set_permissions(dir.join("etc/hosts"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::create_dir(dir.join("bin")).unwrap();
    fs::write(dir.join("bin/tool"), vec![7u8; 100_000]).unwrap();
    fs::set_permissions(dir.join("bin/tool"), fs::Permissions::from_mode(0o4755)).unwrap();
    fs::hard_link(dir.join("bin/tool"), dir.join("bin/tool-link")).unwrap();
    std::os::unix::fs::symlink("tool", dir.join("bin/alias")).unwrap();
    let long = "d".repeat(120);
    fs::create_dir_all(dir.join(&long)).unwrap();
    fs::write(dir.join(&long).join("f".repeat(150)), "long").unwrap();
    fs::write(dir.join("caf\u{e9}"), "utf8 name").unwrap();
}

fn set_all_mtimes(dir: &Path, secs: i64) {
    let t = filetime::FileTime::from_unix_time(secs, 0);
    for e in walkdir::WalkDir::new(dir).contents_first(true) {
        filetime::set_symlink_file_times(e.unwrap().path(), t, t).unwrap();
    }
}

fn tar_names(store: &Store, layer: &LayerInfo) -> Vec<String> {
    let blob = store.open_blob(&layer.digest).unwrap();
    let mut archive = tar::Archive::new(decompress(blob).unwrap());
    archive.entries().unwrap().map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned()).collect()
}

#[test]
fn empty_upperdir_is_no_layer() {
    let (d, store) = test_store();
    let upper = d.path().join("upper");
    fs::create_dir(&upper).unwrap();
    assert!(diff_to_layer(&store, &upper, Compression::Gzip).unwrap().is_none());
}

#[test]
fn same_tree_same_digest_with_clamp() {
    let (d, store) = test_store();
    for compression in [Compression::Gzip, Compression::Zstd, Compression::Uncompressed] {
        let a = d.path().join(format!("a-{compression:?}"));
        let b = d.path().join(format!("b-{compression:?}"));
        make_tree(&a);
        make_tree(&b);
        set_all_mtimes(&a, 2_000_000_000);
        set_all_mtimes(&b, 2_100_000_000);
        let options = LayerOptions { compression, mtime_clamp: Some(1_700_000_000), ..Default::default() };
        let la = diff_to_layer_with(&store, &a, &options).unwrap().unwrap();
        let lb = diff_to_layer_with(&store, &b, &options).unwrap().unwrap();
        assert_eq!(la, lb, "{compression:?}");
        assert_eq!(la.media_type, compression.media_type());
        // Without the clamp the mtimes show.
        let plain = LayerOptions { compression, ..Default::default() };
        let la = diff_to_layer_with(&store, &a, &plain).unwrap().unwrap();
        let lb = diff_to_layer_with(&store, &b, &plain).unwrap().unwrap();
        assert_ne!(la.diff_id, lb.diff_id);
    }
}

#[test]
fn tar_is_sorted_parents_first_with_hardlinks() {
    let (d, store) = test_store();
    let dir = d.path().join("t");
    make_tree(&dir);
    let layer = diff_to_layer(&store, &dir, Compression::Gzip).unwrap().unwrap();
    let names = tar_names(&store, &layer);
    let long = format!("{}/", "d".repeat(120));
    assert_eq!(
        names,
        vec![
            "bin/".to_string(),
            "bin/alias".into(),
            "bin/tool".into(),
            "bin/tool-link".into(),
            "caf\u{e9}".into(),
            long.clone(),
            format!("{long}{}", "f".repeat(150)),
            "etc/".into(),
            "etc/app/".into(),
            "etc/app/config".into(),
            "etc/hosts".into(),
        ]
    );
    let blob = store.open_blob(&layer.digest).unwrap();
    let mut archive = tar::Archive::new(decompress(blob).unwrap());
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(h.username_bytes(), Some(&b""[..]));
        if e.path_bytes().as_ref() == b"bin/tool-link" {
            assert_eq!(h.entry_type(), tar::EntryType::Link);
            assert_eq!(e.link_name_bytes().unwrap().as_ref(), b"bin/tool");
        }
    }
}

#[test]
fn layer_round_trips_into_a_snapshot() {
    let (d, store) = test_store();
    let dir = d.path().join("t");
    make_tree(&dir);
    set_all_mtimes(&dir, 1_600_000_000);
    let layer = diff_to_layer(&store, &dir, Compression::Zstd).unwrap().unwrap();
    let snaps = ensure_snapshots(&store, std::slice::from_ref(&layer)).unwrap();
    let snap = &snaps[0];
    assert_eq!(fs::read_to_string(snap.join("etc/app/config")).unwrap(), "key=value\n");
    assert_eq!(fs::metadata(snap.join("etc/hosts")).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(fs::metadata(snap.join("bin/tool")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(fs::read_link(snap.join("bin/alias")).unwrap(), Path::new("tool"));
    let a = fs::metadata(snap.join("bin/tool")).unwrap();
    let b = fs::metadata(snap.join("bin/tool-link")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(fs::metadata(snap.join("etc")).unwrap().mtime(), 1_600_000_000);
    assert_eq!(fs::metadata(snap).unwrap().mode() & 0o777, 0o755);
    // Re-tarring the snapshot gives the same layer.
    let again = diff_to_layer(&store, snap, Compression::Zstd).unwrap().unwrap();
    assert_eq!(again.diff_id, layer.diff_id);
    // A second call finds it in place.
    assert_eq!(ensure_snapshots(&store, &[layer]).unwrap(), snaps);
}

#[test]
fn whiteouts_and_opaque_dirs_both_ways() {
    if skip_unless_root("whiteouts_and_opaque_dirs_both_ways") {
        return;
    }
    let (d, store) = test_store();
    let upper = d.path().join("upper");
    fs::create_dir_all(upper.join("opq/sub")).unwrap();
    fs::write(upper.join("opq/sub/new"), "x").unwrap();
    fs::create_dir(upper.join("keep")).unwrap();
    rustix::fs::mknodat(rustix::fs::CWD, upper.join("keep/gone"), rustix::fs::FileType::CharacterDevice, 0.into(), 0)
        .unwrap();
    xattr::set(upper.join("opq"), "trusted.overlay.opaque", b"y").unwrap();
    xattr::set(upper.join("keep"), "trusted.overlay.origin", b"junk").unwrap();
    xattr::set(upper.join("keep"), "user.note", b"kept").unwrap();

    let layer = diff_to_layer(&store, &upper, Compression::Gzip).unwrap().unwrap();
    let names = tar_names(&store, &layer);
    assert_eq!(names, ["keep/", "keep/.wh.gone", "opq/", "opq/.wh..wh..opq", "opq/sub/", "opq/sub/new"]);
    let blob = store.open_blob(&layer.digest).unwrap();
    let mut archive = tar::Archive::new(decompress(blob).unwrap());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let keys: Vec<String> = match e.pax_extensions().unwrap() {
            Some(p) => p.map(|x| x.unwrap().key().unwrap().to_string()).collect(),
            None => Vec::new(),
        };
        assert!(keys.iter().all(|k| !k.contains("overlay")), "{keys:?}");
        if e.path_bytes().as_ref() == b"keep/" {
            assert_eq!(keys, ["SCHILY.xattr.user.note"]);
        }
    }

    let snap = &ensure_snapshots(&store, std::slice::from_ref(&layer)).unwrap()[0];
    let gone = fs::symlink_metadata(snap.join("keep/gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert_eq!(xattr::get(snap.join("opq"), "trusted.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
    assert_eq!(xattr::get(snap.join("keep"), "trusted.overlay.origin").unwrap(), None);
    assert_eq!(xattr::get(snap.join("keep"), "user.note").unwrap().as_deref(), Some(&b"kept"[..]));
    assert!(!snap.join("opq/.wh..wh..opq").exists());
    assert!(!snap.join("keep/.wh.gone").exists());

    // The same layer on top of another: its snapshot there is linked from this one
    // (a layer alone at the bottom of a stack, as a `COPY --link` layer is made) and
    // keeps the whiteouts, the opaque marker, xattrs, modes and times.
    filetime::set_file_mtime(snap.join("keep"), filetime::FileTime::from_unix_time(1_000_000, 0)).unwrap();
    let base = diff_to_layer(&store, &d.path().join("upper/opq"), Compression::Gzip).unwrap().unwrap();
    let stacked = ensure_snapshots(&store, &[base, layer.clone()]).unwrap();
    let linked = &stacked[1];
    assert_ne!(linked, snap);
    let inode = |p: &Path| fs::symlink_metadata(p).unwrap().ino();
    assert_eq!(inode(&linked.join("opq/sub/new")), inode(&snap.join("opq/sub/new")));
    let gone = fs::symlink_metadata(linked.join("keep/gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert_eq!(xattr::get(linked.join("opq"), "trusted.overlay.opaque").unwrap().as_deref(), Some(&b"y"[..]));
    assert_eq!(xattr::get(linked.join("keep"), "user.note").unwrap().as_deref(), Some(&b"kept"[..]));
    let (keep, was) = (fs::metadata(linked.join("keep")).unwrap(), fs::metadata(snap.join("keep")).unwrap());
    assert_eq!((keep.mode(), keep.uid(), keep.mtime()), (was.mode(), was.uid(), 1_000_000));
    assert_eq!(verify::verify_snapshot(&store, &layer, linked).unwrap(), Vec::<String>::new());
}

#[test]
fn plain_unpack_keeps_whiteout_names_as_files() {
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, b"dir/.wh.file", tar::EntryType::Regular, b"", b"");
    let dir = tempfile::tempdir().unwrap();
    unpack_tar_to_dir(&b.into_inner().unwrap()[..], dir.path()).unwrap();
    assert!(dir.path().join("dir/.wh.file").is_file());
}

#[test]
fn diff_id_mismatch_is_an_error_and_commits_nothing() {
    let (d, store) = test_store();
    let dir = d.path().join("t");
    make_tree(&dir);
    let mut layer = diff_to_layer(&store, &dir, Compression::Gzip).unwrap().unwrap();
    layer.diff_id = Digest::of(b"not it");
    let err = format!("{:#}", ensure_snapshots(&store, std::slice::from_ref(&layer)).unwrap_err());
    assert!(err.contains(layer.digest.as_str()) && err.contains("expected"), "{err}");
    assert!(!store.has_snapshot(&layer.diff_id));
}

// --- hostile tars ---

/// Appends an entry with exactly these name bytes (tar::Builder would refuse `..`).
fn raw_entry(b: &mut tar::Builder<Vec<u8>>, name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link);
    h.set_entry_type(kind);
    h.set_mode(if kind.is_dir() { 0o755 } else { 0o644 });
    h.set_mtime(1_500_000_000);
    h.set_size(data.len() as u64);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

/// name, type, link target, data
type RawEntry<'a> = (&'a [u8], tar::EntryType, &'a [u8], &'a [u8]);

/// Unpacks a hostile tar as a layer, into `root/snap`, with `root/outside` beside it.
fn unpack_hostile(entries: &[RawEntry<'_>]) -> (tempfile::TempDir, Result<()>) {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("outside")).unwrap();
    fs::write(root.path().join("outside/secret"), "secret").unwrap();
    fs::create_dir(root.path().join("snap")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        raw_entry(&mut b, name, *kind, link, data);
    }
    let bytes = b.into_inner().unwrap();
    let result =
        unpack::unpack(&bytes[..], &root.path().join("snap"), UnpackOptions { overlay: true, follow_symlinks: false });
    (root, result)
}

fn outside_untouched(root: &Path) {
    let names: Vec<_> = fs::read_dir(root.join("outside")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["secret"]);
    assert_eq!(fs::read_to_string(root.join("outside/secret")).unwrap(), "secret");
    let top: Vec<_> = fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    let mut top = top;
    top.sort();
    assert_eq!(top, ["outside", "snap"]);
}

use tar::EntryType::{Directory as D, Link as L, Regular as F, Symlink as S};

#[test]
fn dotdot_is_rejected() {
    let (root, result) = unpack_hostile(&[(b"../x", F, b"", b"evil")]);
    let err = format!("{:#}", result.unwrap_err());
    assert!(err.contains("../x") && err.contains(".."), "{err}");
    outside_untouched(root.path());
    let (root, result) = unpack_hostile(&[(b"a/../../outside/secret", F, b"", b"evil")]);
    assert!(result.is_err());
    outside_untouched(root.path());
}

#[test]
fn absolute_paths_are_made_relative() {
    let (root, result) = unpack_hostile(&[(b"/abs/file", F, b"", b"ok")]);
    result.unwrap();
    assert_eq!(fs::read_to_string(root.path().join("snap/abs/file")).unwrap(), "ok");
    outside_untouched(root.path());
}

#[test]
fn writing_through_a_symlinked_parent_is_rejected() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().to_str().unwrap().as_bytes().to_vec();
    for link in [&target[..], b"../outside", b"/"] {
        let (root, result) = unpack_hostile(&[(b"link", S, link, b""), (b"link/evil", F, b"", b"evil")]);
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("symlink") && err.contains("link/evil"), "{err}");
        outside_untouched(root.path());
        assert!(!outside.path().join("evil").exists());
        let (root, result) = unpack_hostile(&[(b"link", S, link, b""), (b"link/sub/", D, b"", b"")]);
        assert!(result.is_err());
        outside_untouched(root.path());
    }
}

#[test]
fn a_file_replaces_a_symlink_instead_of_writing_through_it() {
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    fs::write(&victim, "original").unwrap();
    let link = victim.to_str().unwrap().as_bytes().to_vec();
    let (root, result) = unpack_hostile(&[(b"f", S, &link, b""), (b"f", F, b"", b"new")]);
    result.unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "original");
    assert_eq!(fs::read_to_string(root.path().join("snap/f")).unwrap(), "new");
}

#[test]
fn hardlinks_out_of_the_root_are_rejected() {
    let (root, result) = unpack_hostile(&[(b"hl", L, b"../outside/secret", b"")]);
    assert!(result.is_err());
    outside_untouched(root.path());
    // An absolute target means the file of that name in the layer, which is missing.
    let (root, result) = unpack_hostile(&[(b"hl", L, b"/etc/passwd", b"")]);
    assert!(format!("{:#}", result.unwrap_err()).contains("not in the layer"));
    assert!(!root.path().join("snap/hl").exists());
    // Through a symlinked directory.
    let (root, result) = unpack_hostile(&[(b"out", S, b"../outside", b""), (b"hl", L, b"out/secret", b"")]);
    assert!(result.is_err());
    outside_untouched(root.path());
    // Inside is fine.
    let (root, result) = unpack_hostile(&[(b"a", F, b"", b"data"), (b"b", L, b"/a", b"")]);
    result.unwrap();
    assert_eq!(fs::read_to_string(root.path().join("snap/b")).unwrap(), "data");
}

#[test]
fn whiteout_names_cannot_escape() {
    if skip_unless_root("whiteout_names_cannot_escape") {
        return;
    }
    let (root, result) = unpack_hostile(&[(b"../.wh.outside", F, b"", b"")]);
    assert!(result.is_err());
    outside_untouched(root.path());
    let (root, result) = unpack_hostile(&[(b"l", S, b"../outside", b""), (b"l/.wh.secret", F, b"", b"")]);
    assert!(result.is_err());
    outside_untouched(root.path());
}

#[test]
fn uncompressed_layer_digest_is_its_diff_id() {
    let (d, store) = test_store();
    let dir = d.path().join("t");
    make_tree(&dir);
    let layer = diff_to_layer(&store, &dir, Compression::Uncompressed).unwrap().unwrap();
    assert_eq!(layer.digest, layer.diff_id);
    assert_eq!(layer.media_type, MEDIA_TYPE_OCI_LAYER);
}

#[test]
fn unpack_tar_to_dir_reads_compressed_archives() {
    let d = tempfile::tempdir().unwrap();
    let tree = d.path().join("tree");
    make_tree(&tree);
    let tar = tar_writer::write_tar(&tree, Vec::new(), &TarOptions::default()).unwrap();
    for compression in [Compression::Gzip, Compression::Zstd] {
        let mut c = Compressor::new(compression, Vec::new()).unwrap();
        std::io::Write::write_all(&mut c, &tar).unwrap();
        let bytes = c.finish().unwrap();
        let out = d.path().join(format!("out-{compression:?}"));
        fs::create_dir(&out).unwrap();
        unpack_tar_to_dir(&bytes[..], &out).unwrap();
        assert_eq!(fs::read_to_string(out.join("etc/app/config")).unwrap(), "key=value\n");
    }
}

#[test]
fn blank_numeric_fields_read_as_zero() {
    // Some writers leave uid/gid/mtime empty; Go reads them as 0, so do we.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.as_old_mut().name[..4].copy_from_slice(b"file");
    h.set_mode(0o644);
    h.set_size(2);
    h.set_cksum();
    b.append(&h, &b"hi"[..]).unwrap();
    let d = tempfile::tempdir().unwrap();
    unpack_tar_to_dir(&b.into_inner().unwrap()[..], d.path()).unwrap();
    assert_eq!(fs::read_to_string(d.path().join("file")).unwrap(), "hi");
}

#[test]
fn add_follows_symlinks_but_only_inside_the_root() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    fs::create_dir_all(root.join("usr/lib")).unwrap();
    std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
    std::os::unix::fs::symlink("/usr/lib", root.join("abslib")).unwrap();
    std::os::unix::fs::symlink("../../..", root.join("up")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    raw_entry(&mut b, b"lib/", D, b"", b"");
    raw_entry(&mut b, b"lib/a.so", F, b"", b"a");
    raw_entry(&mut b, b"abslib/b.so", F, b"", b"b");
    raw_entry(&mut b, b"up/escaped", F, b"", b"c");
    raw_entry(&mut b, b"hl", L, b"lib/a.so", b"");
    unpack_tar_to_dir(&b.into_inner().unwrap()[..], &root).unwrap();
    assert!(fs::symlink_metadata(root.join("lib")).unwrap().file_type().is_symlink());
    assert_eq!(fs::read_to_string(root.join("usr/lib/a.so")).unwrap(), "a");
    assert_eq!(fs::read_to_string(root.join("usr/lib/b.so")).unwrap(), "b");
    // `up` climbs no higher than the root.
    assert_eq!(fs::read_to_string(root.join("escaped")).unwrap(), "c");
    assert!(!d.path().join("escaped").exists());
    assert_eq!(fs::read_to_string(root.join("hl")).unwrap(), "a");
}

#[test]
fn redirected_dirs_are_refused_not_silently_truncated() {
    if skip_unless_root("redirected_dirs_are_refused_not_silently_truncated") {
        return;
    }
    let (d, store) = test_store();
    let upper = d.path().join("upper");
    fs::create_dir_all(upper.join("moved")).unwrap();
    xattr::set(upper.join("moved"), "trusted.overlay.redirect", b"/old").unwrap();
    let err = format!("{:#}", diff_to_layer(&store, &upper, Compression::Gzip).unwrap_err());
    assert!(err.contains("redirect_dir=off"), "{err}");
    assert!(fs::read_dir(store.root().join("tmp")).unwrap().next().is_none(), "temp blob left behind");
}
