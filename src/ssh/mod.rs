//! SSH agents a build may use (`--ssh default|ID=SOCKET|ID=KEYFILE[,KEYFILE]`, as
//! buildx takes them): `RUN --mount=type=ssh` gets a proxy socket onto one
//! ([`proxy`]), and git over ssh uses the `default` one. A key file is served by an
//! `ssh-agent` (openssh-client) that this process starts on a private socket, loads
//! with `ssh-add` and stops when the build ends; the key never enters the store.

pub mod proxy;

use anyhow::{Context as _, Result, anyhow, bail};
use std::collections::HashMap;
use std::os::unix::fs::FileTypeExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `--ssh` agent: a socket that speaks the agent protocol.
pub struct Agent {
    socket: PathBuf,
    /// The `ssh-agent` serving key files, with its directory; stopped on drop.
    own: Option<(Child, tempfile::TempDir)>,
}

impl Agent {
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some((child, _)) = &mut self.own {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `--ssh` specs by id: `default` (or `ID`) alone is `$SSH_AUTH_SOCK`; `ID=PATH,...`
/// is one agent socket or key files.
pub fn agents(specs: &[String]) -> Result<HashMap<String, Agent>> {
    let mut agents = HashMap::new();
    for spec in specs {
        let (id, paths) = spec.split_once('=').unwrap_or((spec, ""));
        if id.is_empty() {
            bail!("invalid --ssh {spec:?}: want default, ID, ID=SOCKET or ID=KEYFILE");
        }
        let paths: Vec<&str> = paths.split(',').filter(|p| !p.is_empty()).collect();
        let agent = if paths.is_empty() {
            let socket = std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .ok_or_else(|| anyhow!("--ssh {spec}: SSH_AUTH_SOCK is not set (start ssh-agent or give ID=SOCKET)"))?;
            Agent { socket: socket.into(), own: None }
        } else {
            agent_for(&paths).with_context(|| format!("--ssh {spec}"))?
        };
        agents.insert(id.to_string(), agent);
    }
    Ok(agents)
}

fn agent_for(paths: &[&str]) -> Result<Agent> {
    let meta = |p: &str| std::fs::metadata(p).with_context(|| format!("reading {p}"));
    if let [path] = paths
        && meta(path)?.file_type().is_socket()
    {
        return Ok(Agent { socket: PathBuf::from(path), own: None });
    }
    for path in paths {
        if !meta(path)?.is_file() {
            bail!("{path} is neither an agent socket nor a key file");
        }
    }
    let dir = tempfile::Builder::new().prefix("builder-ssh-").tempdir()?;
    let socket = dir.path().join("agent.sock");
    let child = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting ssh-agent for the key files (is openssh-client installed?)")?;
    let agent = Agent { socket: socket.clone(), own: Some((child, dir)) };
    let start = Instant::now();
    // The socket exists from bind(2) on but refuses connections until listen(2):
    // wait until one is accepted.
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!("ssh-agent did not listen on {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = Command::new("ssh-add")
        .args(paths)
        .env("SSH_AUTH_SOCK", &socket)
        .env_remove("DISPLAY")
        .env_remove("SSH_ASKPASS")
        .stdin(Stdio::null())
        .output()
        .context("running ssh-add")?;
    if !output.status.success() {
        // Keys with a passphrase cannot be used, as in buildx.
        bail!("ssh-add {}: {}", paths.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(agent)
}
