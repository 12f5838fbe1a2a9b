//! Automatic GC after builds, as BuildKit collects its cache after each build: when
//! the build data (blobs, snapshots, cache records, cache mounts — never images or
//! volumes) exceeds a budget, the least recently used cache goes until it fits.
//!
//! The budget: `BUILDER_GC_KEEP_STORAGE` (a size: `5GB`, `512MiB`), else 10% of the
//! filesystem that holds the store (BuildKit's default cap). `BUILDER_GC=false` turns it
//! off. Measuring the store walks its snapshots, so a build measures at most once per
//! `BUILDER_GC_INTERVAL` seconds (default 60, `0` after every build); the time of the
//! last look is the mtime of `<store>/gc-checked`. The prune runs beside other builds
//! (`store/src/lease.rs`), sparing what they use, and never fails the build.

use crate::cache::StoreExt as _;
use anyhow::{Context as _, Result};
use std::path::Path;
use std::time::{Duration, SystemTime};
use store::{PruneOptions, Store};

/// The build data budget and where it came from (for messages and `builder du`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
    pub source: String,
}

/// The budget for `store`, `None` when automatic GC is off.
pub fn budget(store: &Store) -> Result<Option<Budget>> {
    budget_from(store.root(), |name| std::env::var(name).ok())
}

fn budget_from(root: &Path, var: impl Fn(&str) -> Option<String>) -> Result<Option<Budget>> {
    if let Some(on) = var("BUILDER_GC") {
        match on.trim().to_ascii_lowercase().as_str() {
            "0" | "false" | "no" | "off" => return Ok(None),
            "1" | "true" | "yes" | "on" | "" => {}
            other => anyhow::bail!("BUILDER_GC={other:?}: want true or false"),
        }
    }
    if let Some(size) = var("BUILDER_GC_KEEP_STORAGE") {
        let bytes = crate::units::parse_size(&size).context("BUILDER_GC_KEEP_STORAGE")?;
        return Ok(Some(Budget { bytes, source: "BUILDER_GC_KEEP_STORAGE".to_string() }));
    }
    let fs = rustix::fs::statvfs(root).with_context(|| format!("statfs {}", root.display()))?;
    let bytes = fs.f_blocks.saturating_mul(fs.f_frsize) / 10;
    Ok(Some(Budget { bytes, source: format!("10% of the filesystem of {}", root.display()) }))
}

fn interval() -> Duration {
    let seconds = std::env::var("BUILDER_GC_INTERVAL").ok().and_then(|s| s.trim().parse::<u64>().ok());
    Duration::from_secs(seconds.unwrap_or(60))
}

/// Whether the store at `root` was measured less than the interval ago.
fn measured_lately(root: &Path) -> bool {
    let last = std::fs::metadata(root.join("gc-checked")).and_then(|m| m.modified()).ok();
    last.is_some_and(|t| SystemTime::now().duration_since(t).is_ok_and(|age| age < interval()))
}

/// Whether [`after_build`] would measure the store at `root` now (it walks the new
/// snapshots, which an ordinary user can do only in builder's user namespace): GC on,
/// and not measured lately. A budget that cannot be read counts as due.
pub fn due(root: &Path) -> bool {
    let on = budget_from(root, |name| std::env::var(name).ok()).map_or(true, |budget| budget.is_some());
    on && !measured_lately(root)
}

/// After a build: prunes the least recently used cache if the build data is over the
/// budget. Returns what to tell the user, if anything was removed.
pub fn after_build(store: &Store) -> Result<Option<String>> {
    let Some(budget) = budget(store)? else { return Ok(None) };
    let mark = store.root().join("gc-checked");
    if measured_lately(store.root()) {
        return Ok(None);
    }
    std::fs::write(&mark, b"").with_context(|| format!("writing {}", mark.display()))?;
    let used = store.disk_usage()?.build_total();
    if used <= budget.bytes {
        return Ok(None);
    }
    let report = store.prune(&PruneOptions { keep_storage: Some(budget.bytes), ..Default::default() })?;
    if report.reclaimed == 0 {
        return Ok(None);
    }
    let human = crate::units::human_size;
    Ok(Some(format!(
        "automatic GC: build data {} was over {} ({}): removed {} cache records, reclaimed {}",
        human(used),
        human(budget.bytes),
        budget.source,
        report.records,
        human(report.reclaimed)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_comes_from_the_environment_or_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let none = |_: &str| None;
        let disk = budget_from(dir.path(), none).unwrap().unwrap();
        assert!(disk.bytes > 0 && disk.source.starts_with("10% of the filesystem"), "{disk:?}");
        let off = |name: &str| (name == "BUILDER_GC").then(|| "false".to_string());
        assert_eq!(budget_from(dir.path(), off).unwrap(), None);
        let set = |name: &str| (name == "BUILDER_GC_KEEP_STORAGE").then(|| "2MB".to_string());
        assert_eq!(budget_from(dir.path(), set).unwrap().unwrap().bytes, 2_000_000);
        let bad = |name: &str| (name == "BUILDER_GC").then(|| "maybe".to_string());
        assert!(budget_from(dir.path(), bad).is_err());
    }

    #[test]
    fn a_store_measured_lately_is_not_due() {
        let dir = tempfile::tempdir().unwrap();
        // Never measured (unless the environment turns GC off).
        let off = std::env::var("BUILDER_GC").is_ok_and(|v| ["0", "false", "no", "off"].contains(&v.trim()));
        assert_eq!(due(dir.path()), !off);
        std::fs::write(dir.path().join("gc-checked"), b"").unwrap();
        assert!(!measured_lately(&dir.path().join("elsewhere")));
        if std::env::var("BUILDER_GC_INTERVAL").is_err() {
            assert!(measured_lately(dir.path()) && !due(dir.path()));
        }
    }
}
