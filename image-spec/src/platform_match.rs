//! Which platforms of an index serve a wanted one, best first — containerd's
//! `platforms.Only` matcher, strict where a fallback depends on the CPU.
//!
//! `linux/arm/v7` accepts v7, then v6, then v5 (an ARMv7 core runs older code);
//! `linux/amd64/v3` accepts v3, v2, then plain amd64 (v1, written without a variant).
//! `arm64` does not fall back to 32-bit `arm` and `amd64` not to `386`: not every
//! such CPU runs them (containerd's `OnlyStrict` leaves them out for that reason),
//! and an image built on the wrong one would be labelled with the wrong platform.

use crate::{Descriptor, Platform};

/// The platforms `want` accepts, best first, each as [`Platform::normalized`] puts it.
pub fn compatible_platforms(want: &Platform) -> Vec<Platform> {
    let want = want.normalized();
    let with_variant = |variant: Option<String>| Platform { variant, ..want.clone() };
    match want.architecture.as_str() {
        "arm" => match level(want.variant.as_deref()) {
            Some(n) if n >= 5 => (5..=n).rev().map(|v| with_variant(Some(format!("v{v}")))).collect(),
            _ => vec![want.clone()],
        },
        "amd64" => match level(want.variant.as_deref()) {
            // v1 is written without a variant.
            Some(n) if n >= 2 => (1..=n).rev().map(|v| with_variant((v > 1).then(|| format!("v{v}")))).collect(),
            _ => vec![want.clone()],
        },
        _ => vec![want.clone()],
    }
}

/// `v7` → 7.
fn level(variant: Option<&str>) -> Option<u32> {
    variant?.strip_prefix('v')?.parse().ok()
}

/// Whether an image of `have` may be used where `want` is asked for.
pub fn platform_matches(want: &Platform, have: &Platform) -> bool {
    compatible_platforms(want).contains(&have.normalized())
}

/// The entry of `manifests` (an index's) that serves `want` best, if any: the
/// first in the order of [`compatible_platforms`], then in index order. Entries
/// without a platform never match.
pub fn select_manifest<'d>(manifests: &'d [Descriptor], want: &Platform) -> Option<&'d Descriptor> {
    compatible_platforms(want).iter().find_map(|candidate| {
        manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| &p.normalized() == candidate))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;

    fn p(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }

    fn listed(want: &str) -> Vec<String> {
        compatible_platforms(&p(want)).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn arm_and_amd64_fall_back_to_older_levels_in_order() {
        assert_eq!(listed("linux/arm/v7"), ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]);
        assert_eq!(listed("linux/arm"), ["linux/arm/v7", "linux/arm/v6", "linux/arm/v5"]);
        assert_eq!(listed("linux/arm/v6"), ["linux/arm/v6", "linux/arm/v5"]);
        assert_eq!(listed("linux/amd64/v3"), ["linux/amd64/v3", "linux/amd64/v2", "linux/amd64"]);
        assert_eq!(listed("linux/amd64"), ["linux/amd64"]);
        assert_eq!(listed("linux/arm64/v8"), ["linux/arm64"]);
        assert_eq!(listed("linux/riscv64"), ["linux/riscv64"]);
    }

    #[test]
    fn matches_normalised_platforms() {
        assert!(platform_matches(&p("linux/arm64"), &p("linux/arm64/v8")));
        assert!(platform_matches(&p("linux/arm/v7"), &p("linux/arm/v6")));
        assert!(!platform_matches(&p("linux/arm/v6"), &p("linux/arm/v7")));
        assert!(!platform_matches(&p("linux/arm64"), &p("linux/arm/v7")));
        assert!(!platform_matches(&p("linux/amd64"), &p("linux/amd64/v2")));
        assert!(!platform_matches(&p("linux/amd64"), &p("windows/amd64")));
    }

    #[test]
    fn selects_the_best_entry_of_an_index() {
        let entry = |platform: &str, n: u8| Descriptor {
            media_type: crate::MEDIA_TYPE_OCI_MANIFEST.into(),
            digest: Digest::of(&[n]),
            size: 1,
            annotations: None,
            platform: Some(p(platform)),
        };
        let index =
            [entry("linux/amd64", 1), entry("linux/arm/v5", 2), entry("linux/arm/v6", 3), entry("linux/amd64/v2", 4)];
        let pick = |want: &str| select_manifest(&index, &p(want)).map(|d| d.digest.clone());
        assert_eq!(pick("linux/arm/v7"), Some(Digest::of(&[3])));
        assert_eq!(pick("linux/amd64/v3"), Some(Digest::of(&[4])));
        assert_eq!(pick("linux/amd64"), Some(Digest::of(&[1])));
        assert_eq!(pick("linux/arm64"), None);
    }
}
