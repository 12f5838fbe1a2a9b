//! Rootless, the fallback snapshotters (`BUILDER_SNAPSHOTTER=fuse-overlayfs|native`:
//! what builder falls back to where overlayfs is refused in a user namespace) and
//! `builder run -it` in a real terminal, as the test user with subordinate ids.

use super::harness::*;
use crate::snapshotter::{DOCKERFILE, RUN_CHECK, RUN_OUTPUT, build_args, fallback_warnings, fallbacks, markers};
use crate::tty::{TYPED, check_terminal_output, typed_into_pty};
use std::os::unix::process::CommandExt;
use std::process::Command;

#[test]
fn rootless_fallback_snapshotters_build_the_image_overlayfs_builds_and_run_it() {
    let test = "rootless_fallback_snapshotters_build_the_image_overlayfs_builds_and_run_it";
    let Some(r) = Rootless::new(test, true) else { return };
    let tar = r.home.join("busybox.tar");
    r.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    let ctx = r.context("ctx", &[("Dockerfile", DOCKERFILE), ("file.txt", "hello\n")]);
    let build = |snapshotter: &str| -> (String, String, Vec<String>) {
        let (iid, oci) = (r.home.join(format!("{snapshotter}.iid")), r.home.join(format!("{snapshotter}.tar")));
        let out = r
            .cmd(&build_args(snapshotter, &iid, &oci, &ctx).iter().map(String::as_str).collect::<Vec<_>>())
            .env("SOURCE_DATE_EPOCH", "0")
            .env("BUILDER_SNAPSHOTTER", snapshotter)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(out.status.success(), "{snapshotter} build failed:\n{err}");
        (std::fs::read_to_string(iid).unwrap(), err, markers(&oci))
    };
    let (overlay_id, overlay_err, overlay_markers) = build("overlayfs");
    assert_eq!(fallback_warnings(&overlay_err), 0, "{overlay_err}");
    assert!(overlay_markers.iter().any(|m| m.ends_with("opq/.wh..wh..opq")), "{overlay_markers:?}");
    for snapshotter in fallbacks(test, Some((r.user.uid, r.user.gid))) {
        let (id, err, markers) = build(snapshotter);
        assert_eq!(id, overlay_id, "{snapshotter} made another image");
        assert_eq!(markers, overlay_markers, "{snapshotter}");
        assert_eq!(fallback_warnings(&err), 1, "said once per build:\n{err}");

        let out = r
            .cmd(&["run", "--rm", &format!("app:{snapshotter}"), "sh", "-c", RUN_CHECK])
            .env("BUILDER_SNAPSHOTTER", snapshotter)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3), "{snapshotter}: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), RUN_OUTPUT, "{snapshotter}");
        let doctor = r.cmd(&["doctor"]).env("BUILDER_SNAPSHOTTER", snapshotter).output().unwrap();
        let doctor = String::from_utf8_lossy(&doctor.stdout).into_owned();
        assert!(doctor.lines().any(|l| l.starts_with(&format!("snapshotter: {snapshotter} ("))), "{doctor}");
    }
    r.assert_no_processes_left("the builds");
}

#[test]
fn rootless_run_it_gives_the_process_a_terminal_of_its_own() {
    let Some(r) = Rootless::new("rootless_run_it", true) else { return };
    if let Some(why) = crate::tty::skip_reason() {
        eprintln!("SKIPPED rootless_run_it_gives_the_process_a_terminal_of_its_own: {why}");
        return;
    }
    let tar = r.home.join("busybox.tar");
    r.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    let mut script = Command::new("script");
    script.uid(r.user.uid).gid(r.user.gid);
    r.environment(&mut script);
    let line = format!("{} run --rm -it busybox sh", r.exe.display());
    let (code, out) = typed_into_pty(script, &line, TYPED);
    assert_eq!(code, Some(3), "{out}");
    check_terminal_output(&out);
    r.assert_no_processes_left("run -it");
}
