//! Pulls of images that are not whole: the name must not point at them.

use super::*;
use image_spec::host_platform;
use registry::testing::Registry;

/// Pushes a manifest over the given config bytes (and one layer of `layers`
/// descriptors) straight from blobs, as a hostile registry would serve it.
fn push_raw(store: &Store, registry: &Registry, name: &str, config: &[u8], layer_count: usize) -> Reference {
    let layer = store.write_blob_bytes(b"not really a layer").unwrap();
    let config_digest = store.write_blob_bytes(config).unwrap();
    let layers: Vec<String> = (0..layer_count)
        .map(|_| format!(r#"{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer}","size":18}}"#))
        .collect();
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{}]}}"#,
        config.len(),
        layers.join(",")
    );
    let manifest_digest = store.write_blob_bytes(manifest.as_bytes()).unwrap();
    let reference = Reference::parse(&format!("{}/{name}", registry.host())).unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let opts = RegistryOptions { docker_config: Some(config_dir.path().to_path_buf()), ..RegistryOptions::default() };
    registry::push(&StoreContent(store), &manifest_digest, &reference, &opts, &|_| {}).unwrap();
    reference
}

#[test]
fn a_pulled_image_that_does_not_validate_is_not_tagged() {
    let Some(registry) = Registry::start("pull_invalid", None) else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(&dir.path().join("source")).unwrap();
    let good = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cases: [(&str, &[u8], usize); 4] = [
        ("bad/rootfs:1", br#"{"architecture":"amd64","os":"linux","rootfs":"nope"}"#, 0),
        ("bad/env:1", br#"{"architecture":"amd64","os":"linux","config":{"Env":5},"rootfs":{"type":"layers","diff_ids":[]}}"#, 0),
        (
            "bad/diffid:1",
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:../../etc/passwd"]}}"#,
            1,
        ),
        ("bad/count:1", good, 2),
    ];
    let pulled = Store::open(&dir.path().join("pulled")).unwrap();
    let config_dir = tempfile::tempdir().unwrap();
    let opts = RegistryOptions { docker_config: Some(config_dir.path().to_path_buf()), ..RegistryOptions::default() };
    for (name, config, layers) in cases {
        let reference = push_raw(&source, &registry, name, config, layers);
        let result = pull(&pulled, &reference, &host_platform(), &opts, &|_| {});
        assert!(result.is_err(), "{name} pulled");
        assert_eq!(pulled.get_ref(&reference.to_string()).unwrap(), None, "{name} was tagged");
    }
    // The store's images still list (nothing broken is named).
    assert!(pulled.refs().unwrap().is_empty());
}
