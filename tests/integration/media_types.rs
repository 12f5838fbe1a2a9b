//! Media types (issue 16): a base pushed with Docker schema-2 media types, as `docker
//! push` leaves it, built on and exported. An OCI output uses OCI types throughout
//! and a Docker one Docker types throughout; the tools that care accept them: umoci
//! unpacks the OCI layout and runc runs the bundle, skopeo reads the docker archive,
//! podman loads and runs both tarballs, and a push sends the Content-Type its
//! manifest says.
//!
//! runc and podman run in a mount namespace of their own (`unshare`), so that their
//! mounts never show in the host's table that other tests compare.

use crate::registry::Registry;
use crate::util::{Env, busybox_tar, env};
use image_spec::{
    Digest, MEDIA_TYPE_DOCKER_CONFIG, MEDIA_TYPE_DOCKER_LAYER, MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_MANIFEST, MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_OCI_MANIFEST, Reference,
};
use registry::{BoxError, Content, RegistryOptions, Repository, UploadFrom};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Blobs in a directory, a file per digest: what the hand-made base is pushed from.
struct BlobDir(PathBuf);

impl BlobDir {
    fn add(&self, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        std::fs::write(self.0.join(digest.hex()), bytes).unwrap();
        digest
    }
}

impl Content for BlobDir {
    fn has_blob(&self, digest: &Digest) -> bool {
        self.0.join(digest.hex()).is_file()
    }
    fn write_blob(&self, _: &mut dyn Read, expected: &Digest) -> Result<u64, BoxError> {
        Err(format!("a push writes no blob here ({expected})").into())
    }
    fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, BoxError> {
        Ok(std::fs::read(self.0.join(digest.hex()))?)
    }
    fn blob_upload(&self, digest: &Digest) -> Result<(UploadFrom, u64), BoxError> {
        let path = self.0.join(digest.hex());
        let size = std::fs::metadata(&path)?.len();
        Ok((UploadFrom::File(path), size))
    }
    fn open_blob(&self, digest: &Digest) -> Result<Box<dyn Read + Send>, BoxError> {
        Ok(Box::new(std::fs::File::open(self.0.join(digest.hex()))?))
    }
    fn blob_sources(&self, _: &Digest) -> Vec<String> {
        Vec::new()
    }
    fn add_blob_sources(&self, _: &[Digest], _: &str) {}
}

fn succeeded(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tool(program: &str, args: &[&str]) -> String {
    succeeded(Command::new(program).args(args).output().unwrap(), &format!("{program} {args:?}"))
}

fn installed(program: &str, test: &str) -> bool {
    let ok = Command::new(program).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED {test}: {program} is not installed (scripts/test.sh installs it)");
    }
    ok
}

/// The base's layer blobs, as pushed.
struct DockerBase {
    reference: String,
    layers: Vec<Digest>,
}

/// Pushes a base as `docker push` leaves one: a Docker schema-2 manifest and config,
/// a gzip layer (busybox) and an uncompressed one (`/base`).
fn push_docker_base(registry: &Registry, work: &Path) -> DockerBase {
    let blobs = BlobDir(work.join("base-blobs"));
    std::fs::create_dir_all(&blobs.0).unwrap();
    let busybox = std::fs::read(busybox_tar()).unwrap();
    let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gzip.write_all(&busybox).unwrap();
    let busybox_gz = gzip.finish().unwrap();
    let files = work.join("base-files");
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("base"), "docker-base\n").unwrap();
    let extra_tar = work.join("extra.tar");
    let files_dir = files.to_str().unwrap();
    tool(
        "tar",
        &["--numeric-owner", "--owner=0", "--group=0", "-C", files_dir, "-cf", extra_tar.to_str().unwrap(), "base"],
    );
    let extra = std::fs::read(&extra_tar).unwrap();

    let platform = image_spec::host_platform();
    let config = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "variant": platform.variant,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&busybox), Digest::of(&extra)]},
        "history": [
            {"created": "2026-01-01T00:00:00Z", "created_by": "ADD busybox.tar /"},
            {"created": "2026-01-01T00:00:01Z", "created_by": "ADD base /"},
        ],
    });
    let config = serde_json::to_vec(&config).unwrap();
    let descriptor = |media_type: &str, bytes: &[u8]| json!({"mediaType": media_type, "size": bytes.len(), "digest": blobs.add(bytes)});
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_DOCKER_MANIFEST,
        "config": descriptor(MEDIA_TYPE_DOCKER_CONFIG, &config),
        "layers": [descriptor(MEDIA_TYPE_DOCKER_LAYER_GZIP, &busybox_gz), descriptor(MEDIA_TYPE_DOCKER_LAYER, &extra)],
    });
    let descriptors: Vec<image_spec::Descriptor> = std::iter::once(&manifest["config"])
        .chain(manifest["layers"].as_array().unwrap())
        .map(|d| serde_json::from_value(d.clone()).unwrap())
        .collect();

    let reference = format!("{}/it/docker-base:1", registry.host());
    let repo = Repository::open(&Reference::parse(&reference).unwrap(), &RegistryOptions::default()).unwrap();
    repo.push_blobs(&blobs, &descriptors, &HashSet::new(), &|_| {}).unwrap();
    repo.put_manifest(serde_json::to_vec(&manifest).unwrap(), MEDIA_TYPE_DOCKER_MANIFEST).unwrap();
    // The registry serves it as a Docker manifest: the base really is Docker-typed.
    let served = repo.manifest().unwrap().expect("the base is in the registry");
    assert_eq!(served.media_type, MEDIA_TYPE_DOCKER_MANIFEST);
    DockerBase { reference, layers: descriptors[1..].iter().map(|d| d.digest.clone()).collect() }
}

/// Unpacks an image tarball (an OCI layout) into `dir`; returns its index and the
/// manifest the index names.
fn layout(tarball: &Path, dir: &Path) -> (Value, Value) {
    std::fs::create_dir_all(dir).unwrap();
    tool("tar", &["-xf", tarball.to_str().unwrap(), "-C", dir.to_str().unwrap()]);
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let blob = dir.join("blobs/sha256").join(digest.strip_prefix("sha256:").unwrap());
    (index, serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap())
}

fn types(descriptors: &Value) -> Vec<&str> {
    descriptors.as_array().unwrap().iter().map(|d| d["mediaType"].as_str().unwrap()).collect()
}

fn digests(manifest: &Value) -> Vec<String> {
    manifest["layers"].as_array().unwrap().iter().map(|d| d["digest"].as_str().unwrap().to_string()).collect()
}

/// Every descriptor of an OCI output has its OCI type, the base's layers included.
fn assert_oci(index: &Value, manifest: &Value, what: &str) {
    assert_eq!(index["mediaType"], MEDIA_TYPE_OCI_INDEX, "{what}");
    assert_eq!(types(&index["manifests"]), [MEDIA_TYPE_OCI_MANIFEST], "{what}");
    assert_eq!(manifest["mediaType"], MEDIA_TYPE_OCI_MANIFEST, "{what}");
    assert_eq!(manifest["config"]["mediaType"], MEDIA_TYPE_OCI_CONFIG, "{what}");
    let want = [MEDIA_TYPE_OCI_LAYER_GZIP, MEDIA_TYPE_OCI_LAYER, MEDIA_TYPE_OCI_LAYER_GZIP];
    assert_eq!(types(&manifest["layers"]), want, "{what}: {manifest}");
}

/// Every descriptor of a Docker output has its Docker type (the layout's own
/// index.json is an OCI index by the layout spec, as in `docker save`'s).
fn assert_docker(index: &Value, manifest: &Value, what: &str) {
    assert_eq!(types(&index["manifests"]), [MEDIA_TYPE_DOCKER_MANIFEST], "{what}");
    assert_eq!(manifest["mediaType"], MEDIA_TYPE_DOCKER_MANIFEST, "{what}");
    assert_eq!(manifest["config"]["mediaType"], MEDIA_TYPE_DOCKER_CONFIG, "{what}");
    let want = [MEDIA_TYPE_DOCKER_LAYER_GZIP, MEDIA_TYPE_DOCKER_LAYER, MEDIA_TYPE_DOCKER_LAYER_GZIP];
    assert_eq!(types(&manifest["layers"]), want, "{what}: {manifest}");
}

const EXPECTED: &str = "built on docker-base";
const SCRIPT: &str = "echo built on $(cat /base)";

#[test]
fn a_docker_typed_base_exports_with_one_family_of_media_types() {
    let test = "media_types_docker_base";
    let Some(env) = env(test) else { return };
    if !installed("skopeo", test) || !installed("umoci", test) {
        return;
    }
    let Some(registry) = Registry::start(test, None) else { return };
    let w = env.work.path();
    let base = push_docker_base(&registry, w);
    let ctx = env.context("ctx", &[("Dockerfile", &format!("FROM {}\nRUN echo built > /built\n", base.reference))]);
    let (oci, explicit, docker) = (w.join("oci.tar"), w.join("explicit.tar"), w.join("docker.tar"));
    let pushed_oci = format!("{}/it/app:oci", registry.host());
    let pushed_docker = format!("{}/it/app:docker", registry.host());
    env.build_ok(
        &ctx,
        &[
            "-o",
            &format!("type=oci,dest={},name=app-oci:1", oci.display()),
            "-o",
            &format!("type=oci,dest={},name=app-oci:1,oci-mediatypes=true", explicit.display()),
            "-o",
            &format!("type=docker,dest={},name=app-docker:1", docker.display()),
            "-o",
            &format!("type=registry,name={pushed_oci}"),
            "-o",
            &format!("type=registry,name={pushed_docker},oci-mediatypes=false"),
        ],
    );

    let (index, manifest) = layout(&oci, &w.join("oci"));
    assert_oci(&index, &manifest, "type=oci");
    let (explicit_index, explicit_manifest) = layout(&explicit, &w.join("explicit"));
    assert_oci(&explicit_index, &explicit_manifest, "type=oci,oci-mediatypes=true");
    let (docker_index, docker_manifest) = layout(&docker, &w.join("docker"));
    assert_docker(&docker_index, &docker_manifest, "type=docker");
    // Only the descriptors changed: the base's blobs are the pushed ones, not recompressed.
    let base_layers: Vec<String> = base.layers.iter().map(|d| d.to_string()).collect();
    assert_eq!(digests(&manifest)[..2], base_layers[..]);
    assert_eq!(digests(&docker_manifest), digests(&manifest));

    // Pushes: the registry serves each with the Content-Type its manifest says.
    for (name, want) in [(&pushed_oci, MEDIA_TYPE_OCI_MANIFEST), (&pushed_docker, MEDIA_TYPE_DOCKER_MANIFEST)] {
        let repo = Repository::open(&Reference::parse(name).unwrap(), &RegistryOptions::default()).unwrap();
        let fetched = repo.manifest().unwrap().expect("pushed");
        let served: Value = serde_json::from_slice(&fetched.bytes).unwrap();
        assert_eq!((fetched.media_type.as_str(), served["mediaType"].as_str()), (want, Some(want)), "{name}");
        let family = if want == MEDIA_TYPE_OCI_MANIFEST { "application/vnd.oci." } else { "application/vnd.docker." };
        let all = std::iter::once(&served["config"]).chain(served["layers"].as_array().unwrap());
        assert!(all.into_iter().all(|d| d["mediaType"].as_str().unwrap().starts_with(family)), "{name}: {served}");
    }

    // skopeo reads the docker archive (and its OCI layout).
    let inspect: Value =
        serde_json::from_str(&tool("skopeo", &["inspect", &format!("docker-archive:{}", docker.display())])).unwrap();
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 3);
    tool("skopeo", &["inspect", &format!("oci-archive:{}", docker.display())]);

    let bundle = w.join("bundle");
    tool("umoci", &["unpack", "--image", &format!("{}:1", w.join("oci").display()), bundle.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(bundle.join("rootfs/base")).unwrap(), "docker-base\n");
    assert_eq!(std::fs::read_to_string(bundle.join("rootfs/built")).unwrap(), "built\n");
    run_bundle_with_runc(test, &bundle, w);

    run_with_podman(test, w, &[(&oci, "docker.io/library/app-oci:1"), (&docker, "docker.io/library/app-docker:1")]);
}

/// `runc run` of an unpacked bundle: no terminal, a network namespace, a busybox echo.
fn run_bundle_with_runc(test: &str, bundle: &Path, work: &Path) {
    if !installed("runc", test) {
        return;
    }
    let config_path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["process"]["terminal"] = json!(false);
    config["process"]["args"] = json!(["/bin/busybox", "sh", "-c", SCRIPT]);
    let namespaces = config["linux"]["namespaces"].as_array_mut().unwrap();
    if !namespaces.iter().any(|n| n["type"] == "network") {
        namespaces.push(json!({"type": "network"}));
    }
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    let state = work.join("runc-state");
    let id = format!("builder-test-{}", std::process::id());
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "runc", "--root", state.to_str().unwrap(), "run"])
        .args(["--bundle", bundle.to_str().unwrap(), &id])
        .output()
        .unwrap();
    assert_eq!(succeeded(out, "runc run").trim(), EXPECTED);
}

/// `podman load` and `podman run --network=none` of each tarball, with storage and
/// state of its own (nothing under /var/lib/containers or /run). Skipped only when podman cannot run here at all (`podman info` fails).
fn run_with_podman(test: &str, work: &Path, tarballs: &[(&Path, &str)]) {
    if !installed("podman", test) {
        return;
    }
    let storage = work.join("podman");
    let podman = |args: &[&str]| {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private", "podman"]);
        for (flag, dir) in
            [("--root", "root"), ("--runroot", "run"), ("--tmpdir", "tmp"), ("--network-config-dir", "net")]
        {
            cmd.arg(flag).arg(storage.join(dir));
        }
        cmd.args(["--storage-driver", "vfs", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]);
        cmd.args(args).output().unwrap()
    };
    let info = podman(&["info"]);
    if !info.status.success() {
        eprintln!("SKIPPED {test} (podman part): `podman info` fails here: {}", String::from_utf8_lossy(&info.stderr));
        return;
    }
    for (tarball, name) in tarballs {
        let loaded = succeeded(podman(&["load", "-i", tarball.to_str().unwrap()]), "podman load");
        assert!(loaded.contains(name), "{}: {loaded}", tarball.display());
        // Limits below any hard limit: podman's defaults raise RLIMIT_NOFILE/NPROC,
        // which needs CAP_SYS_RESOURCE that a CI container may not grant.
        let limits = ["--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"];
        let run = [&["run", "--rm", "--network=none"][..], &limits, &[name, "sh", "-c", SCRIPT]].concat();
        let out = succeeded(podman(&run), &format!("podman run {name}"));
        assert_eq!(out.trim(), EXPECTED, "{name}");
    }
}

/// zstd layers exist only with OCI media types: type=docker refuses compression=zstd
/// (as buildx does), and a zstd base layer is recompressed for Docker types.
#[test]
fn zstd_layers_only_with_oci_media_types() {
    let Some(env) = env("media_types_zstd") else { return };
    let env: Env = env.with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\n")]);
    let out = env.run(&["build", "-o", "type=docker,dest=x.tar,compression=zstd", ctx.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("compression=zstd conflicts with oci-mediatypes=false"), "{stderr}");
    // With OCI types asked for, the docker tarball carries zstd layers.
    let tar = env.work.path().join("z.tar");
    env.build_ok(&ctx, &["-o", &format!("type=docker,dest={},compression=zstd,oci-mediatypes=true", tar.display())]);
    let (_, manifest) = layout(&tar, &env.work.path().join("z"));
    assert_eq!(manifest["mediaType"], MEDIA_TYPE_OCI_MANIFEST);
    assert_eq!(types(&manifest["layers"])[1], image_spec::MEDIA_TYPE_OCI_LAYER_ZSTD);

    env.build_ok(&ctx, &["-o", "type=image,name=zbase:1,compression=zstd,force-compression=true"]);
    let on_zstd = env.context("on-zstd", &[("Dockerfile", "FROM zbase:1\nRUN echo more > /more\n")]);
    let docker = env.work.path().join("docker.tar");
    env.build_ok(&on_zstd, &["-o", &format!("type=docker,dest={}", docker.display())]);
    let (_, manifest) = layout(&docker, &env.work.path().join("docker"));
    assert_eq!(manifest["mediaType"], MEDIA_TYPE_DOCKER_MANIFEST);
    assert_eq!(types(&manifest["layers"]), [MEDIA_TYPE_DOCKER_LAYER_GZIP; 3], "{manifest}");
}
