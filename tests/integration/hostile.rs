//! Hostile input through the real binary: bad names refused before any work, with
//! Docker's words and without echoing a megabyte.

use crate::util::env;

#[test]
fn an_invalid_tag_is_refused_before_the_build_runs() {
    let Some(env) = env("invalid_tag") else { return };
    // A build that would fail on its own: the tag must be refused first.
    let ctx = env.context("bad_tag", &[("Dockerfile", "FROM scratch\nCOPY missing-file /\n")]);
    let ctx_arg = ctx.to_str().unwrap();
    let out = env.run(&["build", "--progress=plain", "-t", "Bad:1", ctx_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(
            r#"invalid tag "Bad:1": invalid reference format: repository name (library/Bad) must be lowercase"#
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("missing-file"), "the build ran: {stderr}");

    let out = env.run(&["build", "--progress=plain", "-t", "bad::1", ctx_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(r#"invalid tag "bad::1": invalid reference format: "bad::1""#), "{stderr}");

    // 5000 characters: over Docker's 255, and the message does not echo them all.
    let long = "a".repeat(5000);
    let out = env.run(&["build", "--progress=plain", "-t", &long, ctx_arg]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("must not be more than 255 characters"), "{stderr}");
    assert!(stderr.len() < 2000, "{} bytes of error", stderr.len());
}

#[test]
fn a_step_that_creates_whiteout_names_fails_naming_them() {
    let Some(env) = env("whiteout_names") else { return };
    let env = env.with_busybox();
    for (name, script) in
        [("dots", "touch /.wh..."), ("opaque", "mkdir /d && touch /d/.wh..wh..opq"), ("plain", "touch /.wh.hidden")]
    {
        let ctx = env.context(name, &[("Dockerfile", &format!("FROM busybox\nRUN {script}\n"))]);
        let (ok, _, stderr) = env.build(&ctx, &["-t", "wh:1"]);
        assert!(!ok, "{script} built");
        assert!(stderr.contains("reserved for whiteouts"), "{script}: {stderr}");
    }
    // Nothing broken was tagged, and the store is sound.
    assert!(!env.ok(&["images"]).contains("wh "));
    env.ok(&["fsck"]);
}

/// A server that accepts connections and never answers; returns its port.
fn silent_server() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[test]
fn add_from_a_silent_server_times_out_and_stops_on_the_first_sigint() {
    let Some(env) = env("add_silent_server") else { return };
    let (_listener, port) = silent_server();
    let ctx = env.context("add_url", &[("Dockerfile", &format!("FROM scratch\nADD http://127.0.0.1:{port}/f /f\n"))]);
    let ctx_arg = ctx.to_str().unwrap();

    // The stall timeout ends it.
    let started = std::time::Instant::now();
    let out = env.cmd(&["build", "--progress=plain", ctx_arg]).env("BUILDER_REGISTRY_TIMEOUT", "2").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no data for 2s"), "{stderr}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "{:?}", started.elapsed());

    // With the default timeout, one SIGINT ends the build at once (exit 130).
    let mut child = env
        .cmd(&["build", "--progress=plain", ctx_arg])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let started = std::time::Instant::now();
    let kill = std::process::Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let deadline = started + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the build ignored SIGINT for 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130), "{status:?}");
}

#[test]
fn a_dockerignore_of_repeated_double_stars_is_fast() {
    let Some(env) = env("dockerignore_double_stars") else { return };
    let pattern = format!("{}x\n", "**/a".repeat(40));
    let deep = format!("{}b", "a/".repeat(30));
    let ctx = env.context(
        "ignore_stars",
        &[("Dockerfile", "FROM scratch\nCOPY . /\n"), (".dockerignore", &pattern), (&deep, "content")],
    );
    let started = std::time::Instant::now();
    env.build_ok(&ctx, &[]);
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "{:?}", started.elapsed());
}

#[test]
fn fsck_passes_a_step_that_hardlinks_a_symlink() {
    let Some(env) = env("fsck_hardlinked_symlink") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "hardlink_symlink",
        &[("Dockerfile", "FROM busybox\nRUN ln -s /etc/passwd /s && ln /s /h && test -L /h\n")],
    );
    env.build_ok(&ctx, &["-t", "links:1"]);
    // Unpack the image's layers as a later build would, then judge them.
    env.ok(&["save", "links:1", "-o", env.work.path().join("links.tar").to_str().unwrap()]);
    env.ok(&["rmi", "links:1"]);
    env.ok(&["prune", "-a"]);
    env.ok(&["load", "-i", env.work.path().join("links.tar").to_str().unwrap()]);
    env.ok(&["run", "--rm", "links:1", "test", "-L", "/h"]);
    let out = env.run(&["fsck", "--snapshots"]);
    assert!(
        out.status.success(),
        "fsck --snapshots: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_damaged_image_does_not_hide_the_others_from_images() {
    let Some(env) = env("images_with_a_damaged_one") else { return };
    let env = env.with_busybox();
    let ctx = env.context("damaged", &[("Dockerfile", "FROM busybox\nENV DAMAGED=soon\n")]);
    env.build_ok(&ctx, &["-t", "damaged:1"]);
    let inspect: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "damaged:1"])).unwrap();
    let id = inspect["Id"].as_str().unwrap().strip_prefix("sha256:").unwrap().to_string();
    let config = walk(env.root.path()).into_iter().find(|p| p.file_name().is_some_and(|n| n == id.as_str())).unwrap();
    std::fs::write(&config, "{\"rootfs\":\"nope\"}").unwrap();
    let out = env.run(&["images"]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("busybox"), "{stdout}");
    assert!(stderr.contains("image docker.io/library/damaged:1 is damaged"), "{stderr}");
    env.ok(&["rmi", "damaged:1"]);
    let out = env.run(&["images"]);
    assert!(String::from_utf8_lossy(&out.stderr).is_empty());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.is_symlink() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
