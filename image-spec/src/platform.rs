//! Platforms (`linux/amd64`, `linux/arm/v7`): the one type the frontend, the registry
//! client and the image config share, the host's platform and the parser of
//! `os/arch[/variant]`. Names and normalisation follow containerd's `platforms`
//! package, which Docker and BuildKit use.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An OS, an architecture and maybe a variant, in Go's naming (`amd64`, `arm64`,
/// `ppc64le`...). Serialised as an OCI descriptor's `platform` (field order is part
/// of the digest of an index that lists it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Why a string is not a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlatformError {
    #[error("invalid platform {platform:?}: expected os/arch[/variant]")]
    Shape { platform: String },
    #[error("invalid platform {platform:?}: {component:?} may only hold letters, digits, '_', '.' and '-'")]
    Component { platform: String, component: String },
}

impl Platform {
    pub fn new(os: &str, architecture: &str) -> Self {
        Platform { architecture: architecture.into(), os: os.into(), variant: None }
    }

    /// Parses `os/arch[/variant]` as containerd's `platforms.Parse` does: the OS is
    /// lowercased, the architecture normalised (`x86_64` → `amd64`, `aarch64` →
    /// `arm64`, `armhf` → `arm` `v7`...), and what was written is kept otherwise (a
    /// bare `linux/arm` stays without a variant, `linux/arm64/v8` keeps its `v8`).
    /// Unlike containerd, a lone OS or architecture is refused: filling in the other
    /// half would mean guessing from the machine that parses, which need not be the
    /// one the build is for.
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(PlatformError::Shape { platform: s.to_string() });
        }
        if let Some(bad) = parts.iter().find(|p| !is_component(p)) {
            return Err(if bad.is_empty() {
                PlatformError::Shape { platform: s.to_string() }
            } else {
                PlatformError::Component { platform: s.to_string(), component: bad.to_string() }
            });
        }
        let os = normalize_os(parts[0]);
        let platform = match parts[..] {
            [_, arch] => {
                let (architecture, variant) = normalize_arch(arch, "");
                // Normalising gives `arm` its default `v7`; the user named none.
                let variant = variant.filter(|v| !(architecture == "arm" && v == "v7"));
                Platform { architecture, os, variant }
            }
            [_, arch, variant] => {
                let (architecture, variant) = normalize_arch(arch, variant);
                let variant = match variant {
                    None if architecture == "arm64" => Some("v8".to_string()),
                    v => v,
                };
                Platform { architecture, os, variant }
            }
            _ => unreachable!("two or three parts"),
        };
        Ok(platform)
    }

    /// This platform as containerd's `platforms.Normalize` puts it, for comparing
    /// two platforms: `arm` without a variant is `v7`, `arm64` `v8` has none.
    pub fn normalized(&self) -> Platform {
        let (architecture, variant) = normalize_arch(&self.architecture, self.variant.as_deref().unwrap_or(""));
        Platform { architecture, os: normalize_os(&self.os), variant }
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, PlatformError> {
        Platform::parse(s)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The platform of the machine this runs on, in Go's naming, with the variant only
/// where one is certain: `arm` is `v7` (what Rust's `arm` targets assume at least,
/// and containerd's default), `arm64` has none (containerd drops `v8`).
pub fn host_platform() -> Platform {
    let little = cfg!(target_endian = "little");
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "x86" => ("386", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7")),
        "powerpc64" if little => ("ppc64le", None),
        "powerpc64" => ("ppc64", None),
        "powerpc" => ("ppc", None),
        "loongarch64" => ("loong64", None),
        "mips64" if little => ("mips64le", None),
        "mips" if little => ("mipsle", None),
        other => (other, None),
    };
    Platform { architecture: architecture.to_string(), os: "linux".to_string(), variant: variant.map(String::from) }
}

/// containerd's `specifierRe`: `^[A-Za-z0-9_.-]+$`.
fn is_component(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn normalize_os(os: &str) -> String {
    match os.to_ascii_lowercase().as_str() {
        "macos" => "darwin".to_string(),
        other => other.to_string(),
    }
}

/// containerd's `normalizeArch`: the architecture's Go name and its variant.
fn normalize_arch(arch: &str, variant: &str) -> (String, Option<String>) {
    let (arch, variant) = (arch.to_ascii_lowercase(), variant.to_ascii_lowercase());
    let (arch, variant): (&str, String) = match arch.as_str() {
        "i386" => ("386", String::new()),
        "x86_64" | "x86-64" | "amd64" => ("amd64", if variant == "v1" { String::new() } else { variant }),
        "aarch64" | "arm64" => match variant.as_str() {
            "8" | "v8" | "v8.0" => ("arm64", String::new()),
            "9" | "9.0" | "v9.0" => ("arm64", "v9".to_string()),
            _ => ("arm64", variant),
        },
        "armhf" => ("arm", "v7".to_string()),
        "armel" => ("arm", "v6".to_string()),
        "arm" => match variant.as_str() {
            "" | "7" => ("arm", "v7".to_string()),
            "5" | "6" | "8" => ("arm", format!("v{variant}")),
            _ => ("arm", variant),
        },
        other => (other, variant),
    };
    (arch.to_string(), (!variant.is_empty()).then_some(variant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> String {
        Platform::parse(s).unwrap().to_string()
    }

    #[test]
    fn parses_like_containerd() {
        assert_eq!(parsed("linux/amd64"), "linux/amd64");
        assert_eq!(parsed("Linux/x86_64"), "linux/amd64");
        assert_eq!(parsed("linux/aarch64"), "linux/arm64");
        assert_eq!(parsed("linux/arm64/v8"), "linux/arm64/v8");
        assert_eq!(parsed("linux/aarch64/8"), "linux/arm64/v8");
        assert_eq!(parsed("linux/arm"), "linux/arm");
        assert_eq!(parsed("linux/arm/7"), "linux/arm/v7");
        assert_eq!(parsed("linux/arm/v6"), "linux/arm/v6");
        assert_eq!(parsed("linux/armhf"), "linux/arm");
        assert_eq!(parsed("linux/armel"), "linux/arm/v6");
        assert_eq!(parsed("linux/i386"), "linux/386");
        assert_eq!(parsed("linux/ppc64le"), "linux/ppc64le");
        assert_eq!(parsed("macos/arm64"), "darwin/arm64");
        for bad in ["linux", "", "linux/", "/amd64", "linux/amd64/v1/x", "linux/am d64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Platform::parse("linux/a*").unwrap_err().to_string(),
            r#"invalid platform "linux/a*": "a*" may only hold letters, digits, '_', '.' and '-'"#
        );
    }

    #[test]
    fn normalized_platforms_compare() {
        assert_eq!(Platform::parse("linux/arm").unwrap().normalized(), Platform::parse("linux/arm/v7").unwrap());
        assert_eq!(Platform::parse("linux/arm64/v8").unwrap().normalized(), Platform::new("linux", "arm64"));
    }

    #[test]
    fn the_host_platform_round_trips_through_the_parser() {
        let host = host_platform();
        assert_eq!(host.os, "linux");
        assert_eq!(Platform::parse(&host.to_string()).unwrap().normalized(), host.normalized());
        if cfg!(target_arch = "x86_64") {
            assert_eq!(host, Platform::new("linux", "amd64"));
        }
    }

    #[test]
    fn serializes_as_an_oci_platform() {
        let p = Platform { variant: Some("v7".into()), ..Platform::new("linux", "arm") };
        assert_eq!(serde_json::to_string(&p).unwrap(), r#"{"architecture":"arm","os":"linux","variant":"v7"}"#);
        assert_eq!(
            serde_json::to_string(&Platform::new("linux", "amd64")).unwrap(),
            r#"{"architecture":"amd64","os":"linux"}"#
        );
    }
}
