//! Image references: `[host[:port]/]path[:tag][@sha256:...]`.

use crate::{Digest, DigestError, shown};
use std::fmt;

/// Why a string is not a [`Reference`]. Worded as Docker words them; the text
/// echoed is cut ([`crate::shown`]) since a name may come from a hostile file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format: empty")]
    Empty,
    #[error("invalid reference {:?}", shown(reference))]
    Digest {
        reference: String,
        #[source]
        source: DigestError,
    },
    #[error("invalid reference format: {:?}: bad tag {:?}", shown(reference), shown(tag))]
    Tag { reference: String, tag: String },
    #[error("invalid reference format: repository name ({}) must be lowercase", shown(repository))]
    Uppercase { repository: String },
    #[error(
        "invalid reference format: repository name ({}) must not be more than {MAX_NAME_LENGTH} characters",
        shown(name)
    )]
    TooLong { name: String },
    #[error("invalid reference format: {:?}", shown(reference))]
    Format { reference: String },
}

/// The longest repository name (host and path) Docker accepts.
pub const MAX_NAME_LENGTH: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, `docker.io` when none was given.
    pub registry: String,
    /// Repository path, `library/NAME` for one-part Docker Hub names.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises a reference the way Docker does (`busybox` →
    /// `docker.io/library/busybox:latest`).
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((r, d)) => {
                let digest =
                    Digest::parse(d).map_err(|source| ReferenceError::Digest { reference: s.to_string(), source })?;
                (r, Some(digest))
            }
            None => (s, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
                && !t.starts_with(['.', '-']);
            if !ok {
                return Err(ReferenceError::Tag { reference: s.to_string(), tag: t.clone() });
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_string(), path.to_string())
            }
            _ => ("docker.io".to_string(), name.to_string()),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let valid_component = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.as_bytes()[0].is_ascii_alphanumeric()
        };
        if !repository.split('/').all(valid_component) {
            // As Docker: a name that only its capitals make invalid says so.
            if repository.split('/').all(|c| valid_component(&c.to_ascii_lowercase())) {
                return Err(ReferenceError::Uppercase { repository });
            }
            return Err(ReferenceError::Format { reference: s.to_string() });
        }
        if !valid_host(&registry) {
            return Err(ReferenceError::Format { reference: s.to_string() });
        }
        let full = if registry == "docker.io" { repository.len() } else { registry.len() + 1 + repository.len() };
        if full > MAX_NAME_LENGTH {
            return Err(ReferenceError::TooLong { name: format!("{registry}/{repository}") });
        }
        let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
        Ok(Reference { registry, repository, tag, digest })
    }

    /// `host/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The short form Docker shows (`busybox:latest`, `localhost:5000/app:1`).
    pub fn familiar(&self) -> String {
        let name = if self.registry == "docker.io" {
            self.repository.strip_prefix("library/").unwrap_or(&self.repository).to_string()
        } else {
            self.name()
        };
        let mut s = name;
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(d.as_str());
        }
        s
    }
}

/// A registry host as Docker's grammar has it: dot-separated labels of letters,
/// digits and `-` (or a bracketed IPv6 address), and an optional numeric port.
fn valid_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(':') && !p.contains(']') => (n, Some(p)),
        _ => (host, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if let Some(inner) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        return !inner.is_empty() && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
    }
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_like_docker() {
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert_eq!(r.familiar(), "busybox:latest");
        let r = Reference::parse("localhost:5000/a/b:1.0").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.tag.as_deref()),
            ("localhost:5000", "a/b", Some("1.0"))
        );
        assert!(Reference::parse("Upper").is_err());
        assert!(Reference::parse("a:b:c").is_err());
    }

    #[test]
    fn bad_names_are_refused_with_docker_words() {
        let error = |s: &str| Reference::parse(s).unwrap_err().to_string();
        assert_eq!(error("Bad:1"), "invalid reference format: repository name (library/Bad) must be lowercase");
        assert_eq!(error("bad::1"), r#"invalid reference format: "bad::1""#);
        assert_eq!(error("a b"), r#"invalid reference format: "a b""#);
        assert_eq!(error("ex_ample.com:5000/app"), r#"invalid reference format: "ex_ample.com:5000/app""#);
        assert!(Reference::parse("[::1]:5000/app").is_ok());
        assert!(Reference::parse("127.0.0.1:5000/app:1").is_ok());
    }

    #[test]
    fn names_longer_than_docker_allows_are_refused_and_echoed_cut() {
        let ok = "a".repeat(MAX_NAME_LENGTH - "library/".len());
        assert!(Reference::parse(&ok).is_ok());
        let long = "a".repeat(5000);
        let message = Reference::parse(&long).unwrap_err().to_string();
        assert!(message.contains("must not be more than 255 characters"), "{message}");
        assert!(message.len() < 400, "{}", message.len());
        let message = Reference::parse(&format!("{}:1", "B".repeat(1_000_000))).unwrap_err().to_string();
        assert!(message.len() < 400, "{}", message.len());
    }
}
