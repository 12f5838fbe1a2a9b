//! Cache sharing (`--cache-to` / `--cache-from`): a fresh store that imports a cache
//! gets full hits and the same image.

use crate::util::{Env, busybox_tar, env};
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
    let env = env(test)?;
    let out = env
        .cmd(&["import", busybox_tar().to_str().unwrap(), "busybox:latest"])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(env)
}

fn project(env: &Env) -> PathBuf {
    env.context("proj", &[("Dockerfile", DOCKERFILE), ("deps.txt", "libfoo 1\n"), ("src/main.rs", "fn main() {}\n")])
}

/// Builds reproducibly with `extra` flags; returns the image id and stderr.
fn build(env: &Env, ctx: &Path, tag: &str, extra: &[&str]) -> (String, String) {
    let iid = env.work.path().join(format!("{tag}.iid"));
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
    assert!(stderr.contains("WARNING: importing cache"), "{stderr}");
    let (deps3, app3) = tokens(&second, "p:3");
    assert_eq!(deps3, tokens1.0, "the deps stage re-ran");
    assert_ne!(app3, tokens1.1, "the step after the changed COPY did not re-run");
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
