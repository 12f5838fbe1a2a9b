//! `-o/--output` specs, as buildx writes them: `type=oci,dest=out.tar,name=app:1`,
//! CSV with `"quoted,fields"`; a bare `DIR` means `type=local,dest=DIR` and `-` means
//! `type=tar,dest=-`. Every mistake is a usage error naming the spec.

use crate::layer::compress::check_level;
use image_spec::Compression;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Into the store under the names (and pushed with `push=true`).
    Image,
    /// `image` + `push=true`.
    Registry,
    /// An OCI image layout: a tarball, or a directory with `tar=false`.
    Oci,
    /// A tarball `docker load` reads that is also an OCI layout.
    Docker,
    /// The final filesystem as a directory.
    Local,
    /// The final filesystem as a tar stream.
    Tar,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dest {
    Stdout,
    Path(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub kind: OutputKind,
    pub dest: Option<Dest>,
    /// `tar=false`: an OCI layout as a directory.
    pub tar: bool,
    pub push: bool,
    /// `name=`: names for image, oci and docker outputs (else the `-t` names).
    pub names: Vec<String>,
    pub compression: Compression,
    /// Whether `compression=`, `compression-level=` or `force-compression=` was given:
    /// a store-only image output then compresses the build's layers; else it keeps
    /// them uncompressed, as the build made them (see [`OutputSpec::keeps_layers`]).
    pub compression_given: bool,
    pub level: Option<i32>,
    /// Recompress base image layers too.
    pub force_compression: bool,
    /// OCI (true) or Docker (false) media types.
    pub oci_media_types: bool,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
    /// `--annotation index:` / `manifest-descriptor:` / `index-descriptor:` (multi-platform
    /// builds: the index, its entries, and the index's entry in an OCI layout).
    pub index_annotations: store::IndexAnnotations,
    pub index_descriptor_annotations: BTreeMap<String, String>,
}

impl OutputSpec {
    pub fn new(kind: OutputKind) -> Self {
        OutputSpec {
            kind,
            dest: None,
            tar: true,
            push: kind == OutputKind::Registry,
            names: Vec::new(),
            compression: Compression::Gzip,
            compression_given: false,
            level: None,
            force_compression: false,
            // BuildKit's docker exporter writes Docker media types, the others OCI's.
            oci_media_types: kind != OutputKind::Docker,
            annotations: BTreeMap::new(),
            index_annotations: Default::default(),
            index_descriptor_annotations: BTreeMap::new(),
        }
    }

    /// Whether the image keeps the layers the build made as they are (uncompressed
    /// tars): an image that only goes into the store, no compression asked. Nothing
    /// reads its compressed bytes there, so none are made; `push` and the archive
    /// outputs compress when they need to.
    pub fn keeps_layers(&self) -> bool {
        self.kind == OutputKind::Image && !self.push && !self.compression_given
    }

    /// Whether this output writes an image (manifest, config, layer blobs).
    pub fn is_image(&self) -> bool {
        matches!(self.kind, OutputKind::Image | OutputKind::Registry | OutputKind::Oci | OutputKind::Docker)
    }
}

/// What is wrong with an `-o` value (the caller makes it a usage error naming the
/// flag and the value).
#[derive(Debug, thiserror::Error)]
pub enum OutputSpecError {
    #[error("empty output")]
    Empty,
    #[error("unterminated quote")]
    UnterminatedQuote,
    #[error("{field:?}: want KEY=VALUE")]
    NotKeyValue { field: String },
    #[error("unknown type {value:?} (want image, registry, oci, docker, local or tar)")]
    UnknownType { value: String },
    #[error("missing type= (image, registry, oci, docker, local or tar)")]
    MissingType,
    #[error("dest= is empty")]
    EmptyDest,
    #[error("{key}={value:?}: want true or false")]
    NotBool { key: String, value: String },
    #[error("unknown compression {value:?} (want gzip, zstd or uncompressed)")]
    UnknownCompression { value: String },
    #[error("compression-level={value:?} is not a number")]
    LevelNotNumber { value: String },
    #[error(transparent)]
    Level(std::io::Error),
    #[error("unknown option {key:?} for type={kind}")]
    UnknownOption { key: String, kind: &'static str },
    /// `what` is `FILE` or `DIR`.
    #[error("type={kind} needs dest={what}")]
    NeedsDest { kind: &'static str, what: &'static str },
    #[error("type={kind} takes no dest= (use type=oci or type=docker for a file)")]
    TakesNoDest { kind: &'static str },
    #[error("type=registry always pushes: drop push=false")]
    RegistryAlwaysPushes,
    #[error("tar=false is for type=oci, not type={kind}")]
    TarFalseNotOci { kind: &'static str },
    #[error("tar=false writes a directory: dest=- is not one")]
    TarFalseToStdout,
    #[error(
        "type={kind} writes a filesystem: compression, oci-mediatypes, name, annotation and push are for image outputs"
    )]
    ImageOnlyOptions { kind: &'static str },
    #[error("push=true is for type=image or type=registry, not type={kind}")]
    PushNotImage { kind: &'static str },
    /// `defaulted`: oci-mediatypes=false was type=docker's default, not asked for.
    #[error(
        "compression=zstd conflicts with oci-mediatypes=false{}: zstd layers need OCI media types, add oci-mediatypes=true",
        if *defaulted { " (type=docker's default)" } else { "" }
    )]
    ZstdNeedsOci { defaulted: bool },
    #[error("manifest annotations need OCI media types: drop oci-mediatypes=false")]
    AnnotationsNeedOci,
}

/// Splits on commas outside double quotes (buildx's CSV), unquoting.
fn split_csv(s: &str) -> Result<Vec<String>, OutputSpecError> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    if quoted {
        return Err(OutputSpecError::UnterminatedQuote);
    }
    fields.push(current);
    Ok(fields)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, OutputSpecError> {
    match value {
        "true" | "1" | "" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(OutputSpecError::NotBool { key: key.to_string(), value: value.to_string() }),
    }
}

/// Parses one `-o` value. The error says what is wrong (the caller makes it a usage
/// error naming the flag).
pub fn parse_output(spec: &str) -> Result<OutputSpec, OutputSpecError> {
    if spec == "-" {
        let mut out = OutputSpec::new(OutputKind::Tar);
        out.dest = Some(Dest::Stdout);
        return Ok(out);
    }
    if !spec.contains('=') {
        if spec.is_empty() {
            return Err(OutputSpecError::Empty);
        }
        let mut out = OutputSpec::new(OutputKind::Local);
        out.dest = Some(Dest::Path(spec.into()));
        return Ok(out);
    }
    let mut pairs = Vec::new();
    for field in split_csv(spec)? {
        let (k, v) = field.split_once('=').ok_or_else(|| OutputSpecError::NotKeyValue { field: field.clone() })?;
        pairs.push((k.trim().to_string(), v.to_string()));
    }
    let kind = match pairs.iter().find(|(k, _)| k == "type").map(|(_, v)| v.as_str()) {
        Some("image") => OutputKind::Image,
        Some("registry") => OutputKind::Registry,
        Some("oci") => OutputKind::Oci,
        Some("docker") => OutputKind::Docker,
        Some("local") => OutputKind::Local,
        Some("tar") => OutputKind::Tar,
        Some(other) => return Err(OutputSpecError::UnknownType { value: other.to_string() }),
        None => return Err(OutputSpecError::MissingType),
    };
    let mut out = OutputSpec::new(kind);
    let mut compression_set = false;
    let mut media_types_set = false;
    for (key, value) in pairs {
        match key.as_str() {
            "type" => {}
            "dest" => {
                if value.is_empty() {
                    return Err(OutputSpecError::EmptyDest);
                }
                out.dest = Some(if value == "-" { Dest::Stdout } else { Dest::Path(value.into()) });
            }
            "name" => out.names.extend(value.split(',').filter(|n| !n.is_empty()).map(String::from)),
            "push" => out.push = parse_bool(&key, &value)?,
            "tar" => out.tar = parse_bool(&key, &value)?,
            "compression" => {
                compression_set = true;
                out.compression = match value.as_str() {
                    "gzip" => Compression::Gzip,
                    "zstd" => Compression::Zstd,
                    "uncompressed" => Compression::Uncompressed,
                    other => return Err(OutputSpecError::UnknownCompression { value: other.to_string() }),
                };
            }
            "compression-level" => {
                out.level = Some(value.parse().map_err(|_| OutputSpecError::LevelNotNumber { value: value.clone() })?);
            }
            "force-compression" => out.force_compression = parse_bool(&key, &value)?,
            "oci-mediatypes" => {
                media_types_set = true;
                out.oci_media_types = parse_bool(&key, &value)?;
            }
            _ => {
                let annotation = key.strip_prefix("annotation.").or_else(|| key.strip_prefix("annotation-manifest."));
                match annotation {
                    Some(name) if !name.is_empty() => {
                        out.annotations.insert(name.to_string(), value);
                    }
                    _ => return Err(OutputSpecError::UnknownOption { key, kind: kind_name(kind) }),
                }
            }
        }
    }
    validate(&mut out, compression_set, media_types_set)?;
    out.compression_given = compression_set || out.level.is_some() || out.force_compression;
    Ok(out)
}

fn kind_name(kind: OutputKind) -> &'static str {
    match kind {
        OutputKind::Image => "image",
        OutputKind::Registry => "registry",
        OutputKind::Oci => "oci",
        OutputKind::Docker => "docker",
        OutputKind::Local => "local",
        OutputKind::Tar => "tar",
    }
}

fn validate(out: &mut OutputSpec, compression_set: bool, media_types_set: bool) -> Result<(), OutputSpecError> {
    let name = kind_name(out.kind);
    match out.kind {
        OutputKind::Oci | OutputKind::Docker | OutputKind::Local | OutputKind::Tar if out.dest.is_none() => {
            let what = if out.kind == OutputKind::Local { "DIR" } else { "FILE" };
            return Err(OutputSpecError::NeedsDest { kind: name, what });
        }
        OutputKind::Image | OutputKind::Registry if out.dest.is_some() => {
            return Err(OutputSpecError::TakesNoDest { kind: name });
        }
        OutputKind::Registry if !out.push => return Err(OutputSpecError::RegistryAlwaysPushes),
        _ => {}
    }
    if out.kind == OutputKind::Local && out.dest == Some(Dest::Stdout) {
        // buildx streams a tar when the local output goes to stdout.
        out.kind = OutputKind::Tar;
    }
    if !out.tar {
        if out.kind != OutputKind::Oci {
            return Err(OutputSpecError::TarFalseNotOci { kind: name });
        }
        if out.dest == Some(Dest::Stdout) {
            return Err(OutputSpecError::TarFalseToStdout);
        }
    }
    if !out.is_image() {
        let image_only = compression_set
            || out.level.is_some()
            || out.force_compression
            || media_types_set
            || !out.names.is_empty()
            || !out.annotations.is_empty()
            || out.push;
        if image_only {
            return Err(OutputSpecError::ImageOnlyOptions { kind: name });
        }
    }
    if out.push && !matches!(out.kind, OutputKind::Image | OutputKind::Registry) {
        return Err(OutputSpecError::PushNotImage { kind: name });
    }
    if out.compression == Compression::Zstd && !out.oci_media_types {
        // zstd layers exist only as OCI media types. BuildKit used to turn OCI types on
        // quietly; since it made them its default it refuses the conflict, and so do we.
        return Err(OutputSpecError::ZstdNeedsOci { defaulted: !media_types_set });
    }
    if !out.annotations.is_empty() && !out.oci_media_types {
        return Err(OutputSpecError::AnnotationsNeedOci);
    }
    check_level(out.compression, out.level).map_err(OutputSpecError::Level)?;
    Ok(())
}

/// `--annotation [TYPE:]KEY=VALUE` on every image output, as buildx: no type means
/// the manifest; `index:`, `manifest-descriptor:` (the index's entries) and
/// `index-descriptor:` (the index's entry in an OCI layout) need a multi-platform
/// build — a single-platform image has no index (BuildKit refuses them too).
pub fn add_annotations(specs: &[String], outputs: &mut [OutputSpec], multi_platform: bool) -> Result<(), String> {
    for spec in specs {
        let (key, value) =
            spec.split_once('=').ok_or_else(|| format!("invalid --annotation {spec:?}: want KEY=VALUE"))?;
        let (kind, key) = match key.split_once(':') {
            Some((kind, key)) if !kind.contains('.') && !kind.contains('/') => (kind, key),
            _ => ("manifest", key),
        };
        if key.is_empty() {
            return Err(format!("invalid --annotation {spec:?}: empty key"));
        }
        match kind {
            "manifest" => {}
            "index" | "index-descriptor" | "manifest-descriptor" if !multi_platform => {
                return Err(format!(
                    "--annotation {spec:?}: {kind} annotations need a multi-platform build (--platform A,B): a single-platform image has no index"
                ));
            }
            "index" | "index-descriptor" | "manifest-descriptor" => {}
            other => {
                return Err(format!(
                    "invalid --annotation {spec:?}: unknown type {other:?} (want manifest, index, manifest-descriptor or index-descriptor)"
                ));
            }
        }
        for output in outputs.iter_mut().filter(|o| o.is_image()) {
            let (key, value) = (key.to_string(), value.to_string());
            match kind {
                "index" => output.index_annotations.index.insert(key, value),
                "manifest-descriptor" => output.index_annotations.descriptors.insert(key, value),
                "index-descriptor" => output.index_descriptor_annotations.insert(key, value),
                _ => output.annotations.insert(key, value),
            };
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type_and_option() {
        let o = parse_output("type=oci,dest=out.tar,name=app:1,compression=zstd,compression-level=19,force-compression=true,annotation.org.opencontainers.image.title=hello").unwrap();
        assert_eq!(o.kind, OutputKind::Oci);
        assert_eq!(o.dest, Some(Dest::Path("out.tar".into())));
        assert_eq!(o.names, ["app:1"]);
        assert_eq!(
            (o.compression, o.level, o.force_compression, o.oci_media_types),
            (Compression::Zstd, Some(19), true, true)
        );
        assert_eq!(o.annotations["org.opencontainers.image.title"], "hello");

        let o = parse_output(r#"type=image,"name=a:1,b:2",push=true"#).unwrap();
        assert_eq!((o.kind, o.push), (OutputKind::Image, true));
        assert_eq!(o.names, ["a:1", "b:2"]);
        assert!(parse_output("type=registry").unwrap().push);
        assert!(!parse_output("type=docker,dest=x").unwrap().oci_media_types);
        assert!(!parse_output("type=oci,dest=d,tar=false").unwrap().tar);
        assert!(parse_output("type=docker,dest=x,compression=zstd,oci-mediatypes=true").unwrap().oci_media_types);
    }

    #[test]
    fn shorthands_follow_buildx() {
        let o = parse_output("out/dir").unwrap();
        assert_eq!((o.kind, o.dest), (OutputKind::Local, Some(Dest::Path("out/dir".into()))));
        assert_eq!(parse_output("-").unwrap().kind, OutputKind::Tar);
        let o = parse_output("type=local,dest=-").unwrap();
        assert_eq!((o.kind, o.dest), (OutputKind::Tar, Some(Dest::Stdout)));
    }

    #[test]
    fn mistakes_are_explained() {
        let err = |s: &str| parse_output(s).unwrap_err().to_string();
        assert!(err("type=zip").contains("unknown type \"zip\""));
        assert!(matches!(parse_output("type=zip"), Err(OutputSpecError::UnknownType { value }) if value == "zip"));
        assert!(err("dest=x").contains("missing type="));
        assert!(err("type=oci").contains("needs dest=FILE"));
        assert!(err("type=local").contains("needs dest=DIR"));
        assert!(err("type=oci,dest=x,compression=lz4").contains("unknown compression"));
        assert!(err("type=oci,dest=x,compression=gzip,compression-level=99").contains("invalid compression level"));
        assert!(err("type=oci,dest=x,colour=red").contains("unknown option \"colour\""));
        assert!(
            err("type=docker,dest=x,compression=zstd,oci-mediatypes=false").contains("conflicts with oci-mediatypes")
        );
        // As buildx: type=docker writes Docker media types, which have no zstd.
        assert!(err("type=docker,dest=x,compression=zstd").contains("oci-mediatypes=false (type=docker's default)"));
        assert!(err("type=image,compression=zstd,oci-mediatypes=false").contains("add oci-mediatypes=true"));
        assert!(err("type=local,dest=x,compression=zstd").contains("writes a filesystem"));
        assert!(err("type=tar,dest=-,tar=false").contains("tar=false is for type=oci"));
        assert!(err("type=oci,dest=-,tar=false").contains("directory"));
        assert!(err("type=image,dest=x").contains("takes no dest="));
        assert!(err(r#"type=image,"name=a"#).contains("unterminated quote"));
        assert!(err("type=docker,dest=x,annotation.a=b").contains("annotations need OCI"));
    }

    #[test]
    fn only_a_store_image_without_a_compression_asked_keeps_the_built_layers() {
        let keeps = |spec: &str| parse_output(spec).unwrap().keeps_layers();
        assert!(keeps("type=image"));
        assert!(keeps("type=image,name=app:1"));
        assert!(OutputSpec::new(OutputKind::Image).keeps_layers());
        for compressing in [
            "type=image,compression=gzip",
            "type=image,compression-level=3",
            "type=image,force-compression=true",
            "type=image,push=true",
            "type=registry",
            "type=oci,dest=x",
            "type=docker,dest=x",
        ] {
            assert!(!keeps(compressing), "{compressing}");
        }
        assert!(!OutputSpec::new(OutputKind::Registry).keeps_layers());
    }
}
