//! Dockerfile features end to end: built, run, and the files and config checked.

use crate::util::env;
use std::io::{Read, Write};

fn inspect(env: &crate::util::Env, image: &str) -> serde_json::Value {
    serde_json::from_str(&env.ok(&["inspect", image])).unwrap()
}

#[test]
fn heredocs_escape_directive_and_shell() {
    let Some(env) = env("heredocs") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "heredoc",
        &[(
            "Dockerfile",
            "# escape=`\nFROM busybox\nENV WHO=world\nRUN <<EOF\necho \"hello $WHO\" > /greeting\necho second >> /greeting\nEOF\nCOPY <<-CONF /etc/app.conf\n\tkey=$WHO\n\tCONF\nCOPY <<'RAW' /raw.txt\nkeep $WHO\nRAW\nRUN echo one `\n    two > /escaped\nSHELL [\"/bin/sh\", \"-c\", \"echo shell-used > /shell; sh -c \\\"$0\\\"\"]\nRUN echo via-shell > /via\n",
        )],
    );
    env.build_ok(&ctx, &["-t", "hd:1"]);
    let out =
        env.ok(&["run", "--rm", "hd:1", "cat", "/greeting", "/etc/app.conf", "/raw.txt", "/escaped", "/shell", "/via"]);
    assert_eq!(out, "hello world\nsecond\nkey=world\nkeep $WHO\none two\nshell-used\nvia-shell\n");
    assert_eq!(
        inspect(&env, "hd:1")["Config"]["Shell"],
        serde_json::json!(["/bin/sh", "-c", "echo shell-used > /shell; sh -c \"$0\""])
    );
}

#[test]
fn onbuild_triggers_run_in_the_child_build() {
    let Some(env) = env("onbuild") else { return };
    let env = env.with_busybox();
    let base = env.context(
        "base",
        &[(
            "Dockerfile",
            "FROM busybox\nONBUILD COPY trigger.txt /from-trigger.txt\nONBUILD RUN echo ran > /onbuild-ran\n",
        )],
    );
    env.build_ok(&base, &["-t", "onbase:1"]);
    assert_eq!(
        inspect(&env, "onbase:1")["Config"]["OnBuild"],
        serde_json::json!(["COPY trigger.txt /from-trigger.txt", "RUN echo ran > /onbuild-ran"])
    );
    let child =
        env.context("child", &[("Dockerfile", "FROM onbase:1\nRUN test -e /onbuild-ran\n"), ("trigger.txt", "t\n")]);
    env.build_ok(&child, &["-t", "onchild:1"]);
    assert_eq!(env.ok(&["run", "--rm", "onchild:1", "cat", "/from-trigger.txt", "/onbuild-ran"]), "t\nran\n");
    assert!(inspect(&env, "onchild:1")["Config"]["OnBuild"].is_null());
}

#[test]
fn args_env_expansion_and_target_pruning() {
    let Some(env) = env("args_target") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "args",
        &[(
            "Dockerfile",
            r#"ARG BASE=busybox
ARG TAG=latest
FROM ${BASE}:${TAG} AS broken
RUN exit 1

FROM ${BASE} AS good
ARG TAG
ARG NAME=app
ENV FULL=${NAME:-none}-${TAG} EMPTY_DEFAULT=${UNSET:-fallback} ALT=${NAME:+set}
ENV SUFFIX=${FULL%-latest} PREFIX=${FULL#svc}
ARG TARGETOS
RUN echo "$FULL $EMPTY_DEFAULT $ALT $SUFFIX $PREFIX $TARGETOS" > /out
"#,
        )],
    );
    // The broken stage is not needed by `good`, so it never runs.
    env.build_ok(&ctx, &["-t", "args:1", "--target", "good", "--build-arg", "NAME=svc"]);
    assert_eq!(env.ok(&["run", "--rm", "args:1", "cat", "/out"]), "svc-latest fallback set svc -latest linux\n");
    let (ok, _, stderr) = env.build(&ctx, &["--target", "nope"]);
    assert!(!ok);
    assert!(stderr.contains("nope"), "{stderr}");
}

#[test]
fn copy_flags_chmod_chown_parents_exclude_link() {
    let Some(env) = env("copy_flags") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "copyflags",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY --chmod=0750 --chown=1000:100 tool.sh /bin/tool\nCOPY --chmod=u+x,g-r plain.txt /plain\nCOPY --parents a/b/c.txt a/d.txt /tree/\nCOPY --exclude=*.log logs/ /logs/\nCOPY --link linked.txt /linked.txt\n",
            ),
            ("tool.sh", "#!/bin/sh\necho tool\n"),
            ("plain.txt", "p\n"),
            ("a/b/c.txt", "c\n"),
            ("a/d.txt", "d\n"),
            ("logs/keep.txt", "k\n"),
            ("logs/drop.log", "x\n"),
            ("linked.txt", "l\n"),
        ],
    );
    std::fs::set_permissions(ctx.join("plain.txt"), std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    env.build_ok(&ctx, &["-t", "cf:1"]);
    let out = env.ok(&[
        "run",
        "--rm",
        "cf:1",
        "sh",
        "-c",
        "stat -c '%a %u:%g' /bin/tool /plain; cd /tree && find . -type f | sort; ls /logs; cat /linked.txt; tool",
    ]);
    assert_eq!(out, "750 1000:100\n704 0:0\n./a/b/c.txt\n./a/d.txt\nkeep.txt\nl\ntool\n");
}

/// Serves one file over HTTP on 127.0.0.1 for as many requests as come.
fn serve(body: &'static [u8]) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(body);
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_extracts_local_tars_and_fetches_urls() {
    let Some(env) = env("add") else { return };
    let env = env.with_busybox();
    let ctx = env.context("add", &[("payload/inner.txt", "from tar\n")]);
    let status = std::process::Command::new("tar")
        .args(["-czf", "bundle.tar.gz", "-C", "payload", "inner.txt"])
        .current_dir(&ctx)
        .status()
        .unwrap();
    assert!(status.success());
    let url = serve(b"served over http\n");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM busybox\nADD bundle.tar.gz /unpacked/\nADD {url}/files/remote.txt /remote/\n"),
    )
    .unwrap();
    env.build_ok(&ctx, &["-t", "add:1"]);
    let out = env.ok(&[
        "run",
        "--rm",
        "add:1",
        "sh",
        "-c",
        "cat /unpacked/inner.txt /remote/remote.txt; stat -c %a /remote/remote.txt",
    ]);
    assert_eq!(out, "from tar\nserved over http\n600\n");
}

#[test]
fn healthcheck_stopsignal_volume_and_metadata_reach_the_config() {
    let Some(env) = env("metadata") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "meta",
        &[(
            "Dockerfile",
            "FROM busybox\nHEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD wget -q -O- http://localhost/ || exit 1\nSTOPSIGNAL SIGQUIT\nVOLUME [\"/data\", \"/cache\"]\nEXPOSE 80 53/udp\nENTRYPOINT [\"/bin/echo\"]\nCMD [\"default\"]\n",
        )],
    );
    env.build_ok(&ctx, &["-t", "meta:1", "--label", "team=core"]);
    let config = &inspect(&env, "meta:1")["Config"];
    assert_eq!(
        config["Healthcheck"]["Test"],
        serde_json::json!(["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"])
    );
    assert_eq!(config["Healthcheck"]["Interval"], 5_000_000_000i64);
    assert_eq!(config["Healthcheck"]["Timeout"], 2_000_000_000i64);
    assert_eq!(config["Healthcheck"]["Retries"], 4);
    assert_eq!(config["StopSignal"], "SIGQUIT");
    assert!(config["Volumes"].get("/data").is_some() && config["Volumes"].get("/cache").is_some(), "{config}");
    assert!(config["ExposedPorts"].get("80/tcp").is_some() && config["ExposedPorts"].get("53/udp").is_some());
    assert_eq!(config["Labels"]["team"], "core");
    assert_eq!(env.ok(&["run", "--rm", "meta:1"]), "default\n");
    assert_eq!(env.ok(&["run", "--rm", "meta:1", "other"]), "other\n");
}

#[test]
fn proxy_build_args_reach_run_but_not_the_cache_key_or_the_image() {
    let Some(env) = env("proxy_args") else { return };
    let env = env.with_busybox();
    let ctx =
        env.context("proxy", &[("Dockerfile", "FROM busybox\nRUN echo \"proxy=$HTTP_PROXY $http_proxy\" > /p\n")]);
    let (ok, _, stderr) = env.build(&ctx, &["-t", "px:1", "--build-arg", "HTTP_PROXY=http://a:1"]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("were not consumed"), "a predefined arg warned as unused:\n{stderr}");
    // Both spellings, as BuildKit sets them.
    assert_eq!(env.ok(&["run", "--rm", "px:1", "cat", "/p"]), "proxy=http://a:1 http://a:1\n");

    // Another proxy: the same key, so the RUN is a hit and says nothing changed.
    let (ok, _, stderr) = env.build(&ctx, &["-t", "px:2", "--explain", "--build-arg", "HTTP_PROXY=http://b:2"]);
    assert!(ok, "{stderr}");
    let run = stderr.lines().find(|l| l.contains("RUN echo")).and_then(|l| l.split(' ').next()).unwrap();
    assert!(stderr.contains(&format!("{run} CACHED")), "the RUN re-ran with only the proxy changed:\n{stderr}");
    assert!(!stderr.contains("a:1") && !stderr.contains("b:2"), "the output shows the proxy:\n{stderr}");
    assert_eq!(env.ok(&["run", "--rm", "px:2", "cat", "/p"]), "proxy=http://a:1 http://a:1\n");

    for image in ["px:1", "px:2"] {
        let history = env.ok(&["history", "--no-trunc", image]);
        let inspect = env.ok(&["inspect", image]);
        for out in [&history, &inspect] {
            assert!(!out.contains("a:1") && !out.contains("b:2"), "{image} records the proxy:\n{out}");
        }
    }

    // Unused by any RUN, still no warning.
    let ctx = env.context("proxy-unused", &[("Dockerfile", "FROM busybox\n")]);
    let (ok, _, stderr) = env.build(&ctx, &["--build-arg", "HTTPS_PROXY=http://c:3", "--build-arg", "no_proxy=x"]);
    assert!(ok, "{stderr}");
    assert!(!stderr.contains("were not consumed"), "{stderr}");
}
