//! `builder save`: one tarball that skopeo reads as docker-archive and oci-archive.

use crate::util::env;
use std::process::Command;

#[test]
fn saved_tarball_passes_skopeo_inspect_in_both_forms() {
    let Some(env) = env("save_skopeo") else { return };
    if Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("SKIPPED save_skopeo: skopeo is not installed (scripts/test.sh installs it)");
        return;
    }
    let env = env.with_busybox();
    let ctx = env.context("save", &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\nCMD [\"cat\", \"/hi\"]\n")]);
    env.build_ok(&ctx, &["-t", "saved:1"]);
    let tar = env.work.path().join("saved.tar");
    env.ok(&["save", "-o", tar.to_str().unwrap(), "saved:1"]);
    for transport in ["docker-archive", "oci-archive"] {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("{transport}:{}", tar.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo inspect {transport}: {}", String::from_utf8_lossy(&out.stderr));
        let out = Command::new("skopeo")
            .args(["inspect", "--config"])
            .arg(format!("{transport}:{}", tar.display()))
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo inspect --config {transport}: {}", String::from_utf8_lossy(&out.stderr));
        let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["cat", "/hi"]));
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    }
}
