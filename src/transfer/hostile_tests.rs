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

/// An image of one uncompressed layer of `len` noisy bytes.
fn noisy_image(store: &Store, len: usize) -> Image {
    let mut tar = tar::Builder::new(Vec::new());
    let bytes = registry::testing::noise(len, 11);
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "noise", bytes.as_slice()).unwrap();
    let tar = tar.into_inner().unwrap();
    let digest = store.write_blob_bytes(&tar).unwrap();
    let layer = image_spec::LayerInfo {
        digest: digest.clone(),
        diff_id: digest,
        size: tar.len() as u64,
        media_type: image_spec::MEDIA_TYPE_OCI_LAYER.into(),
    };
    let config = image_spec::ImageConfig { architecture: "amd64".into(), os: "linux".into(), ..Default::default() };
    store.write_image(&config, &[layer]).unwrap()
}

#[test]
fn a_blob_corrupted_in_transit_is_downloaded_once_more() {
    let Some(registry) = Registry::start("pull_corrupt", None) else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(&dir.path().join("source")).unwrap();
    let image = noisy_image(&source, 100_000);
    let config_dir = tempfile::tempdir().unwrap();
    let opts = RegistryOptions { docker_config: Some(config_dir.path().to_path_buf()), ..RegistryOptions::default() };
    let pushed = Reference::parse(&format!("{}/corrupt/app:1", registry.host())).unwrap();
    push(&source, &image, &pushed, &opts, &|_| {}).unwrap();
    let layer = &image.layers[0].digest;
    let layer_path: &'static str = Box::leak(format!("/blobs/{layer}").into_boxed_str());

    // Corrupted once: the second download is clean and the pull succeeds.
    let proxy = registry::testing::Proxy::start(registry.port);
    proxy.add_fault("GET", layer_path, registry::testing::FaultKind::CorruptResponse(5_000), 1);
    let target = Reference::parse(&format!("{}/corrupt/app:1", proxy.host())).unwrap();
    let fresh = Store::open(&dir.path().join("fresh")).unwrap();
    let pulled = pull(&fresh, &target, &host_platform(), &opts, &|_| {}).unwrap();
    assert_eq!(pulled.manifest_digest, image.manifest_digest);
    assert_eq!(proxy.pending_faults(), 0);

    // Corrupted every time: the pull fails with the mismatch, naming the blob, after
    // exactly one more download, and tags nothing.
    let proxy = registry::testing::Proxy::start(registry.port);
    proxy.add_fault("GET", layer_path, registry::testing::FaultKind::CorruptResponse(5_000), 100);
    let target = Reference::parse(&format!("{}/corrupt/app:1", proxy.host())).unwrap();
    let third = Store::open(&dir.path().join("third")).unwrap();
    let message = format!("{:#}", pull(&third, &target, &host_platform(), &opts, &|_| {}).unwrap_err());
    assert!(message.contains("digest mismatch") && message.contains(layer.as_str()), "{message}");
    let downloads = proxy.seen().iter().filter(|(m, p, _)| m == "GET" && p.contains(layer_path)).count();
    assert_eq!(downloads, 2, "{:?}", proxy.seen());
    assert_eq!(third.get_ref(&target.to_string()).unwrap(), None);
}

#[test]
fn a_manifest_corrupted_in_transit_is_fetched_once_more() {
    let Some(registry) = Registry::start("manifest_corrupt", None) else { return };
    let dir = tempfile::tempdir().unwrap();
    let source = Store::open(&dir.path().join("source")).unwrap();
    let image = noisy_image(&source, 1000);
    let config_dir = tempfile::tempdir().unwrap();
    let opts = RegistryOptions { docker_config: Some(config_dir.path().to_path_buf()), ..RegistryOptions::default() };
    let pushed = Reference::parse(&format!("{}/corrupt/manifest:1", registry.host())).unwrap();
    push(&source, &image, &pushed, &opts, &|_| {}).unwrap();

    let proxy = registry::testing::Proxy::start(registry.port);
    proxy.add_fault("GET", "/manifests/", registry::testing::FaultKind::CorruptResponse(20), 1);
    let target = Reference::parse(&format!("{}/corrupt/manifest:1", proxy.host())).unwrap();
    let fresh = Store::open(&dir.path().join("fresh")).unwrap();
    let pulled = pull(&fresh, &target, &host_platform(), &opts, &|_| {}).unwrap();
    assert_eq!(pulled.manifest_digest, image.manifest_digest);
    assert_eq!(proxy.pending_faults(), 0);

    // By digest, corrupted every time: the mismatch fails the pull after two tries.
    let proxy = registry::testing::Proxy::start(registry.port);
    proxy.add_fault("GET", "/manifests/", registry::testing::FaultKind::CorruptResponse(20), 100);
    let by_digest = Reference::parse(&format!("{}/corrupt/manifest@{}", proxy.host(), image.manifest_digest)).unwrap();
    let third = Store::open(&dir.path().join("third")).unwrap();
    let message = format!("{:#}", pull(&third, &by_digest, &host_platform(), &opts, &|_| {}).unwrap_err());
    assert!(message.contains("digest mismatch"), "{message}");
    let fetches = proxy.seen().iter().filter(|(m, p, _)| m == "GET" && p.contains("/manifests/")).count();
    assert_eq!(fetches, 2, "{:?}", proxy.seen());
}
