//! `builder push/pull/login/logout` and `build --push` against a real
//! `docker-registry` on 127.0.0.1 (the `registry` crate's harness). The library-level
//! tests (faults, tokens, mounts, indexes) live in src/transfer/tests.rs; these drive
//! the binary.
//! They skip, saying why, when the registry binary is missing, when not root, or
//! while the commands are not wired into the CLI yet.

use crate::util::{Env, env};
use std::path::Path;
use std::process::{Command, Stdio};

/// The registry harness of the `registry` crate (its `testing` feature).
pub(crate) use ::registry::testing::Registry;

/// Whether `builder <command>` exists yet.
fn wired(env: &Env, test: &str, command: &str) -> bool {
    let ok = env.run(&[command, "--help"]).status.success();
    if !ok {
        eprintln!("SKIPPED {test}: `builder {command}` is not wired into the CLI yet");
    }
    ok
}

/// `builder` with its own docker config dir, so the user's credentials play no part.
fn with_config(env: &Env, config: &Path, args: &[&str]) -> std::process::Output {
    env.cmd(args).env("DOCKER_CONFIG", config).output().unwrap()
}

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn push_then_pull_into_a_fresh_store_and_run() {
    let Some(env) = env("registry_round_trip") else { return };
    if !wired(&env, "registry_round_trip", "push") || !wired(&env, "registry_round_trip", "pull") {
        return;
    }
    let Some(registry) = Registry::start("registry_round_trip", None) else { return };
    let env = env.with_busybox();
    let config = tempfile::tempdir().unwrap();
    let name = format!("{}/it/busybox:1", registry.host());
    let ctx = env.context("push", &[("Dockerfile", "FROM busybox\nRUN echo pushed > /msg\nCMD [\"cat\", \"/msg\"]\n")]);
    env.build_ok(&ctx, &["-t", &name]);
    ok(&with_config(&env, config.path(), &["push", &name]), "push");

    let fresh = crate::util::env("registry_round_trip").unwrap();
    ok(&with_config(&fresh, config.path(), &["pull", &name]), "pull");
    let out = ok(&with_config(&fresh, config.path(), &["run", "--rm", &name]), "run");
    assert_eq!(out.trim(), "pushed");

    // A Dockerfile whose FROM only the registry has builds in the fresh store.
    let other = crate::util::env("registry_round_trip").unwrap();
    let ctx = other.context("from", &[("Dockerfile", &format!("FROM {name}\nRUN cat /msg > /copy\n"))]);
    let out = other
        .cmd(&["build", "--progress=plain", "-t", "derived:1", ctx.to_str().unwrap()])
        .env("DOCKER_CONFIG", config.path())
        .output()
        .unwrap();
    ok(&out, "build FROM a registry image");
}

#[test]
fn login_with_wrong_password_fails_clearly_without_echoing_it() {
    let Some(env) = env("registry_login") else { return };
    if !wired(&env, "registry_login", "login") {
        return;
    }
    let password = "Right-Password-31337";
    let Some(registry) = Registry::start("registry_login", Some(("carol", password))) else { return };
    let config = tempfile::tempdir().unwrap();
    let login = |secret: &str| {
        let mut child = env
            .cmd(&["login", "-u", "carol", "--password-stdin", &registry.host()])
            .env("DOCKER_CONFIG", config.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(format!("{secret}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let wrong = "Wrong-Password-2718";
    let out = login(wrong);
    assert!(!out.status.success());
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(all.contains("authentication failed") && !all.contains(wrong), "{all}");
    let out = login(password);
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !all.contains(password), "{all}");
    let saved = std::fs::read_to_string(config.path().join("config.json")).unwrap();
    assert!(saved.contains(&registry.host()) && !saved.contains(password));
    ok(&with_config(&env, config.path(), &["logout", &registry.host()]), "logout");
}

#[test]
fn skopeo_interop_both_ways() {
    let Some(env) = env("registry_skopeo") else { return };
    if Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("SKIPPED registry_skopeo: skopeo is not installed (scripts/test.sh installs it)");
        return;
    }
    if !wired(&env, "registry_skopeo", "push") || !wired(&env, "registry_skopeo", "pull") {
        return;
    }
    let Some(registry) = Registry::start("registry_skopeo", None) else { return };
    let env = env.with_busybox();
    let config = tempfile::tempdir().unwrap();
    let skopeo = |args: &[&str]| {
        let out = Command::new("skopeo").args(args).output().unwrap();
        assert!(out.status.success(), "skopeo {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };

    // skopeo pushes (from a `builder save` archive), builder pulls and runs.
    let ctx = env
        .context("interop", &[("Dockerfile", "FROM busybox\nRUN echo via-skopeo > /msg\nCMD [\"cat\", \"/msg\"]\n")]);
    env.build_ok(&ctx, &["-t", "interop:1"]);
    let tar = env.work.path().join("interop.tar");
    env.ok(&["save", "-o", tar.to_str().unwrap(), "interop:1"]);
    let by_skopeo = format!("{}/interop/by-skopeo:1", registry.host());
    skopeo(&[
        "--insecure-policy",
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", tar.display()),
        &format!("docker://{by_skopeo}"),
    ]);
    let fresh = crate::util::env("registry_skopeo").unwrap();
    ok(&with_config(&fresh, config.path(), &["pull", &by_skopeo]), "pull of a skopeo-pushed image");
    let out = ok(&with_config(&fresh, config.path(), &["run", "--rm", &by_skopeo]), "run");
    assert_eq!(out.trim(), "via-skopeo");

    // builder pushes, skopeo inspects and copies back out.
    let by_builder = format!("{}/interop/by-builder:1", registry.host());
    env.ok(&["tag", "interop:1", &by_builder]);
    let pushed = ok(&with_config(&env, config.path(), &["push", &by_builder]), "push");
    let inspect: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--tls-verify=false", &format!("docker://{by_builder}")])).unwrap();
    let digest = inspect["Digest"].as_str().unwrap().to_string();
    assert!(pushed.contains(&digest), "push reported {pushed:?}, the registry has {digest}");
    let out_dir = env.work.path().join("copied");
    skopeo(&[
        "--insecure-policy",
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{by_builder}"),
        &format!("oci:{}:1", out_dir.display()),
    ]);
    assert!(out_dir.join("index.json").exists());
}

#[test]
fn second_push_uploads_no_blob() {
    let Some(env) = env("registry_second_push") else { return };
    if !wired(&env, "registry_second_push", "push") {
        return;
    }
    let Some(registry) = Registry::start("registry_second_push", None) else { return };
    let env = env.with_busybox();
    let config = tempfile::tempdir().unwrap();
    let name = format!("{}/again/busybox:1", registry.host());
    env.ok(&["tag", "busybox:latest", &name]);
    ok(&with_config(&env, config.path(), &["push", &name]), "first push");
    let writes = registry.blob_writes();
    assert!(writes > 0);
    ok(&with_config(&env, config.path(), &["push", &name]), "second push");
    assert_eq!(registry.blob_writes(), writes, "the second push uploaded blobs");
}

#[test]
fn build_push_then_pull_by_digest() {
    let Some(env) = env("registry_build_push") else { return };
    if !wired(&env, "registry_build_push", "pull") {
        return;
    }
    let Some(registry) = Registry::start("registry_build_push", None) else { return };
    let env = env.with_busybox();
    let config = tempfile::tempdir().unwrap();
    let name = format!("{}/built/app:2", registry.host());
    let ctx = env
        .context("bp", &[("Dockerfile", "FROM busybox\nRUN echo built-and-pushed > /msg\nCMD [\"cat\", \"/msg\"]\n")]);
    let out = env
        .cmd(&["build", "--progress=plain", "--push", "-t", &name, ctx.to_str().unwrap()])
        .env("DOCKER_CONFIG", config.path())
        .output()
        .unwrap();
    ok(&out, "build --push");
    assert!(registry.blob_writes() > 0, "build --push uploaded nothing");

    let fresh = crate::util::env("registry_build_push").unwrap();
    let digest = ok(&with_config(&fresh, config.path(), &["pull", &name]), "pull").trim().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    let by_digest = format!("{}/built/app@{digest}", registry.host());
    let again = crate::util::env("registry_build_push").unwrap();
    ok(&with_config(&again, config.path(), &["pull", &by_digest]), "pull by digest");
    let out = ok(&with_config(&again, config.path(), &["run", "--rm", &by_digest]), "run by digest");
    assert_eq!(out.trim(), "built-and-pushed");
}
