//! Exec ops: `RUN` in the executor's sandbox over the parent's snapshots; the
//! sandbox's upperdir becomes the step's layer.
//!
//! `RUN --mount`s never reach that layer: the executor mounts them over stubs it
//! removes afterwards. Cache mounts are directories in the store ([`cache_mount`]),
//! secrets live on a tmpfs (or in the environment) and are never written anywhere
//! else, binds of another filesystem go through an overlay whose writes are thrown
//! away with the step's scratch directory.

mod cache_mount;

use super::context::tree::resolve_in_root;
use super::copy::{CopySource, apply_copy};
use super::{BuildWorker, Output, stack_layer};
use anyhow::{Context as _, Result, bail};
use cache_mount::CacheMount;
use executor::{MountSource, OutputStream};
use solver::ExecContext;
use solver::ir::{CopyAction, ExecOp, MountKind, NetworkMode};
use solver::progress::Stream;
use std::path::{Path, PathBuf};

/// Runs `op`; `proxy_env` (the vertex's, not part of the op or its key) is added to
/// the process's environment where the op does not set the same name.
pub fn exec(
    worker: &BuildWorker<'_>,
    ctx: &ExecContext<'_>,
    op: &ExecOp,
    proxy_env: &[(String, String)],
    inputs: &[Output],
) -> Result<Output> {
    let store = worker.store;
    let parent_output = inputs.first().context("exec op without a root filesystem input")?;
    let parent = parent_output.layers()?;
    let lowers = crate::layer::ensure_snapshots(store, parent)?;

    // Everything of this step that is not a result lives here and goes with it: the
    // upper, throwaway uppers of binds, the executor's bundle.
    let scratch = store.temp_dir("exec")?;
    let upperdir = scratch.path().join("upper");
    let workdir = scratch.path().join("work");
    std::fs::create_dir_all(&upperdir)?;
    std::fs::create_dir_all(&workdir)?;

    let mut env = op.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={}", super::DEFAULT_PATH));
    }
    let mut mounts = Vec::new();
    // Cache mounts in use (and their locks), released when the process has ended.
    let mut leases = Vec::new();
    // SSH agent proxies, listening until the process has ended.
    let mut proxies = Vec::new();
    for (n, mount) in op.mounts.iter().enumerate() {
        let source = match &mount.kind {
            MountKind::Bind { input, source, readonly } => {
                let input = inputs.get(*input).with_context(|| format!("bind mount of missing input {input}"))?;
                let scratch = scratch.path().join(format!("bind{n}"));
                bind_source(worker, input, source, *readonly, &scratch)
                    .with_context(|| format!("RUN --mount=type=bind,target={}", mount.target))?
            }
            MountKind::Cache { id, sharing, from, source, mode, uid, gid, readonly } => {
                let from = match from {
                    Some(i) => Some(inputs.get(*i).with_context(|| format!("cache mount from missing input {i}"))?),
                    None => None,
                };
                let cache = CacheMount { id, sharing: *sharing, from, source, mode: *mode, uid: *uid, gid: *gid };
                let lease = cache_mount::acquire(worker, ctx.cancel, &cache)
                    .with_context(|| format!("RUN --mount=type=cache,id={id}"))?;
                let source = MountSource::Bind { source: lease.dir().to_path_buf(), readonly: *readonly };
                leases.push(lease);
                source
            }
            MountKind::Tmpfs { size } => MountSource::Tmpfs { size: Some(crate::sandbox::tmpfs_size(*size)) },
            MountKind::Secret { id, env: var, required, mode, uid, gid } => {
                let Some(value) = worker.options.secrets.get(id) else {
                    if *required {
                        bail!("secret {id} not found: pass it with --secret id={id},src=FILE or id={id},env=VAR");
                    }
                    continue;
                };
                if let Some(var) = var {
                    env.push(format!("{var}={}", String::from_utf8_lossy(value)));
                    // `env=` alone: no file (with a target too: both).
                    if mount.target.is_empty() {
                        continue;
                    }
                }
                MountSource::File { content: value.clone(), mode: *mode, uid: *uid, gid: *gid }
            }
            MountKind::Ssh { id, required, mode, uid, gid } => {
                let Some(agent) = worker.options.ssh.get(id) else {
                    if *required {
                        bail!(
                            "ssh agent {id:?} not found: pass it with --ssh {id}=SOCKET|KEYFILE (or --ssh {id} with SSH_AUTH_SOCK set)"
                        );
                    }
                    continue;
                };
                let proxy = crate::ssh::proxy::Proxy::start(agent.socket(), *mode, *uid, *gid)
                    .with_context(|| format!("RUN --mount=type=ssh,id={id}"))?;
                // As BuildKit: the default agent is the one ssh and git find.
                if id == "default" && !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
                    env.push(format!("SSH_AUTH_SOCK={}", mount.target));
                }
                let source = MountSource::Bind { source: proxy.path().to_path_buf(), readonly: false };
                proxies.push(proxy);
                source
            }
        };
        mounts.push(executor::Mount { target: mount.target.clone(), source });
    }
    add_proxy_env(&mut env, proxy_env);

    let network = match op.network {
        NetworkMode::Default => worker.options.default_network,
        other => other,
    };
    // Checked over the whole graph before the build started; again here, where it counts.
    let granted = worker.options.entitlements;
    granted.check(network, op.security)?;
    let spec = executor::Spec {
        rootfs: executor::Rootfs {
            lowerdirs: lowers.into_iter().rev().collect(),
            upper: Some(executor::Upper { upperdir: upperdir.clone(), workdir }),
            readonly: false,
        },
        mounts,
        process: executor::Process {
            args: op.args.clone(),
            env,
            cwd: if op.cwd.is_empty() { "/".into() } else { op.cwd.clone() },
            user: op.user.clone(),
        },
        network: crate::sandbox::network(network),
        hostname: "buildkitsandbox".into(),
        extra_hosts: crate::step_flags::extra_hosts(op),
        security: crate::sandbox::step_security(op.security),
        resources: crate::step_flags::resources(op, &worker.step_resources)?,
    };
    let mut forward = |stream: OutputStream, data: &[u8]| {
        let stream = match stream {
            OutputStream::Stdout => Stream::Stdout,
            OutputStream::Stderr => Stream::Stderr,
        };
        ctx.log(stream, data);
    };
    let status = executor::run(&spec, executor::Stdio::Capture(&mut forward), Some(ctx.cancel.flag()));
    drop(spec);
    drop(leases);
    drop(proxies);
    let status = status?;
    if !status.success() {
        let failed =
            format!("process {} did not complete successfully: exit code: {}", quote_args(&op.args), status.code());
        // Measured now, while the step's files still take their space.
        return Err(match crate::hint::low_space(&upperdir) {
            Some(low) => anyhow::Error::new(low).context(failed),
            None => anyhow::anyhow!(failed),
        });
    }
    let layer = crate::layer::diff_to_step_layer(store, &upperdir, &worker.options.layer_options)?;
    stack_layer(store, parent_output, upperdir, layer)
}

/// Appends the proxy variables whose names `env` does not already set: the step's
/// explicit env (ENV, a declared ARG, a secret) wins.
fn add_proxy_env(env: &mut Vec<String>, proxy_env: &[(String, String)]) {
    for (name, value) in proxy_env {
        if !env.iter().any(|e| e.split_once('=').is_some_and(|(k, _)| k == name)) {
            env.push(format!("{name}={value}"));
        }
    }
}

/// `"/bin/sh -c make"` as BuildKit quotes a command in its errors.
fn quote_args(args: &[String]) -> String {
    format!("{:?}", args.join(" "))
}

/// What a `type=bind` mount shows: `source` inside the context or another filesystem
/// (a stage, an image). Writes, if allowed, land in a throwaway upper under `scratch`.
fn bind_source(
    worker: &BuildWorker<'_>,
    input: &Output,
    source: &str,
    readonly: bool,
    scratch: &Path,
) -> Result<MountSource> {
    let throwaway = || -> Result<(PathBuf, PathBuf)> {
        let (upperdir, workdir) = (scratch.join("upper"), scratch.join("work"));
        std::fs::create_dir_all(&upperdir)?;
        std::fs::create_dir_all(&workdir)?;
        Ok((upperdir, workdir))
    };
    match input {
        Output::Context(context) => {
            let root = context.root();
            let path = root.join(resolve_in_root(root, Path::new(source), true)?);
            let meta = std::fs::metadata(&path)
                .with_context(|| format!("source {source:?} not found in the build context"))?;
            if !context.matcher().is_empty() {
                // What `.dockerignore` excludes is not part of the context: the step sees a
                // filtered copy, thrown away with it (so writes need no overlay).
                let copy = scratch.join("context");
                std::fs::create_dir_all(&copy)?;
                let action = CopyAction::new(0, vec![format!("/{}", source.trim_start_matches('/'))], "/");
                apply_copy(&action, &CopySource::Context(context), &copy)?;
                let name = Path::new(source).file_name().filter(|_| !meta.is_dir());
                let source = name.map_or(copy.clone(), |n| copy.join(n));
                return Ok(MountSource::Bind { source, readonly });
            }
            if readonly {
                return Ok(MountSource::Bind { source: path, readonly: true });
            }
            let (upperdir, workdir) = throwaway()?;
            if meta.is_dir() {
                return Ok(MountSource::Overlay {
                    lowerdirs: vec![path],
                    upperdir,
                    workdir,
                    subpath: String::new(),
                    readonly: false,
                });
            }
            // A single writable file: a copy, thrown away with the step.
            let copy = upperdir.join("file");
            std::fs::copy(&path, &copy).with_context(|| format!("copying bind source {source:?}"))?;
            Ok(MountSource::Bind { source: copy, readonly: false })
        }
        Output::Layers(layers, _) => {
            let mut lowerdirs: Vec<PathBuf> =
                crate::layer::ensure_snapshots(worker.store, layers)?.into_iter().rev().collect();
            let (upperdir, workdir) = throwaway()?;
            if lowerdirs.is_empty() {
                // A scratch stage: an empty directory.
                let empty = scratch.join("empty");
                std::fs::create_dir_all(&empty)?;
                lowerdirs.push(empty);
            }
            // The executor resolves `source` in the merged view: a sub-path may span
            // several layers, with whiteouts and opaque directories in between.
            Ok(MountSource::Overlay { lowerdirs, upperdir, workdir, subpath: source.to_string(), readonly })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::add_proxy_env;

    #[test]
    fn proxy_env_never_overrides_the_step_env() {
        let mut env = vec!["PATH=/bin".to_string(), "HTTP_PROXY=http://declared:1".to_string()];
        let proxy = [("HTTP_PROXY".to_string(), "http://given:2".to_string()), ("no_proxy".into(), "a,b".into())];
        add_proxy_env(&mut env, &proxy);
        assert_eq!(env, ["PATH=/bin", "HTTP_PROXY=http://declared:1", "no_proxy=a,b"]);
    }
}
