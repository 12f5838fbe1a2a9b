//! `builder build` end to end: multi-stage, config, whiteouts, failures, errors.

use crate::util::{env, mount_table};

#[test]
fn multi_stage_build_runs_with_files_env_workdir_user_and_cmd() {
    let Some(env) = env("multi_stage_build") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "multi",
        &[
            (
                "Dockerfile",
                r#"FROM busybox AS build
WORKDIR /src
COPY input.txt .
RUN tr 'a-z' 'A-Z' < input.txt > out.txt && echo built > /src/marker

FROM busybox
ENV APP_MODE=production GREETING="hi there"
WORKDIR /app
COPY --from=build /src/out.txt ./result.txt
RUN adduser -D -u 1234 worker 2>/dev/null || echo 'worker:x:1234:1234::/app:/bin/sh' >> /etc/passwd
USER worker
LABEL org.example.kind=test
EXPOSE 8080/tcp
CMD ["sh", "-c", "echo mode=$APP_MODE; echo greeting=$GREETING; pwd; id -u; cat result.txt"]
"#,
            ),
            ("input.txt", "shout me\n"),
        ],
    );
    env.build_ok(&ctx, &["-t", "multi:1"]);
    let out = env.ok(&["run", "--rm", "multi:1"]);
    assert_eq!(out, "mode=production\ngreeting=hi there\n/app\n1234\nSHOUT ME\n");

    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "multi:1"])).unwrap();
    let config = &inspect["Config"];
    assert_eq!(config["WorkingDir"], "/app");
    assert_eq!(config["User"], "worker");
    assert_eq!(config["Labels"]["org.example.kind"], "test");
    assert!(config["ExposedPorts"].get("8080/tcp").is_some(), "{config}");
    assert!(config["Env"].as_array().unwrap().iter().any(|e| e == "APP_MODE=production"));
    // The first stage's marker is not in the final image.
    let out = env.run(&["run", "--rm", "multi:1", "test", "-e", "/src/marker"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn run_that_deletes_a_base_file_leaves_a_whiteout() {
    let Some(env) = env("whiteout") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "whiteout",
        &[("Dockerfile", "FROM busybox\nRUN rm /etc/group && rm -r /home && mkdir -p /data && echo x > /data/f\n")],
    );
    env.build_ok(&ctx, &["-t", "wh:1"]);
    let out = env.run(&["run", "--rm", "wh:1", "sh", "-c", "test ! -e /etc/group && test ! -e /home && cat /data/f"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x\n");
    // The base file is still there in the base image.
    env.ok(&["run", "--rm", "busybox", "test", "-e", "/etc/group"]);
}

#[test]
fn failing_run_fails_the_build_with_its_exit_code_and_output_and_leaves_no_mounts() {
    let Some(env) = env("failing_run") else { return };
    let env = env.with_busybox();
    let before = mount_table();
    let ctx = env.context(
        "fail",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo first-line && echo 'something broke' >&2 && exit 3\nRUN echo never\n",
        )],
    );
    let (ok, _, stderr) = env.build(&ctx, &[]);
    assert!(!ok);
    assert!(stderr.contains("exit code: 3"), "{stderr}");
    assert!(stderr.contains("something broke"), "{stderr}");
    assert!(!stderr.contains("never\n"), "{stderr}");
    assert_eq!(mount_table(), before, "mounts left behind");
    let leftovers: Vec<_> = std::fs::read_dir(env.root.path().join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "temp dirs left behind: {leftovers:?}");
}

#[test]
fn bad_dockerfile_fails_before_anything_runs() {
    let Some(env) = env("bad_dockerfile") else { return };
    let env = env.with_busybox();
    let ctx = env.context("bad", &[("Dockerfile", "FROM busybox\nRUN touch /ran\nCOPPY a b\n")]);
    let out = env.run(&["build", "--progress=plain", ctx.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Dockerfile:3"), "{stderr}");
    assert!(!stderr.contains("RUN touch"), "a step ran: {stderr}");
}

#[test]
fn dockerignore_hides_files_from_copy() {
    let Some(env) = env("dockerignore") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "ignore",
        &[
            ("Dockerfile", "FROM busybox\nCOPY . /ctx/\n"),
            (".dockerignore", "secret.txt\nlogs/\n!logs/keep.log\n"),
            ("secret.txt", "no"),
            ("logs/a.log", "no"),
            ("logs/keep.log", "yes"),
            ("app.txt", "yes"),
        ],
    );
    env.build_ok(&ctx, &["-t", "ign:1"]);
    let out = env.ok(&["run", "--rm", "ign:1", "sh", "-c", "cd /ctx && find . -type f | sort"]);
    assert_eq!(out, "./.dockerignore\n./Dockerfile\n./app.txt\n./logs/keep.log\n");
}

#[test]
fn demo_builds_and_runs() {
    let Some(env) = env("demo") else { return };
    let env = env.with_busybox();
    env.build_ok(&crate::util::testdata("demo"), &["-t", "demo:latest"]);
    let out = env.ok(&["run", "--rm", "demo:latest"]);
    assert_eq!(
        out,
        "hello from builder\nrunning as nobody in /app\nbuilt on Linux as 0\nLAYERS, CACHES AND SANDBOXES\n"
    );
}

/// `--build-context`, as buildx: a directory for `COPY --from=NAME` and `FROM NAME`,
/// an image standing in for the one a `FROM` names; bad values are usage errors.
#[test]
fn build_contexts_name_directories_and_images() {
    let Some(env) = env("build_contexts") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM tools AS files\nFROM alpine\nCOPY --from=assets hello.txt /hello.txt\nCOPY --from=files / /files/\n\
             RUN cat /hello.txt /files/tool.sh > /seen\n",
        )],
    );
    let assets = env.context("assets", &[("hello.txt", "hello from assets\n")]);
    let tools = env.context("tools", &[("tool.sh", "echo tool\n")]);
    let assets_arg = format!("assets={}", assets.display());
    let tools_arg = format!("tools={}", tools.display());
    let contexts = [
        "--build-context",
        &assets_arg,
        "--build-context",
        &tools_arg,
        "--build-context",
        "alpine=docker-image://busybox",
    ];
    let mut args = contexts.to_vec();
    args.extend(["-t", "named:1"]);
    env.build_ok(&ctx, &args);
    assert_eq!(env.ok(&["run", "--rm", "named:1", "cat", "/seen"]), "hello from assets\necho tool\n");

    // A change in a named directory is seen (and only what depends on it re-runs).
    std::fs::write(assets.join("hello.txt"), "changed\n").unwrap();
    let mut args = contexts.to_vec();
    args.extend(["-t", "named:2"]);
    env.build_ok(&ctx, &args);
    assert_eq!(env.ok(&["run", "--rm", "named:2", "cat", "/seen"]), "changed\necho tool\n");

    for (spec, message) in [
        ("assets", "want NAME=VALUE"),
        ("assets=/does/not/exist", "/does/not/exist"),
        ("assets=ftp://example.com/x.tar", "not supported"),
        ("alpine=docker-image://Not A Ref", "not an image reference"),
    ] {
        let out = env.run(&["build", "--build-context", spec, ctx.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{spec}: {stderr}");
        assert!(stderr.contains(message), "{spec}: {stderr}");
    }
}
