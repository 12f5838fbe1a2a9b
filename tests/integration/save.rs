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

/// Issue 14.1: a killed `save -o F` or `-o type=…,dest=F` left its temp file beside F
/// forever. A killed writer's temp file is one whose lock nobody holds; the next
/// output to that directory removes it, and leaves a live writer's (locked) alone.
#[test]
fn stale_output_temp_files_of_killed_writers_are_removed() {
    let Some(env) = env("stale_output_temps") else { return };
    let env = env.with_busybox();
    let out_dir = env.work.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let stale = |name: &str| {
        let path = out_dir.join(name);
        std::fs::write(&path, vec![0; 4096]).unwrap();
        path
    };
    let live_path = out_dir.join(".builder-save-live01");
    let live = std::fs::File::create(&live_path).unwrap();
    live.lock().unwrap();

    let dead_save = stale(".builder-save-a1b2c3");
    let dead_tar = stale(".builder-tar-d4e5f6");
    let saved = out_dir.join("busybox.tar");
    env.ok(&["save", "-o", saved.to_str().unwrap(), "busybox"]);
    assert!(saved.exists());
    assert!(!dead_save.exists() && !dead_tar.exists(), "stale temp files left beside the output");
    assert!(live_path.exists(), "a live writer's temp file was removed");

    let dead_save = stale(".builder-save-g7h8i9");
    let ctx = env.context("tar", &[("Dockerfile", "FROM busybox\n")]);
    let tarball = out_dir.join("fs.tar");
    env.build_ok(&ctx, &["-o", &format!("type=tar,dest={}", tarball.display())]);
    assert!(tarball.exists());
    assert!(!dead_save.exists(), "stale temp file left beside a tar output");
    assert!(live_path.exists());
    drop(live);
}
