//! Small store commands: images, inspect, history, tag, rmi, import, save, volume.

use crate::archive::ArchiveFormat;
use crate::cache::StoreExt as _;
use crate::cli::{Cli, Command, VolumeCommand};
use crate::units::{human_size, parse_size};
use anyhow::{Context as _, Result, bail};
use image_spec::Reference;
use registry::{RegistryOptions, Transfer};
use std::io::Write;
use store::Store;

/// What the user is told while the store makes this process wait for a lock.
fn lock_wait_message(wait: &store::LockWait<'_>) -> String {
    use store::{LockMode, StoreLockKind};
    match (wait.kind, wait.mode) {
        (StoreLockKind::Gate, LockMode::Shared) => {
            format!("waiting for a prune to finish (store lock {})", wait.path.display())
        }
        (StoreLockKind::Gate, LockMode::Exclusive) => {
            format!("waiting for another prune to finish (store lock {})", wait.path.display())
        }
        (StoreLockKind::Refs, _) => format!("waiting for another process to change the refs ({})", wait.path.display()),
    }
}

/// Runs a command; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<u8> {
    let root = cli.root.clone().unwrap_or_else(Store::default_root);
    let store = || -> Result<Store> {
        let store = Store::open(&root).with_context(|| format!("opening store {}", root.display()))?;
        store.on_lock_wait(|wait| crate::progress::message(&lock_wait_message(wait)));
        Ok(store)
    };
    // Commands that add or use content take a lease, so that prune (which runs beside
    // them) never removes what they work with (store/src/lease.rs).
    let shared = || -> Result<Store> {
        let store = store()?;
        store.take_lease()?;
        Ok(store)
    };
    match cli.command {
        Command::Build(args) => {
            let store = shared()?;
            crate::build::build(&store, args)
        }
        Command::Run(args) => {
            let store = shared()?;
            crate::run::run(&store, args)
        }
        Command::Images => images(&store()?),
        Command::Inspect { image } => inspect(&store()?, &image),
        Command::History { image, no_trunc, human, quiet } => history(&store()?, &image, no_trunc, human, quiet),
        Command::Tag { source, target } => {
            let store = shared()?;
            let name = crate::cli::normalize(&target)?;
            // A multi-platform name: the new name is the index too (which may hold
            // other platforms than this machine's only).
            let digest = match index_of(&store, &source)? {
                Some(index) => index,
                None => store.load_image(&source)?.manifest_digest,
            };
            store.set_ref(&name, &digest)?;
            Ok(0)
        }
        Command::Rmi { images } => rmi(&store()?, &images),
        Command::Import { tarball, name, platform } => {
            let store = shared()?;
            let name = crate::cli::normalize(&name)?;
            let image = match platform {
                Some(p) => crate::archive::import_rootfs_for(&store, &tarball, &name, &parse_platform(&p)?),
                None => crate::archive::import_rootfs(&store, &tarball, &name),
            }
            .with_context(|| format!("importing {}", tarball.display()))?;
            println!("{}", image.config_digest);
            Ok(0)
        }
        Command::Save { output, format, images } => {
            let store = shared()?;
            let mut list = Vec::new();
            for name in images {
                let image = store.load_image(&name)?;
                list.push((name, image));
            }
            let format = if format == "oci" { ArchiveFormat::Oci } else { ArchiveFormat::Docker };
            crate::archive::save(&store, &list, &output, format)
                .with_context(|| format!("saving to {}", output.display()))?;
            Ok(0)
        }
        Command::Prune { all, keep_storage, filter } => prune(&store()?, all, keep_storage.as_deref(), &filter),
        Command::Du { json } => du(&store()?, json),
        Command::Doctor => {
            print!("{}{}{}", crate::userns::doctor(&root), crate::sandbox::doctor(), crate::host::doctor());
            Ok(0)
        }
        Command::Fsck { snapshots } => fsck(&store()?, snapshots),
        Command::Load { input } => {
            let store = shared()?;
            let names = crate::archive::load(&store, &input).with_context(|| format!("loading {}", input.display()))?;
            for name in names {
                println!("Loaded image: {}", Reference::parse(&name).map(|r| r.familiar()).unwrap_or(name));
            }
            Ok(0)
        }
        Command::Pull { reference, platform } => {
            let store = shared()?;
            let parsed = Reference::parse(&reference).map_err(|e| crate::usage_error(anyhow::anyhow!(e)))?;
            let platform = match platform {
                Some(p) => parse_platform(&p)?,
                None => image_spec::host_platform(),
            };
            let progress = |t: Transfer<'_>| crate::progress::print_transfer(t, "downloading", "done");
            let image = crate::transfer::pull(&store, &parsed, &platform, &RegistryOptions::default(), &progress)?;
            println!("{}", image.manifest_digest);
            Ok(0)
        }
        Command::Push { reference } => {
            let store = shared()?;
            let parsed = Reference::parse(&reference).map_err(|e| crate::usage_error(anyhow::anyhow!(e)))?;
            let progress = |t: Transfer<'_>| crate::progress::print_transfer(t, "uploading", "pushed");
            // A multi-platform name goes as its index: every platform's image, then the index.
            let digest = match index_of(&store, &reference)? {
                Some(index) => {
                    // Built images are stored with uncompressed layers: compressed now.
                    let index = crate::export::index_for_push(&store, &index)?;
                    let content = crate::transfer::StoreContent(&store);
                    registry::push_index(&content, &index, &parsed, &RegistryOptions::default(), &progress)?
                }
                None => {
                    // A built image is stored with uncompressed layers: compressed now.
                    let image = crate::export::for_push(&store, &store.load_image(&reference)?)?;
                    crate::transfer::push(&store, &image, &parsed, &RegistryOptions::default(), &progress)?
                }
            };
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
            registry::login(&host, &username, &password, &RegistryOptions::default())?;
            println!("Login Succeeded");
            Ok(0)
        }
        Command::Logout { host } => {
            if registry::logout(&host, &RegistryOptions::default())? {
                println!("Removing login credentials for {}", registry::normalize_host(&host));
            } else {
                println!("Not logged in to {}", registry::normalize_host(&host));
            }
            Ok(0)
        }
        Command::Volume(cmd) => volume(&store()?, cmd),
    }
}

/// `linux/arm64/v8` → a platform.
pub fn parse_platform(s: &str) -> Result<image_spec::Platform> {
    image_spec::Platform::parse(s).map_err(crate::usage_error)
}

fn images(store: &Store) -> Result<u8> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<40} {:<16} {:<14} {:<16} {:>10}", "REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")?;
    let now = chrono::Utc::now();
    for (name, digest, platform) in image_rows(store)? {
        // One damaged image (a store written before pulls validated) must not hide
        // the others: it is named on stderr with how to remove it.
        let image = match store.image_from_manifest(&digest) {
            Ok(image) => image,
            Err(e) => {
                let e = anyhow::Error::from(e);
                eprintln!("warning: image {name} is damaged: {e:#} (`builder rmi {name}` removes it)");
                continue;
            }
        };
        let reference = Reference::parse(&name).map_err(anyhow::Error::msg)?;
        let mut familiar = reference.clone();
        familiar.tag = None;
        let size: u64 = image.layers.iter().map(|l| l.size).sum();
        // As the image says: a cached rebuild keeps the time its layers were made.
        let created = image
            .config
            .created
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map_or_else(|| "N/A".to_string(), |t| time_ago(now.signed_duration_since(t)));
        write!(
            out,
            "{:<40} {:<16} {:<14} {:<16} {:>10}",
            familiar.familiar(),
            reference.tag.as_deref().unwrap_or("<none>"),
            image.config_digest.short(),
            created,
            human_size(size)
        )?;
        // A multi-platform name: one row per platform, each saying which.
        match platform {
            Some(platform) => writeln!(out, "  {platform}")?,
            None => writeln!(out)?,
        }
    }
    Ok(0)
}

/// The index a name stands for, when it is a multi-platform name.
fn index_of(store: &Store, name: &str) -> Result<Option<image_spec::Digest>> {
    let Ok(reference) = Reference::parse(name) else { return Ok(None) };
    match store.get_ref(&reference.to_string())? {
        Some(digest) if store.read_index(&digest)?.is_some() => Ok(Some(digest)),
        _ => Ok(None),
    }
}

/// What `builder images` lists: each name's image, or each platform's image of a
/// name that is an index (with its platform).
fn image_rows(store: &Store) -> Result<Vec<(String, image_spec::Digest, Option<String>)>> {
    let mut rows = Vec::new();
    for (name, digest) in store.refs()? {
        if store.read_index(&digest)?.is_some() {
            for (platform, manifest) in store.platforms_of(&digest)? {
                rows.push((name.clone(), manifest, Some(platform.to_string())));
            }
        } else {
            rows.push((name, digest, None));
        }
    }
    Ok(rows)
}

fn inspect(store: &Store, name: &str) -> Result<u8> {
    // A multi-platform name: the index, and the image for this machine's platform
    // (or, when a pull brought other platforms only, the first it holds).
    let index = index_of(store, name)?;
    let image = match &index {
        Some(index) => match store.image_for_platform(index, &image_spec::host_platform()) {
            Err(store::Error::NoPlatform { .. }) => match store.platforms_of(index)?.first() {
                Some((_, manifest)) => store.image_from_manifest(manifest)?,
                None => anyhow::bail!("image {name}: the store holds none of the images of index {index}"),
            },
            other => other?,
        },
        None => store.load_image(name)?,
    };
    let names: Vec<String> = store
        .refs()?
        .into_iter()
        .filter(|(_, d)| *d == image.manifest_digest || Some(d) == index.as_ref())
        .map(|(n, _)| Reference::parse(&n).map(|r| r.familiar()).unwrap_or(n))
        .collect();
    let mut value = serde_json::json!({
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
    if let Some(index) = index {
        let platforms: Vec<serde_json::Value> = store
            .platforms_of(&index)?
            .into_iter()
            .map(|(platform, digest)| serde_json::json!({ "Platform": platform.to_string(), "Digest": digest }))
            .collect();
        value["Index"] = serde_json::json!(index);
        value["Platforms"] = serde_json::json!(platforms);
    }
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(0)
}

/// `docker history`'s shape: newest first, the image id on the top line only.
fn history(store: &Store, name: &str, no_trunc: bool, human: bool, quiet: bool) -> Result<u8> {
    let image = store.load_image(name)?;
    let mut out = std::io::stdout().lock();
    let id = if no_trunc { image.config_digest.to_string() } else { image.config_digest.short().to_string() };
    if !quiet {
        writeln!(out, "{:<12}   {:<17}   {:<45}   {:<9}   COMMENT", "IMAGE", "CREATED", "CREATED BY", "SIZE")?;
    }
    // Sizes belong to the entries that made a layer, in order.
    let mut layers = image.layers.iter();
    let mut rows = Vec::new();
    for h in &image.config.history {
        let size = if h.empty_layer == Some(true) { 0 } else { layers.next().map_or(0, |l| l.size) };
        rows.push((h, size));
    }
    let now = chrono::Utc::now();
    for (i, (h, size)) in rows.iter().rev().enumerate() {
        let row_id = if i == 0 { id.as_str() } else { "<missing>" };
        if quiet {
            writeln!(out, "{row_id}")?;
            continue;
        }
        let created = match (h.created.as_deref(), human) {
            (Some(c), true) => chrono::DateTime::parse_from_rfc3339(c)
                .map(|t| time_ago(now.signed_duration_since(t)))
                .unwrap_or_else(|_| c.to_string()),
            (Some(c), false) => c.to_string(),
            (None, _) => "N/A".to_string(),
        };
        let by = h.created_by.clone().unwrap_or_default().replace(['\n', '\t'], " ");
        let by = if !no_trunc && by.chars().count() > 45 {
            format!("{}…", by.chars().take(44).collect::<String>())
        } else {
            by
        };
        let comment = h.comment.as_deref().unwrap_or("");
        writeln!(out, "{row_id:<12}   {created:<17}   {by:<45}   {:<9}   {comment}", human_size(*size))?;
    }
    Ok(0)
}

/// `2 hours ago`, as Docker shows times.
fn time_ago(d: chrono::TimeDelta) -> String {
    let secs = d.num_seconds().max(0);
    let (n, unit) = match secs {
        0..=59 => (secs, "second"),
        60..=3599 => (secs / 60, "minute"),
        3600..=86_399 => (secs / 3600, "hour"),
        86_400..=1_209_599 => (secs / 86_400, "day"),
        1_209_600..=5_183_999 => (secs / 604_800, "week"),
        5_184_000..=63_071_999 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    if n == 1 { format!("1 {unit} ago") } else { format!("{n} {unit}s ago") }
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

/// `rmi NAME` removes that name; `rmi ID` (or a digest) removes every name of the image.
fn rmi(store: &Store, images: &[String]) -> Result<u8> {
    for name in images {
        if let Ok(full) = Reference::parse(name).map(|r| r.to_string())
            && store.get_ref(&full)?.is_some()
        {
            store.remove_ref(&full)?;
            println!("Untagged: {}", familiar(&full));
            continue;
        }
        let image = store.load_image(name)?;
        let mut names = Vec::new();
        for (ref_name, manifest) in store.refs()? {
            let same = manifest == image.manifest_digest
                || store.image_from_manifest(&manifest).is_ok_and(|i| i.config_digest == image.config_digest);
            if same {
                names.push(ref_name);
            }
        }
        if names.is_empty() {
            bail!("image {name} has no name to remove");
        }
        for ref_name in names {
            store.remove_ref(&ref_name)?;
            println!("Untagged: {}", familiar(&ref_name));
        }
    }
    Ok(0)
}

fn familiar(name: &str) -> String {
    Reference::parse(name).map(|r| r.familiar()).unwrap_or_else(|_| name.to_string())
}

/// `24h`, `1h30m`, `90s`, `7d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let bad = || crate::usage_error(anyhow::anyhow!("invalid duration {s:?}: want e.g. 24h, 30m, 1h30m, 7d"));
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let number: f64 = rest[..split].parse().map_err(|_| bad())?;
        let unit_len = rest[split..].find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len() - split);
        let seconds = match &rest[split..split + unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            _ => return Err(bad()),
        };
        total += number * seconds;
        rest = &rest[split + unit_len..];
    }
    Ok(std::time::Duration::from_secs_f64(total))
}

fn prune(store: &Store, all: bool, keep_storage: Option<&str>, filters: &[String]) -> Result<u8> {
    let mut options = store::PruneOptions { all, ..Default::default() };
    if let Some(size) = keep_storage {
        options.keep_storage = Some(parse_size(size).map_err(crate::usage_error)?);
    }
    for filter in filters {
        match filter.split_once('=') {
            Some(("until", d)) => options.until = Some(parse_duration(d)?),
            _ => bail!(crate::usage_error(anyhow::anyhow!("unknown --filter {filter:?} (want until=DURATION)"))),
        }
    }
    let report = store.prune(&options)?;
    println!(
        "Removed {} cache records, {} snapshots, {} blobs, {} cache mounts",
        report.records, report.snapshots, report.blobs, report.cache_mounts
    );
    println!("Total reclaimed space: {}", human_size(report.reclaimed));
    println!("Build data left: {}", human_size(report.remaining));
    if let Some(bound) = options.keep_storage
        && report.remaining > bound
    {
        eprintln!(
            "warning: {} is still held by images (or is too recent for the filter); remove images with rmi to go below {}",
            human_size(report.remaining),
            human_size(bound)
        );
    }
    Ok(0)
}

fn du(store: &Store, json: bool) -> Result<u8> {
    let usage = store.disk_usage()?;
    if json {
        let mut value = serde_json::to_value(&usage)?;
        value["build_total"] = usage.build_total().into();
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{:<15} {:<12} {:>7} {:>12}", "WHAT", "HELD BY", "COUNT", "SIZE")?;
    let mut row = |what: &str, by: &str, u: &store::Usage| -> std::io::Result<()> {
        writeln!(out, "{what:<15} {by:<12} {:>7} {:>12}", u.count, human_size(u.size))
    };
    for (what, held) in [("blobs", &usage.blobs), ("snapshots", &usage.snapshots)] {
        row(what, "images", &held.refs)?;
        row(what, "cache only", &held.cache_only)?;
        row(what, "nothing", &held.unreferenced)?;
    }
    row("cache records", "", &usage.cache_records)?;
    row("cache mounts", "", &usage.cache_mounts)?;
    row("volumes", "", &usage.volumes)?;
    row("temp", "running", &usage.temp)?;
    let bound = match crate::autogc::budget(store)? {
        Some(budget) => format!("automatic GC keeps it under {} ({})", human_size(budget.bytes), budget.source),
        None => "automatic GC is off (BUILDER_GC=false); prune --keep-storage bounds it".to_string(),
    };
    writeln!(out, "Build data: {} ({bound})", human_size(usage.build_total()))?;
    Ok(0)
}

fn fsck(store: &Store, snapshots: bool) -> Result<u8> {
    let report = store.fsck(snapshots)?;
    for note in &report.notes {
        eprintln!("note: {note}");
    }
    for problem in &report.problems {
        println!("damaged: {problem}");
    }
    let verified =
        if snapshots { format!(" ({} compared with their layers)", report.snapshots_verified) } else { String::new() };
    eprintln!(
        "checked {} blobs, {} images, {} snapshots{verified}: {} problems",
        report.blobs,
        report.refs,
        report.snapshots,
        report.problems.len()
    );
    Ok(if report.problems.is_empty() { 0 } else { 1 })
}
