//! `builder build`: Dockerfile → frontend → solver → image in the store.

use crate::cli::BuildArgs;
use crate::ops::source::ImageResolver;
use crate::ops::{BuildWorker, WorkerOptions};
use crate::progress::Task;
use crate::usage_error;
use anyhow::{Context as _, Result, anyhow, bail};
use frontend::{BaseImage, BuildOptions, ResolveError};
use image_spec::Reference;
use image_spec::{Platform, host_platform};
use registry::RegistryOptions;
use solver::{ProgressSink, SolveOptions, Solver};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use store::Store;

pub fn build(store: &Store, args: BuildArgs) -> Result<u8> {
    if crate::userns::gc_only() {
        // The build succeeded outside builder's user namespace and showed its result.
        collect(store, &args);
        return Ok(0);
    }
    let request = Request::new(&args)?;
    let call =
        crate::check::parse_call(args.more.call.as_deref(), args.more.check).map_err(|e| usage_error(anyhow!(e)))?;
    if call.name != crate::check::CallName::Build {
        let progress = solver::progress::NullProgress;
        let images = ImageResolver::new(store, false, host_platform(), RegistryOptions::default(), &progress);
        let resolver = FrontendResolver { images: &images, offline: true, failure: Mutex::default() };
        return crate::check::run(&call, &request.dockerfile, &request.options, &resolver);
    }
    if let Some(print) = args.print.as_deref() {
        return print_graph(store, &request, print);
    }
    let mode = crate::progress::Mode::parse(&args.progress).map_err(|e| usage_error(anyhow!(e)))?;
    if crate::userns::attempting() {
        return build_outside(store, &args, &request, mode);
    }
    // The display exists before anything is resolved or pulled: every line the build
    // writes on stderr is one of its steps.
    let progress = if args.more.quiet { crate::progress::quiet() } else { crate::progress::new(mode, args.explain) };
    let logs = crate::progress::route_logs(progress.clone());
    let result = run(store, &args, &request, progress.sink());
    drop(logs);
    progress.finish(result.is_ok());
    if let Some(digest) = result? {
        println!("{digest}");
    }
    collect(store, &args);
    Ok(0)
}

/// The build as an ordinary user's attempt outside builder's user namespace
/// (`crate::userns`): its display is recorded and shown only if it succeeds. Any
/// error, or a warning logged, is returned for `main` to start over inside, where the
/// build shows and reports everything itself.
fn build_outside(store: &Store, args: &BuildArgs, request: &Request, mode: crate::progress::Mode) -> Result<u8> {
    // Started by `main`, before the store was opened.
    let recording = crate::progress::Recording::attempt();
    let logs = crate::progress::route_logs(recording.clone());
    let result = run(store, args, request, &*recording);
    drop(logs);
    let digest = result?;
    let count = recording.warnings();
    if count > 0 {
        bail!(crate::userns::NeedsUserNamespace::Warned { count });
    }
    let start = recording.start();
    let progress =
        if args.more.quiet { crate::progress::quiet() } else { crate::progress::new_since(mode, args.explain, start) };
    recording.replay(&*progress);
    progress.finish(true);
    if let Some(digest) = digest {
        println!("{digest}");
    }
    tracing::debug!("user namespace: not needed: the build ran without it");
    if crate::autogc::due(store.root()) {
        // It walks new snapshots and removes old ones: inside. Only a failed exec returns.
        let e = crate::userns::reexec_for_gc();
        eprintln!("warning: automatic GC: {e:#}");
    }
    Ok(0)
}

/// The automatic GC after a build; the build succeeded whatever it does.
fn collect(store: &Store, args: &BuildArgs) {
    match crate::autogc::after_build(store) {
        Ok(Some(message)) if args.progress != "rawjson" => eprintln!("{message}"),
        Ok(_) => {}
        Err(e) => eprintln!("warning: automatic GC: {e:#}"),
    }
}

/// What the command line asks for, checked and read before the build starts (its
/// mistakes are usage errors).
struct Request {
    context_dir: PathBuf,
    dockerfile: String,
    outputs: Vec<crate::export::OutputSpec>,
    options: BuildOptions,
    named_dirs: BTreeMap<String, PathBuf>,
    epoch: Option<i64>,
    cache_to: Vec<crate::cache::spec::CacheSpec>,
    cache_from: Vec<crate::cache::spec::CacheSpec>,
    entitlements: crate::sandbox::Entitlements,
    /// `--network`: the mode of RUN steps that do not say.
    default_network: solver::ir::NetworkMode,
    secrets: std::collections::HashMap<String, Vec<u8>>,
    /// `--platform`: the target platforms, the machine's when none is given.
    platforms: Vec<Platform>,
    /// `--add-host`, `--ulimit` and `--shm-size`, set on every RUN step.
    step_flags: crate::step_flags::StepFlags,
    /// `oci-layout://` contexts, copied into the store before the build.
    oci_layouts: Vec<crate::oci_layout::LayoutImage>,
}

impl Request {
    fn new(args: &BuildArgs) -> Result<Request> {
        if args.context.as_os_str() == "-" {
            bail!(usage_error(anyhow!("reading the Dockerfile from stdin is not supported yet")));
        }
        // A bad `-t` is a usage error before anything is built, as with docker.
        for tag in &args.tags {
            image_spec::Reference::parse(tag)
                .map_err(|e| usage_error(anyhow!("invalid tag {:?}: {e}", image_spec::shown(tag))))?;
        }
        let context_dir = args
            .context
            .canonicalize()
            .map_err(|e| usage_error(anyhow!("build context {}: {e}", args.context.display())))?;
        if !context_dir.is_dir() {
            bail!(usage_error(anyhow!("build context {} is not a directory", context_dir.display())));
        }
        let dockerfile_path = args.file.clone().unwrap_or_else(|| context_dir.join("Dockerfile"));
        let dockerfile = std::fs::read_to_string(&dockerfile_path)
            .map_err(|e| usage_error(anyhow!("reading Dockerfile {}: {e}", dockerfile_path.display())))?;
        crate::build_flags::unsupported_flags(&args.more).map_err(|e| usage_error(anyhow!(e)))?;
        let platforms = crate::platforms::parse(&args.platforms)?;
        let outputs = output_specs(args, platforms.len() > 1)?;
        let mut build_args = parse_pairs(&args.build_args, "--build-arg", true)?;
        // As buildx: SOURCE_DATE_EPOCH from the environment is also a build arg.
        if !build_args.contains_key("SOURCE_DATE_EPOCH")
            && let Some(epoch) = crate::archive::source_date_epoch()?
        {
            build_args.insert("SOURCE_DATE_EPOCH".into(), epoch.to_string());
        }
        let epoch = match build_args.get("SOURCE_DATE_EPOCH") {
            Some(v) if !v.trim().is_empty() => Some(crate::archive::parse_epoch(v)?),
            _ => None,
        };
        let mut options = BuildOptions {
            dockerfile_name: dockerfile_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or("Dockerfile".into()),
            target: args.target.clone(),
            build_args,
            platform: platforms[0].clone(),
            build_platform: host_platform(),
            multi_platform: platforms.len() > 1,
            dockerignore: read_dockerignore(&dockerfile_path, &context_dir)?,
            no_cache: args.no_cache,
            no_cache_filter: args.no_cache_filter.clone(),
            labels: parse_pairs(&args.labels, "--label", false)?,
            named_contexts: BTreeMap::new(),
        };
        let mut oci_layouts = Vec::new();
        let named_dirs = named_contexts(&args.build_contexts, &mut options.named_contexts, &mut oci_layouts)?;
        let entitlements = crate::sandbox::Entitlements::parse(&args.allow).map_err(|e| usage_error(anyhow!(e)))?;
        let step_flags =
            crate::step_flags::StepFlags::parse(&args.more.add_hosts, &args.ulimits, args.more.shm_size.as_deref())
                .map_err(|e| usage_error(anyhow!(e)))?;
        let cache_to = crate::cache::export::parse_specs(&args.cache_to, true).map_err(usage_error)?;
        let mut outputs = outputs;
        if cache_to.iter().any(|c| c.location == crate::cache::spec::Location::Inline) {
            // An inline cache names its layers' blobs as the image that carries it
            // holds them: every image output gets compressed layers, made by the steps
            // (see `run`), whether it is pushed now or later.
            outputs.iter_mut().for_each(|o| o.compression_given = true);
        }
        Ok(Request {
            context_dir,
            dockerfile,
            outputs,
            options,
            named_dirs,
            epoch,
            cache_to,
            cache_from: crate::cache::export::parse_specs(&args.cache_from, false).map_err(usage_error)?,
            default_network: crate::sandbox::parse_build_network(&args.network, entitlements).map_err(usage_error)?,
            entitlements,
            secrets: read_secrets(&args.secrets)?,
            platforms,
            step_flags,
            oci_layouts,
        })
    }
}

/// `--print graph`: the graph on stdout, resolved offline (an image not in the store
/// is shown by its reference), nothing built. With several `--platform`s it is the
/// merged graph the build solves: every platform's vertices, shared ones once.
fn print_graph(store: &Store, request: &Request, print: &str) -> Result<u8> {
    if print != "graph" {
        bail!(usage_error(anyhow!("unknown --print value {print:?} (want graph)")));
    }
    let progress = solver::progress::NullProgress;
    let images = ImageResolver::new(store, false, host_platform(), RegistryOptions::default(), &progress);
    let resolver = FrontendResolver { images: &images, offline: true, failure: Mutex::default() };
    let mut compiled = Vec::with_capacity(request.platforms.len());
    for platform in &request.platforms {
        let options = BuildOptions { platform: platform.clone(), ..request.options.clone() };
        let mut definition = frontend::compile(&request.dockerfile, &options, &resolver).map_err(usage_error)?;
        request.step_flags.set_on(&mut definition.graph);
        compiled.push((platform.clone(), definition));
    }
    let merged = crate::platforms::merge(compiled);
    // The first platform's target and image config come with the graph; the others'
    // targets follow, each named by its platform.
    print!("{}", frontend::print_graph(&merged[0].1));
    for (platform, definition) in &merged[1..] {
        println!("target {platform} #{}", definition.target.0);
    }
    Ok(0)
}

/// The build, each of its steps reported to `progress`: the definition, cache
/// imports, the solve, the outputs and cache exports. Returns what stdout gets: the
/// image's digest, unless an output streams there.
fn run(store: &Store, args: &BuildArgs, request: &Request, progress: &dyn ProgressSink) -> Result<Option<String>> {
    let registry_opts = RegistryOptions::default();
    let mut images = ImageResolver::new(store, args.pull, host_platform(), registry_opts.clone(), progress);
    // Outside builder's user namespace, a pull would be shown by this attempt only.
    let outside_user_namespace = crate::userns::attempting();
    if outside_user_namespace {
        images.refuse_pulls();
    }
    for layout in &request.oci_layouts {
        crate::oci_layout::load(store, layout)?;
    }
    let definitions = load_definition(request, &images, progress)?;
    let definition = &definitions[0].1;
    let cache = crate::cache::Session::open(
        store,
        &request.cache_from,
        request.cache_to.clone(),
        &host_platform(),
        registry_opts,
        progress,
    )?;

    // New layers are uncompressed tars, their digest the diffID hashed as they are
    // written: a build into the store and `builder run` need no compressed bytes.
    // Outputs that do (push, oci/docker archives) compress at export, once per
    // (diffID, compression, level), kept as variants for the next export. An inline
    // cache names its layers' blobs inside the pushed image, so with one the layers
    // are made in the compression of the first output that compresses, as they go
    // into that image (dependents key on their inputs' layers, compression included).
    let inline = request.cache_to.iter().any(|c| c.location == crate::cache::spec::Location::Inline);
    let first_image = request.outputs.iter().find(|o| o.is_image());
    let (compression, level) = match first_image {
        Some(output) if inline => (output.compression, output.level),
        _ => (image_spec::Compression::Uncompressed, None),
    };
    let mut local_dirs: HashMap<String, PathBuf> = request.named_dirs.clone().into_iter().collect();
    local_dirs.insert("context".into(), request.context_dir.clone());
    let worker = BuildWorker::new(
        store,
        &images,
        WorkerOptions {
            local_dirs,
            default_network: request.default_network,
            entitlements: request.entitlements,
            secrets: request.secrets.clone(),
            ssh: crate::ssh::agents(&args.ssh).map_err(usage_error)?,
            layer_options: crate::layer::LayerOptions { compression, level, mtime_clamp: request.epoch },
            mount_seeds: cache.mount_seeds(),
            outside_user_namespace,
        },
    );
    let solver_cache = cache.solver_cache();

    // Per platform: the target, and every vertex that may add a layer (to mark empty
    // history entries).
    let mut targets = Vec::new();
    let mut spans = Vec::new();
    for (_, definition) in &definitions {
        let start = targets.len();
        targets.push(definition.target);
        targets.extend(definition.image.history.iter().filter_map(|h| h.layer));
        spans.push(start..targets.len());
    }
    // Before anything runs: a step to be solved that needs what --allow did not grant.
    worker.entitlements().check_graph(&definition.graph, &targets).map_err(|e| anyhow!(e))?;
    let solver = Solver::new(&worker, &solver_cache, progress, SolveOptions { jobs: args.jobs });
    let interrupt = crate::signals::cancel_on_interrupt(solver.cancel_token().flag())?;
    let (solved, report) = match solver.solve_with_report(&definition.graph, &targets) {
        Ok(solved) => solved,
        Err(e) => return Err(interrupt.error().unwrap_or_else(|| anyhow!(e))),
    };
    interrupt.finish()?;

    let mut tags = Vec::new();
    for tag in &args.tags {
        tags.push(crate::cli::normalize(tag)?);
    }
    let mut results = Vec::with_capacity(definitions.len());
    for ((platform, definition), span) in definitions.iter().zip(spans) {
        // The target's result, then one per step that may add a layer (as `targets`).
        let (image_output, step_outputs) = solved[span].split_first().context("the solve returned no result")?;
        let layers = image_output.layers()?.to_vec();
        let mut config = crate::export::image_config(definition, &layers, step_outputs, request.epoch)?;
        crate::platforms::set_config_platform(&mut config, platform);
        config.inline_cache = cache.inline(&report, &layers)?;
        let base_layers = definition.image.base_history.iter().filter(|h| h.empty_layer != Some(true)).count();
        let base_layers = base_layers.min(layers.len());
        let result =
            crate::export::BuildResult { config, layers, base_layers, tags: tags.clone(), epoch: request.epoch };
        results.push((platform.clone(), result));
    }
    // What --iidfile and --metadata-file name: the image, or the index of several.
    let (digest, config_digest, cache_layers) = if results.len() > 1 {
        let index = crate::platforms::export_all(store, &request.outputs, &results, progress)?;
        (index, None, results.iter().map(|(_, r)| r.layers.clone()).collect())
    } else {
        let result = results.pop().context("the solve returned no result")?.1;
        let mut image = None;
        for output in &request.outputs {
            let task = Task::start(progress, crate::export::step_name(output));
            let written = crate::export::export(store, output, &result, &task);
            let written = task.finish(written)?;
            image = image.or(written);
        }
        let image = match image {
            Some(image) => image,
            // Filesystem outputs only: the image id is still worth reporting.
            None => store.write_image(&result.config, &result.layers)?,
        };
        (image.manifest_digest, Some(image.config_digest), vec![result.layers])
    };
    let mut mount_keys = crate::cache::mounts::cache_mount_keys(&definition.graph);
    mount_keys.extend(worker.used_cache_mounts());
    let cache_layers: Vec<&[image_spec::LayerInfo]> = cache_layers.iter().map(Vec::as_slice).collect();
    cache.export(&report, &cache_layers, &mount_keys, progress)?;
    if let Some(path) = &args.iidfile {
        std::fs::write(path, digest.as_str()).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.metadata_file {
        let mut meta = serde_json::json!({
            "containerimage.digest": digest,
            "image.name": tags.join(","),
        });
        if let Some(config_digest) = config_digest {
            meta["containerimage.config.digest"] = serde_json::json!(config_digest);
        }
        std::fs::write(path, serde_json::to_vec_pretty(&meta)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    // stdout may be an output's stream.
    let streamed = request.outputs.iter().any(|o| o.dest == Some(crate::export::Dest::Stdout));
    Ok((!streamed).then(|| digest.to_string()))
}

/// The Dockerfile compiled into the build's graph: the step `[internal] load build
/// definition from Dockerfile`, which resolves (and pulls) the base images and
/// carries the frontend's warnings.
fn load_definition(
    request: &Request,
    images: &ImageResolver<'_>,
    progress: &dyn ProgressSink,
) -> Result<Vec<(Platform, frontend::BuildDefinition)>> {
    let name = format!("[internal] load build definition from {}", request.options.dockerfile_name);
    let task = Task::start(progress, name);
    let resolver = FrontendResolver { images, offline: false, failure: Mutex::default() };
    let mut compiled = Vec::with_capacity(request.platforms.len());
    for platform in &request.platforms {
        let options = BuildOptions { platform: platform.clone(), ..request.options.clone() };
        let definition = frontend::compile(&request.dockerfile, &options, &resolver).map_err(|e| {
            // The frontend keeps only the text of a resolver's error; its hint (a registry
            // that wants a login) comes from the error itself.
            let failure = resolver.failure.lock().unwrap_or_else(|e| e.into_inner()).take();
            let hint = failure.as_ref().and_then(crate::hint::for_error);
            crate::ExitError { code: 2, error: Some(anyhow!(e)), hint }.into()
        });
        match definition {
            Ok(mut definition) => {
                request.step_flags.set_on(&mut definition.graph);
                compiled.push((platform.clone(), definition))
            }
            Err(e) => return task.finish(Err(e)),
        }
    }
    // Warnings are the Dockerfile's, the same for every platform.
    for warning in &compiled[0].1.warnings {
        task.warn(warning.clone());
    }
    if let Err(e) = crate::check::warn_during_build(&request.dockerfile, &request.options, &resolver, &task) {
        return task.finish(Err(e));
    }
    task.finish(Ok(crate::platforms::merge(compiled)))
}

/// The `-o` outputs, with `--push` and `--load` added; `type=image` when none is given.
fn output_specs(args: &BuildArgs, multi_platform: bool) -> Result<Vec<crate::export::OutputSpec>> {
    use crate::export::{Dest, OutputKind, OutputSpec, parse_output};
    let mut outputs = Vec::new();
    for spec in &args.outputs {
        let output = parse_output(spec).map_err(|e| usage_error(anyhow!("invalid --output {spec:?}: {e}")))?;
        outputs.push(output);
    }
    if args.push {
        outputs.push(OutputSpec::new(OutputKind::Registry));
    }
    if args.load || outputs.is_empty() {
        outputs.push(OutputSpec::new(OutputKind::Image));
    }
    crate::export::add_annotations(&args.more.annotations, &mut outputs, multi_platform)
        .map_err(|e| usage_error(anyhow!(e)))?;
    if outputs.iter().filter(|o| o.dest == Some(Dest::Stdout)).count() > 1 {
        bail!(usage_error(anyhow!("only one output can go to stdout (dest=-)")));
    }
    // Before anything runs: the exporters name images only after the build.
    for name in args.tags.iter().chain(outputs.iter().flat_map(|o| &o.names)) {
        Reference::parse(name).map_err(|e| usage_error(anyhow!("invalid image name {name:?}: {e}")))?;
    }
    for output in &outputs {
        if output.push && output.names.is_empty() && args.tags.is_empty() {
            bail!(usage_error(anyhow!("pushing needs a name: add -t REGISTRY/REPOSITORY[:TAG] or name=")));
        }
    }
    Ok(outputs)
}

/// `--build-context NAME=VALUE`s into `named` (as the frontend sees them); returns the
/// local directories by the name of their source. A VALUE is a directory (relative to
/// the current directory), `docker-image://REF`, a git URL, an `http(s)://` file or
/// `oci-layout://PATH[:TAG|@DIGEST]` (into `layouts`), as buildx takes them.
fn named_contexts(
    specs: &[String],
    named: &mut BTreeMap<String, frontend::NamedContext>,
    layouts: &mut Vec<crate::oci_layout::LayoutImage>,
) -> Result<BTreeMap<String, PathBuf>> {
    let mut dirs = BTreeMap::new();
    for spec in specs {
        let invalid = |why: String| usage_error(anyhow!("invalid --build-context {spec:?}: {why}"));
        let (name, value) = spec
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .ok_or_else(|| invalid("want NAME=VALUE".into()))?;
        let key = frontend::named_context_key(name);
        let context = if let Some(reference) = value.strip_prefix("docker-image://") {
            Reference::parse(reference)
                .map_err(|e| invalid(format!("{reference:?} is not an image reference: {e}")))?;
            frontend::NamedContext::Image(reference.to_string())
        } else if let Some(git) = frontend::parse_git_ref(value) {
            frontend::NamedContext::Git(git.map_err(invalid)?.source(None, None))
        } else if value.starts_with("https://") || value.starts_with("http://") {
            frontend::NamedContext::Http { url: value.to_string() }
        } else if let Some(spec) = value.strip_prefix("oci-layout://") {
            let layout = crate::oci_layout::parse(&key, spec).map_err(|e| invalid(format!("{e:#}")))?;
            let reference = layout.reference.clone();
            layouts.push(layout);
            frontend::NamedContext::Image(reference)
        } else if let Some((scheme, _)) = value.split_once("://") {
            bail!(invalid(format!(
                "{scheme}:// contexts are not supported (a directory, docker-image://, oci-layout://, a git or http(s) URL)"
            )));
        } else {
            let dir = Path::new(value).canonicalize().map_err(|e| invalid(format!("{value}: {e}")))?;
            if !dir.is_dir() {
                bail!(invalid(format!("{} is not a directory", dir.display())));
            }
            let source = format!("context:{key}");
            dirs.insert(source.clone(), dir);
            frontend::NamedContext::Local { source }
        };
        named.insert(key, context);
    }
    Ok(dirs)
}

/// `KEY=VALUE` pairs; with `from_env`, a bare `KEY` takes its value from our
/// environment (and is skipped when unset), as `docker build --build-arg` does.
fn parse_pairs(items: &[String], flag: &str, from_env: bool) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                out.insert(k.to_string(), v.to_string());
            }
            None if from_env && !item.is_empty() => {
                if let Ok(v) = std::env::var(item) {
                    out.insert(item.clone(), v);
                }
            }
            _ => bail!(usage_error(anyhow!("invalid {flag} {item:?}: want KEY=VALUE"))),
        }
    }
    Ok(out)
}

/// `--secret id=ID,src=FILE` / `id=ID,env=VAR` (Docker's forms; `source=` and a bare
/// id meaning the environment variable of that name are accepted too).
fn read_secrets(specs: &[String]) -> Result<std::collections::HashMap<String, Vec<u8>>> {
    let mut out = std::collections::HashMap::new();
    for spec in specs {
        let mut id = None;
        let mut src = None;
        let mut env = None;
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(v.to_string()),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", "file" | "env")) => {}
                _ => bail!(usage_error(anyhow!("invalid --secret {spec:?}: want id=ID,src=FILE or id=ID,env=VAR"))),
            }
        }
        let id = id.ok_or_else(|| usage_error(anyhow!("invalid --secret {spec:?}: missing id=")))?;
        let value = match (src, env) {
            (Some(path), _) => std::fs::read(&path).with_context(|| format!("reading secret {id} from {path}"))?,
            (None, var) => {
                let var = var.unwrap_or_else(|| id.clone());
                std::env::var(&var)
                    .map_err(|_| usage_error(anyhow!("secret {id}: environment variable {var} is not set")))?
                    .into_bytes()
            }
        };
        out.insert(id, value);
    }
    Ok(out)
}

/// `<Dockerfile>.dockerignore` beside the Dockerfile wins over `.dockerignore` at the
/// context root.
fn read_dockerignore(dockerfile: &Path, context: &Path) -> Result<Vec<String>> {
    let mut specific = dockerfile.as_os_str().to_owned();
    specific.push(".dockerignore");
    for path in [PathBuf::from(specific), context.join(".dockerignore")] {
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(crate::ignore::parse_dockerignore(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(anyhow!(e).context(format!("reading {}", path.display()))),
        }
    }
    Ok(Vec::new())
}

/// Base image configs for the frontend.
struct FrontendResolver<'a> {
    images: &'a ImageResolver<'a>,
    offline: bool,
    /// The last resolve that failed, as an error (the frontend gets only its text).
    failure: Mutex<Option<anyhow::Error>>,
}

impl frontend::ImageResolver for FrontendResolver<'_> {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<Option<BaseImage>, ResolveError> {
        let image = if self.offline {
            match self.images.local(reference, platform) {
                Ok(Some(image)) => image,
                Ok(None) => return Ok(None),
                Err(e) => return Err(resolve_error(&e)),
            }
        } else {
            match self.images.resolve_for(reference, platform) {
                Ok(image) => image,
                Err(e) => {
                    let error = resolve_error(&e);
                    *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    return Err(error);
                }
            }
        };
        let reference = Reference::parse(reference).map(|r| r.to_string()).unwrap_or(reference.to_string());
        Ok(Some(BaseImage { reference, config: image.config.config, history: image.config.history }))
    }
}

/// The frontend's word for a resolver's error: a missing platform is typed.
fn resolve_error(error: &anyhow::Error) -> ResolveError {
    match error.downcast_ref::<store::Error>() {
        Some(store::Error::NoPlatform { image, wanted, available }) => {
            ResolveError::NoPlatform { image: image.clone(), wanted: wanted.clone(), available: available.clone() }
        }
        _ => ResolveError::Failed(format!("{error:#}")),
    }
}
