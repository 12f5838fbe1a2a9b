//! Rootless: the real `builder` run by an ordinary user, as a CI job without root
//! would. As root, the test makes (or reuses) two users: `builder-rootless-test` with
//! subordinate ids in /etc/subuid and /etc/subgid (`useradd`, plus `usermod
//! --add-subuids` where useradd gave none), and `builder-rootless-nosub` without any;
//! the executor's rootless tests use the same two. Each test gets a HOME of its own
//! (owned by the user, removed by root afterwards: files of subordinate owners are not
//! the user's to remove), and runs a copy of the binary the user may execute.
//! Named `rootless_*`: `cargo test --test integration rootless_` runs this subset.

mod direct_copy;
mod fallback;
mod harness;
mod outside;

use crate::registry::Registry;
use crate::util::busybox_tar;
use harness::*;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
const MULTI_STAGE: &str = "\
FROM busybox AS build
RUN mkdir -p /out && echo built > /out/a && chown -R 1001:1001 /out
RUN --mount=type=cache,target=/cache echo run >> /cache/log && cp /cache/log /out/cachelog
RUN --mount=type=secret,id=token test \"$(cat /run/secrets/token)\" = s3cret && echo secret-ok > /out/secret
RUN --network=none test \"$(ls /sys/class/net)\" = lo
RUN --network=host ls /sys/class/net > /out/host-net
RUN --mount=type=bind,source=file.txt,target=/bound cp /bound /out/bound
RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && test ! -e /out/x

FROM busybox
COPY --from=build /out /from-build
COPY --chown=1001:1001 file.txt /owned.txt
ADD --chown=nobody:nogroup file.txt /added.txt
RUN mkdir /home/nobody && chown nobody /home/nobody
USER nobody
RUN id -u > /home/nobody/id && touch /home/nobody/made
CMD [\"cat\", \"/owned.txt\"]
";

#[test]
fn rootless_build_export_push_pull_run_and_store_commands() {
    let Some(r) = Rootless::new("rootless_build_export_push_pull_run_and_store_commands", true) else { return };
    let tar = r.home.join("busybox.tar");
    r.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    let store = r.store();
    assert!(store.is_dir(), "the default store is ~/.local/share/builder");
    assert_eq!(fs::metadata(&store).unwrap().uid(), r.user.uid, "the store is the user's");

    let ctx = r.context("ctx", &[("Dockerfile", MULTI_STAGE), ("file.txt", "hello\n")]);
    let secret = r.context("secret", &[("token", "s3cret")]).join("token");
    let (oci, docker) = (r.home.join("oci.tar"), r.home.join("docker.tar"));
    r.ok(&[
        "build",
        "--progress=plain",
        "--secret",
        &format!("id=token,src={}", secret.display()),
        "--allow",
        "network.host",
        "-t",
        "app:1",
        "-o",
        "type=image",
        "-o",
        &format!("type=oci,dest={},name=app:1", oci.display()),
        "-o",
        &format!("type=docker,dest={},name=app:1", docker.display()),
        ctx.to_str().unwrap(),
    ]);

    // Owners in the layers are the Dockerfile's, not the host's.
    let owners = layer_owners(&oci);
    for expected in [
        "1001/1001 owned.txt",
        "1001/1001 from-build/a",
        "0/0 from-build/cachelog",
        "65534/65534 home/nobody/made",
        "65534/65534 home/nobody/id",
        "65534/65534 added.txt",
        "0/0 from-build/bound",
        "0/0 from-build/host-net",
    ] {
        assert!(owners.iter().any(|l| l == expected), "no {expected:?} in the layers:\n{}", owners.join("\n"));
    }
    for source in [format!("oci-archive:{}", oci.display()), format!("docker-archive:{}", docker.display())] {
        let config = sh("skopeo", &["inspect", "--config", &source]).unwrap();
        let config: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert_eq!(config["config"]["User"], "nobody", "{source}");
    }
    // On the host the store's files are the user's, or its subordinate ids'.
    let subuid = r.user.subuid.unwrap();
    let strangers = sh("find", &[store.to_str().unwrap(), "!", "-user", &r.user.uid.to_string()]).unwrap();
    for path in strangers.lines() {
        let uid = fs::symlink_metadata(path).unwrap().uid();
        assert!((subuid..subuid + 65536).contains(&uid), "{path} owned by {uid}");
    }
    assert!(
        sh("find", &[store.to_str().unwrap(), "-uid", &(subuid + 1000).to_string()]).unwrap().contains("owned.txt"),
        "COPY --chown=1001 is subuid+1000 on the host"
    );

    // The container sees the image's owners; its exit code is run's.
    let out = r.run(&["run", "--rm", "app:1", "sh", "-c", "stat -c '%u %n' /owned.txt /home/nobody/id; id -u; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1001 /owned.txt\n65534 /home/nobody/id\n65534\n");
    // A named volume keeps its files between containers, with both network modes.
    r.ok(&["run", "--rm", "--network=none", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f"]);
    let out = r.ok(&["run", "--rm", "--network=host", "-v", "data:/data", "busybox", "cat", "/data/f"]);
    assert_eq!(out, "kept\n");
    // The cache (with the cache mount) exported, then imported by a fresh store: the
    // build there is all hits.
    let cache = r.home.join("cache");
    let secret_arg = format!("id=token,src={}", secret.display());
    let export = format!("type=local,dest={},mode=max,mounts=true", cache.display());
    let host = ["--allow", "network.host"];
    r.ok(&[
        &["build", "--progress=plain", "--secret", &secret_arg, "--cache-to", &export][..],
        &host,
        &[ctx.to_str().unwrap()],
    ]
    .concat());
    // Without its cache records (prune), the store takes them from the export.
    r.ok(&["prune", "-a"]);
    let import = format!("type=local,src={}", cache.display());
    let out = r
        .cmd(&[&["build", "--progress=plain", "--secret", &secret_arg, "--cache-from", &import][..], &host].concat())
        .arg(&ctx)
        .output()
        .unwrap();
    ok(&out, "build with --cache-from");
    let err = stderr(&out);
    // Every RUN was a hit: none ran (a step that runs prints DONE, a hit CACHED).
    let runs = err.lines().filter(|l| l.contains("] RUN ")).filter_map(|l| l.split_whitespace().next());
    for step in runs.collect::<std::collections::BTreeSet<_>>() {
        assert!(err.contains(&format!("{step} CACHED")), "{step} ran again:\n{err}");
    }

    // Push to the test registry, pull into another store, run it there.
    if let Some(registry) = Registry::start("rootless_push_pull", None) {
        let name = format!("{}/rootless/app:1", registry.host());
        r.ok(&["tag", "app:1", &name]);
        r.ok(&["push", &name]);
        let other = r.home.join("other-store");
        r.ok(&["--root", other.to_str().unwrap(), "pull", &name]);
        let out = r.ok(&["--root", other.to_str().unwrap(), "run", "--rm", &name]);
        assert_eq!(out, "hello\n");
        r.ok(&["--root", other.to_str().unwrap(), "rmi", &name]);
        r.ok(&["--root", other.to_str().unwrap(), "prune", "-a"]);
    }

    // Store commands work on files of subordinate owners.
    let du = r.ok(&["du"]);
    assert!(du.contains("snapshots"), "{du}");
    r.ok(&["rmi", "app:1"]);
    r.ok(&["prune", "-a"]);
    let fsck = r.run(&["fsck"]);
    ok(&fsck, "fsck");
    assert!(stderr(&fsck).contains(" 0 problems"), "{}", stderr(&fsck));
    r.assert_no_processes_left("the commands");
}

#[test]
fn rootless_without_subordinate_ids_root_alone_works_and_other_owners_fail_clearly() {
    let Some(r) = Rootless::new("rootless_without_subordinate_ids", false) else { return };
    let tar = r.home.join("busybox.tar");
    let out = r.run(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    ok(&out, "import");
    let warning = stderr(&out);
    assert!(
        warning.contains("no subordinate ids for user builder-rootless-nosub")
            && warning.contains("usermod --add-subuids"),
        "{warning}"
    );
    let ctx = r.context("root-only", &[("Dockerfile", "FROM busybox\nRUN echo ok > /ok && chown 0:0 /ok\n")]);
    r.ok(&["build", "--progress=plain", "-t", "root-only", ctx.to_str().unwrap()]);
    let out = r.ok(&["run", "--rm", "root-only", "cat", "/ok"]);
    assert_eq!(out, "ok\n");

    let ctx = r.context("copy", &[("Dockerfile", "FROM busybox\nCOPY --chown=1001:1001 Dockerfile /d\n")]);
    let out = r.run(&["build", "--progress=plain", ctx.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("1001:1001 is not mapped in builder's user namespace") && err.contains("/etc/subuid"),
        "{err}"
    );
    let ctx = r.context("user", &[("Dockerfile", "FROM busybox\nUSER 1001\nRUN true\n")]);
    let out = r.run(&["build", "--progress=plain", ctx.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("uid 1001 is not mapped") && err.contains("no subordinate ids"), "{err}");
    r.assert_no_processes_left("the builds");
}

#[test]
fn rootless_steps_cannot_reach_the_users_files_or_processes_and_leave_nothing_behind() {
    let Some(r) = Rootless::new("rootless_isolation", true) else { return };
    let tar = r.home.join("busybox.tar");
    r.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    let canary = r.context("canary", &[("file", "untouched\n")]).join("file");
    let home = r.home.display().to_string();
    let dockerfile = format!(
        "FROM busybox\nRUN echo changed > {0}/canary/file 2>/dev/null; echo changed > /etc/canary; \
         ls /proc | grep -c '^[0-9]' > /pids; test ! -e {0}/canary/file; cat /proc/1/cmdline > /init\n",
        home
    );
    let ctx = r.context("escape", &[("Dockerfile", &dockerfile)]);
    r.ok(&["build", "--progress=plain", "-t", "escape", ctx.to_str().unwrap()]);
    assert_eq!(fs::read_to_string(&canary).unwrap(), "untouched\n");
    assert!(!Path::new("/etc/canary").exists());
    let out = r.ok(&["run", "--rm", "escape", "sh", "-c", "cat /pids; ls /proc | grep -c '^[0-9]'"]);
    let counts: Vec<u32> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert!(counts.iter().all(|&n| n <= 4), "host processes visible: {out}");

    // A failed build leaves no process, no mount and no temp behind.
    let mounts = crate::util::mount_table();
    let ctx = r.context("fail", &[("Dockerfile", "FROM busybox\nRUN sleep 1 & exit 3\n")]);
    let out = r.run(&["build", "--progress=plain", ctx.to_str().unwrap()]);
    assert!(!out.status.success());
    r.assert_no_processes_left("a failed build");
    assert_eq!(crate::util::mount_table(), mounts);
    let tmp: Vec<_> = fs::read_dir(r.store().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "{tmp:?}");

    // Killed (SIGKILL to the builder the user started): its namespace goes with it.
    let ctx = r.context("killed", &[("Dockerfile", "FROM busybox\nRUN sleep 300\n")]);
    let mut child = r.cmd(&["build", "--progress=plain", ctx.to_str().unwrap()]).stdout(Stdio::null()).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !r.processes().iter().any(|p| p.ends_with("sleep 300")) {
        assert!(std::time::Instant::now() < deadline, "the step never started: {:?}", r.processes());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    r.assert_no_processes_left("a killed build");
    assert_eq!(crate::util::mount_table(), mounts);
    let fsck = r.run(&["fsck"]);
    ok(&fsck, "fsck");
    assert!(stderr(&fsck).contains(" 0 problems"), "{}", stderr(&fsck));

    // The isolation probe (`doctor`, and every rootless start) leaves no temp dir: its
    // overlay workdir is mode 000, which an ordinary user could not list to remove.
    let _ = r.run(&["doctor"]);
    let probes = || -> Vec<std::path::PathBuf> {
        use std::os::unix::fs::MetadataExt as _;
        fs::read_dir(std::env::temp_dir())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(".builder-probe-"))
            .filter(|e| e.metadata().is_ok_and(|m| m.uid() == r.user.uid))
            .map(|e| e.path())
            .collect()
    };
    // Other rootless tests may be probing right now: only a dir that stays is a leak.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !probes().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(probes().is_empty(), "probe dirs left: {:?}", probes());
}

#[test]
fn rootless_with_user_namespaces_disabled_says_what_is_missing() {
    let Some(r) = Rootless::new("rootless_with_user_namespaces_disabled", true) else { return };
    // `user.max_user_namespaces` is per user namespace and binds every namespace below:
    // 0 in a namespace of the test's own disables them for builder exactly as the host
    // setting would, and the host's stays as it was.
    // `unshare --user` makes the namespace; root, outside, maps every id to itself
    // (unshare's own --map-users would need subordinate ids for root), and the shell
    // inside lowers the limit and becomes the user.
    let fifo = r.dir.path().join("go");
    sh("mkfifo", &[fifo.to_str().unwrap()]).unwrap();
    let pid_file = r.dir.path().join("pid");
    // The second exec gives the shell its capabilities in the namespace: an execve
    // before the maps existed got none.
    let stage2 = r.dir.path().join("stage2.sh");
    fs::write(
        &stage2,
        format!(
            "echo 0 > /proc/sys/user/max_user_namespaces && \
             exec setpriv --reuid={} --regid={} --clear-groups -- {} build .\n",
            r.user.uid,
            r.user.gid,
            r.exe.display()
        ),
    )
    .unwrap();
    let script =
        format!("echo $$ > {} && read go < {} && exec sh {}", pid_file.display(), fifo.display(), stage2.display());
    let mut cmd = Command::new("unshare");
    r.environment(&mut cmd);
    let child = cmd
        .args(["--user", "--", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let pid = loop {
        if let Ok(pid) = fs::read_to_string(&pid_file).map(|p| p.trim().to_string())
            && !pid.is_empty()
        {
            break pid;
        }
        assert!(std::time::Instant::now() < deadline, "unshare never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    fs::write(format!("/proc/{pid}/uid_map"), "0 0 4294967295\n").unwrap();
    fs::write(format!("/proc/{pid}/gid_map"), "0 0 4294967295\n").unwrap();
    fs::write(&fifo, "go\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("user namespaces are disabled: sysctl user.max_user_namespaces=0"), "{err}");
    assert!(err.contains("builder doctor"), "{err}");
    assert!(std::fs::read_to_string("/proc/sys/user/max_user_namespaces").unwrap().trim() != "0");
}

#[test]
fn rootless_where_proc_is_partly_hidden_steps_get_it_read_only_and_say_so() {
    let Some(r) = Rootless::new("rootless_where_proc_is_partly_hidden", true) else { return };
    let tar = r.home.join("busybox.tar");
    r.ok(&["import", tar.to_str().unwrap(), "busybox:latest"]);
    // As an unprivileged container's masked paths do: a mount over part of /proc, in a
    // mount namespace of the test's own. A fresh procfs is then refused in a user
    // namespace.
    let me = std::process::id();
    let script = format!(
        "mount --bind /dev/null /proc/uptime && exec setpriv --reuid={} --regid={} --clear-groups -- {} run --rm \
         busybox sh -c 'kill -0 1 && echo own-init; kill -0 {me} 2>/dev/null || echo cannot-signal-host; \
         test -e /proc/{me} && echo sees-host; touch /proc/x 2>/dev/null || echo read-only'",
        r.user.uid,
        r.user.gid,
        r.exe.display()
    );
    let mut cmd = Command::new("unshare");
    r.environment(&mut cmd);
    let out = cmd.args(["-m", "--", "sh", "-c", &script]).stdin(Stdio::null()).output().unwrap();
    let said = ok(&out, "run with a partly hidden /proc");
    assert_eq!(said, "own-init\ncannot-signal-host\nsees-host\nread-only\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("no fresh /proc for sandboxes here") && stderr(&out).contains("/proc/uptime"));
}

#[test]
fn rootless_unpack_skips_device_nodes_and_drops_overlay_xattrs_of_a_layer() {
    let Some(r) = Rootless::new("rootless_unpack_devices_and_overlay_xattrs", true) else { return };
    // busybox plus what a hostile or foreign layer may hold: a device node, and
    // overlayfs's own markers, which in a user namespace would make /keep a whiteout
    // and /d opaque.
    let tree = r.dir.path().join("tree");
    fs::create_dir(&tree).unwrap();
    sh("tar", &["-xf", busybox_tar().to_str().unwrap(), "-C", tree.to_str().unwrap()]).unwrap();
    fs::write(tree.join("keep"), "kept\n").unwrap();
    fs::create_dir(tree.join("d")).unwrap();
    fs::write(tree.join("d/f"), "f\n").unwrap();
    xattr::set(tree.join("keep"), "user.overlay.whiteout", b"").unwrap();
    xattr::set(tree.join("d"), "user.overlay.opaque", b"y").unwrap();
    xattr::set(tree.join("d/f"), "user.note", b"kept").unwrap();
    sh("mknod", &[tree.join("node").to_str().unwrap(), "c", "1", "3"]).unwrap();
    let tar = r.home.join("foreign.tar");
    sh(
        "tar",
        &["--xattrs", "--xattrs-include=user.*", "-cf", tar.to_str().unwrap(), "-C", tree.to_str().unwrap(), "."],
    )
    .unwrap();
    assert!(sh("tar", &["--xattrs", "-tvvf", tar.to_str().unwrap()]).unwrap().contains("node"));
    std::os::unix::fs::chown(&tar, Some(r.user.uid), Some(r.user.gid)).unwrap();

    r.ok(&["import", tar.to_str().unwrap(), "foreign:1"]);
    let out = r.run(&["run", "--rm", "foreign:1", "sh", "-c", "cat /keep /d/f; test -e /node || echo no-node"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "kept\nf\nno-node\n", "{}", stderr(&out));
    assert!(stderr(&out).contains("skipping device node node (rootless"), "{}", stderr(&out));
    // The layer's own xattrs stay; the snapshot holds no overlay marker from the tar.
    let snapshot = fs::read_dir(r.store().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.join("keep").exists())
        .expect("the layer's snapshot");
    assert_eq!(xattr::get(snapshot.join("d/f"), "user.note").unwrap().as_deref(), Some(&b"kept"[..]));
    assert_eq!(xattr::get(snapshot.join("keep"), "user.overlay.whiteout").unwrap(), None);
    assert_eq!(xattr::get(snapshot.join("d"), "user.overlay.opaque").unwrap(), None);
}
