//! Running binaries of another architecture: QEMU user-mode emulation registered in
//! binfmt_misc (Debian's qemu-user-static). A step for a foreign platform runs only
//! when the kernel has a handler for that architecture's ELF binaries with the `F`
//! flag (the interpreter opened when registered, so it works inside the sandbox's
//! mount namespace, where its path does not exist); otherwise the step fails naming
//! the platform and the fix, and never runs a wrong-architecture binary by accident.

use image_spec::{Platform, host_platform};
use std::path::Path;

/// Where the kernel lists binfmt_misc handlers.
pub const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// One enabled binfmt_misc handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    pub name: String,
    pub interpreter: String,
    pub flags: String,
    offset: usize,
    magic: Vec<u8>,
    mask: Vec<u8>,
}

/// Why a platform's steps cannot run here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmulatorError {
    #[error(
        "cannot run steps for {platform} on this {host} machine: no binfmt_misc handler for its binaries is \
         registered in {dir}; install QEMU user-mode emulation (apt-get install qemu-user-static, and \
         binfmt-support or systemd-binfmt to register it; or docker run --privileged --rm tonistiigi/binfmt \
         --install {arch})", dir = BINFMT_MISC
    )]
    Missing { platform: String, host: String, arch: String },
    #[error(
        "cannot run steps for {platform}: the binfmt_misc handler {name} ({interpreter}) lacks the F flag, so \
         its interpreter cannot be found inside a build step; register it again with F (qemu-user-static \
         registers qemu-{qemu} with it)"
    )]
    NoFixFlag { platform: String, name: String, interpreter: String, qemu: String },
    #[error("cannot run steps for {platform}: builder knows no ELF machine for architecture {arch}")]
    Unknown { platform: String, arch: String },
}

/// The ELF identity of a platform's executables: class (1: 32-bit, 2: 64-bit),
/// data (1: little endian, 2: big endian), `e_machine`, and QEMU's name for it.
fn elf(platform: &Platform) -> Option<(u8, u8, u16, &'static str)> {
    Some(match platform.architecture.as_str() {
        "amd64" => (2, 1, 62, "x86_64"),
        "386" => (1, 1, 3, "i386"),
        "arm64" => (2, 1, 183, "aarch64"),
        "arm" => (1, 1, 40, "arm"),
        "riscv64" => (2, 1, 243, "riscv64"),
        "ppc64le" => (2, 1, 21, "ppc64le"),
        "ppc64" => (2, 2, 21, "ppc64"),
        "s390x" => (2, 2, 22, "s390x"),
        "mips64le" => (2, 1, 8, "mips64el"),
        "mips64" => (2, 2, 8, "mips64"),
        "mipsle" => (1, 1, 8, "mipsel"),
        "mips" => (1, 2, 8, "mips"),
        "loong64" => (2, 1, 258, "loongarch64"),
        _ => return None,
    })
}

/// The first 20 bytes of an executable for `platform` (through `e_machine`).
fn elf_header(class: u8, data: u8, machine: u16) -> [u8; 20] {
    let mut header = [0u8; 20];
    header[..4].copy_from_slice(b"\x7fELF");
    (header[4], header[5], header[6]) = (class, data, 1);
    let (e_type, e_machine) = if data == 1 {
        (2u16.to_le_bytes(), machine.to_le_bytes())
    } else {
        (2u16.to_be_bytes(), machine.to_be_bytes())
    };
    header[16..18].copy_from_slice(&e_type);
    header[18..20].copy_from_slice(&e_machine);
    header
}

impl Handler {
    /// Whether the kernel would hand `header` to this handler (its magic under its mask).
    fn matches(&self, header: &[u8]) -> bool {
        self.magic.iter().enumerate().all(|(i, &m)| {
            let mask = self.mask.get(i).copied().unwrap_or(0xff);
            header.get(self.offset + i).is_some_and(|&b| b & mask == m & mask)
        })
    }

    /// Parses one `/proc/sys/fs/binfmt_misc/NAME` file; `None` for a disabled or
    /// extension-based handler.
    fn parse(name: &str, text: &str) -> Option<Handler> {
        let mut lines = text.lines();
        if lines.next()? != "enabled" {
            return None;
        }
        let mut handler = Handler {
            name: name.to_string(),
            interpreter: String::new(),
            flags: String::new(),
            offset: 0,
            magic: Vec::new(),
            mask: Vec::new(),
        };
        for line in lines {
            match line.split_once(' ') {
                Some(("interpreter", v)) => handler.interpreter = v.to_string(),
                Some(("flags:", v)) => handler.flags = v.to_string(),
                Some(("offset", v)) => handler.offset = v.parse().ok()?,
                Some(("magic", v)) => handler.magic = hex::decode(v).ok()?,
                Some(("mask", v)) => handler.mask = hex::decode(v).ok()?,
                _ => {}
            }
        }
        (!handler.magic.is_empty()).then_some(handler)
    }
}

/// The enabled handlers registered in `dir` (none when binfmt_misc is not mounted).
pub fn handlers_in(dir: &Path) -> Vec<Handler> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out: Vec<Handler> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "register" || name == "status" {
                return None;
            }
            Handler::parse(&name, &std::fs::read_to_string(e.path()).ok()?)
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether this machine runs `platform`'s binaries itself: its own architecture, and
/// 32-bit x86 on x86-64.
pub fn is_native(platform: &Platform) -> bool {
    let host = host_platform();
    platform.os == host.os
        && (platform.architecture == host.architecture
            || (host.architecture == "amd64" && platform.architecture == "386"))
}

/// Checks that steps for `platform` can run here, through a handler of `dir`.
pub fn check_in(dir: &Path, platform: &Platform) -> Result<Option<Handler>, EmulatorError> {
    if is_native(platform) {
        return Ok(None);
    }
    let Some((class, data, machine, qemu)) = elf(platform) else {
        return Err(EmulatorError::Unknown { platform: platform.to_string(), arch: platform.architecture.clone() });
    };
    let header = elf_header(class, data, machine);
    let handler = handlers_in(dir).into_iter().find(|h| h.matches(&header)).ok_or_else(|| EmulatorError::Missing {
        platform: platform.to_string(),
        host: host_platform().to_string(),
        arch: platform.architecture.clone(),
    })?;
    if !handler.flags.contains('F') {
        return Err(EmulatorError::NoFixFlag {
            platform: platform.to_string(),
            name: handler.name,
            interpreter: handler.interpreter,
            qemu: qemu.to_string(),
        });
    }
    Ok(Some(handler))
}

/// [`check_in`] the kernel's binfmt_misc.
pub fn check(platform: &Platform) -> Result<Option<Handler>, EmulatorError> {
    check_in(Path::new(BINFMT_MISC), platform)
}

/// The platforms (besides the machine's) whose steps can run here, each with its
/// handler, for `builder doctor`.
pub fn emulated_platforms() -> Vec<(String, Handler)> {
    let candidates = [
        "linux/amd64",
        "linux/386",
        "linux/arm64",
        "linux/arm",
        "linux/riscv64",
        "linux/ppc64le",
        "linux/s390x",
        "linux/mips64le",
        "linux/loong64",
    ];
    candidates
        .iter()
        .filter_map(|p| Platform::parse(p).ok())
        .filter_map(|p| match check(&p) {
            Ok(Some(handler)) => Some((p.to_string(), handler)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AARCH64: &str = "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\noffset 0\n\
        magic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";

    fn dir_with(entries: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in entries {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        dir
    }

    fn foreign() -> Platform {
        if host_platform().architecture == "arm64" {
            Platform::new("linux", "amd64")
        } else {
            Platform::new("linux", "arm64")
        }
    }

    #[test]
    fn a_registered_handler_with_f_serves_its_architecture_only() {
        let dir = dir_with(&[("qemu-aarch64", AARCH64)]);
        let arm64 = Platform::new("linux", "arm64");
        if !is_native(&arm64) {
            assert_eq!(check_in(dir.path(), &arm64).unwrap().unwrap().name, "qemu-aarch64");
        }
        let riscv = Platform::new("linux", "riscv64");
        let err = check_in(dir.path(), &riscv).unwrap_err().to_string();
        assert!(err.contains("cannot run steps for linux/riscv64") && err.contains("qemu-user-static"), "{err}");
        assert_eq!(check_in(dir.path(), &host_platform()).unwrap(), None, "the machine's own platform");
    }

    #[test]
    fn a_handler_without_f_or_disabled_does_not_count() {
        let platform = foreign();
        let (class, data, machine, _) = elf(&platform).unwrap();
        let magic = hex::encode(elf_header(class, data, machine));
        let without_f = format!("enabled\ninterpreter /usr/bin/qemu\nflags: P\noffset 0\nmagic {magic}\n");
        let err = check_in(dir_with(&[("qemu", &without_f)]).path(), &platform).unwrap_err();
        assert!(matches!(err, EmulatorError::NoFixFlag { .. }), "{err}");
        let disabled = without_f.replace("enabled", "disabled");
        let err = check_in(dir_with(&[("qemu", &disabled)]).path(), &platform).unwrap_err();
        assert!(matches!(err, EmulatorError::Missing { .. }), "{err}");
        let err = check_in(Path::new("/nonexistent/binfmt_misc"), &platform).unwrap_err();
        assert!(err.to_string().contains(&platform.to_string()), "{err}");
    }
}
