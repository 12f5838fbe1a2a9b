//! Archive tests: import, save/load round trips, foreign layouts, and what skopeo
//! thinks of our tarballs.

use super::*;
use crate::layer::tar_writer::{TarOptions, write_tar};
use image_spec::Digest;
use std::fs;
use std::path::PathBuf;

fn test_store(dir: &Path, name: &str) -> Store {
    Store::open(&dir.join(name)).unwrap()
}

fn rootfs_tar(dir: &Path, gzip: bool) -> PathBuf {
    let tree = dir.join("tree");
    fs::create_dir_all(tree.join("bin")).unwrap();
    fs::write(tree.join("bin/sh"), "#!fake shell").unwrap();
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/os-release"), "ID=test\n").unwrap();
    let tar = write_tar(&tree, Vec::new(), &TarOptions::default()).unwrap();
    let path = dir.join(if gzip { "rootfs.tar.gz" } else { "rootfs.tar" });
    let bytes = if gzip {
        let mut c = Compressor::new(Compression::Gzip, Vec::new()).unwrap();
        c.write_all(&tar).unwrap();
        c.finish().unwrap()
    } else {
        tar
    };
    fs::write(&path, bytes).unwrap();
    path
}

fn import_one(dir: &Path, store: &Store) -> Image {
    let tarball = rootfs_tar(dir, true);
    import_rootfs(store, &tarball, "docker.io/library/imported:1").unwrap()
}

#[test]
fn import_makes_a_one_layer_image() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path(), "store");
    let tarball = rootfs_tar(d.path(), true);
    let image = import_rootfs(&store, &tarball, "docker.io/library/imported:1").unwrap();
    let loaded = store.load_image("imported:1").unwrap();
    assert_eq!(loaded.manifest_digest, image.manifest_digest);
    assert_eq!(loaded.config.os, "linux");
    assert_eq!(loaded.config.architecture, image_spec::host_platform().architecture);
    assert_eq!(loaded.layers.len(), 1);
    assert!(loaded.config.history[0].created_by.as_deref().unwrap().starts_with("imported from "));
    // The diff id is the digest of the uncompressed tar as given.
    let mut plain = Vec::new();
    decompress(fs::File::open(&tarball).unwrap()).unwrap().read_to_end(&mut plain).unwrap();
    assert_eq!(loaded.layers[0].diff_id, Digest::of(&plain));
    let snaps = crate::layer::ensure_snapshots(&store, &loaded.layers).unwrap();
    assert_eq!(fs::read_to_string(snaps[0].join("etc/os-release")).unwrap(), "ID=test\n");
}

#[test]
fn import_refuses_what_is_not_a_tar() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path(), "store");
    let junk = d.path().join("junk");
    fs::write(&junk, vec![0x55u8; 3000]).unwrap();
    assert!(import_rootfs(&store, &junk, "junk").is_err());
    assert!(store.refs().unwrap().is_empty());
}

fn archive_names(path: &Path) -> Vec<String> {
    let mut a = tar::Archive::new(fs::File::open(path).unwrap());
    a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect()
}

#[test]
fn save_then_load_round_trips() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path(), "store");
    let image = import_one(d.path(), &store);
    store.set_ref("other:2", &image.manifest_digest).unwrap();
    let out = d.path().join("out.tar");
    save(
        &store,
        &[("imported:1".into(), image.clone()), ("other:2".into(), image.clone())],
        &out,
        ArchiveFormat::Docker,
    )
    .unwrap();

    let names = archive_names(&out);
    for wanted in ["oci-layout", "index.json", "manifest.json", "repositories"] {
        assert!(names.iter().any(|n| n == wanted), "{wanted} in {names:?}");
    }
    assert!(names.contains(&format!("blobs/sha256/{}", image.config_digest.hex())));
    // Made for the user: 0666 less the umask, as tar or docker save would.
    let umask = fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Umask:").map(|m| u32::from_str_radix(m.trim(), 8).unwrap()))
        .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o666 & !umask);
    // No temp file left beside the output.
    assert_eq!(
        fs::read_dir(d.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".builder-save"))
            .count(),
        0
    );

    let other = test_store(d.path(), "other");
    let mut loaded = load(&other, &out).unwrap();
    loaded.sort();
    assert_eq!(loaded, ["docker.io/library/imported:1", "docker.io/library/other:2"]);
    let again = other.load_image("imported:1").unwrap();
    assert_eq!(again.manifest_digest, image.manifest_digest);
    assert_eq!(again.config_digest, image.config_digest);
    crate::layer::ensure_snapshots(&other, &again.layers).unwrap();
}

/// Writes one image into a tarball through [`TarArchive`], each layer compressed as
/// asked; returns the tarball's bytes and the image.
fn archive_with(store: &Store, image: &Image, compression: (Compression, Option<i32>), out: &Path) -> (Vec<u8>, Image) {
    let mut written = None;
    write_file_atomically(out, |w| {
        let mut archive = TarArchive::new(w)?;
        let layers: Vec<_> =
            image.layers.iter().map(|l| archive.add_layer(store, l, Some(compression))).collect::<Result<_>>()?;
        let converted = store.write_image(&image.config, &layers)?;
        archive.finish(store, &[ArchiveImage { image: converted.clone(), names: Vec::new() }], ArchiveFormat::Oci)?;
        written = Some(converted);
        Ok(())
    })
    .unwrap();
    (fs::read(out).unwrap(), written.unwrap())
}

/// A layer compressed for an export goes into the tarball as it is compressed: the
/// tarball holds the very blob the store keeps as its variant, and is byte for byte
/// the one a later export (which copies that variant) writes.
#[test]
fn a_layer_compressed_into_a_tarball_is_its_store_variant() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path(), "store");
    let image = import_one(d.path(), &store);
    for compression in [(Compression::Zstd, None), (Compression::Gzip, Some(1))] {
        let layer = &image.layers[0];
        assert!(crate::layer::stored_compression(&store, layer, compression.0, compression.1).is_none());
        let (first, converted) = archive_with(&store, &image, compression, &d.path().join("first.tar"));
        let variant = crate::layer::stored_compression(&store, layer, compression.0, compression.1).unwrap();
        assert_eq!(converted.layers, std::slice::from_ref(&variant));
        let (second, again) = archive_with(&store, &image, compression, &d.path().join("second.tar"));
        assert_eq!(again.manifest_digest, converted.manifest_digest);
        assert!(first == second, "{compression:?}: the two tarballs differ");
        // Every blob in it is what its name says, the layer first.
        let names = archive_names(&d.path().join("first.tar"));
        assert_eq!(names[2], format!("blobs/sha256/{}", variant.digest.hex()));
        let other = test_store(d.path(), &format!("other-{:?}", compression.0));
        load(&other, &d.path().join("first.tar")).unwrap();
        assert_eq!(other.read_blob(&variant.digest).unwrap(), store.read_blob(&variant.digest).unwrap());
    }
}

#[test]
fn docker_manifest_json_alone_is_enough() {
    // Drop index.json: the Docker path of the loader must do the same job.
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path(), "store");
    let image = import_one(d.path(), &store);
    let out = d.path().join("out.tar");
    save(&store, &[("imported:1".into(), image.clone())], &out, ArchiveFormat::Docker).unwrap();
    let stripped = d.path().join("stripped.tar");
    let mut b = tar::Builder::new(fs::File::create(&stripped).unwrap());
    let mut a = tar::Archive::new(fs::File::open(&out).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("index.json") {
            continue;
        }
        let mut h = e.header().clone();
        let path = e.path().unwrap().into_owned();
        b.append_data(&mut h, path, &mut e).unwrap();
    }
    b.finish().unwrap();
    let other = test_store(d.path(), "other");
    assert_eq!(load(&other, &stripped).unwrap(), ["docker.io/library/imported:1"]);
    assert_eq!(other.load_image("imported:1").unwrap().config_digest, image.config_digest);
}

#[test]
fn legacy_docker_save_layout_loads() {
    let d = tempfile::tempdir().unwrap();
    let tree_tar = fs::read(rootfs_tar(d.path(), false)).unwrap();
    let diff_id = Digest::of(&tree_tar);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["/bin/sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
    );
    let config_digest = Digest::of(config.as_bytes());
    let manifest = format!(
        r#"[{{"Config":"{}.json","RepoTags":["legacy:old"],"Layers":["abc/layer.tar"]}}]"#,
        config_digest.hex()
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, bytes: &[u8]| {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, bytes).unwrap();
    };
    add("abc/VERSION", b"1.0");
    add("abc/json", b"{}");
    add("abc/layer.tar", &tree_tar);
    add(&format!("{}.json", config_digest.hex()), config.as_bytes());
    add("manifest.json", manifest.as_bytes());
    add("repositories", br#"{"legacy":{"old":"abc"}}"#);
    let bytes = b.into_inner().unwrap();
    let path = d.path().join("legacy.tar");
    fs::write(&path, bytes).unwrap();

    let store = test_store(d.path(), "store");
    assert_eq!(load(&store, &path).unwrap(), ["docker.io/library/legacy:old"]);
    let image = store.load_image("legacy:old").unwrap();
    assert_eq!(image.config_digest, config_digest);
    assert_eq!(image.layers[0].digest, diff_id);
    assert_eq!(image.config.config.cmd, Some(vec!["/bin/sh".to_string()]));
    crate::layer::ensure_snapshots(&store, &image.layers).unwrap();
}

#[test]
fn a_corrupt_blob_fails_the_load() {
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path(), "store");
    let image = import_one(d.path(), &store);
    let out = d.path().join("out.tar");
    save(&store, &[("imported:1".into(), image.clone())], &out, ArchiveFormat::Docker).unwrap();
    // Flip a byte in the config blob's data.
    let mut bytes = fs::read(&out).unwrap();
    let config = store.read_blob(&image.config_digest).unwrap();
    let at = bytes.windows(config.len()).position(|w| w == config).unwrap();
    bytes[at + 2] ^= 0x20;
    fs::write(&out, bytes).unwrap();
    let other = test_store(d.path(), "other");
    let err = format!("{:#}", load(&other, &out).unwrap_err());
    assert!(err.contains("digest mismatch") && err.contains(image.config_digest.as_str()), "{err}");
    assert!(other.refs().unwrap().is_empty());
}

#[test]
fn skopeo_reads_saved_tarballs() {
    let skopeo = Path::new("/usr/bin/skopeo");
    if !skopeo.exists() {
        eprintln!("skipping skopeo_reads_saved_tarballs: /usr/bin/skopeo is not installed");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path(), "store");
    let image = import_one(d.path(), &store);
    let out = d.path().join("out.tar");
    save(&store, &[("imported:1".into(), image.clone())], &out, ArchiveFormat::Docker).unwrap();
    for transport in ["docker-archive", "oci-archive"] {
        let output = std::process::Command::new(skopeo)
            .args(["inspect", &format!("{transport}:{}", out.display())])
            .output()
            .unwrap();
        assert!(output.status.success(), "{transport}: {}", String::from_utf8_lossy(&output.stderr));
        let output = std::process::Command::new(skopeo)
            .args(["inspect", "--config", &format!("{transport}:{}", out.display())])
            .output()
            .unwrap();
        assert!(output.status.success(), "{transport}: {}", String::from_utf8_lossy(&output.stderr));
        let config: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], image.layers[0].diff_id.as_str(), "{transport}");
    }
}

fn run(program: &Path, args: &[&str]) {
    let output = std::process::Command::new(program).args(args).output().unwrap();
    assert!(output.status.success(), "{} {args:?}: {}", program.display(), String::from_utf8_lossy(&output.stderr));
}

#[test]
fn loads_what_skopeo_writes() {
    let skopeo = Path::new("/usr/bin/skopeo");
    if !skopeo.exists() {
        eprintln!("skipping loads_what_skopeo_writes: /usr/bin/skopeo is not installed");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path(), "store");
    let image = import_one(d.path(), &store);
    let out = d.path().join("out.tar");
    save(&store, &[("imported:1".into(), image.clone())], &out, ArchiveFormat::Docker).unwrap();
    let src = format!("docker-archive:{}", out.display());
    let oci = d.path().join("skopeo-oci.tar");
    let docker = d.path().join("skopeo-docker.tar");
    run(skopeo, &["copy", "-q", &src, &format!("oci-archive:{}:example.com/app:oci", oci.display())]);
    run(skopeo, &["copy", "-q", &src, &format!("docker-archive:{}:example.com/app:docker", docker.display())]);

    let other = test_store(d.path(), "other");
    assert_eq!(load(&other, &oci).unwrap(), ["example.com/app:oci"]);
    assert_eq!(load(&other, &docker).unwrap(), ["example.com/app:docker"]);
    for name in ["example.com/app:oci", "example.com/app:docker"] {
        let loaded = other.load_image(name).unwrap();
        assert_eq!(loaded.config.rootfs.diff_ids, image.config.rootfs.diff_ids, "{name}");
        let snaps = crate::layer::ensure_snapshots(&other, &loaded.layers).unwrap();
        assert!(snaps[0].join("bin/sh").is_file(), "{name}");
    }
}

#[test]
fn umoci_unpacks_the_oci_side() {
    let umoci = Path::new("/usr/bin/umoci");
    if !umoci.exists() {
        eprintln!("skipping umoci_unpacks_the_oci_side: /usr/bin/umoci is not installed");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path(), "store");
    let image = import_one(d.path(), &store);
    let out = d.path().join("out.tar");
    save(&store, &[("imported:1".into(), image)], &out, ArchiveFormat::Docker).unwrap();
    let layout = d.path().join("layout");
    fs::create_dir(&layout).unwrap();
    crate::layer::unpack_tar_to_dir(fs::File::open(&out).unwrap(), &layout).unwrap();
    let bundle = d.path().join("bundle");
    let mut args = vec!["unpack", "--image"];
    let image_arg = format!("{}:1", layout.display());
    args.push(&image_arg);
    if !rustix::process::geteuid().is_root() {
        args.push("--rootless");
    }
    let bundle_arg = bundle.display().to_string();
    args.push(&bundle_arg);
    run(umoci, &args);
    assert_eq!(fs::read_to_string(bundle.join("rootfs/etc/os-release")).unwrap(), "ID=test\n");
}

/// Into a layout directory too: the layer compressed for it is written there as it is
/// made, is the store's variant, and the layout write that follows keeps it.
#[test]
fn a_layer_compressed_into_a_layout_dir_is_its_store_variant() {
    use std::os::unix::fs::MetadataExt as _;
    let d = tempfile::tempdir().unwrap();
    let store = test_store(d.path(), "store");
    let image = import_one(d.path(), &store);
    let layout = d.path().join("layout");
    let compression = Some((Compression::Zstd, None));
    let layer = add_layer_to_dir(&store, &image.layers[0], compression, &layout).unwrap();
    let variant = crate::layer::stored_compression(&store, &image.layers[0], Compression::Zstd, None).unwrap();
    assert_eq!(layer, variant);
    let path = layout.join("blobs/sha256").join(layer.digest.hex());
    assert_eq!(fs::read(&path).unwrap(), store.read_blob(&layer.digest).unwrap());
    let inode = fs::metadata(&path).unwrap().ino();
    let converted = store.write_image(&image.config, std::slice::from_ref(&layer)).unwrap();
    let entry = ArchiveImage { image: converted, names: Vec::new() };
    write_layout_dir(&store, std::slice::from_ref(&entry), ArchiveFormat::Oci, &layout).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().ino(), inode, "the layout write replaced the blob");
    // Nothing half-written left in the layout.
    let names: Vec<_> = fs::read_dir(layout.join("blobs/sha256")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(names.iter().all(|n| !n.to_string_lossy().starts_with('.')), "{names:?}");
    // Already compressed: the variant, nothing written.
    assert_eq!(add_layer_to_dir(&store, &image.layers[0], compression, &d.path().join("other")).unwrap(), variant);
}
