//! Cache sharing (`--cache-to` / `--cache-from`): a fresh store that imports a cache
//! gets full hits and the same image.

use crate::registry::Registry;
use crate::util::{Env, env};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const EPOCH: &str = "1700000000";

/// Two stages whose RUN steps leave a random token, so a step that re-ran shows.
const DOCKERFILE: &str = r#"FROM busybox AS deps
COPY deps.txt /deps.txt
RUN head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' > /deps.token

FROM busybox
COPY --from=deps /deps.token /deps.token
COPY src/ /app/src/
RUN head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n' > /app.token
"#;

/// A store with busybox imported reproducibly (the same image id in every store).
fn store(test: &str) -> Option<Env> {
    Some(env(test)?.with_busybox_at(EPOCH))
}

fn project(env: &Env) -> PathBuf {
    env.context("proj", &[("Dockerfile", DOCKERFILE), ("deps.txt", "libfoo 1\n"), ("src/main.rs", "fn main() {}\n")])
}

/// Builds reproducibly with `extra` flags; returns the image id and stderr.
fn build(env: &Env, ctx: &Path, tag: &str, extra: &[&str]) -> (String, String) {
    let iid = env.work.path().join(format!("{}.iid", tag.replace(['/', ':'], "_")));
    let mut args = vec!["build", "--progress=plain", "-t", tag, "--iidfile", iid.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = env.cmd(&args).env("SOURCE_DATE_EPOCH", EPOCH).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build {extra:?} failed\n{stderr}");
    (std::fs::read_to_string(iid).unwrap(), stderr)
}

/// (deps token, app token) of an image.
fn tokens(env: &Env, image: &str) -> (String, String) {
    let out = env.ok(&["run", "--rm", image, "sh", "-c", "cat /deps.token; echo; cat /app.token"]);
    let mut lines = out.lines();
    (lines.next().unwrap().to_string(), lines.next().unwrap().to_string())
}

/// Every blob of a layout with its modification time.
fn blobs(dir: &Path) -> BTreeMap<String, std::time::SystemTime> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), e.metadata().unwrap().modified().unwrap()))
        .collect()
}

#[test]
fn local_cache_max_gives_a_fresh_store_full_hits_and_the_same_image() {
    let Some(first) = store("cache_export_local_max") else { return };
    let ctx = project(&first);
    let dir = first.work.path().join("cache");
    let to = format!("type=local,dest={},mode=max", dir.display());
    let (id1, _) = build(&first, &ctx, "p:1", &["--cache-to", &to]);
    let tokens1 = tokens(&first, "p:1");
    for file in ["oci-layout", "index.json"] {
        assert!(dir.join(file).is_file(), "{file}");
    }

    // A second export of the unchanged build writes no blob.
    let before = blobs(&dir);
    let (again, stderr) = build(&first, &ctx, "p:1b", &["--cache-to", &to]);
    assert_eq!(again, id1);
    assert!(stderr.contains("0 new blobs"), "{stderr}");
    assert_eq!(blobs(&dir), before, "an unchanged export rewrote blobs");

    // A fresh store with the cache: no RUN runs, the image is the same.
    let second = store("cache_export_local_max").unwrap();
    let from = format!("type=local,src={}", dir.display());
    let (id2, stderr) = build(&second, &ctx, "p:2", &["--cache-from", &from]);
    assert_eq!(id2, id1, "{stderr}");
    assert_eq!(tokens(&second, "p:2"), tokens1, "a RUN executed despite the imported cache");
    // Five steps, and the second `FROM busybox` (identical to the first).
    assert_eq!(stderr.matches("CACHED").count(), 6, "{stderr}");

    // A changed source file re-runs only what is downstream of its COPY.
    std::fs::write(ctx.join("src/main.rs"), "fn main() { println!(\"changed\"); }\n").unwrap();
    let missing = format!("type=local,src={}", first.work.path().join("nothing-here").display());
    let (id3, stderr) = build(&second, &ctx, "p:3", &["--cache-from", &missing, "--cache-from", &from]);
    assert_ne!(id3, id1);
    assert!(stderr.contains("WARN: importing cache"), "{stderr}");
    let (deps3, app3) = tokens(&second, "p:3");
    assert_eq!(deps3, tokens1.0, "the deps stage re-ran");
    assert_ne!(app3, tokens1.1, "the step after the changed COPY did not re-run");
}

/// Without SOURCE_DATE_EPOCH too: the cache carries the time each layer was made, so
/// a CI runner building from another's cache gives the very image that runner gave.
#[test]
fn the_cache_carries_layer_times_so_a_fresh_store_gives_the_same_image() {
    let Some(first) = store("cache_export_times") else { return };
    let ctx = project(&first);
    let dir = first.work.path().join("cache");
    let build_now = |env: &Env, extra: &[&str]| -> String {
        let mut args = vec!["build", "--progress=plain"];
        args.extend_from_slice(extra);
        args.push(ctx.to_str().unwrap());
        let out = env.cmd(&args).env_remove("SOURCE_DATE_EPOCH").output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let id1 = build_now(&first, &["--cache-to", &format!("type=local,dest={},mode=max", dir.display())]);
    let second = store("cache_export_times").unwrap();
    let id2 = build_now(&second, &["--cache-from", &format!("type=local,src={}", dir.display())]);
    assert_eq!(id2, id1);
}

#[test]
fn local_cache_min_leaves_intermediate_stages_out() {
    let Some(first) = store("cache_export_local_min") else { return };
    let ctx = project(&first);
    let dir = first.work.path().join("cache-min");
    let (_, _) = build(&first, &ctx, "p:1", &["--cache-to", &format!("type=local,dest={}", dir.display())]);
    let tokens1 = tokens(&first, "p:1");

    let second = store("cache_export_local_min").unwrap();
    let from = format!("type=local,src={}", dir.display());
    let (_, stderr) = build(&second, &ctx, "p:2", &["--cache-from", &from]);
    let (deps2, _) = tokens(&second, "p:2");
    assert_ne!(deps2, tokens1.0, "the intermediate stage hit with mode=min:\n{stderr}");
}

/// The layer digests of an image in a store.
fn layer_digests(env: &Env, image: &str) -> Vec<String> {
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
    inspect["Layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
}

#[test]
fn registry_cache_max_gives_a_fresh_store_full_hits_lazily() {
    let test = "cache_export_registry_max";
    let Some(first) = store(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    let ctx = project(&first);
    let cache_ref = format!("{}/team/app-cache:main", registry.host());
    let to = format!("type=registry,ref={cache_ref},mode=max");
    let (id1, stderr) = build(&first, &ctx, "p:1", &["--cache-to", &to]);
    assert!(stderr.contains("exporting cache to type=registry"), "{stderr}");
    let tokens1 = tokens(&first, "p:1");

    // A second export of the unchanged build uploads no blob (and the same manifest).
    let writes = registry.blob_writes();
    let (again, stderr) = build(&first, &ctx, "p:1b", &["--cache-to", &to]);
    assert_eq!(again, id1);
    assert!(stderr.contains("0 blobs uploaded"), "{stderr}");
    assert_eq!(registry.blob_writes(), writes, "an unchanged cache export uploaded blobs");

    // A fresh store: no RUN runs, the image is the same, and only what the image
    // needs is downloaded (not the intermediate stage's layers).
    let second = store(test).unwrap();
    let before = registry.blob_downloads().len();
    let from = format!("type=registry,ref={cache_ref}");
    let (id2, stderr) = build(&second, &ctx, "p:2", &["--cache-from", &from]);
    assert_eq!(id2, id1, "{stderr}");
    assert_eq!(tokens(&second, "p:2"), tokens1, "a RUN executed despite the imported cache");
    assert_eq!(stderr.matches("CACHED").count(), 6, "{stderr}");
    assert!(stderr.contains(&format!("from {from}")), "hits do not name their source:\n{stderr}");
    let downloads = registry.blob_downloads()[before..].to_vec();
    let image_layers = layer_digests(&second, "p:2");
    let strays: Vec<&String> = downloads.iter().filter(|d| !image_layers.contains(d)).collect::<Vec<_>>();
    // The cache config is the one blob besides the image's layers.
    assert_eq!(strays.len(), 1, "downloaded more than the image needs: {strays:?}\n{stderr}");

    // A change to one source file re-runs only that step's downstream.
    std::fs::write(ctx.join("src/main.rs"), "fn main() { println!(\"changed\"); }\n").unwrap();
    let (id3, _) = build(&second, &ctx, "p:3", &["--cache-from", &from]);
    assert_ne!(id3, id1);
    let (deps3, app3) = tokens(&second, "p:3");
    assert_eq!(deps3, tokens1.0, "the deps stage re-ran");
    assert_ne!(app3, tokens1.1, "the step after the changed COPY did not re-run");

    // A cache that is not there yet is a note, not a failure.
    let nothing = format!("type=registry,ref={}/team/none:here", registry.host());
    let (_, stderr) = build(&second, &ctx, "p:4", &["--cache-from", &nothing]);
    assert!(stderr.contains("nothing there yet"), "{stderr}");
}

#[test]
fn registry_cache_min_leaves_intermediate_stages_out() {
    let test = "cache_export_registry_min";
    let Some(first) = store(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    let ctx = project(&first);
    let cache_ref = format!("{}/app-cache:min", registry.host());
    build(&first, &ctx, "p:1", &["--cache-to", &format!("type=registry,ref={cache_ref},mode=min")]);
    let tokens1 = tokens(&first, "p:1");

    let second = store(test).unwrap();
    let (_, stderr) = build(&second, &ctx, "p:2", &["--cache-from", &format!("type=registry,ref={cache_ref}")]);
    let (deps2, _) = tokens(&second, "p:2");
    assert_ne!(deps2, tokens1.0, "the intermediate stage hit with mode=min:\n{stderr}");
}

#[test]
fn inline_cache_travels_with_the_pushed_image() {
    let test = "cache_export_inline";
    let Some(first) = store(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    let ctx = first.context(
        "single",
        &[
            ("Dockerfile", "FROM busybox\nCOPY src/ /app/src/\nRUN head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /app.token\n"),
            ("src/main.rs", "fn main() {}\n"),
        ],
    );
    let image = format!("{}/team/app:1", registry.host());
    let (id1, _) = build(&first, &ctx, &image, &["--cache-to", "type=inline", "--push"]);
    let token1 = first.ok(&["run", "--rm", &image, "cat", "/app.token"]);

    let second = store(test).unwrap();
    let from = format!("type=registry,ref={image}");
    let (id2, stderr) = build(&second, &ctx, "p:2", &["--cache-from", &from, "--cache-to", "type=inline"]);
    assert_eq!(id2, id1, "{stderr}");
    assert_eq!(second.ok(&["run", "--rm", "p:2", "cat", "/app.token"]), token1, "the RUN executed again");
}

#[test]
fn cache_mounts_follow_the_cache_to_a_fresh_store() {
    let test = "cache_export_mounts";
    let Some(first) = store(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    // The RUN "downloads" a dependency into its cache mount once, and copies it out.
    let dockerfile = "FROM busybox\nCOPY src/ /src/\nRUN --mount=type=cache,id=downloads,target=/cache \
        sh -c 'test -f /cache/dep || head -c 8 /dev/urandom | od -An -tx1 | tr -d \" \\n\" > /cache/dep; cp /cache/dep /dep.token'\n";
    let ctx = first.context("mounts", &[("Dockerfile", dockerfile), ("src/main.rs", "fn main() {}\n")]);
    let cache_ref = format!("{}/team/app-cache:mounts", registry.host());
    let (_, stderr) =
        build(&first, &ctx, "p:1", &["--cache-to", &format!("type=registry,ref={cache_ref},mounts=true")]);
    assert!(stderr.contains("1 cache mounts"), "{stderr}");
    let dep1 = first.ok(&["run", "--rm", "p:1", "cat", "/dep.token"]);

    // On a fresh store, a changed source makes the RUN execute: it finds the
    // downloaded dependency in its restored cache mount.
    let second = store(test).unwrap();
    std::fs::write(ctx.join("src/main.rs"), "fn main() { println!(\"changed\"); }\n").unwrap();
    let (_, stderr) = build(&second, &ctx, "p:2", &["--cache-from", &format!("type=registry,ref={cache_ref}")]);
    assert!(stderr.contains("1 cache mounts"), "{stderr}");
    let dep2 = second.ok(&["run", "--rm", "p:2", "cat", "/dep.token"]);
    assert_eq!(dep2, dep1, "the cache mount was not restored:\n{stderr}");

    // Without the cache, the dependency is "downloaded" again.
    let third = store(test).unwrap();
    build(&third, &ctx, "p:3", &[]);
    assert_ne!(third.ok(&["run", "--rm", "p:3", "cat", "/dep.token"]), dep1);
}
