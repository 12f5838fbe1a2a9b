//! The build IR: what a vertex does, as plain serializable data.
//!
//! Like BuildKit's LLB, the IR has four kinds of op: a [`SourceOp`] brings a
//! filesystem in (an image, the build context, a URL), an [`ExecOp`] runs a process
//! on top of its input 0 and yields what it changed, a [`FileOp`] applies file
//! actions (copy, mkdir, mkfile, rm) on top of its input 0, and [`Op::Merge`] stacks
//! the layers of its inputs. The solver only hashes
//! these values (see [`crate::key`]); a [`crate::Worker`] gives them meaning.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    Source(SourceOp),
    Exec(ExecOp),
    File(FileOp),
    /// The layers of input 0, then those of each other input, as they are (BuildKit's
    /// MergeOp): `COPY --link` makes its layer on scratch, so that it is cached and
    /// reused whatever it lands on, and merges it onto the stage.
    Merge,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SourceOp {
    /// The empty filesystem.
    Scratch,
    /// An image by reference (`alpine:3.20`, `localhost:5000/x@sha256:...`).
    Image { reference: String, platform: Option<String> },
    /// A local directory given to the build by name (`context`, or a named
    /// `--build-context`), seen through its exclude patterns (`.dockerignore`).
    Local { name: String, exclude: Vec<String> },
    /// A file fetched over HTTP(S), placed at `/<filename>`.
    Http { url: String, checksum: Option<String>, filename: Option<String> },
    /// A git repository at a ref (`ADD <git url>`, `--build-context NAME=<git url>`):
    /// the builder resolves `reference` to a commit, which is what counts in the key,
    /// and checks out `subdir` of it (the whole tree when empty) at the root.
    Git(GitSource),
}

/// What `ADD https://host/repo.git#ref:subdir` names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitSource {
    /// The remote as git takes it (`https://...`, `ssh://...`, `git@host:path`,
    /// `git://...`, `file://...`), without the fragment.
    pub remote: String,
    /// A branch, tag, full ref or commit; empty means the remote's HEAD.
    pub reference: String,
    /// A directory of the repository, relative, without leading `/`; empty for all.
    pub subdir: String,
    /// Keep `.git` in the result (`ADD --keep-git-dir`).
    pub keep_git_dir: bool,
    /// Check out the commit's submodules too (BuildKit's default; `?submodules=false`).
    pub submodules: bool,
    /// The commit (or a prefix of it) `reference` must resolve to (`ADD --checksum`).
    pub checksum: Option<String>,
}

/// Network mode of an exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum NetworkMode {
    /// Whatever the build's default is (`builder build --network`).
    #[default]
    Default,
    Host,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SecurityMode {
    #[default]
    Sandbox,
    Insecure,
}

/// Run a process with input 0 as the root filesystem; the result is input 0 plus
/// what the process changed in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecOp {
    pub args: Vec<String>,
    /// `KEY=value` pairs, in order.
    pub env: Vec<String>,
    pub cwd: String,
    /// `user`, `uid`, `user:group` or `uid:gid`; empty means root.
    pub user: String,
    pub network: NetworkMode,
    pub security: SecurityMode,
    pub mounts: Vec<Mount>,
    /// `--add-host`: lines added to the step's `/etc/hosts` (BuildKit's `Meta.extraHosts`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<HostIp>,
    /// `--ulimit`: limits set on the step's process (BuildKit's `Meta.ulimit`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
    /// `--shm-size`: bytes asked for the step's `/dev/shm` (BuildKit mounts a tmpfs of
    /// that size there); the machine's cap applies when it runs, not in the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<u64>,
}

impl ExecOp {
    /// `args` run as root in `/`, with no environment, mounts or step flags, on the
    /// default network and in the sandbox.
    pub fn new(args: Vec<String>) -> Self {
        ExecOp {
            args,
            env: Vec::new(),
            cwd: "/".into(),
            user: String::new(),
            network: NetworkMode::default(),
            security: SecurityMode::default(),
            mounts: Vec::new(),
            extra_hosts: Vec::new(),
            ulimits: Vec::new(),
            shm_size: None,
        }
    }
}

/// A line of `/etc/hosts`: `ip host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostIp {
    pub host: String,
    pub ip: std::net::IpAddr,
}

/// A resource limit by Docker's name for it (`nofile`, `nproc`...), not by
/// `RLIMIT_*` number: the numbers differ between architectures, the key must not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    pub name: String,
    /// `u64::MAX` for unlimited.
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the container.
    pub target: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CacheSharing {
    #[default]
    Shared,
    Private,
    Locked,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MountKind {
    /// `source` inside input `input` of the vertex; writes are discarded unless
    /// `readonly` is false, and even then never reach the result.
    Bind {
        input: usize,
        source: String,
        readonly: bool,
    },
    /// A persistent directory shared between builds, keyed by `id`.
    Cache {
        id: String,
        sharing: CacheSharing,
        /// Seed the cache from `source` in this input when it is first created.
        from: Option<usize>,
        source: String,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        readonly: bool,
    },
    Tmpfs {
        size: Option<u64>,
    },
    /// A secret by id; its value never reaches a key, a layer or a log. When `env`
    /// is set the secret is exposed as that environment variable instead of a file.
    Secret {
        id: String,
        env: Option<String>,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// An SSH agent socket (`--ssh ID=...`) forwarded at the target; like a secret,
    /// nothing of the agent reaches a key, a layer or a log.
    Ssh {
        id: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// File actions applied in order on top of input 0.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileOp {
    pub actions: Vec<FileAction>,
}

/// Owner given as user and group names or numbers, resolved in the destination
/// filesystem's `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub user: String,
    pub group: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FileAction {
    Copy(CopyAction),
    Mkdir { path: String, mode: u32, make_parents: bool, owner: Option<Owner> },
    Mkfile { path: String, mode: u32, data: Vec<u8>, owner: Option<Owner> },
    Rm { path: String, allow_not_found: bool, allow_wildcard: bool },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CopyAction {
    /// Which input of the vertex the sources are read from.
    pub input: usize,
    /// Source paths (wildcards allowed when `allow_wildcard`), relative to the input root.
    pub sources: Vec<String>,
    /// Destination; a trailing `/` means "into this directory".
    pub dest: String,
    pub owner: Option<Owner>,
    /// Octal (`0755`) or symbolic (`u+x,g-w`) mode applied to what is copied.
    pub mode: Option<String>,
    pub follow_symlinks: bool,
    /// Copy a directory's contents rather than the directory itself (Docker's COPY).
    pub dir_contents_only: bool,
    pub allow_wildcard: bool,
    pub allow_empty_wildcard: bool,
    pub create_dest_path: bool,
    /// Extract local tar archives instead of copying them (ADD).
    pub unpack_archives: bool,
    /// Keep the source's parent directories under dest (`COPY --parents`).
    pub parents: bool,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl CopyAction {
    /// A Docker `COPY` of `sources` from `input` to `dest` with default flags.
    pub fn new(input: usize, sources: Vec<String>, dest: impl Into<String>) -> Self {
        CopyAction {
            input,
            sources,
            dest: dest.into(),
            owner: None,
            mode: None,
            follow_symlinks: true,
            dir_contents_only: true,
            allow_wildcard: true,
            allow_empty_wildcard: false,
            create_dest_path: true,
            unpack_archives: false,
            parents: false,
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}
