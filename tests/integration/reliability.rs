//! The reliability suite (issue 14): faults, load and hostile input against the real
//! binary, counted in one table — tried / succeeded / failed clearly / hung /
//! corrupted / leaked — printed at the end (`cargo test reliability -- --nocapture`).
//!
//! CI-sized by default; `BUILDER_RELIABILITY_ROUNDS=N` multiplies the kill rounds and
//! the concurrent builds for a longer run. "Failed clearly" is an exit with a message
//! and no panic; "corrupted" is a store that fsck rejects, a rerun that fails or gives
//! another digest, or a write outside the store; "leaked" is a mount, a process, a
//! temp file or a secret left where it should not be.

use crate::util::{Env, env, mount_table};
use ::registry::testing::{FaultKind, Proxy, Registry};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

#[derive(Default, Debug)]
struct Row {
    name: String,
    tried: usize,
    succeeded: usize,
    failed_clearly: usize,
    hung: usize,
    corrupted: usize,
    leaked: usize,
    /// What went wrong, one line each, for the assertion message.
    problems: Vec<String>,
}

impl Row {
    fn new(name: &str) -> Row {
        Row { name: name.to_string(), ..Default::default() }
    }

    fn corrupt(&mut self, what: String) {
        self.corrupted += 1;
        self.problems.push(format!("{}: corrupted: {what}", self.name));
    }

    fn leak(&mut self, what: String) {
        self.leaked += 1;
        self.problems.push(format!("{}: leaked: {what}", self.name));
    }

    fn hang(&mut self, what: String) {
        self.hung += 1;
        self.problems.push(format!("{}: hung: {what}", self.name));
    }

    /// An exit that is neither success nor a clear failure (a panic, an abort, no message).
    fn unclear(&mut self, what: String) {
        self.corrupted += 1;
        self.problems.push(format!("{}: unclear failure: {what}", self.name));
    }
}

fn rounds() -> usize {
    std::env::var("BUILDER_RELIABILITY_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// A small deterministic generator (the delays of the kills), so a failing run repeats.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % below
    }
}

enum Ran {
    Exited(Output),
    Hung,
}

/// Runs `cmd`, killing it after `limit`.
fn run_limited(cmd: &mut Command, limit: Duration) -> Ran {
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Ran::Exited(child.wait_with_output().unwrap());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Ran::Hung;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A failure a user can act on: a message on stderr, no panic, no abort.
fn clear_failure(out: &Output) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let code = out.status.code();
    code.is_some() && code != Some(101) && !stderr.contains("panicked") && !stderr.trim().is_empty()
}

/// Counts an exit: success, a clear failure, or neither.
fn classify(row: &mut Row, what: &str, ran: Ran) -> Option<Output> {
    row.tried += 1;
    match ran {
        Ran::Hung => {
            row.hang(what.to_string());
            None
        }
        Ran::Exited(out) if out.status.success() => {
            row.succeeded += 1;
            Some(out)
        }
        Ran::Exited(out) if clear_failure(&out) => {
            row.failed_clearly += 1;
            Some(out)
        }
        Ran::Exited(out) => {
            row.unclear(format!("{what}: {:?}: {}", out.status, text(&out)));
            Some(out)
        }
    }
}

/// fsck with snapshots; a failure is corruption.
fn check_store(row: &mut Row, env: &Env, what: &str) {
    let fsck = env.run(&["fsck", "--snapshots"]);
    if !fsck.status.success() {
        row.corrupt(format!("{what}: fsck: {}", text(&fsck)));
    }
}

/// Mounts under the store and processes that carry `marker` (a RUN step's command
/// line) or the store's path, a moment after the process that made them was killed.
fn check_leaks(row: &mut Row, env: &Env, marker: &str, what: &str) {
    let root = env.root.path().to_string_lossy().into_owned();
    let mut leaked = Vec::new();
    for _ in 0..50 {
        leaked = mount_table().into_iter().filter(|m| m.contains(&root)).collect::<Vec<_>>();
        leaked.extend(processes_with(&[marker, &root]));
        if leaked.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    row.leak(format!("{what}: {leaked:?}"));
}

fn processes_with(needles: &[&str]) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || name == me {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let state = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let zombie = state.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z'));
        if !zombie && needles.iter().any(|n| cmdline.contains(n)) {
            found.push(format!("pid {name}: {cmdline}"));
        }
    }
    found
}

/// The digest a build prints on stdout.
fn printed_digest(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or("").trim().to_string()
}

/// The digest `builder push` prints (`NAME: digest: DIGEST`).
fn pushed_digest(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).split_whitespace().last().unwrap_or("").to_string()
}

fn epoch(cmd: &mut Command) -> &mut Command {
    cmd.env("SOURCE_DATE_EPOCH", "0")
}

#[test]
fn reliability_suite_prints_its_figures() {
    let Some(env) = env("reliability") else { return };
    let Some(registry) = Registry::start("reliability", None) else { return };
    let env = env.with_busybox();
    let rows = vec![
        kill_nine(&env, &registry),
        concurrency(&env, &registry),
        registry_faults(&env, &registry),
        disk_full(),
        hostile_archives(&env, &registry),
        secrets(&env),
    ];
    let mut table = String::new();
    let _ = writeln!(
        table,
        "{:<34} {:>6} {:>10} {:>15} {:>5} {:>10} {:>7}",
        "SCENARIO", "TRIED", "SUCCEEDED", "FAILED CLEARLY", "HUNG", "CORRUPTED", "LEAKED"
    );
    for r in &rows {
        let _ = writeln!(
            table,
            "{:<34} {:>6} {:>10} {:>15} {:>5} {:>10} {:>7}",
            r.name, r.tried, r.succeeded, r.failed_clearly, r.hung, r.corrupted, r.leaked
        );
    }
    println!("\n{table}");
    let problems: Vec<&String> = rows.iter().flat_map(|r| &r.problems).collect();
    assert!(problems.is_empty(), "{table}\n{problems:#?}");
    for r in &rows {
        assert!(r.tried > 0, "{}: nothing tried", r.name);
    }
}

/// kill -9 at random moments of build, export, save, push, pull, cache export and
/// prune; then fsck, no mounts or processes left, and a rerun gives the same digest.
fn kill_nine(env: &Env, registry: &Registry) -> Row {
    let mut row = Row::new("kill -9 (7 operations)");
    let marker = "reliability-kill-marker";
    let dockerfile =
        format!("FROM busybox\nRUN seq 1 3000000 > /r && sleep 0.3 # {marker}\nRUN yes data | head -c 20000000 > /y\n");
    let ctx = env.context("kill", &[("Dockerfile", &dockerfile)]);
    let ctx = ctx.to_str().unwrap().to_string();
    let name = format!("{}/rel/kill:1", registry.host());
    let build = |extra: &[&str]| {
        let mut cmd = env.cmd(&["build", "--progress=plain", "-t", &name]);
        epoch(cmd.args(extra).arg(&ctx));
        cmd
    };
    let first = build(&[]).output().unwrap();
    assert!(first.status.success(), "{}", text(&first));
    let digest = printed_digest(&first);
    let out = env.work.path().join("kill-out");
    std::fs::create_dir_all(&out).unwrap();
    let cache_dir = out.join("cache");
    let puller = crate::util::env("reliability_pull").unwrap();
    type Op<'a> = Box<dyn Fn() -> Command + 'a>;
    let ops: Vec<(&str, Op<'_>)> = vec![
        ("build", Box::new(|| build(&["--no-cache"]))),
        ("export", Box::new(|| build(&["-o", &format!("type=oci,dest={}", out.join("o.tar").display())]))),
        ("save", Box::new(|| env.cmd(&["save", "-o", out.join("s.tar").to_str().unwrap(), &name]))),
        ("push", Box::new(|| env.cmd(&["push", &name]))),
        ("pull", Box::new(|| puller.cmd(&["pull", &name]))),
        (
            "cache export",
            Box::new(|| build(&["--cache-to", &format!("type=local,dest={},mode=max", cache_dir.display())])),
        ),
        ("prune", Box::new(|| env.cmd(&["prune", "--all"]))),
    ];
    // The image must be in the registry for the pulls. What is pushed is the image
    // with compressed layers: its digest is not the stored image's (uncompressed).
    let pushed = env.run(&["push", &name]);
    assert!(pushed.status.success(), "{}", text(&pushed));
    let pushed = pushed_digest(&pushed);
    let mut lcg = Lcg(14);
    for _ in 0..2 * rounds() {
        for (what, op) in &ops {
            let delay = 30 + lcg.next(1200);
            let mut child = op().stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
            std::thread::sleep(Duration::from_millis(delay));
            let _ = child.kill();
            let _ = child.wait();
            let what = format!("{what} killed at {delay} ms");
            let target = if what.starts_with("pull") { &puller } else { env };
            check_leaks(&mut row, target, marker, &what);
            check_store(&mut row, target, &what);
            // The rerun: whole, and the same image.
            let rerun = classify(&mut row, &what, run_limited(&mut op(), Duration::from_secs(300)));
            match rerun {
                Some(o) if o.status.success() => {}
                Some(o) => row.corrupt(format!("{what}: the rerun failed: {}", text(&o))),
                None => continue,
            }
            if what.starts_with("build") || what.starts_with("export") || what.starts_with("cache") {
                let again = build(&[]).output().unwrap();
                if printed_digest(&again) != digest {
                    row.corrupt(format!("{what}: digest {} after, {digest} before", printed_digest(&again)));
                }
            }
            if what.starts_with("pull") {
                let pulled: serde_json::Value =
                    serde_json::from_str(&String::from_utf8_lossy(&puller.run(&["inspect", &name]).stdout))
                        .unwrap_or_default();
                if pulled["Digest"].as_str() != Some(pushed.as_str()) {
                    row.corrupt(format!("{what}: pulled {:?}, pushed {pushed}", pulled["Digest"]));
                }
            }
        }
    }
    row
}

/// Eight builds, two pulls and a prune at once on one store.
fn concurrency(env: &Env, registry: &Registry) -> Row {
    let mut row = Row::new("8 builds + pulls + prune at once");
    let pushed = format!("{}/rel/conc:1", registry.host());
    let ctx = env.context("conc-base", &[("Dockerfile", "FROM busybox\nRUN echo base > /base\n")]);
    env.build_ok(&ctx, &["-t", "conc-base:1", "-t", &pushed]);
    assert!(env.run(&["push", &pushed]).status.success());
    for round in 0..rounds() {
        let mut children = Vec::new();
        for i in 0..8 {
            let dockerfile = format!(
                "FROM conc-base:1\nRUN echo shared > /s\nRUN echo {round}-{i} > /n && head -c 500000 /dev/urandom > /r\n"
            );
            let ctx = env.context(&format!("conc-{round}-{i}"), &[("Dockerfile", &dockerfile)]);
            let mut cmd = env.cmd(&["build", "--progress=plain", "-t", &format!("conc:{round}-{i}")]);
            cmd.arg(ctx);
            children.push((format!("build {i}"), cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()));
        }
        for p in 0..2 {
            let cmd = env.cmd(&["pull", &pushed]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
            children.push((format!("pull {p}"), cmd));
        }
        std::thread::sleep(Duration::from_millis(300));
        let prune = env.cmd(&["prune", "--all"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        children.push(("prune".to_string(), prune));
        for (what, child) in children {
            let out = child.wait_with_output().unwrap();
            row.tried += 1;
            if out.status.success() {
                row.succeeded += 1;
            } else {
                row.corrupt(format!("{what}: {}", text(&out)));
            }
        }
        for i in 0..8 {
            let got = env.run(&["run", "--rm", &format!("conc:{round}-{i}"), "cat", "/n", "/base"]);
            if String::from_utf8_lossy(&got.stdout) != format!("{round}-{i}\nbase\n") {
                row.corrupt(format!("conc:{round}-{i} holds {:?}", text(&got)));
            }
        }
        check_store(&mut row, env, "after the concurrent round");
    }
    row
}

/// Pulls and pushes through a proxy that injects each fault once: they succeed after
/// a retry or fail naming the registry — never corrupt, never hang.
fn registry_faults(env: &Env, registry: &Registry) -> Row {
    let mut row = Row::new("registry faults (proxy)");
    let upstream: u16 = registry.host().rsplit(':').next().unwrap().parse().unwrap();
    let ctx = env.context("faults", &[("Dockerfile", "FROM busybox\nRUN head -c 300000 /dev/urandom > /r\n")]);
    let local = "faults:1";
    env.build_ok(&ctx, &["-t", local]);
    // A pull gets what was pushed (compressed layers), set by each push below.
    let mut digest = String::new();
    let faults: Vec<(&str, &'static str, &'static str, FaultKind, u32)> = vec![
        ("manifest 503", "GET", "/manifests/", FaultKind::Unavailable, 2),
        ("blob 503", "GET", "/blobs/sha256", FaultKind::Unavailable, 2),
        ("blob cut mid-body", "GET", "/blobs/sha256", FaultKind::CutResponse(1000), 1),
        ("manifest 429 Retry-After", "GET", "/manifests/", FaultKind::TooManyRequests(1), 1),
        ("blob 500", "GET", "/blobs/sha256", FaultKind::ServerError, 1),
        ("blob stalled", "GET", "/blobs/sha256", FaultKind::Stall, 1),
        ("blob corrupted in transit", "GET", "/blobs/sha256", FaultKind::CorruptResponse(100), 1),
        ("manifest stalled every time", "GET", "/manifests/", FaultKind::Stall, 100),
        ("upload 503", "PUT", "/blobs/uploads", FaultKind::Unavailable, 1),
        ("upload cut", "PATCH", "/blobs/uploads", FaultKind::CutRequest(5000), 1),
        ("upload 500 every time", "PUT", "/blobs/uploads", FaultKind::ServerError, 100),
        ("manifest put 503", "PUT", "/manifests/", FaultKind::Unavailable, 1),
    ];
    for (i, (what, method, path, kind, times)) in faults.into_iter().enumerate() {
        let proxy = Proxy::start(upstream);
        let name = format!("{}/rel/f{i}:1", proxy.host());
        let push = method != "GET";
        if !push {
            // Put the image there directly, then pull it through the proxy.
            let direct = format!("{}/rel/f{i}:1", registry.host());
            env.ok(&["tag", local, &direct]);
            digest = env.ok(&["push", &direct]).split_whitespace().last().unwrap_or_default().to_string();
        } else {
            env.ok(&["tag", local, &name]);
        }
        proxy.add_fault(method, path, kind, times);
        let target = crate::util::env("reliability_faults").unwrap();
        let (who, args) =
            if push { (env, vec!["push", name.as_str()]) } else { (&target, vec!["pull", name.as_str()]) };
        let mut cmd = who.cmd(&args);
        cmd.env("BUILDER_REGISTRY_TIMEOUT", "2").env("BUILDER_REGISTRY_RETRIES", "2");
        let Some(out) = classify(&mut row, what, run_limited(&mut cmd, Duration::from_secs(120))) else { continue };
        if !out.status.success() && !String::from_utf8_lossy(&out.stderr).contains(&proxy.host()) {
            row.problems.push(format!("{what}: the error does not name {}: {}", proxy.host(), text(&out)));
        }
        check_store(&mut row, who, what);
        if out.status.success() && !push {
            let got: serde_json::Value =
                serde_json::from_str(&String::from_utf8_lossy(&target.run(&["inspect", &name]).stdout))
                    .unwrap_or_default();
            if got["Digest"].as_str() != Some(digest.as_str()) {
                row.corrupt(format!("{what}: pulled {:?}, expected {digest}", got["Digest"]));
            }
            let ran = target.run(&["run", "--rm", &name, "wc", "-c", "/r"]);
            if !String::from_utf8_lossy(&ran.stdout).contains("300000") {
                row.corrupt(format!("{what}: the pulled image does not run: {}", text(&ran)));
            }
        }
    }
    row
}

/// A store on a small tmpfs: a build that fills it fails with ENOSPC named, leaves a
/// sound store and no temp files, and the next small build works.
fn disk_full() -> Row {
    let mut row = Row::new("disk full (48 MB tmpfs store)");
    let Some(env) = env("reliability_disk_full") else { return row };
    let root = env.root.path().to_path_buf();
    let mounted = Command::new("mount").args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"]).arg(&root).status().unwrap();
    if !mounted.success() {
        eprintln!("SKIPPED reliability disk full: cannot mount a tmpfs");
        return row;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let env = env.with_busybox();
    // Dropped before the store's directory is removed.
    let _unmount = Unmount(root.clone());
    let ctx = env.context("full", &[("Dockerfile", "FROM busybox\nRUN head -c 80000000 /dev/zero > /big\n")]);
    let mut cmd = env.cmd(&["build", "--progress=plain", "-t", "full:1"]);
    let out = classify(&mut row, "filling build", run_limited(cmd.arg(&ctx), Duration::from_secs(120)));
    if let Some(out) = out {
        if out.status.success() {
            row.corrupt("an 80 MB layer fitted in 48 MB".into());
        } else if !text(&out).contains("No space left on device") && !text(&out).contains("hint: the disk is full") {
            row.problems.push(format!("the error does not say the disk is full: {}", text(&out)));
        }
    }
    check_store(&mut row, &env, "after ENOSPC");
    let ctx = env.context("small", &[("Dockerfile", "FROM busybox\nRUN echo fits > /f\n")]);
    let mut cmd = env.cmd(&["build", "--progress=plain", "-t", "small:1"]);
    if let Some(out) = classify(&mut row, "next build", run_limited(cmd.arg(&ctx), Duration::from_secs(120)))
        && !out.status.success()
    {
        row.corrupt(format!("the next build failed: {}", text(&out)));
    }
    let left: Vec<_> = std::fs::read_dir(root.join("tmp")).unwrap().flatten().map(|e| e.file_name()).collect();
    if !left.is_empty() {
        row.leak(format!("temp entries after the builds: {left:?}"));
    }
    row
}

/// One tar member, written by hand so that it can say anything (`..`, absolute paths,
/// lying sizes) — the `tar` crate refuses to write most of these.
fn member(name: &str, kind: u8, link: &str, data: &[u8], size: Option<u64>) -> Vec<u8> {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, len: usize, v: &[u8]| {
        h[at..at + v.len().min(len)].copy_from_slice(&v[..v.len().min(len)])
    };
    let (prefix, base) = if name.len() > 100 { name.split_at(name.len() - 100) } else { ("", name) };
    put(&mut h, 0, 100, base.as_bytes());
    put(&mut h, 100, 8, b"0000755\0");
    put(&mut h, 108, 8, b"0000000\0");
    put(&mut h, 116, 8, b"0000000\0");
    put(&mut h, 124, 12, format!("{:011o}\0", size.unwrap_or(data.len() as u64)).as_bytes());
    put(&mut h, 136, 12, b"00000000000\0");
    h[156] = kind;
    put(&mut h, 157, 100, link.as_bytes());
    put(&mut h, 257, 8, b"ustar\x0000");
    if matches!(kind, b'3' | b'4') {
        put(&mut h, 329, 8, b"0000007\0");
        put(&mut h, 337, 8, b"0000001\0");
    }
    put(&mut h, 345, 155, prefix.as_bytes());
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    put(&mut h, 148, 8, format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// A pax extended header giving the next member this path.
fn pax_path(path: &str) -> Vec<u8> {
    let body = format!(" path={path}\n");
    // The record's length counts its own digits.
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    member("pax", b'x', "", format!("{len}{body}").as_bytes(), None)
}

fn archive(members: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = members.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// An OCI layout (directory) of one image whose only layer is `layer` (an uncompressed
/// tar, whatever it holds), named `name` in its index.
fn oci_layout_of(dir: &Path, layer: &[u8], name: &str) {
    use sha2::Digest as _;
    let sha = |b: &[u8]| format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)));
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let digest = sha(bytes);
        std::fs::write(blobs.join(digest.trim_start_matches("sha256:")), bytes).unwrap();
        (digest, bytes.len())
    };
    let (layer_digest, layer_size) = put(layer);
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
    });
    let (config_digest, config_size) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_size },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_digest, "size": layer_size }],
    });
    let (manifest_digest, manifest_size) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest, "size": manifest_size,
            "annotations": { "org.opencontainers.image.ref.name": name, "io.containerd.image.name": name },
        }],
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// Crafted archives through `builder import`, `ADD` (auto-extracted), `builder load`
/// (as the layer of an OCI archive) and `builder pull` (the same image in the test
/// registry, put there by skopeo, which does not look inside layers; then run, which
/// unpacks it): each is refused clearly or unpacked without writing outside the image.
fn hostile_archives(env: &Env, registry: &Registry) -> Row {
    let mut row = Row::new("hostile archives (4 entry points)");
    let skopeo = Command::new("skopeo").arg("--version").output().is_ok_and(|o| o.status.success());
    if !skopeo {
        eprintln!("SKIPPED reliability hostile archives through pull: skopeo is not installed");
    }
    let canary = env.work.path().join("canary");
    std::fs::create_dir_all(&canary).unwrap();
    let c = canary.to_str().unwrap().trim_start_matches('/').to_string();
    let up = "../../../../../../../../../../";
    let file = |n: &str| member(n, b'0', "", b"hostile\n", None);
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("dot-dot".into(), archive(&[file(&format!("{up}{c}/escaped"))])),
        ("absolute".into(), archive(&[file(&format!("/{c}/escaped"))])),
        ("inner dot-dot".into(), archive(&[file(&format!("a/{up}{c}/escaped"))])),
        (
            "symlink then write through it".into(),
            archive(&[member("l", b'2', &format!("/{c}"), b"", None), file("l/escaped")]),
        ),
        (
            "relative symlink then write".into(),
            archive(&[member("l", b'2', &format!("{up}{c}"), b"", None), file("l/escaped")]),
        ),
        (
            "symlink chain then write".into(),
            archive(&[
                member("a", b'2', "b", b"", None),
                member("b", b'2', &format!("/{c}"), b"", None),
                file("a/escaped"),
            ]),
        ),
        ("hardlink to a host file".into(), archive(&[member("h", b'1', "/etc/passwd", b"", None)])),
        ("hardlink out by dot-dot".into(), archive(&[member("h", b'1', &format!("{up}etc/passwd"), b"", None)])),
        (
            "hardlink through a symlink".into(),
            archive(&[member("l", b'2', "/etc", b"", None), member("h", b'1', "l/passwd", b"", None)]),
        ),
        ("character device".into(), archive(&[member("dev/kmsg-like", b'3', "", b"", None)])),
        ("block device".into(), archive(&[member("dev/loop-like", b'4', "", b"", None)])),
        ("fifo".into(), archive(&[member("fifo", b'6', "", b"", None)])),
        ("opaque marker at the root".into(), archive(&[file(".wh..wh..opq")])),
        ("whiteout of dot-dot".into(), archive(&[file("a/.wh..."), file(".wh..")])),
        ("size that lies (1 GB, 8 bytes)".into(), archive(&[member("big", b'0', "", b"hostile\n", Some(1 << 30))])),
        ("truncated mid-header".into(), archive(&[file("a")])[..300].to_vec()),
        ("garbage".into(), b"this is not a tar archive at all, just text\n".repeat(40)),
        ("empty".into(), Vec::new()),
        ("4000-byte path (pax)".into(), archive(&[pax_path(&format!("{}f", "d/".repeat(2000))), file("placeholder")])),
        ("pax path with dot-dot".into(), archive(&[pax_path(&format!("{up}{c}/escaped")), file("placeholder")])),
        ("newline in a name".into(), archive(&[file("a\nb")])),
        ("directory then file of one name".into(), archive(&[member("x/", b'5', "", b"", None), file("x")])),
        (
            "file then directory of one name".into(),
            archive(&[file("x"), member("x/", b'5', "", b"", None), file("x/y")]),
        ),
        (
            "symlink loop then write".into(),
            archive(&[member("a", b'2', "b", b"", None), member("b", b'2', "a", b"", None), file("a/x")]),
        ),
    ];
    // A gzip bomb: 64 MB of zeros in a few dozen KB.
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    std::io::Write::write_all(&mut bomb, &archive(&[member("zeros", b'0', "", &vec![0u8; 64 << 20], None)])).unwrap();
    cases.push(("gzip bomb (64 MB)".into(), bomb.finish().unwrap()));
    let passwd = std::fs::read("/etc/passwd").unwrap();

    for (i, (what, bytes)) in cases.iter().enumerate() {
        let tar = env.work.path().join(format!("hostile-{i}.tar"));
        std::fs::write(&tar, bytes).unwrap();
        let mut import = env.cmd(&["import", tar.to_str().unwrap(), &format!("hostile:{i}")]);
        classify(&mut row, &format!("import {what}"), run_limited(&mut import, Duration::from_secs(120)));
        let ctx = env.context(
            &format!("hostile-ctx-{i}"),
            &[("Dockerfile", "FROM busybox\nADD x.tar /d/\nRUN ls -la /d > /dev/null\n")],
        );
        std::fs::copy(&tar, ctx.join("x.tar")).unwrap();
        let mut add = env.cmd(&["build", "--progress=plain", "-t", &format!("hostile-add:{i}")]);
        classify(&mut row, &format!("ADD {what}"), run_limited(add.arg(&ctx), Duration::from_secs(120)));
        // The same bytes as an image's layer (a compressed one as it came).
        let layout = env.work.path().join(format!("hostile-layout-{i}"));
        oci_layout_of(&layout, bytes, &format!("hostile-load:{i}"));
        let archive = env.work.path().join(format!("hostile-layout-{i}.tar"));
        let packed = Command::new("tar").arg("-cf").arg(&archive).arg("-C").arg(&layout).arg(".").status().unwrap();
        assert!(packed.success());
        let mut load = env.cmd(&["load", "-i", archive.to_str().unwrap()]);
        if classify(&mut row, &format!("load {what}"), run_limited(&mut load, Duration::from_secs(120)))
            .is_some_and(|o| o.status.success())
        {
            let mut run = env.cmd(&["run", "--rm", &format!("hostile-load:{i}"), "/bin/true"]);
            classify(&mut row, &format!("run of loaded {what}"), run_limited(&mut run, Duration::from_secs(120)));
        }
        if skopeo {
            let name = format!("{}/rel/hostile-{i}:1", registry.host());
            let copied = Command::new("skopeo")
                .args(["copy", "--quiet", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:hostile-load:{i}", layout.display()))
                .arg(format!("docker://{name}"))
                .output()
                .unwrap();
            assert!(copied.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&copied.stderr));
            let puller = crate::util::env("reliability_hostile_pull").unwrap();
            let mut pull = puller.cmd(&["run", "--rm", &name, "/bin/true"]);
            classify(&mut row, &format!("pull and run {what}"), run_limited(&mut pull, Duration::from_secs(120)));
            check_store(&mut row, &puller, &format!("pull of {what}"));
        }
        let escaped: Vec<_> = walk(&canary);
        if !escaped.is_empty() {
            row.corrupt(format!("{what}: wrote outside the store: {escaped:?}"));
            let _ = std::fs::remove_dir_all(&canary);
            std::fs::create_dir_all(&canary).unwrap();
        }
        if std::fs::read("/etc/passwd").unwrap() != passwd {
            row.corrupt(format!("{what}: /etc/passwd changed"));
        }
    }
    check_store(&mut row, env, "after the hostile archives");
    row
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(entry.path());
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&entry.path()));
        }
    }
    out
}

/// A secret used by RUN steps (one of them failing) is in no layer, store file, cache
/// export, output or error.
fn secrets(env: &Env) -> Row {
    let mut row = Row::new("secrets (store, cache, logs, errors)");
    let token = "s3cr3t-token-5d41402abc4b2a76";
    let secret = env.work.path().join("secret.txt");
    std::fs::write(&secret, token).unwrap();
    let cache = env.work.path().join("secret-cache");
    let dockerfile = "FROM busybox\nRUN --mount=type=secret,id=tok wc -c < /run/secrets/tok > /len\n";
    let ctx = env.context("secret", &[("Dockerfile", dockerfile)]);
    let spec = format!("id=tok,src={}", secret.display());
    let cache_to = format!("type=local,dest={},mode=max", cache.display());
    let mut cmd = env.cmd(&["build", "--progress=plain", "--secret", &spec, "--cache-to", &cache_to, "-t", "sec:1"]);
    let mut outputs = Vec::new();
    outputs.extend(classify(&mut row, "build with a secret", run_limited(cmd.arg(&ctx), Duration::from_secs(120))));
    let failing = "FROM busybox\nRUN --mount=type=secret,id=tok test \"$(cat /run/secrets/tok)\" = nope\n";
    let ctx = env.context("secret-fail", &[("Dockerfile", failing)]);
    let mut cmd = env.cmd(&["build", "--progress=plain", "--secret", &spec]);
    outputs.extend(classify(
        &mut row,
        "failing build with a secret",
        run_limited(cmd.arg(&ctx), Duration::from_secs(120)),
    ));
    for out in &outputs {
        if text(out).contains(token) {
            row.leak("the secret is in a build's output".into());
        }
    }
    // The image's files (layers are compressed in blobs; their snapshots are walked below).
    // Only the image's own filesystem: /dev, /proc and /sys are mounts of their own.
    let grep = format!("find / -xdev -type f -exec grep -l {token} {{}} + 2>/dev/null || true");
    let found = env.run(&["run", "--rm", "sec:1", "sh", "-c", &grep]);
    if !String::from_utf8_lossy(&found.stdout).trim().is_empty() {
        row.leak(format!("the secret is in the image: {}", text(&found)));
    }
    let saved = env.work.path().join("sec.tar");
    env.ok(&["save", "-o", saved.to_str().unwrap(), "sec:1"]);
    for dir in [env.root.path(), cache.as_path()] {
        for path in walk(dir) {
            if path.is_file() && std::fs::read(&path).is_ok_and(|b| contains(&b, token.as_bytes())) {
                row.leak(format!("the secret is in {}", path.display()));
            }
        }
    }
    if contains(&std::fs::read(&saved).unwrap(), token.as_bytes()) {
        row.leak("the secret is in the saved image".into());
    }
    row
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
