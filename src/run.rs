//! `builder run`: a container over an image's snapshots with a writable layer that
//! dies with it, named volumes that outlive it, and the process's exit code.

use crate::cli::RunArgs;
use crate::store::Store;
use anyhow::{Context as _, Result, bail};
use std::path::PathBuf;

pub fn run(store: &Store, args: RunArgs) -> Result<u8> {
    let image = store.load_image(&args.image)?;
    let lowers = crate::layer::ensure_snapshots(store, &image.layers)?;
    let config = &image.config.config;

    let argv = command_line(
        config.entrypoint.as_deref(),
        config.cmd.as_deref(),
        args.entrypoint.as_deref(),
        &args.command,
    );
    if argv.is_empty() {
        bail!(crate::usage_error(anyhow::anyhow!("no command specified: the image has no ENTRYPOINT or CMD")));
    }

    let mut env = config.env.clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={}", crate::ops::DEFAULT_PATH));
    }
    for e in &args.env {
        let (key, value) = match e.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            // `-e NAME` takes the value from our environment, as Docker does.
            None => match std::env::var(e) {
                Ok(v) => (e.clone(), v),
                Err(_) => continue,
            },
        };
        env.retain(|x| x.split_once('=').map(|(k, _)| k) != Some(key.as_str()));
        env.push(format!("{key}={value}"));
    }

    let mut mounts = Vec::new();
    for spec in &args.volumes {
        mounts.push(volume_mount(store, spec)?);
    }

    let network = match args.network.as_str() {
        "host" | "default" => executor::Network::Host,
        "none" => executor::Network::None,
        other => bail!(crate::usage_error(anyhow::anyhow!("unknown network mode {other:?} (want host or none)"))),
    };

    // The container's writable layer lives in the store while it runs and is removed
    // afterwards whatever happens: containers here never outlive their process.
    let container = store.temp_dir("container")?;
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
            cwd: args.workdir.clone().or_else(|| config.working_dir.clone()).filter(|w| !w.is_empty()).unwrap_or("/".into()),
            user: args.user.clone().or_else(|| config.user.clone()).unwrap_or_default(),
        },
        network,
        hostname: args.name.clone().unwrap_or_else(|| image.config_digest.short().to_string()),
    };
    let status = executor::run(&spec, executor::Stdio::Inherit, None).context("running container")?;
    drop(container);
    Ok(status.code().clamp(0, 255) as u8)
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
    let ok = !name.is_empty()
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if !ok {
        bail!(crate::usage_error(anyhow::anyhow!("invalid volume name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] allowed")));
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
    let source = if source.starts_with('/') || source.starts_with('.') {
        std::fs::canonicalize(source).with_context(|| format!("bind source {source}"))?
    } else {
        volume_path(store, source)?
    };
    Ok(executor::Mount { target: target.to_string(), source: executor::MountSource::Bind { source, readonly } })
}

#[cfg(test)]
mod tests {
    use super::command_line;

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
