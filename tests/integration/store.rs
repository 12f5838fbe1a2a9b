//! The store under use: save/load, du and prune, fsck, rmi, history, concurrent
//! builds and a build killed with SIGKILL.

use crate::util::{Env, env};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn digest_of(env: &Env, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", name])).unwrap();
    v["Digest"].as_str().unwrap().to_string()
}

fn build_total(env: &Env) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["du", "--json"])).unwrap();
    v["build_total"].as_u64().unwrap()
}

#[test]
fn save_then_load_into_a_fresh_store_keeps_the_digest() {
    let Some(env) = env("store_save_load") else { return };
    let env = env.with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\n")]);
    env.build_ok(&ctx, &["-t", "app:1"]);
    let digest = digest_of(&env, "app:1");
    for format in ["docker", "oci"] {
        let tar = env.work.path().join(format!("{format}.tar"));
        env.ok(&["save", "--format", format, "-o", path_str(&tar), "app:1"]);
        let names = std::process::Command::new("tar").arg("-tf").arg(&tar).output().unwrap().stdout;
        let names = String::from_utf8(names).unwrap();
        assert_eq!(names.lines().any(|l| l == "manifest.json"), format == "docker", "{names}");
        let other = Env { root: tempfile::tempdir().unwrap(), work: tempfile::tempdir().unwrap() };
        let out = other.ok(&["load", "-i", path_str(&tar)]);
        assert!(out.contains("app:1"), "{out}");
        assert_eq!(digest_of(&other, "app:1"), digest, "{format}");
        assert_eq!(other.ok(&["run", "--rm", "app:1", "cat", "/hi"]), "hi\n");
        let fsck = other.run(&["fsck", "--snapshots"]);
        assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
    }
}

#[test]
fn prune_keep_storage_brings_du_under_the_bound() {
    let Some(env) = env("store_prune") else { return };
    let env = env.with_busybox();
    for i in 0..3 {
        let dockerfile = format!("FROM busybox\nRUN head -c 3000000 /dev/urandom > /big{i}\n");
        let ctx = env.context(&format!("ctx{i}"), &[("Dockerfile", &dockerfile)]);
        env.build_ok(&ctx, &["-t", &format!("big:{i}")]);
    }
    // Named images hold their content; untagged, only the cache does.
    env.ok(&["rmi", "big:0", "big:1", "big:2"]);
    let du = env.ok(&["du"]);
    assert!(du.contains("cache only"), "{du}");
    let before = build_total(&env);
    // Held by busybox alone: a few MB; three 3 MB layers (blobs + snapshots) above it.
    let bound = before - 9_000_000;
    env.ok(&["prune", "--keep-storage", &bound.to_string()]);
    let after = build_total(&env);
    assert!(after <= bound, "du {after} > bound {bound} (was {before})");
    // What a ref holds is never pruned.
    env.ok(&["prune", "--all"]);
    assert_eq!(env.ok(&["run", "--rm", "busybox", "echo", "ok"]), "ok\n");
    assert!(env.run(&["fsck", "--snapshots"]).status.success());
}

#[test]
fn fsck_names_the_damaged_blob() {
    let Some(env) = env("store_fsck") else { return };
    let env = env.with_busybox();
    assert!(env.run(&["fsck"]).status.success());
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "busybox"])).unwrap();
    let layer = v["Layers"][0]["digest"].as_str().unwrap().to_string();
    let path = env.root.path().join("blobs/sha256").join(layer.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    let out = env.run(&["fsck"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&layer), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn rmi_by_id_removes_every_name_and_history_is_newest_first() {
    let Some(env) = env("store_rmi") else { return };
    let env = env.with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\nENV A=b\n")]);
    env.build_ok(&ctx, &["-t", "one", "-t", "two:2"]);
    let history = env.ok(&["history", "one"]);
    let lines: Vec<&str> = history.lines().collect();
    assert!(lines[0].starts_with("IMAGE") && lines[0].contains("CREATED BY"), "{history}");
    assert!(lines[1].contains("ENV A=b") && !lines[1].starts_with("<missing>"), "{history}");
    assert!(lines[2].contains("echo hi") && lines[2].starts_with("<missing>"), "{history}");
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "one"])).unwrap();
    let id = v["Id"].as_str().unwrap().trim_start_matches("sha256:")[..12].to_string();
    let out = env.ok(&["rmi", &id]);
    assert!(out.contains("Untagged: one:latest") && out.contains("Untagged: two:2"), "{out}");
    let out = env.run(&["rmi", &id]);
    assert!(!out.status.success());
}

fn spawn_build(env: &Env, ctx: &Path, extra: &[&str]) -> std::process::Child {
    let mut cmd = env.cmd(&["build", "--progress=plain"]);
    cmd.args(extra).arg(ctx).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

#[test]
fn four_concurrent_builds_and_a_prune_on_one_store() {
    let Some(env) = env("store_concurrent") else { return };
    let env = env.with_busybox();
    let mut children = Vec::new();
    for i in 0..4 {
        // Two share their first step, to race on the same snapshot and blobs.
        let dockerfile =
            format!("FROM busybox\nRUN echo shared > /s\nRUN echo {i} > /n && head -c 1000000 /dev/urandom > /r\n");
        let ctx = env.context(&format!("c{i}"), &[("Dockerfile", &dockerfile)]);
        children.push(spawn_build(&env, &ctx, &["-t", &format!("c:{i}")]));
    }
    let prune = env.cmd(&["prune"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(prune.wait_with_output().unwrap().status.success());
    for i in 0..4 {
        assert_eq!(env.ok(&["run", "--rm", &format!("c:{i}"), "cat", "/n"]), format!("{i}\n"));
    }
    let fsck = env.run(&["fsck", "--snapshots"]);
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
}

#[test]
fn a_build_killed_mid_export_leaves_a_sound_store() {
    let Some(env) = env("store_kill9") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN head -c 40000000 /dev/urandom > /r && yes hello | head -c 40000000 > /y\n",
        )],
    );
    env.build_ok(&ctx, &["-t", "big"]);
    let out = env.work.path().join("out.tar");
    let spec = format!("type=oci,dest={},compression=zstd,compression-level=19,force-compression=true", out.display());
    for delay in [50, 300, 800, 1500] {
        let mut child = spawn_build(&env, &ctx, &["-o", &spec]);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
        let fsck = env.run(&["fsck", "--snapshots"]);
        assert!(fsck.status.success(), "after a kill at {delay}ms: {}", String::from_utf8_lossy(&fsck.stdout));
        // The output is whole or absent, never half-written.
        if out.exists() {
            let listed = std::process::Command::new("tar").arg("-tf").arg(&out).output().unwrap();
            assert!(listed.status.success());
        }
    }
    env.build_ok(&ctx, &["-o", &spec]);
    let listed = std::process::Command::new("tar").arg("-tf").arg(&out).output().unwrap();
    assert!(String::from_utf8_lossy(&listed.stdout).contains("index.json"));
    assert!(env.run(&["fsck"]).status.success());
}

/// A damaged local base image is an error naming what is damaged, never a reason to
/// pull another one in its place.
#[test]
fn a_damaged_local_base_is_an_error_not_a_pull() {
    let Some(env) = crate::util::env("a_damaged_local_base_is_an_error_not_a_pull") else { return };
    let env = env.with_busybox();
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "busybox"])).unwrap();
    let text = inspect.to_string();
    let config = text.split("sha256:").nth(1).map(|s| s[..64].to_string()).unwrap();
    // Remove whichever blob of the image the config digest names.
    let blob = env.root.path().join("blobs/sha256").join(&config);
    assert!(blob.exists(), "{blob:?} ({text})");
    std::fs::remove_file(&blob).unwrap();
    let ctx = env.context("damaged", &[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let (ok, stdout, stderr) = env.build(&ctx, &[]);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains(&config[..12]), "the error names the damaged blob:\n{stderr}");
    assert!(!stderr.contains("registry-1.docker.io") && !stderr.contains("pull docker.io"), "{stderr}");
}
