//! Running git for git sources: never prompting, bounded by a timeout, with the
//! build's credentials (the `default` ssh agent; BuildKit's `GIT_AUTH_HEADER` and
//! `GIT_AUTH_TOKEN` secrets as an http header in git's environment, never on a
//! command line).

use super::super::BuildWorker;
use anyhow::{Context as _, Result, bail};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one git command may take (a fetch of a big repository included), unless
/// `BUILDER_GIT_TIMEOUT` (seconds) says otherwise.
const GIT_TIMEOUT: Duration = Duration::from_secs(600);

fn git_timeout() -> Duration {
    std::env::var("BUILDER_GIT_TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .map_or(GIT_TIMEOUT, Duration::from_secs)
}

/// A git command that never prompts, with the `default` ssh agent for ssh remotes.
pub(super) fn git_command(worker: &BuildWorker<'_>, git_dir: Option<&Path>) -> Command {
    let mut cmd = Command::new("git");
    if let Some(dir) = git_dir {
        cmd.arg("--git-dir").arg(dir);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0").env("GIT_PROTOCOL", "version=2");
    if let Some(agent) = worker.options.ssh.get("default") {
        cmd.env("SSH_AUTH_SOCK", agent.socket());
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
    }
    cmd
}

pub(super) fn run_git(worker: &BuildWorker<'_>, git_dir: Option<&Path>, args: &[&str]) -> Result<String> {
    let mut cmd = git_command(worker, git_dir);
    cmd.args(args);
    wait(cmd, args.first().copied().unwrap_or("git"))
}

/// [`run_git`] of a command that talks to `remote`, with the build's http credentials
/// for it as git config in the environment (never on a command line).
pub(super) fn run_git_remote(
    worker: &BuildWorker<'_>,
    git_dir: Option<&Path>,
    remote: &str,
    args: &[&str],
) -> Result<String> {
    let mut cmd = git_command(worker, git_dir);
    add_auth(&mut cmd, worker, remote);
    cmd.args(args);
    wait(cmd, args.first().copied().unwrap_or("git"))
}

pub(super) fn add_auth(cmd: &mut Command, worker: &BuildWorker<'_>, remote: &str) {
    if let Some((key, value)) = auth_header(&worker.options.secrets, remote) {
        cmd.env("GIT_CONFIG_COUNT", "1").env("GIT_CONFIG_KEY_0", key).env("GIT_CONFIG_VALUE_0", value);
    }
}

/// BuildKit's git credentials from secrets, first found of `GIT_AUTH_HEADER.<host>`,
/// `GIT_AUTH_TOKEN.<host>`, `GIT_AUTH_HEADER`, `GIT_AUTH_TOKEN` (a token is sent as
/// `basic x-access-token:TOKEN`), as an `http.<remote>.extraheader` for this remote
/// (for any github.com remote on github.com, as BuildKit does).
fn auth_header(secrets: &HashMap<String, Vec<u8>>, remote: &str) -> Option<(String, String)> {
    let rest = remote.strip_prefix("https://").or_else(|| remote.strip_prefix("http://"))?;
    let host = rest.split('/').next().unwrap_or(rest);
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    let names = [
        (format!("GIT_AUTH_HEADER.{host}"), false),
        (format!("GIT_AUTH_TOKEN.{host}"), true),
        ("GIT_AUTH_HEADER".to_string(), false),
        ("GIT_AUTH_TOKEN".to_string(), true),
    ];
    let (value, token) = names.iter().find_map(|(name, token)| secrets.get(name).map(|v| (v, *token)))?;
    let value = String::from_utf8_lossy(value).trim().to_string();
    let header = if token { format!("basic {}", base64(format!("x-access-token:{value}").as_bytes())) } else { value };
    let scope = ["https://github.com/", "https://www.github.com/"]
        .into_iter()
        .find(|p| remote.starts_with(p))
        .unwrap_or(remote);
    Some((format!("http.{scope}.extraheader"), format!("Authorization: {header}")))
}

/// Runs `cmd` to its end or the timeout; stdout on success, stderr in the error.
pub(super) fn wait(mut cmd: Command, what: &str) -> Result<String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running git (is it installed?)")?;
    let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let out = std::thread::spawn(move || std::io::read_to_string(&mut stdout).unwrap_or_default());
    let err = std::thread::spawn(move || std::io::read_to_string(&mut stderr).unwrap_or_default());
    let (start, timeout) = (Instant::now(), git_timeout());
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("git {what} timed out after {}s (BUILDER_GIT_TIMEOUT)", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    if !status.success() {
        bail!("git {what} failed ({status}): {}", err.trim());
    }
    Ok(out)
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_from_secrets_as_buildkit_names_them() {
        let secrets = |pairs: &[(&str, &str)]| -> HashMap<String, Vec<u8>> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
        };
        let s = secrets(&[("GIT_AUTH_TOKEN", "abc\n")]);
        let (key, value) = auth_header(&s, "https://git.example/o/r.git").unwrap();
        assert_eq!(key, "http.https://git.example/o/r.git.extraheader");
        assert_eq!(value, "Authorization: basic eC1hY2Nlc3MtdG9rZW46YWJj");
        let s = secrets(&[("GIT_AUTH_TOKEN", "abc"), ("GIT_AUTH_HEADER.github.com", "bearer x")]);
        let (key, value) = auth_header(&s, "https://github.com/o/r.git").unwrap();
        assert_eq!((key.as_str(), value.as_str()), ("http.https://github.com/.extraheader", "Authorization: bearer x"));
        assert_eq!(auth_header(&s, "git@github.com:o/r.git"), None);
        assert_eq!(auth_header(&secrets(&[]), "https://h/r.git"), None);
    }

    #[test]
    fn base64_as_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"x-access-token:abc"), "eC1hY2Nlc3MtdG9rZW46YWJj");
    }
}
