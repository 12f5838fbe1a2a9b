//! Rootless commands that need no user namespace do not pay for one: a no-op rebuild
//! and `builder images` run as the caller, and a build that does need it starts over
//! inside, showing and reporting everything once. What proves the namespace was not
//! entered: `newuidmap`/`newgidmap` wrappers first in PATH, which log each call
//! (builder finds the helpers through PATH), and `--debug`'s own account.

use super::harness::*;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Two stages, a RUN and COPYs, and two build-check warnings (`as` in lowercase, CMD
/// in shell form) in the step that loads the Dockerfile.
const DOCKERFILE: &str = "\
FROM busybox as build
RUN echo built > /x
FROM busybox
COPY f.txt /f.txt
COPY --from=build /x /x
CMD echo hi
";

/// The user's builder with logging `newuidmap` and `newgidmap` wrappers first in PATH.
struct Counted<'a> {
    r: &'a Rootless,
    bin: PathBuf,
    calls: PathBuf,
}

impl<'a> Counted<'a> {
    fn new(r: &'a Rootless) -> Counted<'a> {
        let bin = r.home.join("wrappers");
        fs::create_dir(&bin).unwrap();
        let calls = r.home.join("helper-calls");
        for helper in ["newuidmap", "newgidmap"] {
            let real = sh("sh", &["-c", &format!("command -v {helper}")]).unwrap();
            let script =
                format!("#!/bin/sh\necho \"{helper} $*\" >> {}\nexec {} \"$@\"\n", calls.display(), real.trim());
            fs::write(bin.join(helper), script).unwrap();
        }
        sh("chmod", &["0755", bin.join("newuidmap").to_str().unwrap(), bin.join("newgidmap").to_str().unwrap()])
            .unwrap();
        sh("chown", &["-R", &format!("{}:{}", r.user.uid, r.user.gid), bin.to_str().unwrap()]).unwrap();
        Counted { r, bin, calls }
    }

    fn run(&self, args: &[&str]) -> Output {
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", self.bin.display());
        self.r.cmd(args).env("PATH", path).output().unwrap()
    }

    /// How many times a helper ran so far.
    fn calls(&self) -> usize {
        fs::read_to_string(&self.calls).map(|t| t.lines().count()).unwrap_or(0)
    }
}

/// A plain display read back: each step's name and how it ended, and its warnings.
fn steps(stderr: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut names = BTreeMap::new();
    let mut ends = BTreeMap::new();
    let mut warnings = Vec::new();
    for line in stderr.lines() {
        let Some((n, rest)) = line.strip_prefix('#').and_then(|l| l.split_once(' ')) else { continue };
        if !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Some(warning) = rest.strip_prefix("WARN: ") {
            warnings.push(warning.to_string());
        } else if rest == "CACHED" || rest.starts_with("DONE ") || rest.starts_with("ERROR") {
            ends.insert(n.to_string(), rest.split_whitespace().next().unwrap().trim_end_matches(':').to_string());
        } else if rest.starts_with('[') || rest == "load build context" || rest == "exporting to image" {
            names.insert(n.to_string(), rest.to_string());
        }
    }
    let steps = names
        .into_iter()
        .map(|(n, name)| {
            let end = ends.get(&n).cloned().unwrap_or_default();
            // Two FROMs of one image are one vertex: which of them is shown as done and
            // which as cached depends on which the scheduler took first.
            let end = if name.contains("] FROM ") && end == "CACHED" { "DONE".to_string() } else { end };
            (name, end)
        })
        .collect();
    (steps, warnings)
}

fn count(text: &str, wanted: impl Fn(&str) -> bool) -> usize {
    text.lines().filter(|l| wanted(l)).count()
}

#[test]
fn rootless_noop_rebuild_and_images_run_outside_the_user_namespace() {
    let Some(r) = Rootless::new("rootless_noop_rebuild_and_images_run_outside_the_user_namespace", true) else {
        return;
    };
    let user = Counted::new(&r);
    let tar = r.home.join("busybox.tar");
    ok(&user.run(&["import", tar.to_str().unwrap(), "busybox:latest"]), "import");
    assert!(user.calls() >= 2, "import enters the namespace: both helpers run");
    let ctx = r.context("ctx", &[("Dockerfile", DOCKERFILE), ("f.txt", "f\n")]);
    let ctx = ctx.to_str().unwrap();

    // Cold: with no cache record yet, the build enters at once.
    let before = user.calls();
    let out = user.run(&["--debug", "build", "--progress=plain", "-t", "app", ctx]);
    let cold = ok(&out, "cold build");
    assert!(user.calls() > before, "the cold build entered the namespace");
    assert!(stderr(&out).contains("user namespace: entering (the build cache is empty"), "{}", stderr(&out));
    let made = |steps: &BTreeMap<String, String>| -> Vec<String> {
        steps
            .iter()
            .filter(|(name, _)| name.contains("] RUN ") || name.contains("] COPY "))
            .map(|(_, end)| end.clone())
            .collect()
    };
    assert_eq!(made(&steps(&stderr(&out)).0), ["DONE"; 3], "{}", stderr(&out));

    // No-op: outside, every step cached, as root's no-op rebuild shows it.
    let before = user.calls();
    let out = user.run(&["build", "--progress=plain", "-t", "app", ctx]);
    let noop = ok(&out, "no-op build");
    assert_eq!(user.calls(), before, "the no-op rebuild ran a helper: it entered the namespace");
    assert_eq!(noop, cold, "the same image");
    let (rootless_steps, rootless_warnings) = steps(&stderr(&out));
    assert_eq!(made(&rootless_steps), ["CACHED"; 3], "{}", stderr(&out));
    let root_store = r.dir.path().join("root-store");
    let as_root = |args: &[&str]| {
        let out = Command::new(&r.exe).arg("--root").arg(&root_store).args(args).output().unwrap();
        ok(&out, &format!("builder {args:?} as root"));
        out
    };
    as_root(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    as_root(&["build", "--progress=plain", "-t", "app", ctx]);
    let root_noop = as_root(&["build", "--progress=plain", "-t", "app", ctx]);
    let (root_steps, root_warnings) = steps(&stderr(&root_noop));
    assert_eq!(rootless_steps, root_steps, "rootless:\n{}\nroot:\n{}", stderr(&out), stderr(&root_noop));
    assert_eq!(rootless_warnings, root_warnings);
    assert_eq!(rootless_warnings.len(), 2, "{rootless_warnings:?}");
    // `--debug` says so too.
    let out = user.run(&["--debug", "build", "--progress=plain", "-t", "app", ctx]);
    ok(&out, "no-op build --debug");
    let err = stderr(&out);
    assert!(err.contains("user namespace: not needed: the build ran without it"), "{err}");
    assert!(!err.contains("user namespace: entering"), "{err}");

    // `builder images` reads the caller's metadata: never inside.
    let out = user.run(&["--debug", "images"]);
    let images = ok(&out, "images");
    assert!(images.lines().any(|l| l.starts_with("app ")), "{images}");
    assert!(stderr(&out).contains("user namespace: not needed (the command reads"), "{}", stderr(&out));
    assert_eq!(user.calls(), before, "images entered the namespace");

    // A changed file: the attempt outside meets the COPY's miss, builder starts over
    // inside. Every line of the display comes once, from the run inside.
    fs::write(Path::new(ctx).join("f.txt"), "changed\n").unwrap();
    let out = user.run(&["--debug", "build", "--progress=plain", "-t", "app", ctx]);
    let changed = ok(&out, "build after a change");
    let err = stderr(&out);
    assert!(user.calls() > before, "the build after a change did not enter the namespace");
    assert!(err.contains("user namespace: not entered: the build runs without it unless it needs it"), "{err}");
    assert!(err.contains("user namespace: needed after all ([stage-1 2/3] COPY f.txt /f.txt: "), "{err}");
    assert!(err.contains("user namespace: entering (builder re-executed itself to enter)"), "{err}");
    assert_eq!(changed.lines().count(), 1, "one image id: {changed}");
    assert_ne!(changed, cold);
    assert_eq!(count(&err, |l| l == "#1 [internal] load build definition from Dockerfile"), 1, "{err}");
    assert_eq!(count(&err, |l| l.contains("WARN: FromAsCasing")), 1, "{err}");
    assert_eq!(count(&err, |l| l.contains("WARN: JSONArgsRecommended")), 1, "{err}");
    assert_eq!(count(&err, |l| l.ends_with(" exporting to image")), 1, "{err}");
    assert_eq!(made(&steps(&err).0), ["CACHED", "DONE", "DONE"], "RUN, COPY f.txt, COPY --from:\n{err}");

    // A build that fails outside (a COPY of a missing file fails while its key is
    // made) starts over inside, which reports the error, once.
    let bad = r.context("bad", &[("Dockerfile", "FROM busybox\nCOPY missing.txt /m\n")]);
    let out = user.run(&["--debug", "build", "--progress=plain", bad.to_str().unwrap()]);
    assert!(stderr(&out).contains("user namespace: needed after all ([2/2] COPY missing.txt /m: "), "{}", stderr(&out));
    let before = user.calls();
    let out = user.run(&["build", "--progress=plain", bad.to_str().unwrap()]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(user.calls() > before, "the failed build did not start over inside");
    assert_eq!(count(&err, |l| l.starts_with("error: ")), 1, "{err}");
    assert_eq!(count(&err, |l| l.contains(" ERROR: ")), 1, "{err}");
    assert!(err.contains("missing.txt"), "{err}");
    assert!(!err.contains("user namespace"), "the fallback is not the user's business: {err}");
    r.assert_no_processes_left("the builds");
    let tmp: Vec<_> = fs::read_dir(r.store().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{tmp:?}");
}

#[test]
fn rootless_without_subordinate_ids_a_noop_rebuild_runs_outside_too() {
    let Some(r) = Rootless::new("rootless_without_subordinate_ids_a_noop_rebuild_runs_outside_too", false) else {
        return;
    };
    let tar = r.home.join("busybox.tar");
    r.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    let ctx = r.context("ctx", &[("Dockerfile", "FROM busybox\nCOPY f.txt /f\nRUN cat /f > /g\n"), ("f.txt", "f\n")]);
    let ctx = ctx.to_str().unwrap();
    let out = r.run(&["build", "--progress=plain", "-t", "app", ctx]);
    ok(&out, "cold build");
    // Said by the run inside alone.
    let warning = "no subordinate ids for user builder-rootless-nosub";
    assert_eq!(count(&stderr(&out), |l| l.contains(warning)), 1, "{}", stderr(&out));
    let out = r.run(&["--debug", "build", "--progress=plain", "-t", "app", ctx]);
    ok(&out, "no-op build");
    let err = stderr(&out);
    assert!(err.contains("user namespace: not needed: the build ran without it"), "{err}");
    assert!(!err.contains(warning), "nothing is mapped, nothing is lost: {err}");
    let (steps, _) = steps(&err);
    let made: Vec<_> = steps.iter().filter(|(name, _)| name.contains("] RUN ") || name.contains("] COPY ")).collect();
    assert_eq!(made.len(), 2, "{err}");
    assert!(made.iter().all(|(_, end)| *end == "CACHED"), "{err}");

    // The automatic GC due after a no-op rebuild (measured after every build, over a
    // budget of 1 kB) runs in a re-exec of its own, inside, after the build showed its
    // result once.
    let gc = |cmd: &mut Command| {
        cmd.env("BUILDER_GC_INTERVAL", "0").env("BUILDER_GC_KEEP_STORAGE", "1kB");
    };
    let mut cmd = r.cmd(&["--debug", "build", "--progress=plain", "-t", "app", ctx]);
    gc(&mut cmd);
    let out = cmd.output().unwrap();
    let digest = ok(&out, "no-op build with the GC due");
    let err = stderr(&out);
    assert_eq!(digest.lines().count(), 1, "{digest}");
    assert!(err.contains("user namespace: not needed: the build ran without it"), "{err}");
    assert!(err.contains("user namespace: needed for the automatic GC"), "{err}");
    assert_eq!(count(&err, |l| l == "#1 [internal] load build definition from Dockerfile"), 1, "{err}");
    assert_eq!(count(&err, |l| l.starts_with("automatic GC: build data ")), 1, "{err}");
    assert!(r.ok(&["images"]).lines().any(|l| l.starts_with("app ")));
    r.assert_no_processes_left("the builds");
}
