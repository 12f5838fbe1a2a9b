//! Big layers (issue 19): a build into the store compresses nothing, outputs that need
//! compressed blobs make them with the digests a compressing build gives, a one-file
//! change gives a layer that differs in that file alone, and a later RUN never
//! changes an earlier step's snapshot.

use crate::registry::Registry;
use crate::util::{Env, copies_of, env};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::process::Command;

const EPOCH: &str = "1700000000";
const DOCKERFILE: &str = "FROM busybox\nCOPY data/ /data/\nRUN echo ran > /ran && cat /data/a.txt > /copy\n";

/// A store with busybox imported reproducibly (the same base in every store).
fn store(test: &str) -> Option<Env> {
    Some(env(test)?.with_busybox_at(EPOCH))
}

fn project(env: &Env) -> std::path::PathBuf {
    let mut files = vec![("Dockerfile".to_string(), DOCKERFILE.to_string())];
    for i in 0..40 {
        files.push((format!("data/d{}/f{i}.txt", i % 4), format!("file {i}\n").repeat(200)));
    }
    files.push(("data/a.txt".into(), "alpha\n".into()));
    let files: Vec<(&str, &str)> = files.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    env.context("proj", &files)
}

/// Builds reproducibly; returns stdout.
fn build(env: &Env, ctx: &Path, extra: &[&str]) -> String {
    let mut args = vec!["build", "--progress=plain"];
    args.extend_from_slice(extra);
    args.push(ctx.to_str().unwrap());
    let out = env.cmd(&args).env("SOURCE_DATE_EPOCH", EPOCH).output().unwrap();
    assert!(out.status.success(), "build {extra:?} failed\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn inspect(env: &Env, image: &str) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["inspect", image])).unwrap()
}

fn layers(env: &Env, image: &str) -> Vec<serde_json::Value> {
    inspect(env, image)["Layers"].as_array().unwrap().clone()
}

/// The store holds each of `diff_ids` as its snapshot alone: a packed record and no
/// uncompressed tar blob.
fn assert_packed(env: &Env, diff_ids: &[String]) {
    for diff_id in diff_ids {
        let hex = diff_id.trim_start_matches("sha256:");
        assert!(!env.root.path().join("blobs/sha256").join(hex).exists(), "layer {diff_id} was written as a blob");
        assert!(env.root.path().join("packed").join(format!("{hex}.json")).is_file(), "layer {diff_id} is not packed");
    }
}

/// The diffIDs of an image's layers above busybox's.
fn built_diff_ids(env: &Env, image: &str) -> Vec<String> {
    layers(env, image)[1..].iter().map(|l| l["diff_id"].as_str().unwrap().to_string()).collect()
}

/// Every store file whose name says it is a compressed variant of one of `diff_ids`.
fn compressed_variants(env: &Env, diff_ids: &[String]) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(env.root.path().join("variants")) else { return Vec::new() };
    entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| !name.contains(".uncompressed"))
        .filter(|name| diff_ids.iter().any(|d| name.starts_with(d.trim_start_matches("sha256:"))))
        .collect()
}

fn tool(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap())
}

#[test]
fn a_store_build_compresses_nothing_and_outputs_match_a_compressing_build() {
    let Some(lazy) = store("big_layers_lazy") else { return };
    let ctx = project(&lazy);
    let w = lazy.work.path();
    let id = build(&lazy, &ctx, &["-t", "app:1"]);
    // The build's own layers are uncompressed tars whose digest is the diffID, and
    // no compressed variant of them was made.
    let built: Vec<_> = layers(&lazy, "app:1")[1..].to_vec();
    assert_eq!(built.len(), 2);
    for layer in &built {
        assert_eq!(layer["media_type"], "application/vnd.oci.image.layer.v1.tar", "{layer}");
        assert_eq!(layer["digest"], layer["diff_id"]);
    }
    let diff_ids: Vec<String> = built.iter().map(|l| l["diff_id"].as_str().unwrap().to_string()).collect();
    assert_eq!(compressed_variants(&lazy, &diff_ids), Vec::<String>::new());
    assert_packed(&lazy, &diff_ids);
    assert_eq!(lazy.ok(&["run", "--rm", "app:1", "cat", "/copy"]), "alpha\n");
    // The printed id is the stored manifest's, and `images` lists the same image.
    let images = lazy.ok(&["images"]);
    let short = id.trim().trim_start_matches("sha256:")[..12].to_string();
    assert!(images.contains(&short) || images.contains("app"), "{images}");

    // Archives made from that store...
    let (oci, docker) = (w.join("lazy-oci.tar"), w.join("lazy-docker.tar"));
    build(&lazy, &ctx, &["-o", &format!("type=oci,dest={}", oci.display())]);
    build(&lazy, &ctx, &["-o", &format!("type=docker,dest={}", docker.display())]);
    assert!(!compressed_variants(&lazy, &diff_ids).is_empty(), "the export kept no variant");
    // Compressing made the tars again from the snapshots and wrote none of them.
    assert_packed(&lazy, &diff_ids);
    // ... are byte for byte those of a build whose steps compress as they go (an
    // inline cache asks for that), in a fresh store.
    let Some(eager) = store("big_layers_lazy") else { return };
    let ctx2 = project(&eager);
    let (oci2, docker2) = (w.join("eager-oci.tar"), w.join("eager-docker.tar"));
    build(&eager, &ctx2, &["--cache-to", "type=inline", "-o", &format!("type=oci,dest={}", oci2.display())]);
    let eager_layers = std::fs::read_dir(eager.root.path().join("variants")).unwrap().count();
    assert!(eager_layers > 0);
    let read = |p: &Path| std::fs::read(p).unwrap();
    // The inline cache is part of the eager image's config: compare the layers.
    let layer_digests = |tar: &Path| -> Vec<String> {
        let raw = tool("skopeo", &["inspect", "--raw", &format!("oci-archive:{}", tar.display())]);
        let Some(raw) = raw else { return Vec::new() };
        let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
        m["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
    };
    if Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("SKIPPED big_layers_lazy (archive comparison): skopeo is not installed");
        return;
    }
    assert_eq!(layer_digests(&oci), layer_digests(&oci2));
    // Without an inline cache both stores give the very same archives.
    build(&eager, &ctx2, &["-o", &format!("type=docker,dest={}", docker2.display())]);
    assert!(read(&docker) == read(&docker2), "docker archives differ");
    // And they load where Docker archives load.
    tool("skopeo", &["inspect", &format!("docker-archive:{}", docker.display())]).unwrap();
}

#[test]
fn push_of_a_store_image_compresses_and_gives_the_digest_build_push_gives() {
    let test = "big_layers_push";
    let Some(first) = store(test) else { return };
    let Some(registry) = Registry::start(test, None) else { return };
    let ctx = project(&first);
    let name = format!("{}/big/app:1", registry.host());
    build(&first, &ctx, &["-t", &name]);
    let diff_ids = built_diff_ids(&first, &name);
    assert_packed(&first, &diff_ids);
    let pushed = first.ok(&["push", &name]);
    assert_packed(&first, &diff_ids);
    let pushed = pushed.trim().rsplit(' ').next().unwrap().to_string();

    let Some(second) = store(test) else { return };
    let ctx2 = project(&second);
    let name2 = format!("{}/big/app:2", registry.host());
    let iid = second.work.path().join("iid");
    build(&second, &ctx2, &["-t", &name2, "--push", "--iidfile", iid.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&iid).unwrap(), pushed, "builder push and build --push differ");

    // A fresh store pulls it and runs it.
    let Some(third) = store(test) else { return };
    third.ok(&["pull", &name]);
    assert_eq!(third.ok(&["run", "--rm", &name, "cat", "/copy"]), "alpha\n");
    if Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("SKIPPED {test} (skopeo copy): skopeo is not installed");
        return;
    }
    let archive = third.work.path().join("pulled.tar");
    tool(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{name}"),
            &format!("docker-archive:{}:x:1", archive.display()),
        ],
    )
    .unwrap();
    third.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(third.ok(&["run", "--rm", "x:1", "cat", "/copy"]), "alpha\n");
}

/// The bytes of `blobs/sha256/<digest>` in a tarball (`builder save`'s, `type=oci`'s).
fn blob_in(tarball: &Path, digest: &str) -> Vec<u8> {
    let wanted = format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"));
    let mut outer = tar::Archive::new(std::fs::File::open(tarball).unwrap());
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == wanted {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return bytes;
        }
    }
    panic!("{} holds no {wanted}", tarball.display());
}

/// (path → content) of an image's uncompressed layer, as `builder save` writes it
/// (the store keeps no tar of it: it is made from the snapshot).
fn tar_entries(env: &Env, image: &str, digest: &str) -> BTreeMap<String, Vec<u8>> {
    let saved = env.work.path().join(format!("{}.tar", image.replace(':', "-")));
    env.ok(&["save", image, "-o", saved.to_str().unwrap()]);
    let blob = blob_in(&saved, digest);
    let mut archive = tar::Archive::new(&blob[..]);
    let mut out = BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        out.insert(name, content);
    }
    out
}

#[test]
fn a_one_file_change_gives_the_same_paths_with_only_that_file_changed() {
    let Some(env) = store("big_layers_one_file") else { return };
    let ctx = project(&env);
    build(&env, &ctx, &["-t", "app:1"]);
    std::fs::write(ctx.join("data/d1/f5.txt"), "changed\n").unwrap();
    build(&env, &ctx, &["-t", "app:2"]);
    let (a, b) = (layers(&env, "app:1"), layers(&env, "app:2"));
    let before = tar_entries(&env, "app:1", a[1]["digest"].as_str().unwrap());
    let after = tar_entries(&env, "app:2", b[1]["digest"].as_str().unwrap());
    assert_eq!(before.keys().collect::<Vec<_>>(), after.keys().collect::<Vec<_>>());
    let changed: Vec<_> = before.keys().filter(|k| before[*k] != after[*k]).collect();
    assert_eq!(changed, ["data/d1/f5.txt"]);
    assert_eq!(after["data/d1/f5.txt"], b"changed\n");
    // The unchanged files were taken from the first COPY's snapshot, not copied.
    let shared = copies_of(&env, "data/d0/f0.txt");
    assert_eq!(shared.len(), 2, "{shared:?}");
    assert_eq!(shared[0].1, shared[1].1, "data/d0/f0.txt was copied again: {shared:?}");
    let changed = copies_of(&env, "data/d1/f5.txt");
    assert_ne!(changed[0].1, changed[1].1, "the changed file shares its inode: {changed:?}");
    assert!(env.run(&["fsck", "--snapshots"]).status.success());
}

#[test]
fn a_later_run_that_changes_a_copied_file_leaves_the_copy_snapshot_alone() {
    let Some(env) = store("big_layers_copy_up") else { return };
    let ctx = project(&env);
    build(&env, &ctx, &["-t", "app:0"]);
    // A one-file change: the new COPY result links the other files from the first.
    std::fs::write(ctx.join("data/d2/f6.txt"), "changed\n").unwrap();
    build(&env, &ctx, &["-t", "app:1"]);
    let linked = copies_of(&env, "data/d0/f0.txt");
    assert!(linked.len() == 2 && linked[0].1 == linked[1].1, "{linked:?}");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("{DOCKERFILE}RUN echo more >> /data/a.txt && chmod 600 /data/d0/f0.txt\n"),
    )
    .unwrap();
    build(&env, &ctx, &["-t", "app:2"]);
    assert_eq!(env.ok(&["run", "--rm", "app:1", "cat", "/data/a.txt"]), "alpha\n");
    assert_eq!(env.ok(&["run", "--rm", "app:2", "cat", "/data/a.txt"]), "alpha\nmore\n");
    let mode = |image: &str| env.ok(&["run", "--rm", image, "stat", "-c", "%a", "/data/d0/f0.txt"]);
    assert_eq!((mode("app:0"), mode("app:1"), mode("app:2")), ("644\n".into(), "644\n".into(), "600\n".into()));
    // Both COPY snapshots still share the untouched inode; the RUN has its own copy.
    let copies = copies_of(&env, "data/d0/f0.txt");
    assert_eq!(copies.len(), 3, "{copies:?}");
    // fsck compares every snapshot with its layer: the COPY's is as it was made.
    let fsck = env.run(&["fsck", "--snapshots"]);
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
}

#[test]
fn a_build_killed_in_the_middle_of_a_big_copy_leaves_a_store_fsck_passes() {
    let Some(env) = store("big_layers_kill") else { return };
    let ctx = env.context("big", &[("Dockerfile", "FROM busybox\nCOPY data/ /data/\n")]);
    let chunk = "0123456789abcdef".repeat(1024);
    for i in 0..6000 {
        let dir = ctx.join(format!("data/d{}", i % 60));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("f{i}")), format!("{i}{chunk}")).unwrap();
    }
    // A first build, then a one-file change: the second COPY links from the first.
    build(&env, &ctx, &["-t", "big:1"]);
    std::fs::write(ctx.join("data/d0/f0"), "changed").unwrap();
    let mut caught = false;
    for attempt in 0..3 {
        std::fs::write(ctx.join("data/d1/f1"), format!("attempt {attempt}")).unwrap();
        let mut child = env
            .cmd(&["build", "--progress=plain", "-t", "big:2", ctx.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Killed as soon as the COPY has written into its layer directory.
        let tmp = env.root.path().join("tmp");
        let copying = || {
            std::fs::read_dir(&tmp)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| std::fs::read_dir(e.path().join("upper/data")).is_ok_and(|mut d| d.next().is_some()))
        };
        let start = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() && !copying() && start.elapsed().as_secs() < 60 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        caught = child.try_wait().unwrap().is_none();
        child.kill().unwrap();
        child.wait().unwrap();
        let fsck = env.run(&["fsck", "--snapshots"]);
        assert!(
            fsck.status.success(),
            "{}{}",
            String::from_utf8_lossy(&fsck.stdout),
            String::from_utf8_lossy(&fsck.stderr)
        );
        if caught {
            break;
        }
    }
    if !caught {
        eprintln!("SKIPPED big_layers_kill (the kill): the COPY finished before it could be killed, three times");
    }
    // The next build finishes what was killed; the store stays whole.
    build(&env, &ctx, &["-t", "big:2"]);
    assert_eq!(env.ok(&["run", "--rm", "big:2", "cat", "/data/d0/f0"]), "changed");
    assert!(env.run(&["fsck", "--snapshots"]).status.success());
    assert!(env.ok(&["run", "--rm", "big:1", "cat", "/data/d0/f0"]).starts_with("0012345"));
}

#[test]
fn a_store_only_image_saves_as_an_image_with_blob_files_does() {
    let test = "big_layers_save";
    let Some(lazy) = store(test) else { return };
    let ctx = project(&lazy);
    build(&lazy, &ctx, &["-t", "app:1"]);
    assert_packed(&lazy, &built_diff_ids(&lazy, "app:1"));
    let w = lazy.work.path();
    let saved = w.join("saved.tar");
    lazy.ok(&["save", "app:1", "-o", saved.to_str().unwrap()]);
    // Loaded into a fresh store, the layers are blob files there; saved again from
    // there, the tarball is the same bytes.
    let Some(files) = store(test) else { return };
    files.ok(&["load", "-i", saved.to_str().unwrap()]);
    assert!(
        built_diff_ids(&files, "app:1")
            .iter()
            .all(|d| { files.root.path().join("blobs/sha256").join(d.trim_start_matches("sha256:")).is_file() })
    );
    let again = w.join("again.tar");
    files.ok(&["save", "app:1", "-o", again.to_str().unwrap()]);
    assert!(std::fs::read(&saved).unwrap() == std::fs::read(&again).unwrap(), "the two saves differ");
    assert_eq!(files.ok(&["run", "--rm", "app:1", "cat", "/copy"]), "alpha\n");
    if Command::new("skopeo").arg("--version").output().is_err() {
        eprintln!("SKIPPED {test} (skopeo): skopeo is not installed");
        return;
    }
    tool("skopeo", &["inspect", &format!("docker-archive:{}", saved.display())]).unwrap();
    tool("skopeo", &["inspect", &format!("oci-archive:{}", saved.display())]).unwrap();
}

#[test]
fn a_snapshot_changed_behind_the_builders_back_fails_its_export_and_fsck() {
    let Some(env) = store("big_layers_tamper") else { return };
    let ctx = project(&env);
    build(&env, &ctx, &["-t", "app:1"]);
    let copy_layer = built_diff_ids(&env, "app:1")[0].clone();
    let fsck = env.run(&["fsck"]);
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stdout));
    // The COPY's snapshot is the only one holding data/a.txt.
    let held = copies_of(&env, "data/a.txt");
    assert_eq!(held.len(), 1, "{held:?}");
    let snapshot = &held[0].0;
    std::fs::write(env.root.path().join("snapshots").join(snapshot).join("data/a.txt"), "tampered\n").unwrap();

    let out = env.run(&["save", "app:1", "-o", env.work.path().join("x.tar").to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "save of a tampered layer succeeded");
    assert!(stderr.contains(&copy_layer) && stderr.contains(snapshot.as_str()), "{stderr}");
    // An export that compresses the layer fails the same way and keeps no variant.
    let docker = env.work.path().join("docker.tar");
    let out = env
        .cmd(&["build", "--progress=plain", "-o", &format!("type=docker,dest={}", docker.display())])
        .arg(&ctx)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(&copy_layer), "{stderr}");
    assert!(!docker.exists());
    assert_eq!(compressed_variants(&env, std::slice::from_ref(&copy_layer)), Vec::<String>::new());
    // fsck re-hashes packed layers as it re-hashes blob files.
    let fsck = env.run(&["fsck"]);
    let report = String::from_utf8_lossy(&fsck.stdout).into_owned() + &String::from_utf8_lossy(&fsck.stderr);
    assert!(!fsck.status.success(), "{report}");
    assert!(report.contains(&copy_layer) && report.contains(snapshot.as_str()), "{report}");
}
