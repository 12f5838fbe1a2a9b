//! What a build writes on stderr (issue 16): every line belongs to the progress
//! display, whose rawjson form is JSON only; pulls, pushes and cache exports are
//! steps with their bytes; tty lines fit the terminal; errors say each cause once.

use crate::registry::Registry;
use crate::util::{Env, env};
use serde_json::Value;
use std::path::Path;
use std::process::Output;

/// `busybox` pushed to the registry as `HOST/lib/busybox:latest`; returns that name.
fn push_busybox(env: &Env, registry: &Registry) -> String {
    let name = format!("{}/lib/busybox:latest", registry.host());
    env.ok(&["tag", "busybox:latest", &name]);
    env.ok(&["push", &name]);
    name
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_ok(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed\nstdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
}

#[test]
fn issue_16_rawjson_build_that_pulls_pushes_and_exports_its_cache_writes_only_json() {
    let test = "rawjson_only_json";
    let Some(env) = env(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    let env = env.with_busybox();
    let base = push_busybox(&env, &registry);
    let fresh = crate::util::env(test).unwrap();
    let ctx = fresh.context("app", &[("Dockerfile", &format!("FROM {base}\nRUN echo hi > /x\n"))]);
    let cache = format!("type=registry,ref={}/app/cache:1", registry.host());
    let name = format!("{}/app/image:1", registry.host());
    let args = ["build", "--progress=rawjson", "--cache-to", &cache, "--push", "-t", &name, ctx.to_str().unwrap()];
    let out = fresh.run(&args);
    assert_ok(&out, "rawjson build");
    assert!(text(&out.stdout).trim().starts_with("sha256:"), "stdout is the image digest: {}", text(&out.stdout));

    let events: Vec<Value> = text(&out.stderr)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}")))
        .collect();
    let steps = |prefix: &str| -> Vec<&Value> {
        events.iter().filter(|e| e["name"].as_str().is_some_and(|n| n.starts_with(prefix))).collect()
    };
    let started = |prefix: &str| steps(prefix).iter().any(|e| e["event"] == "started");
    assert!(started(&format!("[internal] load metadata for {base}")), "{events:#?}");
    assert!(started("exporting to image") && started("exporting cache to type=registry"), "{events:#?}");

    // The pull's bytes: each blob starts at 0 and ends complete, with its total.
    let pulled: Vec<&Value> =
        steps(&format!("[internal] pull {base}")).into_iter().filter(|e| e["event"] == "progress").collect();
    assert!(pulled.iter().any(|e| e["current"] == 0 && e["total"].as_u64() > Some(0)), "{pulled:#?}");
    let done: Vec<&&Value> = pulled.iter().filter(|e| e["completed"] == true).collect();
    assert!(done.len() >= 2, "config and layer complete: {pulled:#?}");
    assert!(done.iter().all(|e| e["current"] == e["total"] && e["id"].as_str().unwrap().starts_with("sha256:")));

    let parts: Vec<&str> = steps("exporting to image")
        .iter()
        .filter(|e| e["event"] == "progress")
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert!(parts.contains(&format!("naming to {name}").as_str()), "{parts:?}");
    assert!(parts.contains(&"pushing layers"), "{parts:?}");
    assert!(parts.iter().any(|p| p.starts_with(&format!("pushing manifest for {name}@sha256:"))), "{parts:?}");
    assert_eq!(events.last().unwrap()["event"], "finish");
}

#[test]
fn plain_build_shows_the_pull_as_steps_with_bytes() {
    let test = "plain_pull_steps";
    let Some(env) = env(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    let env = env.with_busybox();
    let base = push_busybox(&env, &registry);
    let fresh = crate::util::env(test).unwrap();
    let ctx = fresh.context("app", &[("Dockerfile", &format!("FROM {base}\nRUN true\n"))]);
    let (ok, _, stderr) = fresh.build(&ctx, &[]);
    assert!(ok, "{stderr}");
    let number = |name: &str| {
        let line = stderr.lines().find(|l| l.ends_with(name)).unwrap_or_else(|| panic!("no step {name:?}:\n{stderr}"));
        line.split_whitespace().next().unwrap().to_string()
    };
    let metadata = number(&format!("[internal] load metadata for {base}"));
    assert!(stderr.contains(&format!("{metadata} DONE")), "{stderr}");
    let pull = number(&format!("[internal] pull {base}"));
    // `#3 sha256:… 1.07MB / 1.07MB done`: each blob's bytes, as BuildKit writes them.
    let blobs: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&format!("{pull} sha256:"))).collect();
    assert!(blobs.iter().any(|l| l.contains(" / ") && l.ends_with(" done")), "{stderr}");
    assert!(stderr.contains(&format!("{pull} DONE")), "{stderr}");
    // Nothing outside a step.
    for line in stderr.lines().filter(|l| !l.is_empty()) {
        assert!(line.starts_with('#'), "a line outside the display: {line:?}\n{stderr}");
    }
}

#[test]
fn tty_lines_are_cut_to_the_terminal_width() {
    let test = "tty_width";
    let Some(env) = env(test) else { return };
    if !Path::new("/usr/bin/script").exists() {
        eprintln!("SKIPPED {test}: /usr/bin/script (util-linux) is not installed");
        return;
    }
    let env = env.with_busybox();
    let long = "x".repeat(150);
    let dockerfile = format!("FROM busybox\nRUN echo {long} && echo {long} >&2\nRUN echo second {long}\n");
    let ctx = env.context("wide", &[("Dockerfile", &dockerfile)]);
    let stdout = env.work.path().join("stdout");
    let command = format!(
        "stty rows 40 cols 60; exec {} --root {} build --progress=tty -t wide-{}:1 {} > {}",
        env!("CARGO_BIN_EXE_builder"),
        env.root.path().display(),
        "y".repeat(80),
        ctx.display(),
        stdout.display()
    );
    let out =
        std::process::Command::new("/usr/bin/script").args(["-q", "-e", "-c", &command, "/dev/null"]).output().unwrap();
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}");
    assert!(screen.contains("built in"), "{screen}");
    // indicatif fills each row to the width and lets the terminal move to the next,
    // so rows are told apart by position: a row that is the rest of a longer line
    // (it starts with the long text) is a line that wrapped.
    let rows = terminal_rows(&screen, 60);
    assert!(rows.iter().any(|r| r.contains("xxxx")), "{rows:#?}");
    for row in &rows {
        assert!(!row.starts_with('x') && !row.starts_with('y'), "a line wrapped: {row:?}\n{rows:#?}");
    }
}

/// The rows a terminal `width` columns wide shows `output` in: ANSI escapes removed,
/// lines split at line ends, carriage returns and cursor moves, then into rows.
fn terminal_rows(output: &str, width: usize) -> Vec<String> {
    let mut rows = Vec::new();
    let mut chars = output.chars().peekable();
    let mut line = String::new();
    let mut end_line = |line: &mut String| {
        let chars: Vec<char> = std::mem::take(line).chars().collect();
        rows.extend(chars.chunks(width).map(|row| row.iter().collect::<String>()));
    };
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                let csi = chars.next_if_eq(&'[').is_some();
                let mut command = ' ';
                for c in chars.by_ref() {
                    if !csi || c.is_ascii_alphabetic() {
                        command = c;
                        break;
                    }
                }
                // Colors and styles stay within the line; cursor moves end it.
                if command != 'm' {
                    end_line(&mut line);
                }
            }
            '\r' | '\n' => end_line(&mut line),
            c => line.push(c),
        }
    }
    end_line(&mut line);
    rows
}

#[test]
fn issue_16_errors_say_each_cause_once() {
    let test = "error_chain_once";
    let Some(env) = env(test) else { return };
    let env = env.with_busybox();
    // The sandbox cannot make the mountpoint: a set-up error with an OS error.
    let dockerfile = "FROM busybox\nRUN touch /f\nRUN --mount=type=tmpfs,target=/f/x true\n";
    let ctx = env.context("mount", &[("Dockerfile", dockerfile)]);
    let (ok, _, stderr) = env.build(&ctx, &[]);
    assert!(!ok);
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(error.matches("Not a directory").count(), 1, "{error}");
    let step = stderr.lines().find(|l| l.contains(" ERROR: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(step.matches("Not a directory").count(), 1, "{step}");
}

#[test]
fn issue_16_a_missing_base_image_is_said_once_and_a_login_is_hinted() {
    let test = "missing_base";
    let Some(env) = env(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    let missing = format!("{}/nope/nothing:1", registry.host());
    let ctx = env.context("missing", &[("Dockerfile", &format!("FROM {missing}\nRUN true\n"))]);
    let (ok, _, stderr) = env.build(&ctx, &[]);
    assert!(!ok);
    let error = stderr.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{stderr}"));
    assert_eq!(error.matches("manifest unknown").count(), 1, "{error}");
    assert_eq!(error.matches(&format!("base image {missing}")).count(), 1, "{error}");
    assert!(!stderr.contains("hint:"), "{stderr}");

    let Some(private) = Registry::start(test, Some(("carol", "secret-31337"))) else { return };
    let image = format!("{}/team/app:1", private.host());
    let ctx = env.context("private", &[("Dockerfile", &format!("FROM {image}\n"))]);
    let config = tempfile::tempdir().unwrap();
    let args = ["build", "--progress=plain", ctx.to_str().unwrap()];
    let out = env.cmd(&args).env("DOCKER_CONFIG", config.path()).output().unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let hint = format!("log in with `builder login {}`", private.host());
    assert_eq!(stderr.lines().last(), Some(format!("hint: {hint}").as_str()), "{stderr}");

    // A failed rawjson build is JSON to its last line, the error and its hint.
    let args = ["build", "--progress=rawjson", ctx.to_str().unwrap()];
    let out = env.cmd(&args).env("DOCKER_CONFIG", config.path()).output().unwrap();
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    let events: Vec<Value> = stderr.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    let last = events.last().unwrap();
    assert_eq!((&last["event"], &last["hint"]), (&Value::from("failed"), &Value::from(hint)), "{stderr}");
    assert!(last["message"].as_str().unwrap().contains("401"), "{stderr}");
}
