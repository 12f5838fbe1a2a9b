//! Build checks and buildx's CI flags: `--call=check` (text and JSON), `--check`,
//! `--call=targets|outline`, `# check=error=true` failing a build, warnings during a
//! build, `-q`, `--annotation` and the attestation flags refused.

use crate::util::env;
use std::process::Command;

/// Five violations, one per line 2-6: casing of the stage name, MAINTAINER, the
/// legacy ENV form, a shell-form CMD and a relative WORKDIR.
const FIVE: &str = "FROM busybox AS Build\nMAINTAINER me\nENV GREETING hello\nCMD echo $GREETING\nWORKDIR app\n";

#[test]
fn check_lists_exactly_the_five_violations_with_their_lines() {
    let Some(env) = env("check_lists_exactly_the_five_violations_with_their_lines") else { return };
    let env = env.with_busybox();
    let ctx = env.context("five", &[("Dockerfile", FIVE)]);
    let out = env.run(&["build", "--call=check", ctx.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.starts_with("Check complete, 5 warnings have been found!\n"), "{stdout}");
    let found: Vec<(String, String)> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("WARNING: "))
        .map(|l| l.split(" - ").next().unwrap().to_string())
        .zip(stdout.lines().filter(|l| l.starts_with("Dockerfile:")).map(str::to_string))
        .collect();
    let want = [
        ("StageNameCasing", "Dockerfile:1"),
        ("MaintainerDeprecated", "Dockerfile:2"),
        ("LegacyKeyValueFormat", "Dockerfile:3"),
        ("JSONArgsRecommended", "Dockerfile:4"),
        ("WorkdirRelativePath", "Dockerfile:5"),
    ];
    let want: Vec<(String, String)> = want.iter().map(|(r, l)| (r.to_string(), l.to_string())).collect();
    assert_eq!(found, want, "{stdout}");
    assert!(stdout.contains("https://docs.docker.com/go/dockerfile/rule/workdir-relative-path/"), "{stdout}");

    // --check is --call=check; format=json is BuildKit's result.json.
    let out = env.run(&["build", "--check", "--call=check,format=json", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = json["warnings"].as_array().unwrap();
    let lines: Vec<(&str, u64)> = warnings
        .iter()
        .map(|w| (w["ruleName"].as_str().unwrap(), w["location"]["ranges"][0]["start"]["line"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        lines,
        [
            ("StageNameCasing", 1),
            ("MaintainerDeprecated", 2),
            ("LegacyKeyValueFormat", 3),
            ("JSONArgsRecommended", 4),
            ("WorkdirRelativePath", 5)
        ]
    );
    assert_eq!(warnings[1]["detail"], "Maintainer instruction is deprecated in favor of using label");
    // Nothing was built.
    assert!(!env.ok(&["images"]).contains("build"), "a check made an image");
}

#[test]
fn check_of_a_clean_dockerfile_exits_0() {
    let Some(env) = env("check_of_a_clean_dockerfile_exits_0") else { return };
    let env = env.with_busybox();
    let clean =
        "# check=error=true\nARG BASE=busybox\nFROM ${BASE} AS build\nENV APP=/app\nWORKDIR $APP\nCMD [\"sh\"]\n";
    let ctx = env.context("clean", &[("Dockerfile", clean)]);
    let out = env.ok(&["build", "--call=check", ctx.to_str().unwrap()]);
    assert_eq!(out, "Check complete, no warnings found.\n");
    // A Dockerfile that cannot be built is a failed check, with the error.
    let ctx = env.context("broken", &[("Dockerfile", "FROM busybox\nCOPPY a b\n")]);
    let out = env.run(&["build", "--call=check", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Dockerfile:2:1: unknown instruction"));
}

#[test]
fn builds_warn_and_check_error_true_fails_them() {
    let Some(env) = env("builds_warn_and_check_error_true_fails_them") else { return };
    let env = env.with_busybox();
    let ctx = env.context("warns", &[("Dockerfile", "FROM busybox\nENV A 1\nRUN true\n")]);
    let (ok, _, stderr) = env.build(&ctx, &[]);
    assert!(ok, "{stderr}");
    let warn = "WARN: LegacyKeyValueFormat: \"ENV key=value\" should be used instead of legacy \"ENV key value\" format (line 2)";
    assert!(stderr.contains(warn), "{stderr}");

    let ctx = env.context("fails", &[("Dockerfile", "# check=error=true\nFROM busybox\nENV A 1\nRUN true\n")]);
    let (ok, _, stderr) = env.build(&ctx, &["-t", "never:1"]);
    assert!(!ok, "{stderr}");
    assert!(stderr.contains("lint violation found for rules: LegacyKeyValueFormat"), "{stderr}");
    assert!(!env.ok(&["images"]).contains("never"), "a failed check still made an image");
    // A skipped rule neither warns nor fails.
    let skip = "# check=error=true;skip=LegacyKeyValueFormat\nFROM busybox\nENV A 1\n";
    let ctx = env.context("skips", &[("Dockerfile", skip)]);
    let (ok, _, stderr) = env.build(&ctx, &[]);
    assert!(ok && !stderr.contains("LegacyKeyValueFormat"), "{stderr}");
}

#[test]
fn targets_and_outline_describe_the_dockerfile() {
    let Some(env) = env("targets_and_outline_describe_the_dockerfile") else { return };
    let dockerfile = "# VERSION the release to build\nARG VERSION=1.2\n# build compiles the code\nFROM busybox AS build\nARG VERSION\nRUN --mount=type=secret,id=token,required=true true\nFROM busybox AS test\n# release ships it\nFROM busybox AS release\nCOPY --from=build /bin/sh /sh\n";
    let ctx = env.context("outline", &[("Dockerfile", dockerfile)]);
    let out = env.ok(&["build", "--call=targets", ctx.to_str().unwrap()]);
    assert_eq!(
        out,
        "TARGET            DESCRIPTION\nbuild             compiles the code\ntest\nrelease (default) ships it\n"
    );
    let out = env.ok(&["build", "--call=outline", "--target=build", ctx.to_str().unwrap()]);
    assert_eq!(
        out,
        "TARGET:      build\nDESCRIPTION: compiles the code\n\nBUILD ARG   VALUE   DESCRIPTION\nVERSION     1.2     the release to build\n\nSECRET   REQUIRED\ntoken    true\n\n"
    );
    let out = env.ok(&["build", "--call=outline,format=json", ctx.to_str().unwrap()]);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["name"], "release");
    assert_eq!(json["secrets"][0]["name"], "token");
}

#[test]
fn quiet_prints_only_the_image_id() {
    let Some(env) = env("quiet_prints_only_the_image_id") else { return };
    let env = env.with_busybox();
    let ctx = env.context("quiet", &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\n")]);
    let out = env.run(&["build", "-q", "-t", "q:1", ctx.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("sha256:") && stdout.lines().count() == 1, "{stdout:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "", "-q printed progress");
    // Errors still say what went wrong.
    let bad = env.context("quiet-bad", &[("Dockerfile", "FROM busybox\nRUN exit 3\n")]);
    let out = env.run(&["build", "--quiet", bad.to_str().unwrap()]);
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(!out.stderr.is_empty());
}

#[test]
fn annotations_reach_the_manifest() {
    let Some(env) = env("annotations_reach_the_manifest") else { return };
    if !Command::new("skopeo").arg("--version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED annotations_reach_the_manifest: skopeo is not installed (scripts/test.sh installs it)");
        return;
    }
    let env = env.with_busybox();
    let ctx = env.context("annotated", &[("Dockerfile", "FROM busybox\nRUN echo hi > /hi\n")]);
    let tar = env.work.path().join("annotated.tar");
    env.build_ok(
        &ctx,
        &[
            "--annotation",
            "org.opencontainers.image.title=hello",
            "--annotation",
            "manifest:com.example.team=ci",
            "-o",
            &format!("type=oci,dest={}", tar.display()),
        ],
    );
    let out =
        Command::new("skopeo").args(["inspect", "--raw", &format!("oci-archive:{}", tar.display())]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["annotations"]["org.opencontainers.image.title"], "hello");
    assert_eq!(manifest["annotations"]["com.example.team"], "ci");
    // A single-platform image has no index: a usage error, not a silent drop.
    let out = env.run(&["build", "--annotation", "index:a=b", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("index annotations need a multi-platform build"));

    // A multi-platform build has one: `index:`, `manifest-descriptor:` (its entries) and
    // `index-descriptor:` (its entry in the layout's index.json), checked with skopeo and
    // in the layout itself. No RUN, so no emulator is needed.
    let ctx = env.context("annotated-multi", &[("Dockerfile", "FROM scratch\nCOPY f /f\n"), ("f", "x")]);
    let layout = env.work.path().join("layout");
    env.build_ok(
        &ctx,
        &[
            "--platform",
            "linux/amd64,linux/arm64",
            "--annotation",
            "index:org.opencontainers.image.description=both",
            "--annotation",
            "manifest-descriptor:com.example.entry=yes",
            "--annotation",
            "index-descriptor:com.example.top=layout",
            "--annotation",
            "com.example.team=ci",
            "-o",
            &format!("type=oci,tar=false,dest={}", layout.display()),
        ],
    );
    let out = Command::new("skopeo").args(["inspect", "--raw", &format!("oci:{}", layout.display())]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let index: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(index["annotations"]["org.opencontainers.image.description"], "both", "{index}");
    let entries = index["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for entry in entries {
        assert_eq!(entry["annotations"]["com.example.entry"], "yes", "{entry}");
        let blob = layout.join("blobs/sha256").join(entry["digest"].as_str().unwrap().trim_start_matches("sha256:"));
        let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap();
        assert_eq!(manifest["annotations"]["com.example.team"], "ci", "{manifest}");
    }
    let top: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    assert_eq!(top["manifests"][0]["annotations"]["com.example.top"], "layout", "{top}");
}

#[test]
fn attestation_flags_are_refused_clearly() {
    let Some(env) = env("attestation_flags_are_refused_clearly") else { return };
    let ctx = env.context("attest", &[("Dockerfile", "FROM busybox\n")]);
    for flag in ["--sbom=true", "--provenance=mode=max", "--attest=type=sbom"] {
        let out = env.run(&["build", flag, ctx.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{flag}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("attestations are not supported yet"), "{flag}: {stderr}");
    }
}

#[test]
fn add_host_and_shm_size_reach_run_steps() {
    let Some(env) = env("add_host_and_shm_size_reach_run_steps") else { return };
    let env = env.with_busybox();
    let dockerfile = "FROM busybox\nRUN cat /etc/hosts > /hosts && df -k /dev/shm | tail -n 1 > /shm\n";
    let ctx = env.context("hosts", &[("Dockerfile", dockerfile)]);
    let args =
        ["-t", "hosts:1", "--add-host", "db.internal:10.1.2.3", "--add-host", "v6=fd00::7", "--shm-size", "128m"];
    env.build_ok(&ctx, &args);
    let hosts = env.ok(&["run", "--rm", "hosts:1", "cat", "/hosts"]);
    assert!(hosts.contains("10.1.2.3\tdb.internal\n") && hosts.contains("fd00::7\tv6\n"), "{hosts}");
    assert!(hosts.starts_with("127.0.0.1\tlocalhost"), "{hosts}");
    let shm = env.ok(&["run", "--rm", "hosts:1", "cat", "/shm"]);
    let kib: Vec<&str> = shm.split_whitespace().collect();
    assert_eq!(kib.get(1), Some(&"131072"), "/dev/shm is not 128m: {shm}");
    // The hosts file is the sandbox's, never the image's.
    let out = env.run(&["run", "--rm", "hosts:1", "grep", "-c", "db.internal", "/etc/hosts"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    // Bad values are usage errors before anything runs.
    for bad in [["--add-host", "nocolon"], ["--add-host", "db:not-an-ip"], ["--shm-size", "lots"]] {
        let out = env.run(&["build", bad[0], bad[1], ctx.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
    }
}

/// `--add-host`, `--shm-size` and `--ulimit` are in the key of every RUN, as in
/// BuildKit: another value runs the step again with it, the same one is a hit.
#[test]
fn add_host_shm_size_and_ulimit_are_in_the_run_key() {
    let Some(env) = env("add_host_shm_size_and_ulimit_are_in_the_run_key") else { return };
    let env = env.with_busybox();
    let dockerfile =
        "FROM busybox\nRUN cat /etc/hosts > /hosts && df -k /dev/shm | tail -n 1 > /shm && ulimit -n > /nofile\n";
    let ctx = env.context("keyflags", &[("Dockerfile", dockerfile)]);
    // Builds with these flags into `tag`; whether the RUN was a hit, and its stderr.
    let build = |tag: &str, flags: &[&str]| {
        let mut args = vec!["-t", tag, "--explain"];
        args.extend_from_slice(flags);
        let (ok, _, stderr) = env.build(&ctx, &args);
        assert!(ok, "{flags:?}:\n{stderr}");
        let run = stderr.lines().find(|l| l.contains("RUN cat")).and_then(|l| l.split(' ').next()).unwrap();
        (stderr.contains(&format!("{run} CACHED")), stderr)
    };
    let file = |tag: &str, path: &str| env.ok(&["run", "--rm", tag, "cat", path]);

    let (cached, _) = build("k:1", &["--add-host", "a:10.0.0.1"]);
    assert!(!cached);
    assert!(file("k:1", "/hosts").contains("10.0.0.1\ta\n"));
    let (cached, stderr) = build("k:2", &["--add-host", "a:10.0.0.2"]);
    assert!(!cached, "another --add-host hit the cache:\n{stderr}");
    assert!(stderr.contains("--add-host changed a:10.0.0.1 → a:10.0.0.2"), "{stderr}");
    let hosts = file("k:2", "/hosts");
    assert!(hosts.contains("10.0.0.2\ta\n") && !hosts.contains("10.0.0.1"), "{hosts}");
    let (cached, stderr) = build("k:3", &["--add-host", "a:10.0.0.2"]);
    assert!(cached, "the same --add-host ran again:\n{stderr}");

    let shm = ["--add-host", "a:10.0.0.2", "--shm-size", "64m"];
    let (cached, stderr) = build("k:4", &shm);
    assert!(!cached, "--shm-size hit the cache of a build without it:\n{stderr}");
    assert_eq!(file("k:4", "/shm").split_whitespace().nth(1), Some("65536"));
    let (cached, stderr) = build("k:5", &["--add-host", "a:10.0.0.2", "--shm-size", "32m"]);
    assert!(!cached, "another --shm-size hit the cache:\n{stderr}");
    assert_eq!(file("k:5", "/shm").split_whitespace().nth(1), Some("32768"));
    assert!(build("k:6", &shm).0, "the same --shm-size ran again");

    let (cached, stderr) = build("k:7", &["--ulimit", "nofile=512:1024"]);
    assert!(!cached, "--ulimit hit the cache of a build without it:\n{stderr}");
    assert_eq!(file("k:7", "/nofile"), "512\n");
    let (cached, stderr) = build("k:8", &["--ulimit", "nofile=256:1024"]);
    assert!(!cached, "another --ulimit hit the cache:\n{stderr}");
    assert_eq!(file("k:8", "/nofile"), "256\n");
    // The same limit, spelt as its RLIMIT_ name: one key.
    let (cached, stderr) = build("k:9", &["--ulimit", "RLIMIT_NOFILE=256:1024"]);
    assert!(cached, "the same --ulimit ran again:\n{stderr}");
}
