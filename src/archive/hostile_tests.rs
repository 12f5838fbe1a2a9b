//! `builder load` of archives that lie: metadata too large to read, layers whose
//! size or diff id is not what the manifest and config say.

use super::*;
use crate::layer::tar_writer::{TarOptions, write_tar};
use image_spec::Digest;
use std::fs;

/// A tar of the given files (name, bytes).
fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *bytes).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut c = Compressor::new(Compression::Gzip, Vec::new()).unwrap();
    c.write_all(bytes).unwrap();
    c.finish().unwrap()
}

/// A layer tar (plain) of one file.
fn layer_tar(dir: &Path) -> Vec<u8> {
    let tree = dir.join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("hello"), "hi\n").unwrap();
    write_tar(&tree, Vec::new(), &TarOptions::default()).unwrap()
}

fn config_with(diff_id: &Digest) -> String {
    format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#)
}

/// An OCI layout archive of one gzip layer whose descriptor says `size` bytes.
fn oci_archive(layer_gz: &[u8], diff_id: &Digest, size: u64) -> Vec<u8> {
    let config = config_with(diff_id);
    let layer_digest = Digest::of(layer_gz);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"{layer_digest}","size":{size}}}]}}"#,
        Digest::of(config.as_bytes()),
        config.len()
    );
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{}","size":{},"annotations":{{"io.containerd.image.name":"docker.io/library/liar:1"}}}}]}}"#,
        Digest::of(manifest.as_bytes()),
        manifest.len()
    );
    let blob = |d: Digest| format!("blobs/sha256/{}", d.hex());
    tar_of(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        (&blob(layer_digest.clone()), layer_gz),
        (&blob(Digest::of(config.as_bytes())), config.as_bytes()),
        (&blob(Digest::of(manifest.as_bytes())), manifest.as_bytes()),
        ("index.json", index.as_bytes()),
    ])
}

fn load_bytes(dir: &Path, bytes: &[u8]) -> (Store, Result<Vec<String>>) {
    let path = dir.join("archive.tar.gz");
    fs::write(&path, bytes).unwrap();
    let store = Store::open(&dir.join("store")).unwrap();
    let result = load(&store, &path);
    (store, result)
}

#[test]
fn load_refuses_metadata_larger_than_the_cap_without_reading_it() {
    let d = tempfile::tempdir().unwrap();
    // 64 MiB of JSON whitespace compresses to a few dozen KiB.
    let mut huge = vec![b' '; 64 << 20];
    huge.extend_from_slice(b"[]");
    let archive = gzip(&tar_of(&[("manifest.json", &huge)]));
    assert!(archive.len() < 1 << 20);
    let (store, result) = load_bytes(d.path(), &archive);
    let message = format!("{:#}", result.unwrap_err());
    assert!(message.contains("manifest.json") && message.contains("more than the"), "{message}");
    assert!(store.refs().unwrap().is_empty());
}

#[test]
fn load_refuses_a_layer_whose_descriptor_size_lies() {
    let d = tempfile::tempdir().unwrap();
    let plain = layer_tar(d.path());
    let gz = gzip(&plain);
    let archive = oci_archive(&gz, &Digest::of(&plain), gz.len() as u64 + 100);
    let (store, result) = load_bytes(d.path(), &archive);
    let message = format!("{:#}", result.unwrap_err());
    assert!(message.contains("its descriptor says"), "{message}");
    assert!(store.refs().unwrap().is_empty());
    // The same archive with the true size loads.
    let d2 = tempfile::tempdir().unwrap();
    let archive = oci_archive(&gz, &Digest::of(&plain), gz.len() as u64);
    let (_, result) = load_bytes(d2.path(), &archive);
    assert_eq!(result.unwrap(), ["docker.io/library/liar:1"]);
}

#[test]
fn load_refuses_a_layer_whose_diff_id_lies() {
    let d = tempfile::tempdir().unwrap();
    let plain = layer_tar(d.path());
    let gz = gzip(&plain);
    let wrong = Digest::of(b"something else");
    let archive = oci_archive(&gz, &wrong, gz.len() as u64);
    let (store, result) = load_bytes(d.path(), &archive);
    let message = format!("{:#}", result.unwrap_err());
    assert!(message.contains("diff id") && message.contains(wrong.as_str()), "{message}");
    assert!(store.refs().unwrap().is_empty());

    // The Docker layout (manifest.json) with a gzip layer: the same check.
    let config = config_with(&wrong);
    let config_name = format!("{}.json", Digest::of(config.as_bytes()).hex());
    let manifest = format!(r#"[{{"Config":"{config_name}","RepoTags":["liar:2"],"Layers":["l/layer.tar"]}}]"#);
    let archive =
        tar_of(&[("l/layer.tar", &gz), (&config_name, config.as_bytes()), ("manifest.json", manifest.as_bytes())]);
    let d2 = tempfile::tempdir().unwrap();
    let (store, result) = load_bytes(d2.path(), &archive);
    let message = format!("{:#}", result.unwrap_err());
    assert!(message.contains("diff id") && message.contains(wrong.as_str()), "{message}");
    assert!(store.refs().unwrap().is_empty());
}
