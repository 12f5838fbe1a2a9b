//! `builder pull` of a multi-platform image keeps its index under the name, as
//! containerd does: only the wanted platform's manifest, config and layers are
//! fetched, `pull --platform` adds another platform's under the same index, and a
//! build `FROM` the name, `inspect`, `fsck`, `prune`, `tag`, `push` and
//! `--print graph` read the index whatever platforms it holds. The two bases come
//! offline from Debian's busybox-static packages (see platform.rs).

use crate::platform::arm64_busybox;
use crate::registry::Registry;
use crate::util::{Env, busybox_tar, env};
use std::collections::BTreeSet;
use std::process::Command;

/// The raw manifest or index skopeo reads for `reference`.
fn raw(reference: &str) -> Vec<u8> {
    let out = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", &format!("docker://{reference}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect --raw {reference}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// `builder inspect NAME` as JSON.
fn inspect(env: &Env, name: &str) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["inspect", name])).unwrap()
}

/// The platforms `inspect` says a name's index holds.
fn platforms(inspected: &serde_json::Value) -> Vec<String> {
    let list = inspected["Platforms"].as_array().unwrap_or_else(|| panic!("no Platforms: {inspected}"));
    list.iter().map(|p| p["Platform"].as_str().unwrap().to_string()).collect()
}

/// The config and layer digests of the manifest `digest` of `repository`.
fn blobs_of(repository: &str, digest: &str) -> BTreeSet<String> {
    let manifest: serde_json::Value = serde_json::from_slice(&raw(&format!("{repository}@{digest}"))).unwrap();
    let mut blobs = BTreeSet::from([manifest["config"]["digest"].as_str().unwrap().to_string()]);
    for layer in manifest["layers"].as_array().unwrap() {
        blobs.insert(layer["digest"].as_str().unwrap().to_string());
    }
    blobs
}

#[test]
fn a_pulled_index_stays_the_name_and_gains_platforms_one_pull_at_a_time() {
    let test = "a_pulled_index_stays_the_name_and_gains_platforms_one_pull_at_a_time";
    let Some(env) = env(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    let Some(arm64_tar) = arm64_busybox(test, env.work.path()) else { return };
    if image_spec::host_platform().architecture != "amd64" {
        eprintln!("SKIPPED {test}: written for an amd64 machine (this one is {})", image_spec::host_platform());
        return;
    }
    env.ok(&["import", "--platform", "linux/amd64", busybox_tar().to_str().unwrap(), "bb-amd64:1"]);
    env.ok(&["import", "--platform", "linux/arm64", arm64_tar.to_str().unwrap(), "bb-arm64:1"]);
    let repository = format!("{}/it/busybox", registry.host());
    let base = format!("{repository}:multi");
    let ctx = env.context("base", &[("Dockerfile", "ARG TARGETARCH\nFROM bb-$TARGETARCH:1\n")]);
    env.build_ok(&ctx, &["--platform", "linux/amd64,linux/arm64", "--push", "-t", &base]);
    let index_bytes = raw(&base);
    let index_digest = image_spec::Digest::of(&index_bytes).to_string();
    let index: serde_json::Value = serde_json::from_slice(&index_bytes).unwrap();
    let entry = |arch: &str| {
        let entries = index["manifests"].as_array().unwrap();
        let found = entries.iter().find(|m| m["platform"]["architecture"] == arch).unwrap();
        found["digest"].as_str().unwrap().to_string()
    };
    let (amd64, arm64) = (entry("amd64"), entry("arm64"));
    let (amd64_blobs, arm64_blobs) = (blobs_of(&repository, &amd64), blobs_of(&repository, &arm64));

    // A fresh store pulls the host's platform: the name is the index, only amd64's
    // blobs came.
    let fresh = crate::util::env(test).unwrap();
    let before = registry.blob_downloads().len();
    let printed = fresh.ok(&["pull", &base]);
    assert_eq!(printed.trim(), amd64, "pull prints the platform's manifest");
    let fetched: BTreeSet<String> = registry.blob_downloads().split_off(before).into_iter().collect();
    assert_eq!(fetched, amd64_blobs, "the first pull fetches amd64's config and layers only");
    let inspected = inspect(&fresh, &base);
    assert_eq!(inspected["Index"], index_digest.as_str(), "{inspected}");
    assert_eq!(inspected["Digest"], amd64.as_str(), "{inspected}");
    assert_eq!(platforms(&inspected), ["linux/amd64"]);

    // A build FROM the name for the host reads the store: nothing is asked of the
    // registry.
    let asked = registry.requests().len();
    let app = fresh.context("app", &[("Dockerfile", &format!("FROM {base}\nRUN echo built > /built\n"))]);
    let (ok, _, log) = fresh.build(&app, &["-t", "app:1"]);
    assert!(ok, "{log}");
    assert_eq!(registry.requests().len(), asked, "the build pulled again:\n{log}");
    assert_eq!(fresh.ok(&["run", "--rm", "app:1", "cat", "/built"]).trim(), "built");

    // `pull --platform linux/arm64` adds arm64's image under the same index, fetching
    // only its blobs.
    let before = registry.blob_downloads().len();
    let printed = fresh.ok(&["pull", "--platform", "linux/arm64", &base]);
    assert_eq!(printed.trim(), arm64);
    let fetched: BTreeSet<String> = registry.blob_downloads().split_off(before).into_iter().collect();
    assert_eq!(fetched, arm64_blobs, "the second pull fetches arm64's config and layers only");
    let inspected = inspect(&fresh, &base);
    assert_eq!(inspected["Index"], index_digest.as_str(), "{inspected}");
    assert_eq!(platforms(&inspected), ["linux/amd64", "linux/arm64"]);
    let images = fresh.ok(&["images"]);
    assert!(images.contains("linux/amd64") && images.contains("linux/arm64"), "{images}");

    // fsck passes; prune keeps both platforms' images whole.
    fresh.ok(&["fsck"]);
    fresh.ok(&["prune", "--all"]);
    assert_eq!(platforms(&inspect(&fresh, &base)), ["linux/amd64", "linux/arm64"]);
    fresh.ok(&["fsck"]);

    // `--print graph` of a two-platform build shows both platforms' vertices.
    let graph = fresh.build_ok(&app, &["--print", "graph", "--platform", "linux/amd64,linux/arm64"]);
    for platform in ["linux/amd64", "linux/arm64"] {
        let run = format!("\"[{platform} 2/2] RUN echo built > /built\"");
        assert!(graph.contains(&run), "{platform} missing from:\n{graph}");
    }
    assert!(graph.contains("platform=\"linux/arm64\""), "{graph}");
    assert!(graph.contains("\ntarget linux/arm64 #3\n"), "{graph}");

    // Another store pulls arm64 only: tag, inspect and push read the index, and the
    // push sends the one platform it holds.
    let arm_only = crate::util::env(test).unwrap();
    arm_only.ok(&["pull", "--platform", "linux/arm64", &base]);
    let copy = format!("{}/it/copy:arm64", registry.host());
    arm_only.ok(&["tag", &base, &copy]);
    let inspected = inspect(&arm_only, &copy);
    assert_eq!((inspected["Index"].as_str(), inspected["Digest"].as_str()), (Some(&*index_digest), Some(&*arm64)));
    arm_only.ok(&["fsck"]);
    arm_only.ok(&["push", &copy]);
    let pushed: serde_json::Value = serde_json::from_slice(&raw(&copy)).unwrap();
    let archs: Vec<&str> = pushed["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect();
    assert_eq!(archs, ["arm64"], "{pushed}");
    let out = arm_only.run(&["run", "--rm", &copy, "true"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("has no image for platform linux/amd64 (it has: linux/arm64)"),
        "{stderr}"
    );
}
