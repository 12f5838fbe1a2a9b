//! The fallback snapshotters (`BUILDER_SNAPSHOTTER=fuse-overlayfs|native`, used where
//! overlayfs is refused): the same build gives the same image, byte for byte, as with
//! overlayfs; `builder run` works on them; `builder doctor` names them; a build says
//! so once.

use crate::util::env;
use std::path::Path;
use std::process::Output;

/// Deletions of lower-layer files, a directory removed and made again (opaque), mode
/// and owner changes, hard links, COPY into and from stages, bind and cache mounts.
pub(crate) const DOCKERFILE: &str = "\
FROM busybox AS base
RUN mkdir -p /data/sub /opq/inner && echo a > /data/sub/a && ln /data/sub/a /data/sub/hard && echo b > /data/b \
    && echo o > /opq/inner/o && echo k > /opq/k && chown 1001:1002 /data/b
COPY file.txt /data/file.txt

FROM base
RUN rm /data/b /bin/true && rm -rf /opq && mkdir -p /opq/new && echo n > /opq/new/n && chmod 700 /data/sub \
    && chown 7:8 /data/sub/a && rm -rf /usr/sbin && mkdir /usr/sbin
RUN --mount=type=bind,from=base,source=/data,target=/mnt,rw echo scribbled > /mnt/file.txt && cp /mnt/sub/a /from-mount
RUN --mount=type=cache,target=/cache touch /cache/c && ls /cache > /cached
COPY --from=base /data/file.txt /copied.txt
COPY --chown=1001:1001 file.txt /opq/new/owned.txt
RUN test ! -e /data/b && test ! -e /opq/k && test \"$(cat /data/file.txt)\" = hello && mkdir /newdir && touch /newdir/f
";

/// What `builder run` checks in the image the Dockerfile makes (exit code 3).
pub(crate) const RUN_CHECK: &str = "ls /opq; cat /opq/new/n /copied.txt /from-mount; stat -c %u:%g /data/sub/a \
     /opq/new/owned.txt; test -e /data/b || test -e /bin/true || exit 3";
pub(crate) const RUN_OUTPUT: &str = "new\nn\nhello\na\n7:8\n1001:1001\n";

/// How many times a build's stderr says it uses a fallback snapshotter.
pub(crate) fn fallback_warnings(stderr: &str) -> usize {
    stderr.lines().filter(|l| l.contains("snapshotter: native") || l.contains("snapshotter: fuse-overlayfs")).count()
}

/// The fallbacks to test: native, and fuse-overlayfs where it is installed and
/// /dev/fuse is usable (by `user`, uid and gid, if given), else that part is skipped
/// and said so.
pub(crate) fn fallbacks(test: &str, user: Option<(u32, u32)>) -> Vec<&'static str> {
    use std::os::unix::process::CommandExt;
    let mut check = std::process::Command::new("sh");
    check.args(["-c", "command -v fuse-overlayfs && test -c /dev/fuse -a -r /dev/fuse -a -w /dev/fuse"]);
    if let Some((uid, gid)) = user {
        check.uid(uid).gid(gid);
    }
    if !check.output().is_ok_and(|o| o.status.success()) {
        eprintln!(
            "SKIPPED {test} with fuse-overlayfs: not installed (apt-get install fuse-overlayfs), or /dev/fuse not \
             usable here (chmod 0666 /dev/fuse)"
        );
        return vec!["native"];
    }
    vec!["native", "fuse-overlayfs"]
}

/// The whiteouts and opaque markers in `layers` of an OCI archive, by name.
pub(crate) fn markers(oci: &Path) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("tar").arg("-xf").arg(oci).arg("-C").arg(dir.path()).status().unwrap();
    assert!(status.success());
    let mut found = Vec::new();
    for blob in std::fs::read_dir(dir.path().join("blobs/sha256")).unwrap() {
        let blob = blob.unwrap().path();
        let out = std::process::Command::new("tar").arg("-tzf").arg(&blob).output().unwrap();
        if out.status.success() {
            let listing = String::from_utf8_lossy(&out.stdout).into_owned();
            found.extend(listing.lines().filter(|l| l.contains(".wh.")).map(String::from));
        }
    }
    found.sort();
    found
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The arguments of a build of `ctx` from scratch with `snapshotter`: into the store
/// as `app:<snapshotter>` (its id written to `iid`) and into the OCI tarball `oci`.
pub(crate) fn build_args(snapshotter: &str, iid: &Path, oci: &Path, ctx: &Path) -> Vec<String> {
    let (tag, oci) = (format!("app:{snapshotter}"), format!("type=oci,dest={}", oci.display()));
    let iid = iid.to_str().unwrap().to_string();
    let ctx = ctx.to_str().unwrap().to_string();
    ["build", "--progress=plain", "--no-cache", "-t", &tag, "--iidfile", &iid, "-o", "type=image", "-o", &oci, &ctx]
        .map(String::from)
        .to_vec()
}

#[test]
fn fallback_snapshotters_build_the_image_overlayfs_builds_and_run_it() {
    let test = "fallback_snapshotters_build_the_image_overlayfs_builds_and_run_it";
    let Some(env) = env(test) else { return };
    let env = env.with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", DOCKERFILE), ("file.txt", "hello\n")]);
    let build = |snapshotter: &str| -> (String, String, Vec<String>) {
        let iid = env.work.path().join(format!("{snapshotter}.iid"));
        let oci = env.work.path().join(format!("{snapshotter}.tar"));
        let out = env
            .cmd(&build_args(snapshotter, &iid, &oci, &ctx).iter().map(String::as_str).collect::<Vec<_>>())
            .env("SOURCE_DATE_EPOCH", "0")
            .env("BUILDER_SNAPSHOTTER", snapshotter)
            .output()
            .unwrap();
        assert!(out.status.success(), "{snapshotter} build failed:\n{}", stderr(&out));
        (std::fs::read_to_string(iid).unwrap(), stderr(&out), markers(&oci))
    };
    let (overlay_id, overlay_err, overlay_markers) = build("overlayfs");
    assert_eq!(fallback_warnings(&overlay_err), 0, "{overlay_err}");
    for marker in ["data/.wh.b", "bin/.wh.true", "opq/.wh..wh..opq", "usr/sbin/.wh..wh..opq"] {
        assert!(overlay_markers.iter().any(|m| m.trim_start_matches("./") == marker), "{marker}: {overlay_markers:?}");
    }
    for snapshotter in fallbacks(test, None) {
        let (id, err, markers) = build(snapshotter);
        assert_eq!(id, overlay_id, "{snapshotter} made another image");
        assert_eq!(markers, overlay_markers, "{snapshotter}");
        assert_eq!(fallback_warnings(&err), 1, "said once per build:\n{err}");
        assert!(err.contains(&format!("snapshotter: {snapshotter}, BUILDER_SNAPSHOTTER={snapshotter}")), "{err}");

        let run = |script: &str| {
            env.cmd(&["run", "--rm", &format!("app:{snapshotter}"), "sh", "-c", script])
                .env("BUILDER_SNAPSHOTTER", snapshotter)
                .output()
                .unwrap()
        };
        let out = run(RUN_CHECK);
        assert_eq!(out.status.code(), Some(3), "{snapshotter}: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), RUN_OUTPUT, "{snapshotter}");
        // A container's changes are its own: the image is as it was.
        assert!(run("rm /copied.txt").status.success());
        assert_eq!(String::from_utf8_lossy(&run("cat /copied.txt").stdout), "hello\n", "{snapshotter}");
    }
    // Nothing of the copies, and no mount, is left.
    let leftovers: Vec<_> = walkdir(env.root.path()).into_iter().filter(|p| p.contains(".builder-native-")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    let mounts: Vec<_> = crate::util::mount_table().into_iter().filter(|m| m.contains("fuse-overlayfs")).collect();
    assert!(mounts.is_empty(), "{mounts:?}");
}

fn walkdir(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        out.push(path.display().to_string());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walkdir(&path));
        }
    }
    out
}

#[test]
fn doctor_names_the_snapshotter_and_a_bad_setting_fails_by_name() {
    let Some(env) = env("doctor_names_the_snapshotter") else { return };
    let line = |value: Option<&str>| -> String {
        let mut cmd = env.cmd(&["doctor"]);
        match value {
            Some(v) => cmd.env("BUILDER_SNAPSHOTTER", v),
            None => cmd.env_remove("BUILDER_SNAPSHOTTER"),
        };
        let out = cmd.output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.lines().find(|l| l.starts_with("snapshotter: ")).unwrap_or_else(|| panic!("{text}")).to_string()
    };
    assert_eq!(line(None), "snapshotter: overlayfs");
    let native = line(Some("native"));
    assert!(
        native.starts_with("snapshotter: native (") && native.ends_with("chosen by BUILDER_SNAPSHOTTER=native"),
        "{native}"
    );
    let bad = line(Some("vfs"));
    assert!(bad.contains("BUILDER_SNAPSHOTTER=vfs: unknown snapshotter"), "{bad}");
    // A build fails on it the same way, naming it.
    let env = env.with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", "FROM busybox\nRUN true\n")]);
    let out = env
        .cmd(&["build", "--progress=plain", ctx.to_str().unwrap()])
        .env("BUILDER_SNAPSHOTTER", "vfs")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("BUILDER_SNAPSHOTTER=vfs: unknown snapshotter"), "{}", stderr(&out));
}

/// Only additions: a store on overlayfs takes neither whiteouts nor overlayfs's
/// xattrs, whichever snapshotter writes them.
const ADDITIONS: &str = "\
FROM busybox
RUN mkdir -p /app/sub && echo built > /app/sub/f && chown -R 1001:1001 /app
COPY file.txt /app/file.txt
RUN --mount=type=bind,source=file.txt,target=/in cp /in /app/copied
";

/// The diff ids in `builder inspect`'s output.
fn diff_ids(inspect: &str) -> Vec<String> {
    let json: serde_json::Value = serde_json::from_str(inspect).unwrap_or_else(|e| panic!("{e}: {inspect}"));
    let ids = json["RootFS"]["diff_ids"].as_array().unwrap_or_else(|| panic!("no diff_ids in {inspect}"));
    ids.iter().map(|d| d.as_str().unwrap().to_string()).collect()
}

#[test]
fn where_overlayfs_is_refused_a_fallback_is_chosen_and_said() {
    let test = "where_overlayfs_is_refused_a_fallback_is_chosen_and_said";
    let Some(env) = env(test) else { return };
    let has_unshare = std::process::Command::new("sh").args(["-c", "command -v unshare"]).output();
    if !has_unshare.is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED {test}: unshare (util-linux) is not installed");
        return;
    }
    let env = env.with_busybox();
    let ctx = env.context("ctx", &[("Dockerfile", ADDITIONS), ("file.txt", "hello\n")]);
    let out = env
        .cmd(&["build", "--progress=plain", "-t", "app:1", ctx.to_str().unwrap()])
        .env("SOURCE_DATE_EPOCH", "0")
        .env_remove("BUILDER_SNAPSHOTTER")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(fallback_warnings(&stderr(&out)), 0, "{}", stderr(&out));
    let builder = Path::new(env!("CARGO_BIN_EXE_builder"));
    let expected = diff_ids(&env.ok(&["inspect", "app:1"]));

    // The store on an overlayfs (as in a container without a volume): overlayfs
    // refuses an upperdir there.
    let w = env.work.path();
    for d in ["l", "u", "w", "m"] {
        std::fs::create_dir_all(w.join(d)).unwrap();
    }
    let script = format!(
        "mount -t overlay overlay -o lowerdir={w}/l,upperdir={w}/u,workdir={w}/w {w}/m && \
         B={b} && S={w}/m/store && $B --root $S import {tar} busybox:latest >/dev/null && \
         $B --root $S build --progress=plain -t app:1 {ctx} && \
         $B --root $S inspect app:1 > {w}/inspect.json && $B --root $S doctor > {w}/doctor.txt",
        w = w.display(),
        b = builder.display(),
        tar = crate::util::busybox_tar().display(),
        ctx = ctx.display(),
    );
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", &script])
        .env("SOURCE_DATE_EPOCH", "0")
        .env_remove("BUILDER_SNAPSHOTTER")
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert_eq!(fallback_warnings(&err), 1, "said once:\n{err}");
    assert!(err.contains("overlayfs refused here: mount overlay on"), "{err}");
    let doctor = std::fs::read_to_string(w.join("doctor.txt")).unwrap();
    let line = doctor.lines().find(|l| l.starts_with("snapshotter: ")).unwrap_or_default();
    assert!(line.contains("overlayfs refused here"), "{doctor}");
    let got = diff_ids(&std::fs::read_to_string(w.join("inspect.json")).unwrap());
    assert_eq!(got, expected, "the fallback made other layers");
}
