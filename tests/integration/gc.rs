//! GC beside running work (leases) and the automatic GC after builds.

use crate::util::{Env, env};
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

fn build_total(env: &Env) -> u64 {
    let v: serde_json::Value = serde_json::from_str(&env.ok(&["du", "--json"])).unwrap();
    v["build_total"].as_u64().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Issue 14 (4): prune took the store lock exclusively and waited for every running
/// build and container; now it runs beside them and spares what they use.
#[test]
fn prune_runs_beside_a_running_container_and_a_build() {
    let Some(env) = env("gc_beside") else { return };
    let env = env.with_busybox();
    let ctx = env.context("b", &[("Dockerfile", "FROM busybox\nRUN echo b > /b\n")]);
    env.build_ok(&ctx, &["-t", "b:1"]);

    let container = env.cmd(&["run", "--rm", "b:1", "sh", "-c", "sleep 10; cat /b"]);
    let mut container = { container }.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let slow = "FROM busybox\nRUN head -c 2000000 /dev/urandom > /r\nRUN sleep 3\nRUN wc -c < /r > /n\n";
    let slow = env.context("slow", &[("Dockerfile", slow)]);
    let mut build = env.cmd(&["build", "--progress=plain", "-t", "slow:1"]);
    let build = build.arg(&slow).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(2));

    // Untag both images in use, then prune everything prune may take.
    env.ok(&["rmi", "b:1", "busybox"]);
    env.ok(&["prune", "--all"]);
    assert!(container.try_wait().unwrap().is_none(), "prune waited for the container to end");

    let built = build.wait_with_output().unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    let ran = container.wait_with_output().unwrap();
    assert!(ran.status.success(), "{}", stderr(&ran));
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "b\n");
    assert_eq!(env.ok(&["run", "--rm", "slow:1", "cat", "/n"]).trim(), "2000000");
    let fsck = env.run(&["fsck", "--snapshots"]);
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));

    // Once nothing uses them, what only the untagged images held goes.
    let before = build_total(&env);
    env.ok(&["prune", "--all"]);
    assert!(build_total(&env) < before, "nothing reclaimed after the container ended");
    assert!(env.run(&["fsck", "--snapshots"]).status.success());
}

fn build_with(env: &Env, context: &Path, vars: &[(&str, &str)]) -> Output {
    let mut cmd = env.cmd(&["build", "--progress=plain", "-t", "app:latest"]);
    cmd.arg(context).envs(vars.iter().copied());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    out
}

/// Issue 14 (5): 50 one-file-change builds grew a store by 10 MB each until a manual
/// prune; the automatic GC keeps the build data under its budget.
#[test]
fn automatic_gc_keeps_build_data_under_the_budget() {
    let Some(env) = env("gc_auto") else { return };
    let env = env.with_busybox();
    let base = build_total(&env);
    let budget = base + 16_000_000;
    let budget_text = budget.to_string();
    let vars = [("BUILDER_GC_KEEP_STORAGE", budget_text.as_str()), ("BUILDER_GC_INTERVAL", "0")];
    let dockerfile = "FROM busybox\nCOPY f /f\nRUN head -c 3000000 /dev/urandom > /r\n";
    let mut collected = 0;
    for i in 0..8 {
        let ctx = env.context("app", &[("Dockerfile", dockerfile), ("f", &i.to_string())]);
        let out = build_with(&env, &ctx, &vars);
        if stderr(&out).contains("automatic GC: build data") {
            collected += 1;
        }
        let total = build_total(&env);
        // Each build adds ~3 MB (a 3 MB layer kept as its snapshot, no tar blob): 8
        // would be 24 MB.
        assert!(total <= budget, "build {i}: build data {total} over the budget {budget}");
    }
    assert!(collected > 0, "the automatic GC never ran");
    let du = env.cmd(&["du"]).envs(vars.iter().copied()).output().unwrap();
    assert!(String::from_utf8_lossy(&du.stdout).contains("automatic GC keeps it under"), "{}", stderr(&du));
    assert_eq!(env.ok(&["run", "--rm", "app:latest", "cat", "/f"]), "7");
    assert!(env.run(&["fsck", "--snapshots"]).status.success());

    // Turned off, nothing is collected.
    let off = [("BUILDER_GC", "false"), ("BUILDER_GC_INTERVAL", "0")];
    let before = build_total(&env);
    for i in 8..10 {
        let ctx = env.context("app", &[("Dockerfile", dockerfile), ("f", &i.to_string())]);
        assert!(!stderr(&build_with(&env, &ctx, &off)).contains("automatic GC"));
    }
    assert!(build_total(&env) > before + 5_000_000);
}

/// The store prints nothing; a command that waits on the gate a prune holds while it
/// decides is told so by the CLI (`store::Store::on_lock_wait`).
#[test]
fn a_command_waiting_for_a_prune_says_so() {
    use std::io::{BufRead as _, BufReader, Read as _};
    let Some(env) = env("gc_gate_wait") else { return };
    // Held as prune holds it.
    let gate = std::fs::File::create(env.root.path().join("lock")).unwrap();
    gate.lock().unwrap();
    let out = env.work.path().join("out.tar");
    let mut child =
        env.cmd(&["save", "-o", out.to_str().unwrap(), "nothing:here"]).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        stderr.read_line(&mut line).unwrap();
        tx.send(line).unwrap();
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).unwrap();
        rest
    });
    let first = rx.recv_timeout(Duration::from_secs(30));
    drop(gate);
    let status = child.wait().unwrap();
    let rest = reader.join().unwrap();
    let first = first.expect("no line on stderr while the gate was held");
    assert!(first.contains("waiting for a prune to finish") && first.contains("lock"), "{first}");
    // Then it went on, and failed for its own reason.
    assert!(!status.success());
    assert!(rest.contains("nothing"), "{rest}");
}
