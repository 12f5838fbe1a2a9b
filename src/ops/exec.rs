//! Exec ops: `RUN` in the executor's sandbox over the parent's snapshots; the
//! sandbox's upperdir becomes the step's layer.

use super::{BuildWorker, Output, stack_layer};
use anyhow::{Context as _, Result, bail};
use executor::{MountSource, OutputStream};
use solver::ExecContext;
use solver::ir::{ExecOp, MountKind, NetworkMode};
use solver::progress::Stream;
use std::fs::File;
use std::path::{Component, Path, PathBuf};

pub fn exec(worker: &BuildWorker<'_>, ctx: &ExecContext<'_>, op: &ExecOp, inputs: &[Output]) -> Result<Output> {
    let store = worker.store;
    let parent = inputs.first().context("exec op without a root filesystem input")?.layers()?;
    let lowers = crate::layer::ensure_snapshots(store, parent)?;

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
    // Held until the process ends: `sharing=locked` cache mounts.
    let mut locks: Vec<File> = Vec::new();
    for (n, mount) in op.mounts.iter().enumerate() {
        let source = match &mount.kind {
            MountKind::Bind { input, source, readonly } => {
                let input = inputs.get(*input).with_context(|| format!("bind mount of missing input {input}"))?;
                bind_source(worker, input, source, *readonly, &scratch.path().join(format!("bind{n}")))?
            }
            MountKind::Cache { id, sharing, readonly, .. } => {
                let dir = cache_mount_dir(worker, id)?;
                if *sharing == solver::ir::CacheSharing::Locked {
                    let lock = File::create(dir.with_extension("lock"))?;
                    lock.lock().with_context(|| format!("locking cache mount {id}"))?;
                    locks.push(lock);
                }
                MountSource::Bind { source: dir, readonly: *readonly }
            }
            MountKind::Tmpfs { size } => MountSource::Tmpfs { size: *size },
            MountKind::Secret { id, env: var, required, mode, uid, gid } => {
                let Some(value) = worker.secrets.get(id) else {
                    if *required {
                        bail!("secret {id} not found: pass it with --secret id={id},src=FILE");
                    }
                    continue;
                };
                if let Some(var) = var {
                    env.push(format!("{var}={}", String::from_utf8_lossy(value)));
                    continue;
                }
                MountSource::File { content: value.clone(), mode: *mode, uid: *uid, gid: *gid }
            }
            MountKind::Ssh { .. } => bail!("RUN --mount=type=ssh is not supported yet"),
        };
        mounts.push(executor::Mount { target: mount.target.clone(), source });
    }

    let network = match op.network {
        NetworkMode::Default => worker.default_network,
        other => other,
    };
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
        network: if network == NetworkMode::None { executor::Network::None } else { executor::Network::Host },
        hostname: "buildkitsandbox".into(),
    };
    let mut forward = |stream: OutputStream, data: &[u8]| {
        let stream = match stream {
            OutputStream::Stdout => Stream::Stdout,
            OutputStream::Stderr => Stream::Stderr,
        };
        ctx.log(stream, data);
    };
    let status = executor::run(&spec, executor::Stdio::Capture(&mut forward), Some(ctx.cancel.flag()))?;
    drop(locks);
    if !status.success() {
        bail!("process {} did not complete successfully: exit code: {}", quote_args(&op.args), status.code());
    }
    let layer = crate::layer::diff_to_layer(store, &upperdir, worker.compression)?;
    stack_layer(store, parent, upperdir, layer)
}

/// `"/bin/sh -c make"` as BuildKit quotes a command in its errors.
fn quote_args(args: &[String]) -> String {
    format!("{:?}", args.join(" "))
}

fn bind_source(worker: &BuildWorker<'_>, input: &Output, source: &str, readonly: bool, scratch: &Path) -> Result<MountSource> {
    let lowers: Vec<PathBuf> = match input {
        Output::Context(context) => vec![inside(context.root(), source)?],
        Output::Layers(layers) => {
            let rel = clean_relative(source);
            if !rel.as_os_str().is_empty() {
                bail!("RUN --mount=type=bind,from=<stage>,source={source}: sub-paths of a stage are not supported yet");
            }
            crate::layer::ensure_snapshots(worker.store, layers)?.into_iter().rev().collect()
        }
    };
    if readonly && lowers.len() == 1 {
        return Ok(MountSource::Bind { source: lowers.into_iter().next().expect("one lower"), readonly: true });
    }
    // Writes to a bind mount are allowed but discarded: they go to a throwaway upper.
    let upperdir = scratch.join("upper");
    let workdir = scratch.join("work");
    std::fs::create_dir_all(&upperdir)?;
    std::fs::create_dir_all(&workdir)?;
    Ok(MountSource::Overlay { lowerdirs: lowers, upperdir, workdir })
}

/// `source` under `root`, refusing paths that leave it.
fn inside(root: &Path, source: &str) -> Result<PathBuf> {
    let path = root.join(clean_relative(source));
    let resolved = path.canonicalize().with_context(|| format!("bind source {source}"))?;
    let root = root.canonicalize()?;
    if !resolved.starts_with(&root) {
        bail!("bind source {source} resolves outside the build context");
    }
    Ok(resolved)
}

fn clean_relative(p: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// The directory behind `RUN --mount=type=cache,id=ID`, kept in the store.
fn cache_mount_dir(worker: &BuildWorker<'_>, id: &str) -> Result<PathBuf> {
    let name = blake3::hash(id.as_bytes()).to_hex();
    let dir = worker.store.root().join("cache-mounts").join(&name[..32]);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating cache mount {id}"))?;
    Ok(dir)
}
