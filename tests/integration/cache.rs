//! The build cache end to end: no-op rebuilds, precise invalidation, parallel
//! stages, and `--explain`.

use crate::util::{Env, env};
use std::path::Path;

/// A project whose RUN steps leave a side effect (a fresh random token) in the image,
/// so a step that re-ran is visible from the outside.
fn project(env: &Env) -> std::path::PathBuf {
    env.context(
        "proj",
        &[
            (
                "Dockerfile",
                r#"FROM busybox AS deps
COPY deps.txt /deps.txt
RUN head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' > /deps.token

FROM busybox
ARG VERSION=1.0
COPY --from=deps /deps.token /deps.token
COPY src/ /app/src/
RUN head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' > /app.token && echo $VERSION > /version
"#,
            ),
            ("deps.txt", "libfoo 1\n"),
            ("src/main.rs", "fn main() {}\n"),
            ("src/lib.rs", "pub fn x() {}\n"),
            ("README.md", "not copied\n"),
            (".dockerignore", "*.log\n"),
        ],
    )
}

fn tokens(env: &Env, image: &str) -> (String, String) {
    let out = env.ok(&["run", "--rm", image, "sh", "-c", "cat /deps.token; echo; cat /app.token"]);
    let mut lines = out.lines();
    (lines.next().unwrap().to_string(), lines.next().unwrap().to_string())
}

fn write(dir: &Path, rel: &str, content: &str) {
    std::fs::write(dir.join(rel), content).unwrap();
}

#[test]
fn unchanged_rebuild_runs_nothing_and_unselected_changes_run_nothing() {
    let Some(env) = env("cache_noop") else { return };
    let env = env.with_busybox();
    let ctx = project(&env);
    env.build_ok(&ctx, &["-t", "p:1"]);
    let first = tokens(&env, "p:1");

    env.build_ok(&ctx, &["-t", "p:2"]);
    assert_eq!(tokens(&env, "p:2"), first, "an unchanged rebuild re-ran a step");

    // Files no COPY selects, or that .dockerignore hides, change nothing.
    write(&ctx, "README.md", "edited\n");
    write(&ctx, "debug.log", "new noise\n");
    let (ok, _, stderr) = env.build(&ctx, &["-t", "p:3"]);
    assert!(ok, "{stderr}");
    assert_eq!(tokens(&env, "p:3"), first, "a change to an unselected file re-ran a step");
    let layers = |name: &str| -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", name])).unwrap();
        v["RootFS"]["diff_ids"].clone()
    };
    assert_eq!(layers("p:1"), layers("p:3"));
}

/// An unchanged build gives the same image, as BuildKit's does: a cached step's layer
/// keeps the time the build that made it gave it, and the other history entries and
/// the image take their times from the layers. A changed step gives a new image in
/// which the steps before it keep their times.
#[test]
fn an_unchanged_rebuild_gives_the_same_image() {
    let Some(env) = env("cache_same_image") else { return };
    let env = env.with_busybox();
    let ctx = project(&env);
    let first = env.build_ok(&ctx, &["-t", "p:1"]);
    let again = env.build_ok(&ctx, &["-t", "p:2"]);
    assert_eq!(again, first, "an unchanged rebuild gave another image");
    // `images` lists both names with one id, dated as the image says.
    let listing = env.ok(&["images"]);
    assert!(listing.lines().next().unwrap().contains("CREATED"), "{listing}");
    let ids: Vec<&str> = listing
        .lines()
        .filter(|l| l.starts_with("p "))
        .map(|l| {
            assert!(l.contains(" ago "), "{l}");
            l.split_whitespace().nth(2).unwrap()
        })
        .collect();
    assert_eq!(ids.len(), 2, "{listing}");
    assert_eq!(ids[0], ids[1], "{listing}");

    let history = |name: &str| -> Vec<(String, String)> {
        let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", name])).unwrap();
        let created = v["Created"].as_str().unwrap().to_string();
        let mut entries: Vec<(String, String)> = v["History"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["created_by"].as_str().unwrap_or("").to_string(), h["created"].as_str().unwrap().to_string()))
            .collect();
        // The image is as old as its newest entry.
        assert_eq!(created, entries.last().unwrap().1, "{name}");
        entries.retain(|(by, _)| by.starts_with("COPY") || by.starts_with("RUN"));
        entries
    };
    let before = history("p:1");
    write(&ctx, "src/main.rs", "fn main() { println!(); }\n");
    let changed = env.build_ok(&ctx, &["-t", "p:3"]);
    assert_ne!(changed, first);
    let after = history("p:3");
    let time = |entries: &[(String, String)], step: &str| {
        entries.iter().find(|(by, _)| by.starts_with(step)).unwrap_or_else(|| panic!("{step} in {entries:?}")).1.clone()
    };
    assert_eq!(time(&after, "COPY /deps.token"), time(&before, "COPY /deps.token"), "a cached step was re-dated");
    assert_ne!(time(&after, "COPY src/"), time(&before, "COPY src/"), "a re-made step kept its old time");

    // --no-cache makes every layer again: a new image.
    let fresh = env.build_ok(&ctx, &["--no-cache", "-t", "p:4"]);
    assert_ne!(fresh, changed);
}

#[test]
fn a_changed_file_reruns_only_the_steps_downstream_of_its_copy() {
    let Some(env) = env("cache_invalidate") else { return };
    let env = env.with_busybox();
    let ctx = project(&env);
    env.build_ok(&ctx, &["-t", "p:1"]);
    let (deps1, app1) = tokens(&env, "p:1");

    write(&ctx, "src/main.rs", "fn main() { println!(\"changed\"); }\n");
    let (ok, _, stderr) = env.build(&ctx, &["-t", "p:2", "--explain"]);
    assert!(ok, "{stderr}");
    let (deps2, app2) = tokens(&env, "p:2");
    assert_eq!(deps1, deps2, "the deps stage does not read src/ but re-ran");
    assert_ne!(app1, app2, "the RUN after COPY src/ did not re-run");
    assert!(stderr.contains("main.rs"), "--explain does not name the changed file:\n{stderr}");

    // A changed build arg re-runs the RUN that sees it, and says so.
    let (ok, _, stderr) = env.build(&ctx, &["-t", "p:3", "--explain", "--build-arg", "VERSION=2.0"]);
    assert!(ok, "{stderr}");
    let (deps3, app3) = tokens(&env, "p:3");
    assert_eq!(deps3, deps1);
    assert_ne!(app3, app2);
    assert!(stderr.contains("VERSION"), "--explain does not name the changed build arg:\n{stderr}");
    assert!(stderr.contains("2.0"), "--explain does not show the new value:\n{stderr}");
    assert_eq!(env.ok(&["run", "--rm", "p:3", "cat", "/version"]), "2.0\n");
}

#[test]
fn no_cache_reruns_everything_and_no_cache_filter_only_its_stage() {
    let Some(env) = env("cache_no_cache") else { return };
    let env = env.with_busybox();
    let ctx = project(&env);
    env.build_ok(&ctx, &["-t", "p:1"]);
    let (deps1, app1) = tokens(&env, "p:1");
    env.build_ok(&ctx, &["-t", "p:2", "--no-cache-filter", "deps"]);
    let (deps2, app2) = tokens(&env, "p:2");
    assert_ne!(deps1, deps2, "--no-cache-filter deps did not re-run the deps stage");
    // The final stage copies the new token, so its RUN's input changed too.
    assert_ne!(app1, app2);
    env.build_ok(&ctx, &["-t", "p:3", "--no-cache"]);
    let (deps3, app3) = tokens(&env, "p:3");
    assert_ne!(deps3, deps2);
    assert_ne!(app3, app2);
}

#[test]
fn independent_stages_run_in_parallel() {
    let Some(env) = env("cache_parallel") else { return };
    let env = env.with_busybox();
    let stage = |name: &str| {
        format!(
            "FROM busybox AS {name}\nRUN cat /proc/uptime | cut -d' ' -f1 > /start && sleep 2 && cat /proc/uptime | cut -d' ' -f1 > /end\n"
        )
    };
    let dockerfile = format!(
        "{}{}{}FROM busybox\nCOPY --from=a /start /a.start\nCOPY --from=a /end /a.end\nCOPY --from=b /start /b.start\nCOPY --from=b /end /b.end\nCOPY --from=c /start /c.start\nCOPY --from=c /end /c.end\n",
        stage("a"),
        stage("b"),
        stage("c")
    );
    let ctx = env.context("par", &[("Dockerfile", &dockerfile)]);
    let started = std::time::Instant::now();
    env.build_ok(&ctx, &["-t", "par:1"]);
    let wall = started.elapsed();
    let read = |f: &str| -> f64 { env.ok(&["run", "--rm", "par:1", "cat", f]).trim().parse().unwrap() };
    let spans: Vec<(f64, f64)> =
        ["a", "b", "c"].iter().map(|s| (read(&format!("/{s}.start")), read(&format!("/{s}.end")))).collect();
    // All three sleeps were running at one moment: the latest start precedes the earliest end.
    let latest_start = spans.iter().map(|s| s.0).fold(f64::MIN, f64::max);
    let earliest_end = spans.iter().map(|s| s.1).fold(f64::MAX, f64::min);
    assert!(latest_start < earliest_end, "stages did not overlap: {spans:?}");
    assert!(wall.as_secs_f64() < 6.0, "three 2 s stages took {wall:?}");
}

/// `COPY --link` makes its layer on its own: when the stage's base changes, the copy
/// stays cached and its very layer (same blob) lands on the new base, as BuildKit's.
#[test]
fn copy_link_layers_survive_a_new_base() {
    let Some(env) = env("cache_copy_link") else { return };
    let env = env.with_busybox();
    let other = env.context("other", &[("Dockerfile", "FROM busybox\nRUN touch /other-base\n")]);
    env.build_ok(&other, &["-t", "busybox2"]);
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", "ARG BASE=busybox\nFROM $BASE\nCOPY --link app.txt /app/\nRUN cat /app/app.txt > /seen\n"),
            ("app.txt", "linked\n"),
        ],
    );
    let layers = |name: &str| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", name])).unwrap();
        v["Layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
    };
    env.build_ok(&ctx, &["-t", "one"]);
    let (ok, _, stderr) = env.build(&ctx, &["--build-arg", "BASE=busybox2", "-t", "two"]);
    assert!(ok, "{stderr}");
    let copy = stderr.lines().find(|l| l.contains("COPY --link") && !l.contains("(merged)")).expect("a copy step");
    let number = copy.split_whitespace().next().unwrap();
    assert!(stderr.contains(&format!("{number} CACHED")), "the linked copy ran again on the new base:\n{stderr}");
    let (one, two) = (layers("one"), layers("two"));
    assert_eq!(one.len() + 1, two.len(), "{one:?} {two:?}");
    assert_eq!(one[one.len() - 2], two[two.len() - 2], "the linked layer is not the same blob");
    assert_eq!(env.ok(&["run", "--rm", "two", "sh", "-c", "cat /seen; ls /other-base"]), "linked\n/other-base\n");
    // Its snapshots on both bases were linked from the one it has alone, not unpacked.
    use std::os::unix::fs::MetadataExt as _;
    let copies: Vec<u64> = std::fs::read_dir(env.root.path().join("snapshots"))
        .unwrap()
        .filter_map(|e| std::fs::metadata(e.unwrap().path().join("app/app.txt")).ok())
        .map(|m| m.ino())
        .collect();
    assert_eq!(copies.len(), 3, "{copies:?}");
    assert!(copies.iter().all(|&i| i == copies[0]), "the linked layer's snapshot was unpacked again: {copies:?}");
    let fsck = env.run(&["fsck", "--snapshots"]);
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
}
