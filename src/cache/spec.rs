//! `--cache-to` / `--cache-from` specs: `type=local,dest=DIR,mode=max`,
//! `type=registry,ref=REF`, `type=inline`, or a bare reference (a registry cache).

use anyhow::{Result, anyhow, bail};
use image_spec::Compression;
use std::path::PathBuf;

/// Which records an export holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The records of the layers the final image is made of.
    #[default]
    Min,
    /// Every cacheable step of the build, intermediate stages included.
    Max,
}

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An OCI layout in a directory.
    Local(PathBuf),
    /// An image manifest in a registry repository.
    Registry(String),
    /// The cache records travel in the image config.
    Inline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSpec {
    pub location: Location,
    pub mode: Mode,
    /// Also export (or restore) `RUN --mount=type=cache` directories.
    pub mounts: bool,
    /// An export that fails is a warning, not a failed build.
    pub ignore_error: bool,
    /// How exported cache mounts are compressed (layers are exported as built).
    pub compression: Compression,
    /// The spec as given, to name it in messages.
    pub text: String,
}

impl CacheSpec {
    /// Parses a `--cache-to` (`export`) or `--cache-from` spec.
    pub fn parse(spec: &str, export: bool) -> Result<CacheSpec> {
        let flag = if export { "--cache-to" } else { "--cache-from" };
        if !spec.contains('=') {
            if spec.is_empty() {
                bail!("empty {flag}");
            }
            return Ok(CacheSpec {
                location: Location::Registry(spec.to_string()),
                mode: Mode::Min,
                mounts: false,
                ignore_error: false,
                compression: Compression::Gzip,
                text: spec.to_string(),
            });
        }
        let mut kind = None;
        let (mut dest, mut src, mut reference) = (None, None, None);
        let mut mode = Mode::Min;
        let mut mounts = false;
        let mut ignore_error = false;
        let mut compression = Compression::Gzip;
        for field in spec.split(',') {
            let (k, v) =
                field.split_once('=').ok_or_else(|| anyhow!("invalid {flag} {spec:?}: {field:?} is not KEY=VALUE"))?;
            match k {
                "type" => kind = Some(v.to_string()),
                "dest" => dest = Some(PathBuf::from(v)),
                "src" => src = Some(PathBuf::from(v)),
                "ref" => reference = Some(v.to_string()),
                "mode" => {
                    mode = match v {
                        "min" => Mode::Min,
                        "max" => Mode::Max,
                        _ => bail!("invalid {flag} {spec:?}: mode must be min or max"),
                    }
                }
                "mounts" => mounts = parse_bool(flag, spec, v)?,
                "ignore-error" => ignore_error = parse_bool(flag, spec, v)?,
                "compression" => {
                    compression = match v {
                        "gzip" => Compression::Gzip,
                        "zstd" => Compression::Zstd,
                        "uncompressed" => Compression::Uncompressed,
                        _ => bail!("invalid {flag} {spec:?}: compression must be gzip, zstd or uncompressed"),
                    }
                }
                // Accepted for compatibility with buildx; the format is always the same.
                "compression-level" | "force-compression" | "oci-mediatypes" | "image-manifest" => {}
                _ => bail!("invalid {flag} {spec:?}: unknown option {k:?}"),
            }
        }
        let location = match kind.as_deref().unwrap_or("registry") {
            "local" => {
                let dir = if export { dest } else { src };
                let key = if export { "dest" } else { "src" };
                Location::Local(dir.ok_or_else(|| anyhow!("invalid {flag} {spec:?}: type=local needs {key}=DIR"))?)
            }
            "registry" => Location::Registry(
                reference.ok_or_else(|| anyhow!("invalid {flag} {spec:?}: type=registry needs ref=REFERENCE"))?,
            ),
            "inline" => Location::Inline,
            other => bail!("invalid {flag} {spec:?}: unknown type {other:?} (want local, registry or inline)"),
        };
        Ok(CacheSpec { location, mode, mounts, ignore_error, compression, text: spec.to_string() })
    }

    /// How the spec is named in messages.
    pub fn describe(&self) -> String {
        self.text.clone()
    }
}

fn parse_bool(flag: &str, spec: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("invalid {flag} {spec:?}: {v:?} is not true or false"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildx_forms() {
        let to = CacheSpec::parse("type=local,dest=/c,mode=max", true).unwrap();
        assert_eq!(to.location, Location::Local("/c".into()));
        assert_eq!(to.mode, Mode::Max);
        let from = CacheSpec::parse("type=local,src=/c", false).unwrap();
        assert_eq!((from.location, from.mode), (Location::Local("/c".into()), Mode::Min));
        let bare = CacheSpec::parse("localhost:5000/app:cache", false).unwrap();
        assert_eq!(bare.location, Location::Registry("localhost:5000/app:cache".into()));
        let reg = CacheSpec::parse("type=registry,ref=r/x:c,mode=max,mounts=true,compression=zstd", true).unwrap();
        assert!(reg.mounts && reg.mode == Mode::Max && reg.compression == Compression::Zstd);
        assert_eq!(CacheSpec::parse("type=inline", true).unwrap().location, Location::Inline);
    }

    #[test]
    fn rejects_what_it_does_not_know() {
        for (spec, export) in [
            ("type=local,src=/c", true),
            ("type=local,dest=/c", false),
            ("type=s3,bucket=x", true),
            ("type=local,dest=/c,mode=all", true),
            ("type=local,dest=/c,color=red", true),
            ("type=local,dest=/c,compression=lz4", true),
            ("type=registry", true),
            ("", false),
        ] {
            assert!(CacheSpec::parse(spec, export).is_err(), "{spec}");
        }
    }
}
