//! `builder run`: a container over an image's snapshots with a writable layer that
//! dies with it, named volumes that outlive it, and the process's exit code.
//!
//! As with `docker run`, the exit code is the process's (128+N if signal N killed
//! it), 126 if its command cannot be invoked, 127 if it is not found (both set by the
//! executor), and [`FAILED`] for every error of our own.

use crate::cli::RunArgs;
use anyhow::{Context as _, Result, bail};
use std::collections::HashMap;
use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;
use store::Store;

/// `docker run`'s exit code when the failure is its own rather than the container's:
/// bad flags, an unknown image, a volume or a sandbox that cannot be set up.
pub const FAILED: u8 = 125;

pub fn run(store: &Store, args: RunArgs) -> Result<u8> {
    let stdio = stdio(args.interactive, args.tty, std::io::stdin().is_terminal())?;
    // The flags first: their mistakes are found before any layer is unpacked.
    let network = crate::sandbox::parse_run_network(&args.network).map_err(crate::usage_error)?;
    let security = security(&args)?;
    let resources = resources(&args)?;
    let image = match &args.platform {
        None => store.load_image(&args.image)?,
        Some(platform) => {
            let platform = image_spec::Platform::parse(platform).map_err(crate::usage_error)?;
            // As a build step: another architecture only through a registered emulator.
            crate::emulator::check(&platform).map_err(crate::usage_error)?;
            store
                .find_image_for(&args.image, &platform)?
                .ok_or_else(|| store::Error::NoSuchImage { name: args.image.clone(), source: None })?
        }
    };
    let lowers = crate::layer::ensure_snapshots(store, &image.layers)?;
    let config = &image.config.config;

    let argv =
        command_line(config.entrypoint.as_deref(), config.cmd.as_deref(), args.entrypoint.as_deref(), &args.command);
    if argv.is_empty() {
        bail!(crate::usage_error(anyhow::anyhow!("no command specified: the image has no ENTRYPOINT or CMD")));
    }

    // As Docker: the hostname is the container id's first 12 hex digits by default,
    // never its name.
    let hostname = match args.hostname.clone() {
        Some(hostname) => hostname,
        None => container_id()?[..12].to_string(),
    };
    let mut env = container_env(config.env.as_deref().unwrap_or_default(), &hostname, args.tty);
    // As Docker: the files first, then `-e`, later ones winning.
    let mut settings = Vec::new();
    for file in &args.env_files {
        let text = std::fs::read_to_string(file)
            .map_err(|e| crate::usage_error(anyhow::anyhow!("reading env file {}: {e}", file.display())))?;
        settings.extend(parse_env_file(&text));
    }
    settings.extend(args.env.iter().cloned());
    set_envs(&mut env, &settings);

    let mut mounts = Vec::new();
    for spec in &args.volumes {
        mounts.push(volume_mount(store, spec)?);
    }

    // Held while the container runs: a name is used by one container at a time.
    let _name = args.name.as_deref().map(|name| claim_name(store, name)).transpose()?;

    // The container's writable layer lives in the store while it runs and is removed
    // afterwards whatever happens: containers here never outlive their process.
    let container = store.temp_dir("container")?;
    // From here the container needs only its image (held by the lease) and its own
    // directories: a prune while it runs may take everything else.
    store.close_lease_window()?;
    let upperdir = container.path().join("upper");
    let workdir = container.path().join("work");
    std::fs::create_dir_all(&upperdir)?;
    std::fs::create_dir_all(&workdir)?;
    let spec = executor::Spec {
        rootfs: executor::Rootfs {
            lowerdirs: lowers.into_iter().rev().collect(),
            upper: Some(executor::Upper { upperdir, workdir }),
            readonly: args.read_only,
        },
        mounts,
        process: executor::Process {
            args: argv,
            env,
            cwd: args
                .workdir
                .clone()
                .or_else(|| config.working_dir.clone())
                .filter(|w| !w.is_empty())
                .unwrap_or("/".into()),
            user: args.user.clone().or_else(|| config.user.clone()).unwrap_or_default(),
        },
        network,
        hostname,
        extra_hosts: Vec::new(),
        security,
        resources,
    };
    let signals = executor::Signals::new();
    let forwarder = crate::signals::forward_to(signals.clone(), args.tty)?;
    let control = executor::Control { cancel: None, signals: Some(signals) };
    let status = executor::run_with(&spec, stdio, control).context("running container");
    drop(forwarder);
    drop(container);
    Ok(status?.code().clamp(0, 255) as u8)
}

/// Docker's `-i`/`-t`: `-t` gives the process a pty, which only `-i` types our stdin
/// into (so our stdin must be a terminal too); `-i` alone passes our stdin as it is;
/// without `-i` the process reads `/dev/null`, or its pty that nothing is typed into.
fn stdio(interactive: bool, tty: bool, stdin_is_terminal: bool) -> Result<executor::Stdio<'static>> {
    Ok(match (interactive, tty) {
        (true, true) if !stdin_is_terminal => bail!(crate::usage_error(anyhow::anyhow!(
            "the input device is not a TTY (use -i without -t to pass a pipe or file)"
        ))),
        (true, true) => executor::Stdio::Terminal,
        (false, true) => executor::Stdio::TerminalOutput,
        (true, false) => executor::Stdio::Inherit,
        (false, false) => executor::Stdio::InheritOutput,
    })
}

/// A new container id: 64 random hex digits, as Docker's.
fn container_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom for a container id")?;
    Ok(hex::encode(bytes))
}

/// The image's environment over Docker's defaults: `PATH` (first), `HOSTNAME`, and
/// `TERM=xterm` with a pty. A later entry of a key replaces the earlier in place,
/// found through a map: an image may carry a million entries.
fn container_env(image_env: &[String], hostname: &str, tty: bool) -> Vec<String> {
    let mut env = vec![format!("PATH={}", crate::ops::DEFAULT_PATH), format!("HOSTNAME={hostname}")];
    if tty {
        env.push("TERM=xterm".to_string());
    }
    let mut at: HashMap<String, usize> =
        env.iter().enumerate().filter_map(|(i, e)| Some((e.split_once('=')?.0.to_string(), i))).collect();
    for setting in image_env {
        if let Some((key, _)) = setting.split_once('=') {
            if let Some(&i) = at.get(key) {
                env[i] = setting.clone();
                continue;
            }
            at.insert(key.to_string(), env.len());
        }
        env.push(setting.clone());
    }
    env
}

/// `KEY=VALUE` (or a bare `KEY`, taken from our environment) per line; blank lines and
/// `#` comments skipped. Values are taken literally, without quotes or expansion.
fn parse_env_file(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.trim_start())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| if l.contains('=') { l.to_string() } else { l.trim_end().to_string() })
        .collect()
}

/// Applies each `KEY=VALUE`, or bare `KEY` with its value from our environment
/// (skipped when unset), as `docker run -e` does one after another: a key set moves
/// to the end with its last value. Done in one pass with a map, not one scan of the
/// environment per setting.
fn set_envs(env: &mut Vec<String>, settings: &[String]) {
    let resolved: Vec<(String, String)> = settings
        .iter()
        .filter_map(|setting| match setting.split_once('=') {
            Some((k, v)) => Some((k.to_string(), v.to_string())),
            None => std::env::var(setting).ok().map(|v| (setting.clone(), v)),
        })
        .collect();
    let last: HashMap<&str, usize> = resolved.iter().enumerate().map(|(i, (k, _))| (k.as_str(), i)).collect();
    env.retain(|x| x.split_once('=').is_none_or(|(k, _)| !last.contains_key(k)));
    env.extend(
        resolved.iter().enumerate().filter(|(i, (k, _))| last[k.as_str()] == *i).map(|(_, (k, v))| format!("{k}={v}")),
    );
}

/// A lock on `containers/<name>.lock` while the container lives.
fn claim_name(store: &Store, name: &str) -> Result<NameClaim> {
    validate_volume_name(name).map_err(|_| {
        crate::usage_error(anyhow::anyhow!("invalid container name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] allowed"))
    })?;
    let path = store.root().join("containers").join(format!("{name}.lock"));
    let file = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(NameClaim { path, _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => {
            bail!("the container name {name:?} is already in use by a running container")
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

struct NameClaim {
    path: PathBuf,
    _file: std::fs::File,
}

impl Drop for NameClaim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Docker's ENTRYPOINT/CMD rules: `--entrypoint` replaces the entrypoint and drops the
/// image's CMD; arguments given replace CMD.
pub fn command_line(
    entrypoint: Option<&[String]>,
    cmd: Option<&[String]>,
    entrypoint_override: Option<&str>,
    args: &[String],
) -> Vec<String> {
    let (entry, default_cmd): (Vec<String>, Vec<String>) = match entrypoint_override {
        Some("") => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.to_string()], Vec::new()),
        None => (entrypoint.unwrap_or_default().to_vec(), cmd.unwrap_or_default().to_vec()),
    };
    let tail = if args.is_empty() { default_cmd } else { args.to_vec() };
    entry.into_iter().chain(tail).collect()
}

pub fn validate_volume_name(name: &str) -> Result<()> {
    if !is_volume_name(name) {
        bail!(crate::usage_error(anyhow::anyhow!(
            "invalid volume name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] allowed"
        )));
    }
    Ok(())
}

/// The data directory of a named volume, created on first use.
pub fn volume_path(store: &Store, name: &str) -> Result<PathBuf> {
    validate_volume_name(name)?;
    let path = store.root().join("volumes").join(name).join("_data");
    std::fs::create_dir_all(&path).with_context(|| format!("creating volume {name}"))?;
    Ok(path)
}

/// What `builder volume inspect` shows of a volume, in Docker's shape.
pub fn volume_info(store: &Store, name: &str) -> Result<serde_json::Value> {
    validate_volume_name(name)?;
    let dir = store.root().join("volumes").join(name);
    let meta = std::fs::metadata(&dir).map_err(|_| anyhow::anyhow!("no such volume: {name}"))?;
    let created: chrono::DateTime<chrono::Utc> = meta.created().or_else(|_| meta.modified())?.into();
    Ok(serde_json::json!({
        "CreatedAt": created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "Driver": "local",
        "Labels": null,
        "Mountpoint": dir.join("_data"),
        "Name": name,
        "Options": null,
        "Scope": "local",
    }))
}

/// Docker's default for a container, `--privileged`, or `--security-opt seccomp=unconfined`.
fn security(args: &RunArgs) -> Result<executor::Security> {
    let mut security = if args.privileged { executor::Security::insecure() } else { executor::Security::container() };
    for opt in &args.security_opts {
        match opt.as_str() {
            "seccomp=unconfined" | "seccomp:unconfined" => security.seccomp = false,
            // Always so here.
            "no-new-privileges" | "no-new-privileges=true" | "no-new-privileges:true" => {}
            _ => bail!(crate::usage_error(anyhow::anyhow!(
                "unsupported --security-opt {opt:?} (supported: seccomp=unconfined, no-new-privileges)"
            ))),
        }
    }
    Ok(security)
}

/// `--memory`, `--cpus`, `--pids-limit`, `--ulimit`.
fn resources(args: &RunArgs) -> Result<executor::Resources> {
    let usage = crate::usage_error;
    let memory = args.memory.as_deref().map(crate::sandbox::parse_size).transpose().map_err(usage)?;
    if memory.is_some_and(|m| m < 6 << 20) {
        bail!(crate::usage_error(anyhow::anyhow!("minimum memory limit allowed is 6MB")));
    }
    let rlimits =
        args.ulimits.iter().map(|u| crate::sandbox::parse_ulimit(u)).collect::<Result<_, _>>().map_err(usage)?;
    Ok(executor::Resources {
        memory,
        cpu_millis: args.cpus.as_deref().map(crate::sandbox::parse_cpus).transpose().map_err(usage)?,
        // As Docker: 0 or -1 is no limit.
        pids: args.pids_limit.filter(|p| *p > 0).map(|p| p as u64),
        rlimits,
        shm_size: None,
    })
}

/// `-v SRC:DST[:ro]`: SRC is an absolute host path (bound) or a volume name (in the
/// store); anything else is refused as Docker refuses it, never taken relative to the
/// current directory.
fn volume_mount(store: &Store, spec: &str) -> Result<executor::Mount> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, readonly) = match parts.as_slice() {
        [s, t] => (*s, *t, false),
        [s, t, "ro"] => (*s, *t, true),
        [s, t, "rw"] => (*s, *t, false),
        _ => bail!(crate::usage_error(anyhow::anyhow!("invalid volume spec {spec:?}: want SRC:DST[:ro]"))),
    };
    if !target.starts_with('/') {
        bail!(crate::usage_error(anyhow::anyhow!("invalid volume spec {spec:?}: destination must be absolute")));
    }
    let source = if source.starts_with('/') {
        std::fs::canonicalize(source).with_context(|| format!("bind source {source}"))?
    } else if is_volume_name(source) {
        volume_path(store, source)?
    } else {
        bail!(crate::usage_error(anyhow::anyhow!(
            "invalid volume spec {spec:?}: {source:?} includes invalid characters for a local volume name, \
             only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed; if you intended to pass a host directory, use an absolute path"
        )));
    };
    Ok(executor::Mount { target: target.to_string(), source: executor::MountSource::Bind { source, readonly } })
}

/// Docker's rule for a local volume's name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn is_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::{command_line, container_env, container_id, is_volume_name, parse_env_file, set_envs, stdio};

    #[test]
    fn volume_names_as_docker_allows_them() {
        assert!(is_volume_name("data") && is_volume_name("my_vol.1-x"));
        for bad in ["rel/path", "../../etc", ".", "./x", "-x", "", "a b"] {
            assert!(!is_volume_name(bad), "{bad}");
        }
    }
    use executor::Stdio;

    #[test]
    fn interactive_and_tty_choose_stdio_like_docker() {
        assert!(matches!(stdio(false, false, true).unwrap(), Stdio::InheritOutput));
        assert!(matches!(stdio(true, false, false).unwrap(), Stdio::Inherit));
        assert!(matches!(stdio(false, true, false).unwrap(), Stdio::TerminalOutput));
        assert!(matches!(stdio(true, true, true).unwrap(), Stdio::Terminal));
        let e = stdio(true, true, false).err().unwrap();
        assert!(e.to_string().contains("the input device is not a TTY"), "{e}");
    }

    #[test]
    fn container_ids_are_64_random_hex_digits() {
        let (a, b) = (container_id().unwrap(), container_id().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn image_env_overrides_the_defaults_in_place() {
        let env = container_env(&[], "abc", false);
        assert_eq!(env, [format!("PATH={}", crate::ops::DEFAULT_PATH), "HOSTNAME=abc".to_string()]);
        let image = ["A=1".to_string(), "PATH=/bin".to_string(), "TERM=dumb".to_string()];
        assert_eq!(container_env(&image, "abc", true), ["PATH=/bin", "HOSTNAME=abc", "TERM=dumb", "A=1"]);
    }

    #[test]
    fn env_file_lines_and_overrides() {
        let parsed = parse_env_file("# comment\n\nA=1\n  B=two words \nC\n");
        assert_eq!(parsed, ["A=1", "B=two words ", "C"]);
        let mut env = vec!["A=0".to_string(), "PATH=/bin".to_string()];
        set_envs(&mut env, &parsed);
        assert_eq!(env, ["PATH=/bin", "A=1", "B=two words "]);
        // A key set twice ends where its last setting puts it, with that value.
        let mut env = vec!["X=0".to_string(), "Y=0".to_string()];
        set_envs(&mut env, &v(&["Y=1", "X=1", "Y=2"]));
        assert_eq!(env, ["X=1", "Y=2"]);
    }

    #[test]
    fn a_million_entry_image_env_merges_in_linear_time() {
        let image: Vec<String> = (0..1_000_000).map(|i| format!("K{}={i}", i % 600_000)).collect();
        let settings: Vec<String> = (0..100_000).map(|i| format!("K{i}=set")).collect();
        let started = std::time::Instant::now();
        let mut env = container_env(&image, "abc", false);
        assert_eq!(env.len(), 2 + 600_000);
        assert_eq!(env[2 + 5], "K5=600005");
        set_envs(&mut env, &settings);
        assert_eq!(env.len(), 2 + 600_000);
        assert_eq!(env.last().unwrap(), "K99999=set");
        assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
    }

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn entrypoint_and_cmd_combine_like_docker() {
        let ep = v(&["/bin/app"]);
        let cmd = v(&["--serve"]);
        assert_eq!(command_line(Some(&ep), Some(&cmd), None, &[]), v(&["/bin/app", "--serve"]));
        assert_eq!(command_line(Some(&ep), Some(&cmd), None, &v(&["x"])), v(&["/bin/app", "x"]));
        assert_eq!(command_line(Some(&ep), Some(&cmd), Some("/bin/sh"), &[]), v(&["/bin/sh"]));
        assert_eq!(command_line(None, Some(&cmd), None, &[]), v(&["--serve"]));
        assert_eq!(command_line(Some(&ep), Some(&cmd), Some(""), &v(&["ls"])), v(&["ls"]));
    }
}
