//! Small store commands: images, inspect, history, tag, rmi, import, save, volume.

use crate::cli::{Cli, Command, VolumeCommand};
use crate::image::Reference;
use crate::registry::RegistryOptions;
use crate::store::Store;
use anyhow::{Context as _, Result, bail};
use std::io::Write;

/// Runs a command; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<u8> {
    let root = cli.root.clone().unwrap_or_else(Store::default_root);
    let store = || Store::open(&root).with_context(|| format!("opening store {}", root.display()));
    match cli.command {
        Command::Build(args) => crate::build::build(&store()?, args),
        Command::Run(args) => crate::run::run(&store()?, args),
        Command::Images => images(&store()?),
        Command::Inspect { image } => inspect(&store()?, &image),
        Command::History { image } => history(&store()?, &image),
        Command::Tag { source, target } => {
            let store = store()?;
            let image = store.load_image(&source)?;
            let name = normalize(&target)?;
            store.set_ref(&name, &image.manifest_digest)?;
            Ok(0)
        }
        Command::Rmi { images } => {
            let store = store()?;
            for name in images {
                let full = normalize(&name)?;
                store.remove_ref(&full)?;
                println!("Untagged: {}", Reference::parse(&full).map(|r| r.familiar()).unwrap_or(full));
            }
            Ok(0)
        }
        Command::Import { tarball, name } => {
            let store = store()?;
            let name = normalize(&name)?;
            let image = crate::archive::import_rootfs(&store, &tarball, &name)
                .with_context(|| format!("importing {}", tarball.display()))?;
            println!("{}", image.config_digest);
            Ok(0)
        }
        Command::Save { output, images } => {
            let store = store()?;
            let mut list = Vec::new();
            for name in images {
                let image = store.load_image(&name)?;
                list.push((name, image));
            }
            crate::archive::save(&store, &list, &output).with_context(|| format!("saving to {}", output.display()))?;
            Ok(0)
        }
        Command::Load { input } => {
            let store = store()?;
            let names = crate::archive::load(&store, &input).with_context(|| format!("loading {}", input.display()))?;
            for name in names {
                println!("Loaded image: {}", Reference::parse(&name).map(|r| r.familiar()).unwrap_or(name));
            }
            Ok(0)
        }
        Command::Pull { reference, platform } => {
            let store = store()?;
            let parsed = Reference::parse(&reference).map_err(|e| crate::usage_error(anyhow::anyhow!(e)))?;
            let platform = match platform {
                Some(p) => parse_platform(&p)?,
                None => crate::build::host_platform(),
            };
            let progress = |line: &str| eprintln!("{line}");
            let image = crate::registry::pull(&store, &parsed, &platform, &RegistryOptions::default(), &progress)?;
            println!("{}", image.manifest_digest);
            Ok(0)
        }
        Command::Push { reference } => {
            let store = store()?;
            let parsed = Reference::parse(&reference).map_err(|e| crate::usage_error(anyhow::anyhow!(e)))?;
            let image = store.load_image(&reference)?;
            let progress = |line: &str| eprintln!("{line}");
            let digest = crate::registry::push(&store, &image, &parsed, &RegistryOptions::default(), &progress)?;
            println!("{}: digest: {digest}", parsed.familiar());
            Ok(0)
        }
        Command::Login { host, username, password_stdin, password } => {
            let username = match username {
                Some(u) => u,
                None => bail!(crate::usage_error(anyhow::anyhow!("login needs --username"))),
            };
            let password = match (password_stdin, password) {
                (true, _) => {
                    let mut s = String::new();
                    std::io::stdin().read_line(&mut s)?;
                    s.trim_end_matches(['\n', '\r']).to_string()
                }
                (false, Some(p)) => p,
                (false, None) => bail!(crate::usage_error(anyhow::anyhow!("login needs --password-stdin"))),
            };
            crate::registry::login(&host, &username, &password, &RegistryOptions::default())?;
            println!("Login Succeeded");
            Ok(0)
        }
        Command::Logout { host } => {
            if crate::registry::logout(&host, &RegistryOptions::default())? {
                println!("Removing login credentials for {}", crate::registry::normalize_host(&host));
            } else {
                println!("Not logged in to {}", crate::registry::normalize_host(&host));
            }
            Ok(0)
        }
        Command::Volume(cmd) => volume(&store()?, cmd),
    }
}

/// `linux/arm64/v8` → a platform.
pub fn parse_platform(s: &str) -> Result<frontend::Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    match parts.as_slice() {
        [os, arch] => Ok(frontend::Platform::new(os, arch)),
        [os, arch, variant] => {
            let mut p = frontend::Platform::new(os, arch);
            p.variant = Some(variant.to_string());
            Ok(p)
        }
        _ => bail!(crate::usage_error(anyhow::anyhow!("invalid platform {s:?}: want os/arch[/variant]"))),
    }
}

/// `app` → `docker.io/library/app:latest`, with a usage error for bad names.
pub fn normalize(name: &str) -> Result<String> {
    Reference::parse(name).map(|r| r.to_string()).map_err(|e| crate::usage_error(anyhow::anyhow!(e)))
}

fn images(store: &Store) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<40} {:<16} {:<14} {:>10}", "REPOSITORY", "TAG", "IMAGE ID", "SIZE")?;
    for (name, digest) in store.refs()? {
        let image = store.load_image(digest.as_str())?;
        let reference = Reference::parse(&name).map_err(anyhow::Error::msg)?;
        let mut familiar = reference.clone();
        familiar.tag = None;
        let size: u64 = image.layers.iter().map(|l| l.size).sum();
        writeln!(
            out,
            "{:<40} {:<16} {:<14} {:>10}",
            familiar.familiar(),
            reference.tag.as_deref().unwrap_or("<none>"),
            image.config_digest.short(),
            human_size(size)
        )?;
    }
    Ok(0)
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n}B") } else { format!("{v:.3}{}", UNITS[unit]) }
}

fn inspect(store: &Store, name: &str) -> Result<u8> {
    let image = store.load_image(name)?;
    let names: Vec<String> = store
        .refs()?
        .into_iter()
        .filter(|(_, d)| *d == image.manifest_digest)
        .map(|(n, _)| Reference::parse(&n).map(|r| r.familiar()).unwrap_or(n))
        .collect();
    let value = serde_json::json!({
        "Id": image.config_digest,
        "Digest": image.manifest_digest,
        "RepoTags": names,
        "Created": image.config.created,
        "Architecture": image.config.architecture,
        "Os": image.config.os,
        "Config": image.config.config,
        "RootFS": image.config.rootfs,
        "Layers": image.layers,
        "History": image.config.history,
    });
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(0)
}

fn history(store: &Store, name: &str) -> Result<u8> {
    let image = store.load_image(name)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<28} {:<60} {:>10}", "CREATED", "CREATED BY", "SIZE")?;
    let mut layers = image.layers.iter();
    for h in image.config.history.iter().rev().collect::<Vec<_>>().into_iter().rev() {
        let size = if h.empty_layer == Some(true) { 0 } else { layers.next().map(|l| l.size).unwrap_or(0) };
        let by = h.created_by.clone().unwrap_or_default();
        writeln!(out, "{:<28} {:<60} {:>10}", h.created.as_deref().unwrap_or(""), by, human_size(size))?;
    }
    Ok(0)
}

fn volume(store: &Store, cmd: VolumeCommand) -> Result<u8> {
    let dir = store.root().join("volumes");
    match cmd {
        VolumeCommand::Ls => {
            println!("VOLUME NAME");
            let mut names: Vec<String> = std::fs::read_dir(&dir)?
                .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect();
            names.sort();
            for n in names {
                println!("{n}");
            }
        }
        VolumeCommand::Create { name } => {
            crate::run::volume_path(store, &name)?;
            println!("{name}");
        }
        VolumeCommand::Rm { names } => {
            for name in names {
                crate::run::validate_volume_name(&name)?;
                let path = dir.join(&name);
                std::fs::remove_dir_all(&path).with_context(|| format!("removing volume {name}"))?;
                println!("{name}");
            }
        }
        VolumeCommand::Inspect { names } => {
            let volumes = names.iter().map(|name| crate::run::volume_info(store, name)).collect::<Result<Vec<_>>>()?;
            println!("{}", serde_json::to_string_pretty(&volumes)?);
        }
    }
    Ok(0)
}
