//! What a build step or a container may do, as the user allowed it: entitlements
//! (`--allow network.host,security.insecure`, as buildx), the network a sandbox gets,
//! resource limits (`--memory`, `--cpus`, `--pids-limit`, `--ulimit`) and the size cap
//! of a `RUN --mount=type=tmpfs`. The executor enforces; this module decides.

use std::sync::OnceLock;

use anyhow::Result;
use solver::ir::{NetworkMode, Op, SecurityMode};

/// Tasks a build step may have at once unless told otherwise: enough for `make -j` and
/// a JVM's threads, few enough that a fork bomb ends quickly (Podman's default is 2048).
pub const STEP_PIDS_LIMIT: u64 = 4096;

/// A flag of a sandbox's limits that cannot be read, or a step that needs what was
/// not granted. The flag parsers' errors are usage errors (their callers parse the
/// command line); [`Denied`] is one too, found in the graph before anything runs.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("invalid entitlement {name:?} in --allow (want network.host or security.insecure)")]
    UnknownEntitlement { name: String },
    #[error("invalid size {text:?} (want a number with an optional b, k, m, g or t)")]
    SizeUnit { text: String },
    #[error("invalid size {text:?}")]
    Size { text: String },
    #[error("invalid --cpus {text:?}: want a number such as 1.5")]
    CpusNotNumber { text: String },
    #[error("invalid --cpus {text:?}: must be more than 0")]
    CpusNotPositive { text: String },
    #[error("invalid --ulimit {text:?}: {why}")]
    Ulimit { text: String, why: UlimitProblem },
    /// `want` lists the modes of the command (`build` and `run` differ).
    #[error("unknown network mode {value:?} (want {want})")]
    UnknownNetwork { value: String, want: &'static str },
    #[error("--network=host needs the network.host entitlement: add --allow network.host")]
    NetworkHostNotAllowed,
    /// A step (named by its instruction) needs an entitlement that was not granted.
    #[error("{step}: {denied}")]
    StepDenied { step: String, denied: Denied },
}

/// What is wrong with a `--ulimit` value.
#[derive(Debug, thiserror::Error)]
pub enum UlimitProblem {
    #[error("want NAME=SOFT[:HARD]")]
    Syntax,
    #[error("unknown limit {0:?}")]
    UnknownLimit(String),
    #[error("{0:?} is not a number")]
    NotANumber(String),
    #[error("the soft limit is above the hard one")]
    SoftAboveHard,
}

/// An entitlement a step needs and was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("network mode \"host\" needs the network.host entitlement: run builder build with --allow network.host")]
    NetworkHost,
    #[error(
        "security mode \"insecure\" needs the security.insecure entitlement: run builder build with --allow security.insecure"
    )]
    SecurityInsecure,
}

/// What `--allow` granted (buildx's entitlements).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Entitlements {
    /// `network.host`: `--network=host` and `RUN --network=host`.
    pub network_host: bool,
    /// `security.insecure`: `RUN --security=insecure`.
    pub security_insecure: bool,
}

impl Entitlements {
    /// `--allow` values: each one or several comma-separated entitlements.
    pub fn parse(values: &[String]) -> Result<Self, SandboxError> {
        let mut granted = Entitlements::default();
        for name in values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "network.host" => granted.network_host = true,
                "security.insecure" => granted.security_insecure = true,
                other => return Err(SandboxError::UnknownEntitlement { name: other.to_string() }),
            }
        }
        Ok(granted)
    }

    /// Refuses, before anything runs, a graph whose steps (those `targets` need) need
    /// what was not granted; the message names the step (its instruction).
    pub fn check_graph(&self, graph: &solver::Graph, targets: &[solver::VertexId]) -> Result<(), SandboxError> {
        for vertex in graph.ancestors(targets).into_iter().map(|id| graph.vertex(id)) {
            if let Op::Exec(exec) = &vertex.op {
                self.check(exec.network, exec.security)
                    .map_err(|denied| SandboxError::StepDenied { step: vertex.name.clone(), denied })?;
            }
        }
        Ok(())
    }

    /// Whether a step's network and security modes were granted.
    pub fn check(&self, network: NetworkMode, security: SecurityMode) -> Result<(), Denied> {
        if network == NetworkMode::Host && !self.network_host {
            return Err(Denied::NetworkHost);
        }
        if security == SecurityMode::Insecure && !self.security_insecure {
            return Err(Denied::SecurityInsecure);
        }
        Ok(())
    }
}

/// The sandbox network for a step or container that did not ask for `host` or `none`:
/// its own namespace behind slirp4netns, or, where that is not installed, its own
/// namespace with only `lo` (never the host's), with a warning said once.
pub fn private_network() -> executor::Network {
    static WARNED: OnceLock<()> = OnceLock::new();
    if executor::nat_helper().is_some() {
        let Some(why) = crate::userns::tun_unusable() else { return executor::Network::Private };
        WARNED.get_or_init(|| {
            crate::progress::message(&format!(
                "WARNING: rootless, and {why}: RUN steps and containers get a network namespace without outside \
                 access (fix: `chmod 0666 /dev/net/tun` as root, as most distributions have it; --network=none \
                 silences this)"
            ));
        });
        return executor::Network::None;
    }
    WARNED.get_or_init(|| {
        crate::progress::message(
            "WARNING: slirp4netns is not installed: RUN steps and containers get a network namespace \
             without outside access (install slirp4netns for a NAT; --network=none silences this)",
        );
    });
    executor::Network::None
}

/// The executor's network for a mode; `host` only where it was checked before.
pub fn network(mode: NetworkMode) -> executor::Network {
    match mode {
        NetworkMode::Host => executor::Network::Host,
        NetworkMode::None => executor::Network::None,
        NetworkMode::Default => private_network(),
    }
}

/// `--network` of `builder build` (the default mode of RUN steps).
pub fn parse_build_network(value: &str, granted: Entitlements) -> Result<NetworkMode, SandboxError> {
    match value {
        "default" | "sandbox" => Ok(NetworkMode::Default),
        "none" => Ok(NetworkMode::None),
        "host" if granted.network_host => Ok(NetworkMode::Host),
        "host" => Err(SandboxError::NetworkHostNotAllowed),
        other => Err(SandboxError::UnknownNetwork { value: other.to_string(), want: "default, none or host" }),
    }
}

/// `--network` of `builder run` (Docker's `bridge` is the private network here).
pub fn parse_run_network(value: &str) -> Result<executor::Network, SandboxError> {
    match value {
        "default" | "bridge" | "private" => Ok(private_network()),
        "none" => Ok(executor::Network::None),
        "host" => Ok(executor::Network::Host),
        other => Err(SandboxError::UnknownNetwork { value: other.to_string(), want: "default, bridge, none or host" }),
    }
}

/// A size as Docker writes it: bytes, or a number with b, k, m, g (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, SandboxError> {
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|s| !s.is_empty() && !s.ends_with('b')).unwrap_or(&t);
    let (number, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit() && *c != '.') {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(SandboxError::SizeUnit { text: text.to_string() }),
    };
    let invalid = || SandboxError::Size { text: text.to_string() };
    let value: f64 = number.parse().map_err(|_| invalid())?;
    if !value.is_finite() || value < 0.0 {
        return Err(invalid());
    }
    Ok((value * (1u64 << shift) as f64) as u64)
}

/// `--cpus 1.5` in thousandths of a CPU.
pub fn parse_cpus(text: &str) -> Result<u64, SandboxError> {
    let cpus: f64 = text.trim().parse().map_err(|_| SandboxError::CpusNotNumber { text: text.to_string() })?;
    if !cpus.is_finite() || cpus <= 0.0 {
        return Err(SandboxError::CpusNotPositive { text: text.to_string() });
    }
    Ok(((cpus * 1000.0).round() as u64).max(1))
}

/// `--ulimit NAME=SOFT[:HARD]` as Docker takes it (`-1`: unlimited).
pub fn parse_ulimit(text: &str) -> Result<executor::Rlimit, SandboxError> {
    let bad = |why| SandboxError::Ulimit { text: text.to_string(), why };
    let (name, values) = text.split_once('=').ok_or_else(|| bad(UlimitProblem::Syntax))?;
    let resource =
        executor::rlimit_by_name(name).ok_or_else(|| bad(UlimitProblem::UnknownLimit(name.trim().to_string())))?;
    let number = |v: &str| -> Result<u64, SandboxError> {
        match v.trim() {
            "-1" | "unlimited" => Ok(u64::MAX),
            v => v.parse().map_err(|_| bad(UlimitProblem::NotANumber(v.to_string()))),
        }
    };
    let (soft, hard) = match values.split_once(':') {
        Some((s, h)) => (number(s)?, number(h)?),
        None => (number(values)?, number(values)?),
    };
    if soft > hard {
        return Err(bad(UlimitProblem::SoftAboveHard));
    }
    Ok(executor::Rlimit { resource, soft, hard })
}

/// The size of a `RUN --mount=type=tmpfs`: what it asked, at most half of the
/// machine's memory (the kernel's own default for a tmpfs without size), and that
/// half when it asked nothing. tmpfs pages live in RAM (or swap); a step must not be
/// able to claim more than the machine has.
pub fn tmpfs_size(requested: Option<u64>) -> u64 {
    let half = memory_total().map_or(u64::MAX, |total| total / 2);
    requested.map_or(half, |size| size.min(half))
}

/// `MemTotal` of /proc/meminfo, in bytes.
fn memory_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_mem_total(&text)
}

fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `builder doctor`: what a build step and a container get here, and what not.
pub fn doctor() -> String {
    use std::fmt::Write as _;
    let isolation = executor::probe();
    let mut out = String::new();
    let _ = writeln!(out, "namespaces: mount, pid, uts, ipc and network for every step and container");
    let _ = writeln!(
        out,
        "root filesystem: overlayfs; every mount nodev but /dev's own nodes (null, zero, full, random, urandom, tty, pts)"
    );
    let _ = writeln!(
        out,
        "capabilities: build steps Docker's default less NET_RAW and MKNOD; containers Docker's default; \
         all with RUN --security=insecure (--allow security.insecure) or run --privileged"
    );
    let _ = writeln!(
        out,
        "seccomp: moby's default profile (off with --security=insecure, --security-opt seccomp=unconfined)"
    );
    match executor::nat_helper() {
        Some(path) => {
            let _ = writeln!(out, "network: own namespace behind slirp4netns ({}), no host loopback", path.display());
        }
        None => {
            let _ = writeln!(
                out,
                "network: own namespace with only lo (slirp4netns not found: install it for outbound access)"
            );
        }
    }
    let _ = writeln!(out, "host network: only with --allow network.host (build) or --network=host (run)");
    let _ = write!(out, "{isolation}");
    let _ = writeln!(
        out,
        "build step pids limit: {}",
        if isolation.pids.is_enforced() { STEP_PIDS_LIMIT.to_string() } else { "none (not enforced here)".into() }
    );
    let emulated = crate::emulator::emulated_platforms();
    if emulated.is_empty() {
        let _ = writeln!(
            out,
            "emulators: none registered in {} (foreign --platform RUN steps fail; apt-get install qemu-user-static)",
            crate::emulator::BINFMT_MISC
        );
    }
    for (platform, handler) in emulated {
        let _ = writeln!(
            out,
            "emulator: {platform} via {} ({}, flags {})",
            handler.name, handler.interpreter, handler.flags
        );
    }
    out
}

/// The limits every build step gets unless told otherwise: a pids limit where this
/// host can enforce one.
pub fn step_resources() -> executor::Resources {
    let enforced = executor::probe_pids().is_enforced();
    executor::Resources { pids: enforced.then_some(STEP_PIDS_LIMIT), ..Default::default() }
}

/// The executor's security for a step, once its entitlement was checked.
pub fn step_security(mode: SecurityMode) -> executor::Security {
    match mode {
        SecurityMode::Sandbox => executor::Security::build_step(),
        SecurityMode::Insecure => executor::Security::insecure(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entitlements_as_buildx_spells_them() {
        let e = Entitlements::parse(&["network.host,security.insecure".into()]).unwrap();
        assert!(e.network_host && e.security_insecure);
        assert_eq!(Entitlements::parse(&[]).unwrap(), Entitlements::default());
        let err = Entitlements::parse(&["device".into()]).unwrap_err().to_string();
        assert!(err.contains("\"device\""), "{err}");
    }

    #[test]
    fn a_host_network_step_needs_the_entitlement() {
        let none = Entitlements::default();
        let err = none.check(NetworkMode::Host, SecurityMode::Sandbox).unwrap_err();
        assert_eq!(err, Denied::NetworkHost);
        assert!(err.to_string().contains("--allow network.host"), "{err}");
        let host = Entitlements { network_host: true, ..Default::default() };
        assert!(host.check(NetworkMode::Host, SecurityMode::Sandbox).is_ok());
        let err = host.check(NetworkMode::Default, SecurityMode::Insecure).unwrap_err();
        assert!(err.to_string().contains("--allow security.insecure"), "{err}");
        assert!(none.check(NetworkMode::None, SecurityMode::Sandbox).is_ok());
    }

    #[test]
    fn build_network_host_is_refused_without_allow() {
        let err = parse_build_network("host", Entitlements::default()).unwrap_err();
        assert!(matches!(err, SandboxError::NetworkHostNotAllowed) && err.to_string().contains("--allow network.host"));
        let err = parse_build_network("bridge", Entitlements::default()).unwrap_err();
        assert_eq!(err.to_string(), "unknown network mode \"bridge\" (want default, none or host)");
        let granted = Entitlements { network_host: true, ..Default::default() };
        assert_eq!(parse_build_network("host", granted).unwrap(), NetworkMode::Host);
        assert_eq!(parse_build_network("default", Entitlements::default()).unwrap(), NetworkMode::Default);
    }

    #[test]
    fn sizes_cpus_and_ulimits_as_docker() {
        assert_eq!(parse_size("64m").unwrap(), 64 << 20);
        assert_eq!(parse_size("64MB").unwrap(), 64 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("ten").is_err() && parse_size("5x").is_err());
        assert_eq!(parse_cpus("1.5").unwrap(), 1500);
        assert!(parse_cpus("0").is_err());
        let r = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((r.resource, r.soft, r.hard), (7, 1024, 2048));
        assert_eq!(parse_ulimit("nproc=-1").unwrap().hard, u64::MAX);
        assert!(parse_ulimit("nofile=10:5").is_err());
        assert!(matches!(
            parse_ulimit("files=10"),
            Err(SandboxError::Ulimit { why: UlimitProblem::UnknownLimit(name), .. }) if name == "files"
        ));
        assert_eq!(
            parse_ulimit("nofile").unwrap_err().to_string(),
            "invalid --ulimit \"nofile\": want NAME=SOFT[:HARD]"
        );
    }

    #[test]
    fn tmpfs_is_capped_at_half_the_memory() {
        assert_eq!(parse_mem_total("MemTotal:       24000000 kB\nMemFree: 1 kB\n"), Some(24_000_000 * 1024));
        let half = memory_total().unwrap() / 2;
        assert_eq!(tmpfs_size(None), half);
        assert_eq!(tmpfs_size(Some(100 << 40)), half);
        assert_eq!(tmpfs_size(Some(1 << 20)), 1 << 20);
    }
}
