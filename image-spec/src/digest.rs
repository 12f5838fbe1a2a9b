//! `sha256:<hex>` content digests.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A validated `sha256:<64 hex>` digest.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(String);

/// Why a string is not a [`Digest`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest {:?}: only sha256 is supported", crate::shown(digest))]
    Algorithm { digest: String },
    #[error("invalid digest {:?}", crate::shown(digest))]
    Encoded { digest: String },
}

impl Digest {
    pub fn parse(s: &str) -> Result<Self, DigestError> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| DigestError::Algorithm { digest: s.to_string() })?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(DigestError::Encoded { digest: s.to_string() });
        }
        Ok(Digest(s.to_string()))
    }

    /// Digest of in-memory bytes.
    pub fn of(bytes: &[u8]) -> Self {
        use sha2::Digest as _;
        Digest::from_sha256(sha2::Sha256::digest(bytes).into())
    }

    pub fn from_sha256(bytes: [u8; 32]) -> Self {
        Digest(format!("sha256:{}", hex::encode(bytes)))
    }

    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex characters, as `docker images` shows ids.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;
    fn try_from(s: String) -> Result<Self, DigestError> {
        Digest::parse(&s)
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_lowercase_sha256_parses() {
        let d = Digest::of(b"x");
        assert_eq!(Digest::parse(d.as_str()), Ok(d.clone()));
        assert_eq!(d.short().len(), 12);
        assert!(matches!(Digest::parse("sha512:00"), Err(DigestError::Algorithm { .. })));
        assert!(matches!(
            Digest::parse(&d.as_str().to_uppercase().replace("SHA256", "sha256")),
            Err(DigestError::Encoded { .. })
        ));
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<Digest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<Digest>("\"sha256:nope\"").is_err());
    }
}
