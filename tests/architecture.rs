//! The crate map, checked: the arrows between the workspace's crates are exactly the
//! ones docs/architecture.md draws (so no crate reaches past its layer and there is
//! no cycle), only the executor links `nix`/`libc`, and every shared dependency the
//! root `Cargo.toml` declares is used by some crate (`cargo machete` checks each
//! crate's own list; see scripts/test.sh).

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

/// `crate → what it may depend on`, the whole of it (docs/architecture.md).
const ARROWS: &[(&str, &[&str])] = &[
    ("builder", &["frontend", "solver", "executor", "store", "registry", "image-spec"]),
    ("frontend", &["solver", "image-spec"]),
    ("store", &["image-spec"]),
    ("registry", &["image-spec"]),
    ("solver", &[]),
    ("executor", &[]),
    ("image-spec", &[]),
];

/// Crates that may use `unsafe`, `nix` or `libc`.
const SYSTEM_CRATES: &[&str] = &["executor"];

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo metadata");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// Every workspace package with its dependencies: (name, kind) pairs, kind being
/// `normal`, `dev` or `build`.
fn packages(metadata: &Value) -> BTreeMap<String, Vec<(String, String)>> {
    let members: BTreeSet<&str> =
        metadata["workspace_members"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    let mut out = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        if !members.contains(package["id"].as_str().unwrap()) {
            continue;
        }
        let deps = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| (d["name"].as_str().unwrap().to_string(), d["kind"].as_str().unwrap_or("normal").to_string()))
            .collect();
        out.insert(package["name"].as_str().unwrap().to_string(), deps);
    }
    out
}

#[test]
fn workspace_crates_depend_only_along_the_drawn_arrows() {
    let packages = packages(&metadata());
    let names: BTreeSet<&str> = packages.keys().map(String::as_str).collect();
    let drawn: BTreeSet<&str> = ARROWS.iter().map(|(from, _)| *from).collect();
    assert_eq!(names, drawn, "every workspace crate has its place on the map, and only those");
    let allowed: BTreeMap<&str, BTreeSet<&str>> =
        ARROWS.iter().map(|(from, to)| (*from, to.iter().copied().collect())).collect();
    for (name, deps) in &packages {
        let normal: BTreeSet<&str> = deps
            .iter()
            .filter(|(dep, kind)| kind == "normal" && names.contains(dep.as_str()))
            .map(|(dep, _)| dep.as_str())
            .collect();
        assert_eq!(normal, allowed[name.as_str()], "the workspace crates `{name}` depends on");
        // Tests may not reach past the layer either.
        for (dep, kind) in deps.iter().filter(|(dep, kind)| kind != "normal" && names.contains(dep.as_str())) {
            assert!(allowed[name.as_str()].contains(dep.as_str()), "`{name}` has a {kind}-dependency on `{dep}`");
        }
    }
}

#[test]
fn only_the_executor_links_nix_or_libc() {
    let offenders: Vec<String> = packages(&metadata())
        .into_iter()
        .filter(|(name, _)| !SYSTEM_CRATES.contains(&name.as_str()))
        .flat_map(|(name, deps)| {
            deps.into_iter()
                .filter(|(dep, _)| dep == "nix" || dep == "libc")
                .map(move |(dep, _)| format!("{name} → {dep}"))
        })
        .collect();
    assert!(offenders.is_empty(), "only {SYSTEM_CRATES:?} may link nix or libc: {offenders:?}");
}

#[test]
fn every_shared_dependency_is_used() {
    let root = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let table = root.split("[workspace.dependencies]").nth(1).expect("a [workspace.dependencies] table");
    let table = table.split("\n[").next().unwrap();
    let declared: Vec<&str> = table
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(name, _)| name.trim()))
        .collect();
    assert!(declared.contains(&"serde"), "parsed the table: {declared:?}");
    let used: BTreeSet<String> = packages(&metadata()).into_values().flatten().map(|(dep, _)| dep).collect();
    let unused: Vec<&&str> = declared.iter().filter(|d| !used.contains(**d)).collect();
    assert!(unused.is_empty(), "declared in [workspace.dependencies] but used by no crate: {unused:?}");
}
