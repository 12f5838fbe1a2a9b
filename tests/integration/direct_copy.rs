//! The direct COPY (written into the layer's directory without an overlay, issue 19)
//! gives the layers the overlay path gives, for destinations the parent has too: each
//! shape in testdata/direct-copy/ is built with it and without it
//! (`BUILDER_DIRECT_COPY=0`), reproducibly, and the images must be the same; the debug
//! log says which copies went direct, so a shape that should and silently did not
//! fails. And in the usual `WORKDIR /app` + `COPY . .`, a one-file change links the
//! other files from the previous result.

use crate::util::{Env, copies_of, copy_tree, env, testdata};
use std::path::{Path, PathBuf};

const EPOCH: &str = "1700000000";
const DIRECT: &str = "written directly";

/// A copy of testdata/direct-copy/`shape` in the test's scratch directory.
fn shape_context(env: &Env, shape: &str) -> PathBuf {
    let to = env.work.path().join(shape);
    copy_tree(&testdata(&format!("direct-copy/{shape}")), &to);
    to
}

struct Built {
    ok: bool,
    stderr: String,
    id: String,
}

/// Builds `ctx` reproducibly, the direct COPY allowed or not.
fn build(env: &Env, ctx: &Path, tag: &str, direct: bool) -> Built {
    let iid = env.work.path().join(format!("{tag}.iid"));
    let out = env
        .cmd(&["build", "--progress=plain", "-t", tag, "--iidfile", iid.to_str().unwrap(), ctx.to_str().unwrap()])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("BUILDER_LOG", "warn,builder::ops=debug")
        .env("BUILDER_DIRECT_COPY", if direct { "1" } else { "0" })
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    Built { ok: out.status.success(), stderr, id: std::fs::read_to_string(&iid).unwrap_or_default() }
}

fn diff_ids(env: &Env, image: &str) -> Vec<String> {
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", image])).unwrap();
    inspect["Layers"].as_array().unwrap().iter().map(|l| l["diff_id"].as_str().unwrap().to_string()).collect()
}

/// Builds `shape` in two fresh stores, direct and through the overlay; asserts the
/// same image and that `direct` copies went direct. Returns the direct build's store
/// and the failed builds' stderr when both failed.
fn same_both_ways(test: &str, shape: &str, direct: usize, setup: impl Fn(&Path)) -> Option<(Env, Option<[String; 2]>)> {
    let with = env(test)?.with_busybox_at(EPOCH);
    let without = env(test)?.with_busybox_at(EPOCH);
    let (ctx_with, ctx_without) = (shape_context(&with, shape), shape_context(&without, shape));
    setup(&ctx_with);
    setup(&ctx_without);
    let a = build(&with, &ctx_with, shape, true);
    let b = build(&without, &ctx_without, shape, false);
    assert_eq!(b.stderr.matches(DIRECT).count(), 0, "{shape}: switched off, yet\n{}", b.stderr);
    assert_eq!(a.stderr.matches(DIRECT).count(), direct, "{shape}: copies written directly\n{}", a.stderr);
    assert_eq!(a.ok, b.ok, "{shape}: one way failed\ndirect:\n{}\noverlay:\n{}", a.stderr, b.stderr);
    if !a.ok {
        return Some((with, Some([a.stderr, b.stderr])));
    }
    assert_eq!(diff_ids(&with, shape), diff_ids(&without, shape), "{shape}: layers differ");
    assert_eq!(a.id, b.id, "{shape}: images differ");
    Some((with, None))
}

#[test]
fn workdir_then_copy_everything_is_direct_and_the_same_as_through_the_overlay() {
    same_both_ways("direct_copy_workdir", "workdir", 2, |_| {});
}

#[test]
fn parents_with_odd_modes_owners_xattrs_and_times_are_copied_up_as_overlayfs_does() {
    let setup = |ctx: &Path| {
        let odd = ctx.join("base/opt/odd");
        if let Err(e) = xattr::set(&odd, "user.direct-copy", b"kept") {
            eprintln!("note: no user xattrs in {}: {e}", odd.display());
        }
        // Older than SOURCE_DATE_EPOCH: kept as is where the copy writes nothing.
        let old = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        filetime::set_file_times(ctx.join("base/opt"), old, old).unwrap();
    };
    let Some((env, _)) = same_both_ways("direct_copy_odd_parents", "odd-parents", 3, setup) else { return };
    // The copy wrote into /opt/odd (dated now), not into /opt.
    let stat = env.ok(&["run", "--rm", "odd-parents", "stat", "-c", "%a %u:%g", "/opt", "/opt/odd", "/opt/odd/srv"]);
    assert_eq!(stat, "700 0:0\n2751 12:34\n755 0:34\n");
    let time = env.ok(&["run", "--rm", "odd-parents", "stat", "-c", "%Y", "/opt"]);
    assert_eq!(time, "1600000000\n");
}

#[test]
fn files_replacing_the_parents_files_and_symlinks_are_direct() {
    let Some((env, _)) = same_both_ways("direct_copy_replace", "replace-file", 5, |_| {}) else { return };
    let out = env.ok(&["run", "--rm", "replace-file", "cat", "/srv/link.txt", "/srv/renamed", "/usr/bin/one.txt"]);
    assert_eq!(out, "not a link\none\none\n");
    let out =
        env.ok(&["run", "--rm", "replace-file", "stat", "-c", "%a %u:%g", "/srv", "/srv/owned", "/srv/owned/one.txt"]);
    assert_eq!(out, "755 0:0\n755 7:8\n600 7:8\n");
}

#[test]
fn destinations_a_later_layer_deleted_or_made_opaque_are_direct() {
    let Some((env, _)) = same_both_ways("direct_copy_whiteout", "whiteout-opaque", 3, |_| {}) else { return };
    // What the whiteouts and the opaque directory hid stays hidden.
    let out = env.ok(&["run", "--rm", "whiteout-opaque", "ls", "/w/app/src", "/o/app/src", "/t/src"]);
    assert!(!out.contains("old") && out.matches("new").count() == 3, "{out}");
}

#[test]
fn add_of_a_directory_and_a_plain_file_is_direct_and_an_archive_goes_through_the_overlay() {
    // The archive, made alike in both contexts (fixed times and owners).
    let setup = |ctx: &Path| {
        let status = std::process::Command::new("tar")
            .args(["--mtime=@1600000000", "--owner=0", "--group=0", "--numeric-owner", "-cf", "files.tar", "notes.txt"])
            .current_dir(ctx)
            .status()
            .unwrap();
        assert!(status.success(), "tar");
    };
    let Some((env, _)) = same_both_ways("direct_copy_add", "add", 2, setup) else { return };
    let out = env.ok(&["run", "--rm", "add", "cat", "/app/unpacked/notes.txt", "/app/docs/notes.txt"]);
    assert_eq!(out, "notes\nnotes\n");
    assert_eq!(env.ok(&["run", "--rm", "add", "stat", "-c", "%F", "/app/files.tar"]), "regular file\n");
}

#[test]
fn chown_by_name_is_resolved_in_the_parents_files_and_direct() {
    let Some((env, _)) = same_both_ways("direct_copy_chown_name", "chown-name", 2, |_| {}) else { return };
    let out = env.ok(&["run", "--rm", "chown-name", "stat", "-c", "%u:%g", "/app/one.txt", "/srv/one.txt"]);
    assert_eq!(out, "1234:2345\n1234:3456\n");
    let Some((_, failed)) = same_both_ways("direct_copy_chown_unknown", "chown-unknown", 0, |_| {}) else { return };
    for stderr in failed.expect("an unknown user fails") {
        assert!(stderr.contains("unable to find user ghost"), "{stderr}");
    }
}

#[test]
fn directories_meeting_the_parents_are_copied_up_and_merged() {
    let Some((env, _)) = same_both_ways("direct_copy_merge", "merge-dirs", 1, |_| {}) else { return };
    let files =
        ["/app/src/main.rs", "/app/src/keep/lib.rs", "/app/src/keep/other.rs", "/app/src/new/x.rs", "/app/target/t"];
    let out = env.ok(&[&["run", "--rm", "merge-dirs", "cat"][..], &files[..]].concat());
    assert_eq!(out, "fn main() {}\nlib\nother\nx\nt\n");
    let out = env.ok(&["run", "--rm", "merge-dirs", "stat", "-c", "%a %u:%g", "/app/src", "/app/src/keep"]);
    assert_eq!(out, "755 0:0\n755 0:0\n");
    let out = env.run(&["run", "--rm", "merge-dirs", "ls", "/app/target/host-build"]);
    assert!(!out.status.success(), "an ignored directory is not copied");
}

#[test]
fn colliding_directories_and_symlinks_on_the_way_go_through_the_overlay() {
    let Some((env, _)) = same_both_ways("direct_copy_collide", "colliding-dirs", 2, |_| {}) else { return };
    assert_eq!(env.ok(&["run", "--rm", "colliding-dirs", "ls", "/app/src"]), "a.txt\n");
    let Some((env, _)) = same_both_ways("direct_copy_symlink", "symlink-on-path", 0, |_| {}) else { return };
    let out = env.ok(&["run", "--rm", "symlink-on-path", "cat", "/real/dir/sub/page.html", "/real/dir/one.txt"]);
    assert_eq!(out, "page\none\n");
    let Some((_, failed)) = same_both_ways("direct_copy_file_over_dir", "file-over-dir", 0, |_| {}) else { return };
    for stderr in failed.expect("a file over a directory fails") {
        assert!(stderr.contains("cannot overwrite directory"), "{stderr}");
    }
}

#[test]
fn copies_that_write_nothing_leave_no_copied_up_directories() {
    let setup = |ctx: &Path| std::fs::create_dir_all(ctx.join("empty")).unwrap();
    let Some((env, _)) = same_both_ways("direct_copy_empty", "empty-source", 2, setup) else { return };
    // Neither copy made a layer: busybox's, the WORKDIR's and the RUN's are all.
    let layers = diff_ids(&env, "empty-source");
    assert_eq!(layers.len(), 3, "{layers:?}");
}

#[test]
fn a_one_file_change_under_the_workdir_links_the_other_files() {
    let test = "direct_copy_workdir_reuse";
    let Some(with) = env(test).map(|e| e.with_busybox_at(EPOCH)) else { return };
    let ctx = shape_context(&with, "workdir");
    for i in 0..50 {
        std::fs::write(ctx.join(format!("src/lib/m{i}.js")), format!("module.exports = {i}\n")).unwrap();
    }
    let first = build(&with, &ctx, "app:1", true);
    assert!(first.ok, "{}", first.stderr);
    std::fs::write(ctx.join("src/lib/m7.js"), "module.exports = 'changed'\n").unwrap();
    let second = build(&with, &ctx, "app:2", true);
    assert!(second.ok && second.stderr.contains(DIRECT), "{}", second.stderr);
    assert!(second.stderr.contains("55 unchanged files linked"), "{}", second.stderr);
    let linked = copies_of(&with, "app/src/lib/m0.js");
    assert!(linked.len() == 2 && linked[0].1 == linked[1].1, "app/src/lib/m0.js was copied again: {linked:?}");
    let changed = copies_of(&with, "app/src/lib/m7.js");
    assert!(changed.len() == 2 && changed[0].1 != changed[1].1, "{changed:?}");
    assert_eq!(with.ok(&["run", "--rm", "app:2", "cat", "/app/src/lib/m7.js"]), "module.exports = 'changed'\n");
    assert!(with.run(&["fsck", "--snapshots"]).status.success());

    // The image is the one the overlay path makes of the same files.
    let Some(without) = env(test).map(|e| e.with_busybox_at(EPOCH)) else { return };
    let through = build(&without, &ctx, "app:2", false);
    assert!(through.ok, "{}", through.stderr);
    assert_eq!(second.id, through.id);
}
