//! Tests against a real `docker-registry` on 127.0.0.1 (skipped, saying so, when the
//! binary is missing), some through the fault-injecting or token-demanding proxy.

use super::*;
use image_spec::{Descriptor, Digest, Image, Index, LayerInfo, Reference, host_platform};
use image_spec::{MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_LAYER};
use registry::testing::{self, FaultKind, Proxy, Registry};
use registry::{Repository, login, logout, normalize_host};
use std::cell::RefCell;
use std::io::Write as _;
use store::Store;

/// A store in a temp dir.
fn temp_store() -> (tempfile::TempDir, store::Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::Store::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

/// A gzipped tar layer holding `files`, written to the store.
fn layer(store: &store::Store, files: &[(&str, &[u8])]) -> image_spec::LayerInfo {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, content) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, name, *content).unwrap();
    }
    let tar = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let gz = gz.finish().unwrap();
    let digest = store.write_blob_bytes(&gz).unwrap();
    image_spec::LayerInfo {
        digest,
        diff_id: image_spec::Digest::of(&tar),
        size: gz.len() as u64,
        media_type: image_spec::MEDIA_TYPE_OCI_LAYER_GZIP.into(),
    }
}

/// An image of the given layers for `architecture`.
fn image(store: &store::Store, architecture: &str, layers: &[image_spec::LayerInfo]) -> image_spec::Image {
    let config =
        image_spec::ImageConfig { architecture: architecture.into(), os: "linux".into(), ..Default::default() };
    store.write_image(&config, layers).unwrap()
}

fn reference(host: &str, path: &str) -> Reference {
    Reference::parse(&format!("{host}/{path}")).unwrap()
}

/// Options with a private docker config dir, so the user's credentials play no part.
fn options(config: &std::path::Path) -> RegistryOptions {
    RegistryOptions { docker_config: Some(config.to_path_buf()), ..RegistryOptions::default() }
}

/// Collects progress as lines: blobs as `DIGEST CURRENT/TOTAL`.
struct Lines(RefCell<Vec<String>>);

impl Lines {
    fn new() -> Self {
        Lines(RefCell::new(Vec::new()))
    }
    fn sink(&self) -> impl Fn(Transfer<'_>) + '_ {
        |t: Transfer<'_>| {
            let line = match t {
                Transfer::Line(line) => line.to_string(),
                Transfer::Manifest(digest) => format!("manifest {digest}"),
                Transfer::Blob { digest, current, total } => format!("{digest} {current}/{total}"),
            };
            self.0.borrow_mut().push(line)
        }
    }
    fn text(&self) -> String {
        self.0.borrow().join("\n")
    }
}

fn two_layer_image(store: &Store) -> Image {
    let a = layer(store, &[("etc/hello", b"hello\n")]);
    let b = layer(store, &[("app/data", &testing::noise(200_000, 1))]);
    image(store, &host_platform().architecture, &[a, b])
}

fn assert_same_image(a: &Image, b: &Image) {
    assert_eq!(a.manifest_digest, b.manifest_digest);
    assert_eq!(a.config_digest, b.config_digest);
    assert_eq!(a.layers, b.layers);
}

fn tmp_is_empty(store: &Store) -> bool {
    // Only this process's owner file (see `store/src/owner.rs`).
    std::fs::read_dir(store.root().join("tmp"))
        .unwrap()
        .all(|e| e.unwrap().file_name().to_string_lossy().ends_with(".owner"))
}

#[test]
fn hosts_normalise() {
    assert_eq!(normalize_host("https://index.docker.io/v1/"), "docker.io");
    assert_eq!(normalize_host("http://localhost:5000/"), "localhost:5000");
}

#[test]
fn push_then_pull_into_a_fresh_store_and_second_push_uploads_nothing() {
    let Some(registry) = Registry::start("push_then_pull", None) else { return };
    let config = tempfile::tempdir().unwrap();
    let opts = options(config.path());
    let (_d, store) = temp_store();
    let image = two_layer_image(&store);
    let target = reference(&registry.host(), "team/app:1.0");
    let lines = Lines::new();
    let digest = push(&store, &image, &target, &opts, &lines.sink()).unwrap();
    assert_eq!(digest, image.manifest_digest, "the manifest goes up byte-exact");
    assert!(lines.text().contains(&format!("manifest {digest}")), "{}", lines.text());
    for layer in &image.layers {
        let (digest, size) = (&layer.digest, layer.size);
        let text = lines.text();
        assert!(text.contains(&format!("{digest} 0/{size}\n")), "no start of {digest}: {text}");
        assert!(text.contains(&format!("{digest} {size}/{size}")), "no end of {digest}: {text}");
    }

    let writes = registry.blob_writes();
    assert!(writes >= 3, "three blobs were uploaded: {:?}", registry.requests());
    let again = push(&store, &image, &target, &opts, &|_| {}).unwrap();
    assert_eq!(again, digest);
    assert_eq!(registry.blob_writes(), writes, "a second push uploads no blob: {:?}", registry.requests());

    let (_d2, fresh) = temp_store();
    let pulled = pull(&fresh, &target, &host_platform(), &opts, &|_| {}).unwrap();
    assert_same_image(&pulled, &image);
    for layer in &image.layers {
        assert_eq!(fresh.read_blob(&layer.digest).unwrap(), store.read_blob(&layer.digest).unwrap());
    }
    assert_eq!(fresh.read_blob(&digest).unwrap(), store.read_blob(&digest).unwrap());
    assert_eq!(fresh.get_ref(&target.to_string()).unwrap(), Some(digest.clone()));
    assert_eq!(fresh.load_image(&target.to_string()).unwrap().manifest_digest, digest);

    // By digest too, and a missing tag names host, repository and the registry's error.
    let by_digest = Reference { tag: None, digest: Some(digest.clone()), ..target.clone() };
    let (_d3, third) = temp_store();
    assert_same_image(&pull(&third, &by_digest, &host_platform(), &opts, &|_| {}).unwrap(), &image);
    let missing = reference(&registry.host(), "team/app:nope");
    let msg = format!("{:#}", pull(&third, &missing, &host_platform(), &opts, &|_| {}).unwrap_err());
    assert!(msg.contains(&registry.host()) && msg.contains("team/app") && msg.contains("MANIFEST_UNKNOWN"), "{msg}");
}

#[test]
fn large_blobs_go_up_in_chunks() {
    let Some(registry) = Registry::start("chunked", None) else { return };
    let config = tempfile::tempdir().unwrap();
    let opts = RegistryOptions { chunk_size: 64 * 1024, ..options(config.path()) };
    let (_d, store) = temp_store();
    let big = testing::noise(300_000, 7);
    let digest = store.write_blob_bytes(&big).unwrap();
    let layer = LayerInfo {
        digest: digest.clone(),
        diff_id: digest,
        size: big.len() as u64,
        media_type: MEDIA_TYPE_OCI_LAYER.into(),
    };
    let image = image(&store, "amd64", &[layer]);
    let target = reference(&registry.host(), "big/blob:1");
    push(&store, &image, &target, &opts, &|_| {}).unwrap();
    let patches = registry.requests().iter().filter(|(m, _, _)| m == "PATCH").count();
    assert!(patches >= 5, "300 kB in 64 KiB chunks: {:?}", registry.requests());
    let (_d2, fresh) = temp_store();
    let pulled = pull(&fresh, &target, &host_platform(), &opts, &|_| {}).unwrap();
    assert_same_image(&pulled, &image);
}

#[test]
fn htpasswd_login_push_pull_and_wrong_password() {
    let password = "Correct-Horse-4711";
    let Some(registry) = Registry::start("htpasswd", Some(("alice", password))) else { return };
    let config = tempfile::tempdir().unwrap();
    let opts = options(config.path());
    let (_d, store) = temp_store();
    let image = two_layer_image(&store);
    let target = reference(&registry.host(), "private/app:1");

    let msg = format!("{:#}", push(&store, &image, &target, &opts, &|_| {}).unwrap_err());
    assert!(msg.contains("401") && msg.contains(&registry.host()) && msg.contains("private/app"), "{msg}");

    let wrong = "Wrong-Password-0815";
    let msg = format!("{:#}", login(&registry.host(), "alice", wrong, &opts).unwrap_err());
    assert!(msg.contains("authentication failed") && msg.contains("alice"), "{msg}");
    assert!(!msg.contains(wrong), "{msg}");
    assert!(!config.path().join("config.json").exists(), "a failed login saves nothing");

    login(&registry.host(), "alice", password, &opts).unwrap();
    let saved = std::fs::read_to_string(config.path().join("config.json")).unwrap();
    assert!(saved.contains(&registry.host()) && !saved.contains(password), "{saved}");

    let lines = Lines::new();
    let digest = push(&store, &image, &target, &opts, &lines.sink()).unwrap();
    let (_d2, fresh) = temp_store();
    let pulled = pull(&fresh, &target, &host_platform(), &opts, &lines.sink()).unwrap();
    assert_eq!(pulled.manifest_digest, digest);
    assert!(!lines.text().contains(password));
    for file in testing::files_under(fresh.root()).into_iter().chain(testing::files_under(store.root())) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!bytes.windows(password.len()).any(|w| w == password.as_bytes()), "{}", file.display());
    }

    assert!(logout(&registry.host(), &opts).unwrap());
    assert!(!logout(&registry.host(), &opts).unwrap());
    let (_d3, third) = temp_store();
    assert!(pull(&third, &target, &host_platform(), &opts, &|_| {}).is_err());
}

#[test]
fn bearer_tokens_through_the_challenge_flow() {
    let Some(registry) = Registry::start("bearer", None) else { return };
    let proxy = Proxy::start(registry.port);
    let password = "token-Secret-99";
    proxy.state.lock().unwrap().bearer = Some(Some(("bob".into(), password.into())));
    let config = tempfile::tempdir().unwrap();
    let opts = options(config.path());
    let (_d, store) = temp_store();
    let image = two_layer_image(&store);
    let target = reference(&proxy.host(), "tokens/app:1");

    let msg = format!("{:#}", push(&store, &image, &target, &opts, &|_| {}).unwrap_err());
    assert!(msg.contains("token") && msg.contains("401"), "anonymous push is refused: {msg}");
    let msg = format!("{:#}", login(&proxy.host(), "bob", "not-it", &opts).unwrap_err());
    assert!(msg.contains("authentication failed") && !msg.contains("not-it"), "{msg}");

    login(&proxy.host(), "bob", password, &opts).unwrap();
    let digest = push(&store, &image, &target, &opts, &|_| {}).unwrap();
    let (_d2, fresh) = temp_store();
    let pulled = pull(&fresh, &target, &host_platform(), &opts, &|_| {}).unwrap();
    assert_eq!(pulled.manifest_digest, digest);

    let state = proxy.state.lock().unwrap();
    let scopes: Vec<&String> = state.tokens.values().flatten().collect();
    assert!(scopes.iter().any(|s| *s == "repository:tokens/app:pull,push"), "{scopes:?}");
    assert!(scopes.iter().any(|s| *s == "repository:tokens/app:pull"), "{scopes:?}");
    // Tokens are cached: far fewer token requests than registry requests. (The
    // refused anonymous push asks once per blob in flight: a failed push lets the
    // requests in flight finish rather than dropping them, see `registry/src/push.rs`.)
    let token_requests = state.seen.iter().filter(|(_, p, _)| p.starts_with("/token")).count();
    let api_requests = state.seen.iter().filter(|(_, p, _)| p.starts_with("/v2/")).count();
    assert!(token_requests <= 9 && api_requests > 10, "{token_requests} token requests for {api_requests}");
}

#[test]
fn cross_repository_mount_and_its_fallback() {
    let Some(registry) = Registry::start("mount", None) else { return };
    let config = tempfile::tempdir().unwrap();
    let opts = options(config.path());
    let (_d, store) = temp_store();
    let app = two_layer_image(&store);
    push(&store, &app, &reference(&registry.host(), "src/app:1"), &opts, &|_| {}).unwrap();

    let before = registry.requests().len();
    let lines = Lines::new();
    push(&store, &app, &reference(&registry.host(), "dst/app:1"), &opts, &lines.sink()).unwrap();
    let after: Vec<_> = registry.requests()[before..].to_vec();
    let mounts = after
        .iter()
        .filter(|(m, p, s)| m == "POST" && p.contains("mount=") && p.contains("from=src") && *s == 201)
        .count();
    assert_eq!(mounts, 3, "{after:?}");
    assert!(!after.iter().any(|(m, _, _)| m == "PATCH"), "{after:?}");
    assert!(!after.iter().any(|(m, p, _)| m == "PUT" && p.contains("/blobs/")), "{after:?}");
    assert!(lines.text().contains("mounted from src/app"), "{}", lines.text());

    // A blob believed to be in a repository that lacks it: the registry answers
    // 202 with an ordinary upload session, which is used.
    let extra = layer(&store, &[("x", b"only here")]);
    let other = image(&store, "amd64", std::slice::from_ref(&extra));
    sources::record(&store, std::slice::from_ref(&extra.digest), &format!("{}/never/was", registry.host())).unwrap();
    let before = registry.requests().len();
    push(&store, &other, &reference(&registry.host(), "dst/other:1"), &opts, &|_| {}).unwrap();
    let after: Vec<_> = registry.requests()[before..].to_vec();
    assert!(after.iter().any(|(m, p, s)| m == "POST" && p.contains("from=never") && *s == 202), "{after:?}");
    assert!(after.iter().any(|(m, p, s)| m == "PUT" && p.contains("/blobs/uploads/") && *s == 201), "{after:?}");
}

#[test]
fn multi_platform_index_resolves_per_platform() {
    let Some(registry) = Registry::start("index", None) else { return };
    let config = tempfile::tempdir().unwrap();
    let opts = options(config.path());
    let (_d, store) = temp_store();
    let host = host_platform();
    let other_arch = if host.architecture == "arm64" { "amd64" } else { "arm64" };
    let native = image(&store, &host.architecture, &[layer(&store, &[("arch", b"native")])]);
    let foreign = image(&store, other_arch, &[layer(&store, &[("arch", b"foreign")])]);
    let repo = "multi/app";
    let mut manifests = Vec::new();
    for (pushed, arch) in [(&native, host.architecture.as_str()), (&foreign, other_arch)] {
        let by_digest =
            Reference { tag: None, digest: Some(pushed.manifest_digest.clone()), ..reference(&registry.host(), repo) };
        push(&store, pushed, &by_digest, &opts, &|_| {}).unwrap();
        manifests.push(Descriptor {
            media_type: image_spec::MEDIA_TYPE_OCI_MANIFEST.into(),
            digest: pushed.manifest_digest.clone(),
            size: store.blob_size(&pushed.manifest_digest).unwrap(),
            annotations: None,
            platform: Some(image_spec::Platform { architecture: arch.into(), os: "linux".into(), variant: None }),
        });
    }
    let index =
        Index { schema_version: 2, media_type: Some(MEDIA_TYPE_OCI_INDEX.into()), manifests, annotations: None };
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let multi = Repository::open(&reference(&registry.host(), "multi/app:multi"), &opts).unwrap();
    let pushed = multi.put_manifest(index_bytes.clone(), MEDIA_TYPE_OCI_INDEX).unwrap();
    assert_eq!(pushed, Digest::of(&index_bytes));

    let target = reference(&registry.host(), "multi/app:multi");
    let (_d2, fresh) = temp_store();
    let got = pull(&fresh, &target, &host, &opts, &|_| {}).unwrap();
    assert_eq!(got.manifest_digest, native.manifest_digest);
    assert!(fresh.has_blob(&pushed), "the index is kept byte-exact too");
    // The name is the index; a pull for the other platform fetches only its blobs
    // and adds its image under the same index.
    assert_eq!(fresh.get_ref(&target.to_string()).unwrap(), Some(pushed.clone()));
    assert!(!fresh.has_blob(&foreign.manifest_digest), "only the wanted platform is fetched");
    let other = image_spec::Platform::new("linux", other_arch);
    let before = registry.blob_downloads().len();
    let got = pull(&fresh, &target, &other, &opts, &|_| {}).unwrap();
    assert_eq!(got.manifest_digest, foreign.manifest_digest);
    let mut fetched: Vec<String> = registry.blob_downloads().split_off(before);
    fetched.sort();
    let mut wanted = vec![foreign.config_digest.to_string(), foreign.layers[0].digest.to_string()];
    wanted.sort();
    assert_eq!(fetched, wanted, "the second pull fetches the other platform's config and layer only");
    assert_eq!(fresh.get_ref(&target.to_string()).unwrap(), Some(pushed.clone()));
    let held: Vec<Digest> = fresh.platforms_of(&pushed).unwrap().into_iter().map(|(_, d)| d).collect();
    assert_eq!(held, [native.manifest_digest.clone(), foreign.manifest_digest.clone()]);
    let (_d3, third) = temp_store();
    let got = pull(&third, &target, &other, &opts, &|_| {}).unwrap();
    assert_eq!(got.manifest_digest, foreign.manifest_digest);
    assert_eq!(got.config.architecture, other_arch);
    let msg = format!(
        "{:#}",
        pull(&third, &target, &image_spec::Platform::new("linux", "s390x"), &opts, &|_| {}).unwrap_err()
    );
    assert!(msg.contains("linux/s390x") && msg.contains(&format!("linux/{other_arch}")), "{msg}");
}

#[test]
fn pull_survives_503_and_a_dropped_connection() {
    let Some(registry) = Registry::start("pull_faults", None) else { return };
    let config = tempfile::tempdir().unwrap();
    let opts = options(config.path());
    let (_d, store) = temp_store();
    let image = two_layer_image(&store);
    push(&store, &image, &reference(&registry.host(), "faulty/app:1"), &opts, &|_| {}).unwrap();

    let proxy = Proxy::start(registry.port);
    proxy.add_fault("GET", "/manifests/", FaultKind::Unavailable, 1);
    proxy.add_fault("GET", "/blobs/", FaultKind::Unavailable, 1);
    let big = &image.layers[1].digest;
    let big_path: &'static str = Box::leak(format!("/blobs/{big}").into_boxed_str());
    proxy.add_fault("GET", big_path, FaultKind::CutResponse(50_000), 2);
    let (_d2, fresh) = temp_store();
    let lines = Lines::new();
    let target = reference(&proxy.host(), "faulty/app:1");
    let pulled = pull(&fresh, &target, &host_platform(), &opts, &lines.sink()).unwrap();
    assert_same_image(&pulled, &image);
    assert_eq!(proxy.pending_faults(), 0, "every fault fired");
    assert!(lines.text().contains("resuming"), "{}", lines.text());
    let ranged = proxy.seen().iter().filter(|(_, p, _)| p.contains(big_path)).count();
    assert!(ranged >= 3, "{:?}", proxy.seen());
    assert!(tmp_is_empty(&fresh));

    // A connection that always drops: the pull fails and leaves nothing partial.
    let proxy = Proxy::start(registry.port);
    proxy.add_fault("GET", big_path, FaultKind::CutResponse(10_000), 100);
    let (_d3, third) = temp_store();
    let opts = RegistryOptions { retries: 2, ..opts };
    let target = reference(&proxy.host(), "faulty/app:1");
    let msg = format!("{:#}", pull(&third, &target, &host_platform(), &opts, &|_| {}).unwrap_err());
    assert!(msg.contains("faulty/app") && msg.contains(big.as_str()), "{msg}");
    assert!(!third.has_blob(big));
    assert!(!third.has_blob(&image.manifest_digest));
    assert_eq!(third.get_ref(&target.to_string()).unwrap(), None);
    assert!(tmp_is_empty(&third));
}

#[test]
fn push_survives_503_and_dropped_uploads() {
    let Some(registry) = Registry::start("push_faults", None) else { return };
    let proxy = Proxy::start(registry.port);
    let config = tempfile::tempdir().unwrap();
    let opts = RegistryOptions { chunk_size: 64 * 1024, ..options(config.path()) };
    let (_d, store) = temp_store();
    let small = layer(&store, &[("small", &testing::noise(20_000, 3))]);
    let big_bytes = testing::noise(400_000, 4);
    let big_digest = store.write_blob_bytes(&big_bytes).unwrap();
    let big = LayerInfo {
        digest: big_digest.clone(),
        diff_id: big_digest,
        size: big_bytes.len() as u64,
        media_type: MEDIA_TYPE_OCI_LAYER.into(),
    };
    let image = image(&store, "amd64", &[small, big]);
    proxy.add_fault("POST", "/blobs/uploads/", FaultKind::Unavailable, 1);
    proxy.add_fault("PATCH", "/blobs/uploads/", FaultKind::CutRequest(30_000), 1);
    proxy.add_fault("PATCH", "/blobs/uploads/", FaultKind::Unavailable, 1);
    let small_put: &'static str =
        Box::leak(format!("digest={}", image.layers[0].digest).replace(':', "%3A").into_boxed_str());
    proxy.add_fault("PUT", small_put, FaultKind::CutRequest(5_000), 1);
    proxy.add_fault("PUT", "/manifests/", FaultKind::Unavailable, 1);
    let lines = Lines::new();
    let digest = push(&store, &image, &reference(&proxy.host(), "faulty/push:1"), &opts, &lines.sink()).unwrap();
    assert_eq!(digest, image.manifest_digest);
    assert_eq!(proxy.pending_faults(), 0, "every fault fired: {}", lines.text());

    let (_d2, fresh) = temp_store();
    let pulled = pull(&fresh, &reference(&registry.host(), "faulty/push:1"), &host_platform(), &opts, &|_| {}).unwrap();
    assert_same_image(&pulled, &image);
}

/// The upload sessions the registry holds open for `repository`: its storage keeps
/// each under `_uploads/<uuid>/` (`startedat`, `data`) until it completes, is
/// cancelled or is purged. (docker-registry 2.8 rewrites a tiny `hashstates/` file
/// after a cancel has removed the rest: that alone is not an open session.)
fn open_upload_sessions(registry: &Registry, repository: &str) -> usize {
    let dir = registry.dir.path().join("data/docker/registry/v2/repositories").join(repository).join("_uploads");
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries.flatten().filter(|e| e.path().join("startedat").exists() || e.path().join("data").exists()).count()
}

/// Issue 14.6: a failed push left every upload session open in the registry (one
/// push answered 500 left 24). Each session given up is now cancelled (`DELETE`).
#[test]
fn a_failed_push_cancels_its_upload_sessions() {
    let Some(registry) = Registry::start("push_cancels_sessions", None) else { return };
    let proxy = Proxy::start(registry.port);
    let config = tempfile::tempdir().unwrap();
    let opts = RegistryOptions { retries: 2, chunk_size: 64 * 1024, ..options(config.path()) };
    let (_d, store) = temp_store();
    // A small blob (one PUT) and a large one (PATCH chunks, then a closing PUT).
    let image = two_layer_image(&store);
    proxy.add_fault("PUT", "/blobs/uploads/", FaultKind::Unavailable, 1000);
    let target = reference(&proxy.host(), "faulty/cancel:1");
    let err = format!("{:#}", push(&store, &image, &target, &opts, &|_| {}).unwrap_err());
    assert!(err.contains(&proxy.host()), "{err}");
    let posts = proxy.seen().iter().filter(|(m, p, _)| m == "POST" && p.contains("/blobs/uploads/")).count();
    assert!(posts >= 2, "sessions were opened: {:?}", proxy.seen());
    assert_eq!(open_upload_sessions(&registry, "faulty/cancel"), 0, "upload sessions left open: {:?}", proxy.seen());
}

#[test]
fn redirects_do_not_carry_credentials_to_another_host() {
    let Some(registry) = Registry::start("redirect", None) else { return };
    let storage = Proxy::start(registry.port);
    let front = Proxy::start(registry.port);
    front.state.lock().unwrap().bearer = Some(None);
    let config = tempfile::tempdir().unwrap();
    let opts = options(config.path());
    let (_d, store) = temp_store();
    let image = two_layer_image(&store);
    push(&store, &image, &reference(&front.host(), "redir/app:1"), &opts, &|_| {}).unwrap();
    front.add_fault("GET", "/blobs/sha256:", FaultKind::Redirect(storage.port), 3);
    let (_d2, fresh) = temp_store();
    let pulled = pull(&fresh, &reference(&front.host(), "redir/app:1"), &host_platform(), &opts, &|_| {}).unwrap();
    assert_same_image(&pulled, &image);
    let seen = storage.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(seen.iter().all(|(_, _, auth)| auth.is_none()), "{seen:?}");
    assert!(
        front
            .seen()
            .iter()
            .any(|(_, p, a)| p.contains("/blobs/") && a.as_deref().is_some_and(|a| a.starts_with("Bearer ")))
    );
}

/// Writes `image` as an OCI layout directory (what `builder save --format oci`
/// makes), for skopeo.
fn write_oci_layout(store: &Store, image: &Image, dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut digests = vec![image.manifest_digest.clone(), image.config_digest.clone()];
    digests.extend(image.layers.iter().map(|l| l.digest.clone()));
    for d in &digests {
        std::fs::write(dir.join("blobs/sha256").join(d.hex()), store.read_blob(d).unwrap()).unwrap();
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": image_spec::MEDIA_TYPE_OCI_MANIFEST,
            "digest": image.manifest_digest,
            "size": store.blob_size(&image.manifest_digest).unwrap(),
            "annotations": {"org.opencontainers.image.ref.name": "1"}
        }]
    });
    std::fs::write(dir.join("index.json"), index.to_string()).unwrap();
}

#[test]
fn interop_with_skopeo() {
    if !std::path::Path::new("/usr/bin/skopeo").exists() {
        eprintln!("SKIPPED interop_with_skopeo: skopeo is not installed");
        return;
    }
    let Some(registry) = Registry::start("skopeo", None) else { return };
    let config = tempfile::tempdir().unwrap();
    let opts = options(config.path());
    let (_d, store) = temp_store();
    let image = two_layer_image(&store);
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    write_oci_layout(&store, &image, &layout);
    let skopeo = |args: &[&str]| {
        let out = std::process::Command::new("skopeo").args(args).output().unwrap();
        assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // skopeo pushes, we pull (skopeo writes its own manifest, Docker or OCI).
    let dest = format!("docker://{}/interop/by-skopeo:1", registry.host());
    skopeo(&["--insecure-policy", "copy", "--dest-tls-verify=false", &format!("oci:{}:1", layout.display()), &dest]);
    let (_d2, fresh) = temp_store();
    let pulled =
        pull(&fresh, &reference(&registry.host(), "interop/by-skopeo:1"), &host_platform(), &opts, &|_| {}).unwrap();
    assert_eq!(pulled.config_digest, image.config_digest);
    assert_eq!(
        pulled.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>(),
        image.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>()
    );
    // A Docker schema 2 manifest too.
    let docker_dest = format!("docker://{}/interop/docker-v2:1", registry.host());
    skopeo(&[
        "--insecure-policy",
        "copy",
        "--dest-tls-verify=false",
        "--format",
        "v2s2",
        &format!("oci:{}:1", layout.display()),
        &docker_dest,
    ]);
    let (_d3, third) = temp_store();
    let pulled =
        pull(&third, &reference(&registry.host(), "interop/docker-v2:1"), &host_platform(), &opts, &|_| {}).unwrap();
    assert_eq!(pulled.config.rootfs.diff_ids, image.config.rootfs.diff_ids);
    let manifest = third.read_blob(&pulled.manifest_digest).unwrap();
    assert!(String::from_utf8_lossy(&manifest).contains(image_spec::MEDIA_TYPE_DOCKER_MANIFEST));

    // We push, skopeo inspects and copies back out.
    push(&store, &image, &reference(&registry.host(), "interop/by-builder:1"), &opts, &|_| {}).unwrap();
    let src = format!("docker://{}/interop/by-builder:1", registry.host());
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &src])).unwrap();
    assert_eq!(inspect["Digest"], image.manifest_digest.as_str());
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    let out = work.path().join("out");
    skopeo(&["--insecure-policy", "copy", "--src-tls-verify=false", &src, &format!("oci:{}:1", out.display())]);
    assert!(out.join("blobs/sha256").join(image.layers[1].digest.hex()).exists());
}

#[test]
fn https_with_a_ca_from_the_certs_dir() {
    let Some((registry, ca)) = Registry::start_tls("https_certs_d") else { return };
    let certs = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let opts = RegistryOptions { certs_dir: certs.path().to_path_buf(), retries: 1, ..options(config.path()) };
    let (_d, store) = temp_store();
    let image = two_layer_image(&store);
    let target = reference(&registry.host(), "tls/app:1");

    // Loopback without CAs is plain HTTP, which this registry does not speak.
    assert!(push(&store, &image, &target, &opts, &|_| {}).is_err());
    // A certs dir for the host means TLS; without its CA the certificate fails.
    let host_dir = certs.path().join(registry.host());
    std::fs::create_dir(&host_dir).unwrap();
    let msg = format!("{:#}", push(&store, &image, &target, &opts, &|_| {}).unwrap_err());
    assert!(msg.contains(&registry.host()) && msg.contains("tls/app"), "{msg}");
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");

    std::fs::write(host_dir.join("ca.crt"), ca).unwrap();
    let digest = push(&store, &image, &target, &opts, &|_| {}).unwrap();
    let (_d2, fresh) = temp_store();
    assert_eq!(pull(&fresh, &target, &host_platform(), &opts, &|_| {}).unwrap().manifest_digest, digest);
}

/// A remote blob that fails loudly if anyone tries to fetch it.
struct NeverFetch;

impl store::BlobSource for NeverFetch {
    fn name(&self) -> String {
        "never".into()
    }
    fn fetch(&self, _: &Store, layer: &LayerInfo) -> Result<(), store::BoxError> {
        Err(format!("{} was fetched", layer.digest).into())
    }
}

#[test]
fn repository_handle_pushes_mounts_without_local_bytes_and_fetches_lazily() {
    let Some(registry) = Registry::start("repo", None) else { return };
    let config = tempfile::tempdir().unwrap();
    let opts = options(config.path());
    let (_d, store) = temp_store();
    let image = two_layer_image(&store);
    let src = Repository::open(&reference(&registry.host(), "team/src:1"), &opts).unwrap();
    assert!(src.manifest().unwrap().is_none(), "nothing is there yet");
    let descriptors: Vec<Descriptor> = image.layers.iter().map(LayerInfo::descriptor).collect();
    let stats = src.push_blobs(&StoreContent(&store), &descriptors, &Default::default(), &|_| {}).unwrap();
    assert_eq!(stats.uploaded, 2);

    // Another store knows the layers only as remote blobs: pushing them to another
    // repository of the registry mounts them and never reads them.
    let (_d2, other) = temp_store();
    for layer in &image.layers {
        other.add_remote_blob(layer, std::sync::Arc::new(NeverFetch));
    }
    let digests: Vec<Digest> = image.layers.iter().map(|l| l.digest.clone()).collect();
    src.remember(&StoreContent(&other), &digests);
    let dst = Repository::open(&reference(&registry.host(), "team/dst:1"), &opts).unwrap();
    let stats = dst.push_blobs(&StoreContent(&other), &descriptors, &Default::default(), &|_| {}).unwrap();
    assert_eq!((stats.mounted, stats.uploaded), (2, 0), "{stats:?}");
    // Known blobs cost no request at all.
    let before = registry.requests().len();
    let known = digests.iter().cloned().collect();
    let stats = dst.push_blobs(&StoreContent(&other), &descriptors, &known, &|_| {}).unwrap();
    assert_eq!(stats.known, 2);
    assert_eq!(registry.requests().len(), before);

    // Fetching streams a blob into a third store, verified; small blobs read whole.
    let (_d3, third) = temp_store();
    dst.fetch_blob(&StoreContent(&third), &descriptors[1], &|_| {}).unwrap();
    assert!(third.has_blob(&descriptors[1].digest));
    assert!(!third.has_blob(&descriptors[0].digest));
    assert_eq!(dst.blob_bytes(&descriptors[0], 1 << 20).unwrap(), store.read_blob(&descriptors[0].digest).unwrap());
    let err = format!("{:#}", dst.blob_bytes(&descriptors[1], 10).unwrap_err());
    assert!(err.contains("more than the 10"), "{err}");
}
