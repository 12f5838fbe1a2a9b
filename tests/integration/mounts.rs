//! Inside `RUN`: the sandbox's isolation, network modes, and `RUN --mount` of every
//! type (cache, secret, bind, tmpfs), none of which may leave a trace in a layer.

use crate::util::{Env, env};
use sha2::Digest as _;
use std::io::Read;
use std::path::Path;

/// Every file of the saved image, decompressed, with nested tars (layers) opened:
/// (path inside, bytes).
fn saved_files(env: &Env, image: &str) -> Vec<(String, Vec<u8>)> {
    let tar = env.work.path().join(format!("{}.tar", image.replace([':', '/'], "_")));
    env.ok(&["save", "-o", tar.to_str().unwrap(), image]);
    let mut out = Vec::new();
    unpack_all("", std::fs::read(&tar).unwrap(), &mut out);
    out
}

fn unpack_all(prefix: &str, bytes: Vec<u8>, out: &mut Vec<(String, Vec<u8>)>) {
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut plain = Vec::new();
        flate2::read::MultiGzDecoder::new(&bytes[..]).read_to_end(&mut plain).unwrap();
        plain
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(&bytes[..]).unwrap()
    } else {
        bytes
    };
    let is_tar = bytes.len() >= 512 && &bytes[257..262] == b"ustar";
    if !is_tar {
        out.push((prefix.to_string(), bytes));
        return;
    }
    let mut archive = tar::Archive::new(&bytes[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = format!("{prefix}!{}", entry.path().unwrap().display());
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((name.clone(), Vec::new()));
        if !data.is_empty() {
            unpack_all(&name, data, out);
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Every file under `dir` (not following symlinks) whose bytes, or gzip-decompressed
/// bytes, contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir).into_iter().filter_map(|e| e.ok()) {
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else { continue };
        let mut files = Vec::new();
        unpack_all("", bytes, &mut files);
        if files.iter().any(|(_, b)| contains(b, needle)) {
            found.push(entry.path().display().to_string());
        }
    }
    found
}

#[test]
fn run_is_isolated_and_network_none_has_only_loopback() {
    let Some(env) = env("run_isolation") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "iso",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN mkdir /out && ls /proc | grep -cE '^[0-9]+$' > /out/procs && hostname > /out/hostname \
             && cut -d' ' -f5 /proc/self/mountinfo > /out/mounts && cat /proc/1/cmdline > /out/pid1\n\
             RUN --network=none cat /proc/net/dev > /out/netdev\n\
             RUN cat /proc/net/dev > /out/defaultnetdev\n\
             RUN --network=host cat /proc/net/dev > /out/hostnetdev\n",
        )],
    );
    env.build_ok(&ctx, &["-t", "iso:1", "--allow", "network.host"]);
    let cat = |f: &str| env.ok(&["run", "--rm", "iso:1", "cat", f]);
    // init, sh, ls, grep: a handful, never the host's hundreds.
    let procs: usize = cat("/out/procs").trim().parse().unwrap();
    assert!(procs <= 6, "{procs} processes visible");
    assert!(cat("/out/pid1").starts_with("builder-init"), "pid 1 is the sandbox init");
    let hostname = cat("/out/hostname");
    assert_eq!(hostname.trim(), "buildkitsandbox");
    let allowed = ["/", "/proc", "/sys", "/dev", "/etc/hosts", "/etc/resolv.conf"];
    for mount in cat("/out/mounts").lines() {
        let ok = allowed.iter().any(|a| mount == *a || (*a != "/" && mount.starts_with(&format!("{a}/"))));
        assert!(ok, "host mount {mount} visible in RUN");
    }
    let interfaces = |text: &str| -> Vec<String> {
        text.lines().skip(2).filter_map(|l| l.split(':').next()).map(|s| s.trim().to_string()).collect()
    };
    assert_eq!(interfaces(&cat("/out/netdev")), ["lo"]);
    // The default: a namespace of its own, behind slirp4netns where it is installed.
    let mut default = interfaces(&cat("/out/defaultnetdev"));
    default.sort();
    let expected: &[&str] = if executor_nat() { &["lo", "tap0"] } else { &["lo"] };
    assert_eq!(default, expected);
    let host = interfaces(&std::fs::read_to_string("/proc/net/dev").unwrap());
    let mut seen = interfaces(&cat("/out/hostnetdev"));
    seen.sort();
    let mut host = host;
    host.sort();
    assert_eq!(seen, host, "--network=host shares the host's interfaces");
}

fn executor_nat() -> bool {
    std::process::Command::new("sh").args(["-c", "command -v slirp4netns"]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn build_network_flag_sets_the_default_mode() {
    let Some(env) = env("build_network_none") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "net",
        &[("Dockerfile", "FROM busybox\nRUN cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /ifs\n")],
    );
    env.build_ok(&ctx, &["--network", "none", "-t", "net:1"]);
    assert_eq!(env.ok(&["run", "--rm", "net:1", "cat", "/ifs"]), "lo\n");
}

#[test]
fn cache_mount_persists_across_builds_and_stays_out_of_layers() {
    let Some(env) = env("cache_mount_counter") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "cache",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN --mount=type=cache,target=/var/cache/app,uid=1000,mode=0750 \
             n=$(cat /var/cache/app/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /var/cache/app/n; \
             echo cache-$((1000+234))-marker > /var/cache/app/marker; echo $n > /count; \
             stat -c '%u %a' /var/cache/app > /owner\n",
        )],
    );
    env.build_ok(&ctx, &["-t", "cache:1"]);
    assert_eq!(env.ok(&["run", "--rm", "cache:1", "cat", "/count"]), "1\n");
    assert_eq!(env.ok(&["run", "--rm", "cache:1", "cat", "/owner"]), "1000 750\n");
    env.build_ok(&ctx, &["--no-cache", "-t", "cache:2"]);
    assert_eq!(env.ok(&["run", "--rm", "cache:2", "cat", "/count"]), "2\n");
    let out = env.run(&["run", "--rm", "cache:2", "ls", "/var/cache"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "", "the cache mount's stub left the layer");

    for (name, bytes) in saved_files(&env, "cache:2") {
        assert!(!name.contains("var/cache/app"), "cache mount path {name} in the saved image");
        assert!(!contains(&bytes, "cache-1234-marker"), "cache content in {name}");
    }
}

#[test]
fn cache_mount_from_a_stage_is_seeded_once() {
    let Some(env) = env("cache_mount_from") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "seed",
        &[(
            "Dockerfile",
            "FROM busybox AS seed\n\
             RUN mkdir -p /s/sub && echo seeded > /s/sub/f\n\
             FROM busybox\n\
             RUN --mount=type=cache,id=c,target=/c,from=seed,source=/s/sub \
             cat /c/f > /first && echo more >> /c/f\n\
             RUN --mount=type=cache,id=c,target=/c,from=seed,source=/s/sub cat /c/f > /second\n\
             RUN --mount=type=cache,id=c,target=/c,ro sh -c 'ls /c | wc -l > /plain; ! touch /c/x'\n",
        )],
    );
    env.build_ok(&ctx, &["-t", "seed:1"]);
    assert_eq!(env.ok(&["run", "--rm", "seed:1", "cat", "/first", "/second", "/plain"]), "seeded\nseeded\nmore\n0\n");
}

#[test]
fn cache_mount_locked_serializes_parallel_steps() {
    let Some(env) = env("cache_mount_locked") else { return };
    let env = env.with_busybox();
    let step = |name: &str| {
        format!(
            "FROM busybox AS {name}\n\
             RUN --mount=type=cache,id=lk,target=/c,sharing=locked \
             sh -c 'if [ -e /c/busy ]; then echo overlap >> /c/log; fi; touch /c/busy; \
             echo {name}-start $(date +%s) >> /c/log; sleep 1; echo {name}-end >> /c/log; rm /c/busy; touch /done'\n"
        )
    };
    let dockerfile = format!(
        "{}{}FROM busybox\nCOPY --from=a /done /a\nCOPY --from=b /done /b\n\
         RUN --mount=type=cache,id=lk,target=/c,sharing=locked cp /c/log /log\n",
        step("a"),
        step("b")
    );
    let ctx = env.context("locked", &[("Dockerfile", &dockerfile)]);
    env.build_ok(&ctx, &["-t", "locked:1"]);
    let log = env.ok(&["run", "--rm", "locked:1", "cat", "/log"]);
    assert!(!log.contains("overlap"), "{log}");
    let order: Vec<&str> = log.lines().map(|l| l.split(' ').next().unwrap()).collect();
    assert!(
        order == ["a-start", "a-end", "b-start", "b-end"] || order == ["b-start", "b-end", "a-start", "a-end"],
        "{log}"
    );
}

#[test]
fn secrets_from_file_and_env_never_leave_the_run() {
    let Some(env) = env("secrets") else { return };
    let env = env.with_busybox();
    let file_secret = "file-secret-5f3a9c";
    let env_secret = "env-secret-8d1e47";
    let secret_file = env.work.path().join("token");
    std::fs::write(&secret_file, file_secret).unwrap();
    // The Dockerfile only knows their digests: it is in the output and the store.
    let sha = |s: &str| hex::encode(sha2::Sha256::digest(s.as_bytes()));
    let (file_sha, env_sha) = (sha(file_secret), sha(env_secret));
    let ctx = env.context(
        "secrets",
        &[(
            "Dockerfile",
            &format!(
                "FROM busybox\n\
                 RUN --mount=type=secret,id=tok test \"$(sha256sum < /run/secrets/tok | cut -d' ' -f1)\" = {file_sha} \
                 && stat -c %a /run/secrets/tok > /mode && echo file-ok\n\
                 RUN --mount=type=secret,id=api,env=API_TOKEN,required=true \
                 test \"$(printf %s \"$API_TOKEN\" | sha256sum | cut -d' ' -f1)\" = {env_sha} \
                 && test ! -e /run/secrets/api && echo env-ok\n\
                 RUN --mount=type=secret,id=tok,target=/etc/app/key,mode=0440,uid=65534 \
                 stat -c '%a %u' /etc/app/key > /custom\n\
                 RUN --mount=type=secret,id=absent ls /run/secrets > /absent 2>&1 || true\n"
            ),
        )],
    );
    let src = format!("id=tok,src={}", secret_file.display());
    let out = env
        .cmd(&["build", "--progress=plain", "--secret", &src, "--secret", "id=api,env=MY_API", "-t", "sec:1"])
        .arg(&ctx)
        .env("MY_API", env_secret)
        .output()
        .unwrap();
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{output}");
    assert!(output.contains("file-ok") && output.contains("env-ok"), "{output}");
    assert!(!output.contains(file_secret) && !output.contains(env_secret), "a secret in the build output");
    assert_eq!(env.ok(&["run", "--rm", "sec:1", "cat", "/mode", "/custom"]), "400\n440 65534\n");
    // The stub of /run/secrets is gone; /etc/app was created for the mount and goes too.
    let out = env.run(&["run", "--rm", "sec:1", "sh", "-c", "ls /run/secrets; ls -d /etc/app"]);
    assert!(!out.status.success() && out.stdout.is_empty(), "{out:?}");

    for (name, bytes) in saved_files(&env, "sec:1") {
        assert!(!contains(&bytes, file_secret) && !contains(&bytes, env_secret), "a secret in {name}");
    }
    for secret in [file_secret, env_secret] {
        assert_eq!(files_containing(env.root.path(), secret), Vec::<String>::new(), "a secret in the store");
    }

    // A required secret that was not given fails the step, naming the id.
    let ctx = env.context(
        "missing",
        &[("Dockerfile", "FROM busybox\nRUN --mount=type=secret,id=nope,required cat /run/secrets/nope\n")],
    );
    let (ok, _, stderr) = env.build(&ctx, &[]);
    assert!(!ok && stderr.contains("secret nope not found"), "{stderr}");
}

#[test]
fn bind_mounts_from_context_and_stage_subpaths() {
    let Some(env) = env("bind_mounts") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "bind",
        &[
            (
                "Dockerfile",
                "FROM busybox AS gen\n\
                 RUN mkdir -p /out/sub && echo one > /out/sub/f1 && echo top > /out/top\n\
                 RUN echo two > /out/sub/f2 && rm /out/sub/f1 && ln -s /out/sub /out/link\n\
                 FROM busybox\n\
                 RUN --mount=type=bind,source=data/in.txt,target=/m/in.txt cat /m/in.txt > /ctx-copy\n\
                 RUN --mount=type=bind,target=/src ls /src > /ctx-ls && ! touch /src/x 2>/dev/null\n\
                 RUN --mount=type=bind,from=gen,source=/out/sub,target=/m/sub ls /m/sub > /stage-ls && ! touch /m/sub/x\n\
                 RUN --mount=type=bind,from=gen,source=out/link,target=/m/link cat /m/link/f2 > /via-link\n\
                 RUN --mount=type=bind,from=gen,source=/out/top,target=/m/top cat /m/top > /file\n\
                 RUN --mount=type=bind,from=gen,source=/out,target=/m/all,rw sh -c 'echo new > /m/all/new && rm /m/all/top'\n\
                 RUN --mount=type=bind,source=data,target=/d,rw sh -c 'echo x > /d/written'\n\
                 RUN test ! -e /m && test ! -e /d && test ! -e /src && echo clean > /clean\n",
            ),
            ("data/in.txt", "from context\n"),
        ],
    );
    env.build_ok(&ctx, &["-t", "bind:1"]);
    let out =
        env.ok(&["run", "--rm", "bind:1", "cat", "/ctx-copy", "/ctx-ls", "/stage-ls", "/via-link", "/file", "/clean"]);
    assert_eq!(out, "from context\nDockerfile\ndata\nf2\ntwo\ntop\nclean\n");
    assert!(!ctx.join("data/written").exists(), "rw bind writes reached the context");

    // What .dockerignore excludes is not in the context a RUN binds either.
    let ctx = env.context(
        "bind-ignored",
        &[
            ("Dockerfile", "FROM busybox\nRUN --mount=target=/ctx ls -a /ctx > /ls && cat /ctx/sub/kept >> /ls\n"),
            (".dockerignore", "*.secret\nsub/drop\n"),
            ("a.secret", "no"),
            ("kept", "yes"),
            ("sub/kept", "sub-kept\n"),
            ("sub/drop", "no"),
        ],
    );
    env.build_ok(&ctx, &["-t", "bind:2"]);
    let listing = env.ok(&["run", "--rm", "bind:2", "cat", "/ls"]);
    assert_eq!(listing, ".\n..\n.dockerignore\nDockerfile\nkept\nsub\nsub-kept\n");

    let ctx = env.context(
        "bind-missing",
        &[("Dockerfile", "FROM busybox AS a\nFROM busybox\nRUN --mount=from=a,source=/nope,target=/m true\n")],
    );
    let (ok, _, stderr) = env.build(&ctx, &[]);
    assert!(!ok && stderr.contains("nope"), "{stderr}");
}

#[test]
fn tmpfs_mount_with_size_and_ssh_is_refused() {
    let Some(env) = env("tmpfs_ssh") else { return };
    let env = env.with_busybox();
    let ctx = env.context(
        "tmpfs",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=tmpfs,target=/t,size=1m sh -c \
             'grep \" /t tmpfs \" /proc/mounts | grep -o size=1024k > /size; echo x > /t/f'\n\
             RUN test ! -e /t && echo gone > /gone\n",
        )],
    );
    env.build_ok(&ctx, &["-t", "tmpfs:1"]);
    assert_eq!(env.ok(&["run", "--rm", "tmpfs:1", "cat", "/size", "/gone"]), "size=1024k\ngone\n");

    // Without `--ssh`, a required agent is refused, naming its id.
    let ctx = env.context("ssh", &[("Dockerfile", "FROM busybox\nRUN --mount=type=ssh,required=true true\n")]);
    let (ok, _, stderr) = env.build(&ctx, &[]);
    assert!(!ok && stderr.contains("ssh agent \"default\" not found"), "{stderr}");
}
