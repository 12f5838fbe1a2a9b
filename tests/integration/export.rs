//! `builder build -o`: every output type, checked by independent tools (skopeo,
//! umoci, tar) and against the image's own filesystem; compression and reproducible
//! builds.

use crate::util::{Env, env};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn have(tool: &str, test: &str) -> bool {
    let ok = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED {test}: {tool} is not installed (scripts/test.sh installs it)");
    }
    ok
}

fn run_tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn sha256_of(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b");
    std::fs::write(&path, bytes).unwrap();
    let out = run_tool("sha256sum", &[path.to_str().unwrap()]);
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

const DOCKERFILE: &str = "FROM busybox\nRUN mkdir /d && echo a > /d/a && echo b > /d/b && rm /bin/true\nRUN rm /d/a && echo hi > /hi\nCMD [\"cat\", \"/hi\"]\n";

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn oci_and_docker_outputs_pass_skopeo_and_umoci() {
    let Some(env) = env("export_oci_docker") else { return };
    if !have("skopeo", "export_oci_docker") || !have("umoci", "export_oci_docker") {
        return;
    }
    let env = env.with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", DOCKERFILE)]);
    let w = env.work.path();
    let (oci_tar, docker_tar, oci_dir) = (w.join("oci.tar"), w.join("docker.tar"), w.join("layout"));
    env.build_ok(
        &ctx,
        &[
            "-o",
            &format!("type=oci,dest={},name=app:1,annotation.org.opencontainers.image.title=hello", oci_tar.display()),
            "-o",
            &format!("type=docker,dest={},name=app:1", docker_tar.display()),
            "-o",
            &format!("type=oci,dest={},tar=false,name=app:1", oci_dir.display()),
        ],
    );
    // Nothing was named in the store: these outputs go to files only.
    assert!(!env.ok(&["images"]).contains("app"));

    let raw = run_tool("skopeo", &["inspect", "--raw", &format!("oci-archive:{}", oci_tar.display())]);
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(manifest["annotations"]["org.opencontainers.image.title"], "hello");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 3);
    let raw = run_tool("skopeo", &["inspect", "--raw", &format!("docker-archive:{}", docker_tar.display())]);
    let manifest: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.docker.distribution.manifest.v2+json");
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(layer["mediaType"], "application/vnd.docker.image.rootfs.diff.tar.gzip");
    }
    // The docker tarball is an OCI layout too.
    run_tool("skopeo", &["inspect", &format!("oci-archive:{}", docker_tar.display())]);

    for (i, source) in [
        format!("oci-archive:{}", oci_tar.display()),
        format!("docker-archive:{}", docker_tar.display()),
        format!("oci:{}:1", oci_dir.display()),
    ]
    .iter()
    .enumerate()
    {
        let config = run_tool("skopeo", &["inspect", "--config", source]);
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["cat", "/hi"]), "{source}");
        let copy = w.join(format!("copy{i}"));
        run_tool("skopeo", &["copy", source, &format!("dir:{}", copy.display())]);
        assert!(copy.join("manifest.json").is_file(), "{source}");
    }

    let refs = run_tool("umoci", &["ls", "--layout", path_str(&oci_dir)]);
    assert_eq!(refs.trim(), "1");
    let bundle = w.join("bundle");
    run_tool("umoci", &["unpack", "--image", &format!("{}:1", oci_dir.display()), path_str(&bundle)]);
    let rootfs = bundle.join("rootfs");
    assert_eq!(std::fs::read_to_string(rootfs.join("hi")).unwrap(), "hi\n");
    assert!(rootfs.join("d/b").exists() && !rootfs.join("d/a").exists());
    assert!(!rootfs.join("bin/true").exists() && rootfs.join("bin/busybox").exists());
}

/// Relative paths under `dir`, directories included.
fn walk(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let rel = entry.path().strip_prefix(dir).unwrap().to_str().unwrap().to_string();
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            }
            out.insert(rel);
        }
    }
    out
}

#[test]
fn local_and_tar_outputs_are_the_image_filesystem() {
    let Some(env) = env("export_local_tar") else { return };
    let env = env.with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", DOCKERFILE)]);
    let w = env.work.path();
    let (local, tarball) = (w.join("local"), w.join("fs.tar"));
    env.build_ok(
        &ctx,
        &[
            "-t",
            "flat",
            "-o",
            "type=image",
            "-o",
            &format!("type=local,dest={}", local.display()),
            "-o",
            &format!("type=tar,dest={}", tarball.display()),
        ],
    );
    assert_eq!(std::fs::read_to_string(local.join("hi")).unwrap(), "hi\n");
    assert!(local.join("d/b").is_file() && !local.join("d/a").exists(), "whiteouts applied");
    assert!(!local.join("bin/true").exists() && local.join("bin/busybox").is_file());
    assert!(std::fs::symlink_metadata(local.join("bin/sh")).unwrap().file_type().is_symlink());

    let files = walk(&local);
    let listed: BTreeSet<String> = run_tool("tar", &["-tf", path_str(&tarball)])
        .lines()
        .map(|l| l.trim_end_matches('/').trim_start_matches("./").to_string())
        .collect();
    assert_eq!(files, listed);

    // What a container of the image sees (its own mounts aside).
    let out = env.ok(&["run", "--rm", "flat", "find", "/", "-xdev"]);
    let seen: BTreeSet<String> =
        out.lines().filter(|l| *l != "/").map(|l| l.trim_start_matches('/').to_string()).collect();
    let mount_points = ["proc", "dev", "sys", "etc/hosts", "etc/resolv.conf", "etc/hostname"];
    let differ: Vec<&String> = files
        .symmetric_difference(&seen)
        .filter(|p| !mount_points.iter().any(|m| p.as_str() == *m || p.starts_with(&format!("{m}/"))))
        .collect();
    assert!(differ.is_empty(), "local output and container differ in {differ:?}");

    // dest=- streams the same tar to stdout.
    let out = env.cmd(&["build", "--progress=plain", "-o", "-", path_str(&ctx)]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, std::fs::read(&tarball).unwrap());
}

#[test]
fn zstd_layers_carry_the_zstd_media_type_and_load_back() {
    let Some(env) = env("export_zstd") else { return };
    if !have("skopeo", "export_zstd") {
        return;
    }
    let env = env.with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", DOCKERFILE)]);
    let w = env.work.path();
    let (mixed, forced) = (w.join("mixed.tar"), w.join("forced.tar"));
    env.build_ok(&ctx, &["-o", &format!("type=oci,dest={},name=z:1,compression=zstd", mixed.display())]);
    env.build_ok(
        &ctx,
        &["-o", &format!("type=oci,dest={},name=z:2,compression=zstd,force-compression=true", forced.display())],
    );
    let layers = |tar: &Path| -> Vec<String> {
        let raw = run_tool("skopeo", &["inspect", "--raw", &format!("oci-archive:{}", tar.display())]);
        let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
        m["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap().to_string()).collect()
    };
    const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    // The base layer keeps its compression unless forced.
    assert_eq!(layers(&mixed), [GZIP, ZSTD, ZSTD]);
    assert_eq!(layers(&forced), [ZSTD, ZSTD, ZSTD]);

    // Into a fresh store: same manifest digest, and the layers unpack.
    let raw = run_tool("skopeo", &["inspect", "--raw", &format!("oci-archive:{}", forced.display())]);
    let digest = sha256_of(raw.as_bytes());
    let other = Env { root: tempfile::tempdir().unwrap(), work: tempfile::tempdir().unwrap() };
    other.ok(&["load", "-i", path_str(&forced)]);
    let inspect: serde_json::Value = serde_json::from_str(&other.ok(&["inspect", "z:2"])).unwrap();
    assert_eq!(inspect["Digest"], digest);
    assert_eq!(other.ok(&["run", "--rm", "z:2"]), "hi\n");
}

#[test]
fn a_layer_compressed_once_is_reused() {
    let Some(env) = env("export_reuse") else { return };
    let env = env.with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", DOCKERFILE)]);
    let w = env.work.path();
    let blob_inodes = || -> BTreeSet<(String, u64)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::read_dir(env.root.path().join("blobs/sha256"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().ino())
            })
            .collect()
    };
    // Built with gzip layers; the first zstd export converts them.
    env.build_ok(&ctx, &["-t", "app"]);
    let built = blob_inodes();
    env.build_ok(&ctx, &["-o", &format!("type=oci,dest={},compression=zstd", w.join("a.tar").display())]);
    let before = blob_inodes();
    // The config is the built image's (the same layers, dated as when they were made).
    assert_eq!(before.len(), built.len() + 3, "two zstd layers and a manifest");
    env.build_ok(&ctx, &["-o", &format!("type=oci,dest={},compression=zstd", w.join("b.tar").display())]);
    // No blob was rewritten (that would rename a new inode into place), none added.
    let after = blob_inodes();
    assert_eq!(before, after);
}

fn epoch_build(env: &Env, ctx: &Path, epoch: Option<&str>, extra: &[&str]) -> String {
    let mut cmd = env.cmd(&["build", "--progress=plain", "--no-cache"]);
    cmd.args(extra).arg(ctx);
    if let Some(e) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", e);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn fresh_env_with_busybox() -> Env {
    let env = Env { root: tempfile::tempdir().unwrap(), work: tempfile::tempdir().unwrap() };
    // A base image that is the same in both stores.
    let out = env
        .cmd(&["import", path_str(crate::util::busybox_tar()), "busybox:latest"])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(out.status.success());
    env
}

#[test]
fn source_date_epoch_makes_builds_reproducible() {
    if env("export_reproducible").is_none() {
        return;
    }
    let (a, b) = (fresh_env_with_busybox(), fresh_env_with_busybox());
    let files = [
        ("Dockerfile", "FROM busybox\nCOPY f /f\nRUN mkdir -p /app && echo built > /app/out && cp /f /app/f\n"),
        ("f", "content\n"),
    ];
    let (ca, cb) = (a.context("ctx", &files), b.context("ctx", &files));
    let da = epoch_build(&a, &ca, Some("1700000000"), &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let db = epoch_build(&b, &cb, Some("1700000000"), &[]);
    assert_eq!(da, db, "two clean builds with SOURCE_DATE_EPOCH");
    // The build arg works the same.
    let dc = epoch_build(&a, &ca, None, &["--build-arg", "SOURCE_DATE_EPOCH=1700000000"]);
    assert_eq!(da, dc);
    let config: serde_json::Value = serde_json::from_str(&a.ok(&["inspect", &da])).unwrap();
    assert_eq!(config["Created"], "2023-11-14T22:13:20.000000000Z");

    // Without it the images differ, but only in times (and so in layer digests).
    let na = epoch_build(&a, &ca, None, &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let nb = epoch_build(&b, &cb, None, &[]);
    assert_ne!(na, nb);
    let strip = |env: &Env, digest: &str| {
        let mut v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", digest])).unwrap();
        for key in ["Created", "Digest", "Id", "RootFS", "Layers"] {
            v.as_object_mut().unwrap().remove(key);
        }
        for h in v["History"].as_array_mut().unwrap() {
            h.as_object_mut().unwrap().remove("created");
        }
        v
    };
    assert_eq!(strip(&a, &na), strip(&b, &nb));
    // The files are the same, with other mtimes.
    let listing = |env: &Env, digest: &str| -> Vec<String> {
        env.ok(&["tag", digest, "cmp:1"]);
        let tar = env.work.path().join("cmp.tar");
        let ctx = env.context("cmp", &[("Dockerfile", "FROM cmp:1\n")]);
        env.build_ok(&ctx, &["-o", &format!("type=tar,dest={}", tar.display())]);
        run_tool("tar", &["-tvf", path_str(&tar)])
            .lines()
            .map(|l| {
                // perms owner size date time name: drop date and time.
                let f: Vec<&str> = l.split_whitespace().collect();
                format!("{} {} {} {}", f[0], f[1], f[2], f[5..].join(" "))
            })
            .collect()
    };
    assert_eq!(listing(&a, &na), listing(&b, &nb));
}

#[test]
fn bad_output_specs_are_usage_errors() {
    let Some(env) = env("export_usage") else { return };
    let env = env.with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", DOCKERFILE)]);
    for (spec, message) in [
        ("type=zip", "unknown type \"zip\""),
        ("type=oci", "needs dest=FILE"),
        ("type=oci,dest=x,compression=brotli", "unknown compression"),
        ("type=local,dest=x,compression=zstd", "writes a filesystem"),
        ("type=docker,dest=x,compression=zstd,oci-mediatypes=false", "conflicts with oci-mediatypes=false"),
        // As buildx: Docker media types (type=docker's default) have no zstd.
        ("type=docker,dest=x,compression=zstd", "oci-mediatypes=false (type=docker's default)"),
    ] {
        let (ok, _, stderr) = env.build(&ctx, &["-o", spec]);
        assert!(!ok);
        let out = env.run(&["build", "-o", spec, path_str(&ctx)]);
        assert_eq!(out.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(message), "{spec}: {stderr}");
    }
}

/// Image names and `SOURCE_DATE_EPOCH` are the user's: a bad one is a usage error,
/// found before any step runs (the RUN step would print its marker).
#[test]
fn bad_names_and_epochs_are_usage_errors_before_the_build() {
    let Some(env) = env("export_usage_names") else { return };
    let env = env.with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", "FROM busybox\nRUN echo step-ran-$((40+2))\n")]);
    let ctx = path_str(&ctx);
    for (args, message) in [
        (&["-o", "type=image,name=Not A Name"][..], "invalid image name \"Not A Name\""),
        (&["-t", "UPPER/case"], "invalid tag \"UPPER/case\""),
        (&["--build-arg", "SOURCE_DATE_EPOCH=soon"], "SOURCE_DATE_EPOCH=\"soon\" is not a number of seconds"),
    ] {
        let out = env.run(&[&["build", "--progress=plain"], args, &[ctx]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("step-ran-42"), "{args:?} ran the build: {stderr}");
    }
    let out = env.cmd(&["build", "--progress=plain", ctx]).env("SOURCE_DATE_EPOCH", "soon").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("SOURCE_DATE_EPOCH=\"soon\""), "{stderr}");
}
