//! `--ssh` and `RUN --mount=type=ssh`: the host's real `ssh-add -l`, run in the step
//! against the forwarded socket, lists the key of an agent this test started; the key
//! is in no layer, cache record, store file or log.

use crate::util::{Env, env};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An `ssh-agent` on a socket under `dir` holding `key`.
fn start_agent(dir: &Path, key: &Path) -> Agent {
    let socket = dir.join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ssh-agent (is openssh-client installed?)");
    let start = Instant::now();
    while !socket.exists() {
        assert!(start.elapsed() < Duration::from_secs(10), "ssh-agent made no socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let agent = Agent { child, socket };
    let status = Command::new("ssh-add").arg(key).env("SSH_AUTH_SOCK", &agent.socket).output().unwrap();
    assert!(status.status.success(), "ssh-add: {}", String::from_utf8_lossy(&status.stderr));
    agent
}

/// The host's `ssh-add` with its loader and libraries, flat in one directory, so a
/// step can run it from a bind mount (`/tools/ld.so --library-path /tools /tools/ssh-add`).
fn tools(env: &Env) -> PathBuf {
    let dir = env.work.path().join("tools");
    std::fs::create_dir_all(&dir).unwrap();
    let ldd = Command::new("ldd").arg("/usr/bin/ssh-add").output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line.split_whitespace().find(|w| w.starts_with('/')).map(Path::new);
        let Some(path) = path else { continue };
        let name = if line.contains("ld-linux") {
            "ld.so".to_string()
        } else {
            path.file_name().unwrap().to_string_lossy().into_owned()
        };
        std::fs::copy(path, dir.join(name)).unwrap();
    }
    std::fs::copy("/usr/bin/ssh-add", dir.join("ssh-add")).unwrap();
    dir
}

/// Every file under `dir` whose bytes, gunzipped when gzip, contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let has = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    let mut found = Vec::new();
    // Each inode once: snapshots hard-link busybox's applets hundreds of times.
    let mut seen = std::collections::HashSet::new();
    for entry in walkdir::WalkDir::new(dir).into_iter().filter_map(|e| e.ok()) {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let Ok(bytes) = std::fs::read(entry.path()) else { continue };
        let mut plain = Vec::new();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let _ = std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&bytes[..]), &mut plain);
        }
        if has(&bytes) || has(&plain) {
            found.push(entry.path().display().to_string());
        }
    }
    found
}

#[test]
fn ssh_agent_is_forwarded_and_never_stored() {
    let Some(env) = env("ssh_forwarding") else { return };
    if Command::new("ssh-agent").arg("-h").output().is_err() || !Path::new("/usr/bin/ssh-add").exists() {
        eprintln!("SKIPPED ssh_agent_is_forwarded_and_never_stored: openssh-client is not installed");
        return;
    }
    let env = env.with_busybox();
    let key = env.work.path().join("id_ed25519");
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "builder-test", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let fingerprint = Command::new("ssh-keygen").arg("-lf").arg(key.with_extension("pub")).output().unwrap();
    let fingerprint = String::from_utf8(fingerprint.stdout).unwrap().split_whitespace().nth(1).unwrap().to_string();
    // A line of the private key's body: what must appear nowhere.
    let private = std::fs::read_to_string(&key).unwrap();
    let secret_line = private.lines().nth(2).unwrap().to_string();
    let agent = start_agent(env.work.path(), &key);
    let tools = tools(&env);

    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\n\
             RUN --mount=type=bind,from=tools,target=/tools --mount=type=ssh \
             echo \"sock=$SSH_AUTH_SOCK\" && stat -c '%a %u' $SSH_AUTH_SOCK && \
             /tools/ld.so --library-path /tools /tools/ssh-add -l | tee /fingerprints\n\
             RUN --mount=type=bind,from=tools,target=/tools --mount=type=ssh,id=deploy,target=/agent,mode=0660,uid=7 \
             stat -c '%a %u' /agent > /custom && \
             SSH_AUTH_SOCK=/agent /tools/ld.so --library-path /tools /tools/ssh-add -l >> /custom\n",
        )],
    );
    let tools_ctx = format!("tools={}", tools.display());
    let by_socket = format!("default={}", agent.socket.display());
    let by_key = format!("deploy={}", key.display());
    let out = env.work.path().join("out");
    let dest = format!("type=local,dest={}", out.display());
    let args = ["--build-context", &tools_ctx, "--ssh", &by_socket, "--ssh", &by_key, "-o", &dest];
    let (ok, stdout, stderr) = env.build(&ctx, &args);
    assert!(ok, "{stderr}");
    // The default agent at BuildKit's place, 0600; the agent's own key listed.
    assert!(stderr.contains("sock=/run/buildkit/ssh_agent.0") && stderr.contains("600 0"), "{stderr}");
    let listed = std::fs::read_to_string(out.join("fingerprints")).unwrap();
    assert!(listed.contains(&fingerprint) && listed.contains("builder-test"), "{listed}");
    // A key file given to --ssh is served too, at the mount's target, mode and owner.
    let custom = std::fs::read_to_string(out.join("custom")).unwrap();
    assert!(custom.starts_with("660 7\n") && custom.contains(&fingerprint), "{custom}");
    // Nothing of the sockets stays in the image.
    assert!(!out.join("run/buildkit").exists() && !out.join("agent").exists());

    // The key is in no layer, cache record, store file or log.
    assert!(!stdout.contains(&secret_line) && !stderr.contains(&secret_line));
    assert_eq!(files_containing(env.root.path(), &secret_line), Vec::<String>::new());
    assert_eq!(files_containing(&out, &secret_line), Vec::<String>::new());

    // A required agent that was not given fails, naming its id.
    let ctx =
        env.context("missing", &[("Dockerfile", "FROM busybox\nRUN --mount=type=ssh,id=nope,required=true true\n")]);
    let (ok, _, stderr) = env.build(&ctx, &[]);
    assert!(!ok && stderr.contains("ssh agent \"nope\" not found"), "{stderr}");
    // Not required: the step runs without it.
    let ctx = env.context(
        "optional",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=ssh test -z \"$SSH_AUTH_SOCK\" && test ! -e /run/buildkit/ssh_agent.0\n",
        )],
    );
    env.build_ok(&ctx, &[]);
}
