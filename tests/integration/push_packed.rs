//! Packed layers go to registries without becoming files (issue 19): a cache export
//! and a push of uncompressed layers send the tar made again from the snapshot, a cut
//! upload resumes from it, and a snapshot changed behind the builder's back fails the
//! push naming the layer.

use crate::registry::Registry;
use crate::util::{Env, env};
use ::registry::testing::{FaultKind, Proxy};
use std::path::{Path, PathBuf};
use std::process::Output;

const EPOCH: &str = "1700000000";
const DOCKERFILE: &str = "FROM busybox\nCOPY data/ /data/\nRUN echo ran > /ran && cat /data/a.txt > /copy\n";
/// Bigger than the registry client's 16 MiB chunk: the COPY's layer goes in PATCHes.
const BIG: usize = 20 << 20;

fn store(test: &str) -> Option<Env> {
    Some(env(test)?.with_busybox_at(EPOCH))
}

fn project(env: &Env) -> PathBuf {
    let big: String = (0..BIG / 32).map(|i| format!("{i:031}\n")).collect();
    env.context("proj", &[("Dockerfile", DOCKERFILE), ("data/a.txt", "alpha\n"), ("data/big", &big)])
}

fn build(env: &Env, ctx: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["build", "--progress=plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    env.cmd(&args).env("SOURCE_DATE_EPOCH", EPOCH).env("BUILDER_REGISTRY_RETRIES", "2").output().unwrap()
}

fn build_ok(env: &Env, ctx: &Path, extra: &[&str]) -> String {
    let out = build(env, ctx, extra);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build {extra:?} failed\n{stderr}");
    stderr
}

/// The diffIDs of an image's layers above busybox's.
fn built_diff_ids(env: &Env, image: &str) -> Vec<String> {
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
    inspect["Layers"].as_array().unwrap()[1..].iter().map(|l| l["diff_id"].as_str().unwrap().to_string()).collect()
}

/// Each of `diff_ids` is its snapshot alone: packed, and no uncompressed blob file.
fn assert_packed(env: &Env, diff_ids: &[String], after: &str) {
    for diff_id in diff_ids {
        let hex = diff_id.trim_start_matches("sha256:");
        let blob = env.root.path().join("blobs/sha256").join(hex);
        assert!(!blob.exists(), "{after}: layer {diff_id} was written as a blob file");
        assert!(env.root.path().join("packed").join(format!("{hex}.json")).is_file(), "{after}: {diff_id} not packed");
    }
}

fn upstream_port(registry: &Registry) -> u16 {
    registry.host().rsplit(':').next().unwrap().parse().unwrap()
}

/// A fresh store pulls `name` and finds the build's layers and files in it.
fn pulled_runs(test: &str, name: &str, diff_ids: &[String]) {
    let third = store(test).unwrap();
    third.ok(&["pull", name]);
    assert_eq!(built_diff_ids(&third, name), diff_ids);
    assert_eq!(third.ok(&["run", "--rm", name, "sh", "-c", "cat /copy; wc -c < /data/big"]), format!("alpha\n{BIG}\n"));
}

#[test]
fn cache_export_and_uncompressed_push_stream_packed_layers() {
    let test = "push_packed_stream";
    let Some(first) = store(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    let ctx = project(&first);
    let cache_ref = format!("{}/pp/app:cache", registry.host());
    build_ok(&first, &ctx, &["-t", "app:1", "--cache-to", &format!("type=registry,ref={cache_ref},mode=max")]);
    let diff_ids = built_diff_ids(&first, "app:1");
    assert_eq!(diff_ids.len(), 2);
    assert_packed(&first, &diff_ids, "cache export");

    let name = format!("{}/pp/app:1", registry.host());
    build_ok(&first, &ctx, &["-o", &format!("type=registry,name={name},compression=uncompressed")]);
    assert_packed(&first, &diff_ids, "push of uncompressed layers");
    // The registry holds the layers under their diffIDs (uncompressed), whole.
    pulled_runs(test, &name, &diff_ids);

    // A fresh store gets every step from the cache.
    let second = store(test).unwrap();
    let ctx2 = project(&second);
    let stderr = build_ok(&second, &ctx2, &["-t", "app:2", "--cache-from", &format!("type=registry,ref={cache_ref}")]);
    assert_eq!(stderr.matches("CACHED").count(), 2, "{stderr}");
    assert_eq!(built_diff_ids(&second, "app:2"), diff_ids);
    assert_eq!(second.ok(&["run", "--rm", "app:2", "cat", "/ran"]), "ran\n");

    if std::process::Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("SKIPPED {test} (skopeo inspect): skopeo is not installed");
        return;
    }
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", &format!("docker://{name}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers = inspected["Layers"].as_array().unwrap();
    assert_eq!(layers[1..].iter().map(|l| l.as_str().unwrap().to_string()).collect::<Vec<_>>(), diff_ids);
}

#[test]
fn a_packed_layer_upload_cut_midway_resumes_with_the_right_digest() {
    let test = "push_packed_cut";
    let Some(env) = store(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    let ctx = project(&env);
    build_ok(&env, &ctx, &["-t", "app:1"]);
    let diff_ids = built_diff_ids(&env, "app:1");
    let proxy = Proxy::start(upstream_port(&registry));
    // The COPY's first chunk and the RUN's whole-blob PUT are both cut.
    proxy.add_fault("PATCH", "/blobs/uploads", FaultKind::CutRequest(5 << 20), 1);
    proxy.add_fault("PUT", "/blobs/uploads", FaultKind::CutRequest(1000), 1);
    let name = format!("{}/pp/cut:1", proxy.host());
    let stderr = build_ok(&env, &ctx, &["-o", &format!("type=registry,name={name},compression=uncompressed")]);
    assert_eq!(proxy.pending_faults(), 0, "a fault was not hit:\n{stderr}");
    assert!(stderr.contains("resuming at") || stderr.contains("restarting the upload"), "{stderr}");
    assert_packed(&env, &diff_ids, "a cut push");
    pulled_runs(test, &format!("{}/pp/cut:1", registry.host()), &diff_ids);
}

#[test]
fn a_snapshot_changed_behind_the_builders_back_fails_the_push_naming_the_layer() {
    let test = "push_packed_tamper";
    let Some(env) = store(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    let ctx = project(&env);
    build_ok(&env, &ctx, &["-t", "app:1"]);
    let copy_layer = built_diff_ids(&env, "app:1")[0].clone();
    let hex = copy_layer.trim_start_matches("sha256:");
    let packed: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.root.path().join("packed").join(format!("{hex}.json"))).unwrap())
            .unwrap();
    let snapshot = packed["snapshot"].as_str().unwrap().trim_start_matches("sha256:").to_string();
    let snapshot_dir = env.root.path().join("snapshots").join(&snapshot);
    std::fs::write(snapshot_dir.join("data/a.txt"), "tampered\n").unwrap();

    let name = format!("{}/pp/tampered:1", registry.host());
    let started = std::time::Instant::now();
    let out = build(&env, &ctx, &["-o", &format!("type=registry,name={name},compression=uncompressed")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a push of a tampered layer succeeded\n{stderr}");
    assert!(stderr.contains(&copy_layer) && stderr.contains("changed behind"), "{stderr}");
    // Not retried as if the network had failed.
    assert!(!stderr.contains("restarting the upload"), "{stderr}");
    assert!(started.elapsed().as_secs() < 60);
    assert!(!env.root.path().join("blobs/sha256").join(hex).exists());
}
