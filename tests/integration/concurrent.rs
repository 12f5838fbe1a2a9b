//! Concurrent builds on one store share identical in-flight steps.

use crate::util::env;
use std::process::Stdio;

/// Issue 14 (10): three identical builds ran the same 1 s step three times; BuildKit
/// runs an identical vertex once. Now the first claims the step's key and the others
/// wait for it and hit its record.
#[test]
fn identical_steps_of_concurrent_builds_run_once() {
    let Some(env) = env("concurrent_identical") else { return };
    let env = env.with_busybox();
    let dockerfile = "FROM busybox\nRUN sleep 2 && head -c 16 /dev/urandom | od -An -tx1 > /once\n";
    let ctx = env.context("c", &[("Dockerfile", dockerfile)]);
    let children: Vec<_> = (0..3)
        .map(|i| {
            let mut cmd = env.cmd(&["build", "--progress=plain", "-t", &format!("same:{i}")]);
            cmd.arg(&ctx).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let mut ran = 0;
    let mut waited = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let step = stderr.lines().filter(|l| l.contains("RUN sleep 2")).collect::<Vec<_>>().join("\n");
        if !stderr.lines().any(|l| l.contains("CACHED")) {
            ran += 1;
        }
        if stderr.contains("waiting for another build running the same step") {
            waited += 1;
        }
        assert!(!step.is_empty(), "{stderr}");
    }
    assert_eq!(ran, 1, "the step ran in {ran} builds");
    assert!(waited >= 1, "no build waited for another");
    // One result, three names.
    let once: Vec<String> = (0..3).map(|i| env.ok(&["run", "--rm", &format!("same:{i}"), "cat", "/once"])).collect();
    assert!(once.iter().all(|o| *o == once[0]), "{once:?}");
    let claims = env.root.path().join("cache/claims");
    assert_eq!(
        std::fs::read_dir(&claims).map(|d| d.count()).unwrap_or(0),
        0,
        "claim files left in {}",
        claims.display()
    );
}
