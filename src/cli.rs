//! Command-line interface: the `builder` commands and their flags (Docker-compatible
//! where Docker has the flag).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "builder", version, about = "A daemonless container image builder")]
pub struct Cli {
    /// Store directory (default /var/lib/builder as root, else $XDG_DATA_HOME/builder)
    #[arg(long, global = true, env = "BUILDER_ROOT")]
    pub root: Option<PathBuf>,
    /// Print debug logs
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build an image from a Dockerfile
    Build(BuildArgs),
    /// Run a command in a new container from an image
    Run(RunArgs),
    /// List images
    Images,
    /// Show an image's manifest, config and layers as JSON
    Inspect { image: String },
    /// Show the history of an image
    History {
        image: String,
        /// Do not truncate the CREATED BY column
        #[arg(long)]
        no_trunc: bool,
        /// Show creation times as RFC 3339 instead of "2 hours ago"
        #[arg(short = 'H', long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        human: bool,
        /// Only show image ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Give an image another name
    Tag { source: String, target: String },
    /// Remove image names
    Rmi {
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show the isolation build steps and containers get on this machine, and what is
    /// not enforced here
    Doctor,
    /// Import a root filesystem tarball as an image
    Import {
        tarball: PathBuf,
        name: String,
        /// The platform the files are for (os/arch[/variant]; default: this machine's)
        #[arg(long)]
        platform: Option<String>,
    },
    /// Load images from a tarball (docker save, OCI archive)
    Load {
        #[arg(short, long)]
        input: PathBuf,
    },
    /// Pull an image from a registry
    Pull {
        reference: String,
        /// Platform to pull from a multi-platform image (os/arch[/variant])
        #[arg(long)]
        platform: Option<String>,
    },
    /// Push an image to a registry
    Push { reference: String },
    /// Log in to a registry (credentials go to Docker's config.json)
    Login {
        host: String,
        #[arg(short, long)]
        username: Option<String>,
        /// Read the password from stdin
        #[arg(long)]
        password_stdin: bool,
        #[arg(short, long, hide = true)]
        password: Option<String>,
    },
    /// Log out from a registry
    Logout { host: String },
    /// Save images to a tarball (docker-archive and OCI layout in one)
    Save {
        #[arg(short, long)]
        output: PathBuf,
        /// docker: a tarball for docker load that is also an OCI layout; oci: an OCI layout only
        #[arg(long, default_value = "docker", value_parser = ["docker", "oci"])]
        format: String,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Remove build data that nothing holds (and cache records with --all or --keep-storage)
    Prune {
        /// Also remove every cache record and cache mount
        #[arg(short, long)]
        all: bool,
        /// Remove least recently used cache records until build data fits (e.g. 2GB, 500MB)
        #[arg(long, value_name = "SIZE")]
        keep_storage: Option<String>,
        /// until=DURATION: only remove what was last used longer ago (e.g. 24h, 30m)
        #[arg(long, value_name = "FILTER")]
        filter: Vec<String>,
    },
    /// Show what uses space in the store and what holds it
    Du {
        /// Print JSON (sizes in bytes)
        #[arg(long)]
        json: bool,
    },
    /// Verify the store: every blob's digest, every image's content, snapshots
    Fsck {
        /// Also compare every snapshot with its layer (reads every layer)
        #[arg(long)]
        snapshots: bool,
    },
    /// Manage named volumes
    #[command(subcommand)]
    Volume(VolumeCommand),
}

#[derive(Subcommand, Debug)]
pub enum VolumeCommand {
    /// List volumes
    Ls,
    /// Create a volume
    Create { name: String },
    /// Remove volumes
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show volumes as JSON (name, mountpoint, creation time)
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
}

#[derive(Args, Debug)]
pub struct BuildArgs {
    /// Build context directory
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Dockerfile (default: PATH/Dockerfile)
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Name and optionally tag (name:tag)
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Build-time variables (KEY=VALUE, or KEY to take it from the environment)
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Target platforms, comma-separated (linux/amd64,linux/arm64[,linux/arm/v7]; default: this machine's).
    /// Several make an image index; RUN for another architecture needs QEMU in binfmt_misc (see builder doctor)
    #[arg(long = "platform", value_delimiter = ',', value_name = "PLATFORMS")]
    pub platforms: Vec<String>,
    /// Do not use the cache
    #[arg(long)]
    pub no_cache: bool,
    /// Always ask the registry for the base images' current digests
    #[arg(long)]
    pub pull: bool,
    /// Push the image to its registry after the build (the -t names)
    #[arg(long)]
    pub push: bool,
    /// Outputs: type=image|registry|oci|docker|local|tar[,dest=PATH|-][,name=N][,compression=gzip|zstd|uncompressed]...
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Shorthand for --output=type=image (into the store under the -t names)
    #[arg(long)]
    pub load: bool,
    /// Secrets for RUN --mount=type=secret: id=ID,src=FILE or id=ID,env=VAR
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// SSH agent for RUN --mount=type=ssh and git over ssh: default|ID[=SOCKET|KEYFILE[,KEYFILE]]
    #[arg(long = "ssh")]
    pub ssh: Vec<String>,
    /// Do not use the cache for these stages
    #[arg(long = "no-cache-filter")]
    pub no_cache_filter: Vec<String>,
    /// Image labels (KEY=VALUE)
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Additional build context (NAME=PATH, NAME=docker-image://REF, a git URL, an
    /// http(s) file or tarball, NAME=oci-layout://PATH[:TAG|@DIGEST]), used by
    /// `FROM NAME`, `COPY --from=NAME` and `RUN --mount=from=NAME`
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub build_contexts: Vec<String>,
    /// Default network mode for RUN: default (the step's own network behind a NAT), none,
    /// or host (needs --allow network.host)
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Extra privileges the build may use, as buildx: network.host, security.insecure
    #[arg(long = "allow", value_name = "ENTITLEMENT")]
    pub allow: Vec<String>,
    /// Resource limits for RUN steps: NAME=SOFT[:HARD], e.g. nofile=1024:2048
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Progress output: auto, tty, plain, rawjson
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// Write the image ID (manifest digest) to this file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Write build result metadata (JSON) to this file
    #[arg(long)]
    pub metadata_file: Option<PathBuf>,
    /// Most steps running at once (0: no limit)
    #[arg(long, default_value_t = 0)]
    pub jobs: usize,
    /// Explain why each step that ran missed the cache
    #[arg(long)]
    pub explain: bool,
    /// Print instead of building: `graph` dumps the compiled build graph
    #[arg(long)]
    pub print: Option<String>,
    /// Export the build cache: type=local,dest=DIR[,mode=min|max]
    #[arg(long = "cache-to")]
    pub cache_to: Vec<String>,
    /// Import a build cache (several are tried in order): type=local,src=DIR
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// `--call`, `--quiet`, `--annotation` and the attestation flags (boxed: the
    /// command enum stays small).
    #[command(flatten)]
    pub more: Box<BuildMoreArgs>,
}

/// More `builder build` flags, as buildx's.
#[derive(Args, Debug)]
pub struct BuildMoreArgs {
    /// Answer instead of building: check (build checks), outline (args, secrets, ssh the
    /// target uses), targets (the stages); add ,format=json for JSON
    #[arg(long, value_name = "NAME[,format=json]")]
    pub call: Option<String>,
    /// Shorthand for --call=check
    #[arg(long)]
    pub check: bool,
    /// Print only the image id on stdout, no progress
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Add an annotation to the image manifest: [manifest:]KEY=VALUE
    #[arg(long = "annotation", value_name = "[TYPE:]KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Attestations (not supported yet)
    #[arg(long = "attest", value_name = "SPEC")]
    pub attest: Vec<String>,
    /// SBOM attestation (not supported yet)
    #[arg(long, value_name = "SPEC", num_args = 0..=1, default_missing_value = "true")]
    pub sbom: Option<String>,
    /// Add a line to /etc/hosts of RUN steps: HOST:IP (or HOST=IP)
    #[arg(long = "add-host", value_name = "HOST:IP")]
    pub add_hosts: Vec<String>,
    /// Size of /dev/shm in RUN steps (e.g. 128m; default 64m)
    #[arg(long = "shm-size", value_name = "SIZE")]
    pub shm_size: Option<String>,
    /// Provenance attestation (not supported yet)
    #[arg(long, value_name = "SPEC", num_args = 0..=1, default_missing_value = "true")]
    pub provenance: Option<String>,
}

#[derive(Args, Debug)]
#[command(
    disable_help_flag = true,
    after_help = "Exit status: the command's own, 128+N if signal N killed it, 125 if builder run itself \
                  failed, 126 if the command cannot be invoked, 127 if it cannot be found."
)]
pub struct RunArgs {
    /// Remove the container when it exits (containers never outlive their process here)
    #[arg(long)]
    pub rm: bool,
    /// Container name
    #[arg(long)]
    pub name: Option<String>,
    /// Container hostname (default: the first 12 hex digits of the container's id)
    #[arg(short = 'h', long)]
    pub hostname: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines, # comments)
    #[arg(long = "env-file")]
    pub env_files: Vec<std::path::PathBuf>,
    /// Pass stdin to the container (otherwise it reads /dev/null, or, with -t alone, a
    /// terminal nothing is typed into)
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal for the container (with -i, stdin must be a terminal)
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Bind mount a volume: NAME:/path[:ro] or /host/path:/path[:ro]
    #[arg(short = 'v', long = "volume")]
    pub volumes: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long = "workdir")]
    pub workdir: Option<String>,
    /// Username or UID[:GID]
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Overwrite the image's ENTRYPOINT
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Network mode: default (bridge: the container's own network behind a NAT), none or host
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Memory limit (e.g. 64m, 1g); beyond it the kernel's OOM killer stops the container
    #[arg(short = 'm', long)]
    pub memory: Option<String>,
    /// Number of CPUs the container may use (e.g. 1.5)
    #[arg(long)]
    pub cpus: Option<String>,
    /// Most processes and threads at once (-1: no limit)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    /// Resource limits: NAME=SOFT[:HARD], e.g. nofile=1024:2048
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// Security options: seccomp=unconfined (no seccomp filter)
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opts: Vec<String>,
    /// Every capability and device, no seccomp filter (as docker run --privileged)
    #[arg(long)]
    pub privileged: bool,
    /// Mount the container's root filesystem read-only
    #[arg(long)]
    pub read_only: bool,
    /// Print help (-h is --hostname, as in `docker run`)
    #[arg(long, action = clap::ArgAction::Help)]
    pub help: Option<bool>,
    /// The image of a multi-platform name to run (os/arch[/variant]; default: this machine's)
    #[arg(long)]
    pub platform: Option<String>,
    pub image: String,
    /// Command and arguments
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

/// `app` → `docker.io/library/app:latest`, with a usage error for bad names.
pub fn normalize(name: &str) -> anyhow::Result<String> {
    image_spec::Reference::parse(name).map(|r| r.to_string()).map_err(|e| crate::usage_error(anyhow::anyhow!(e)))
}
