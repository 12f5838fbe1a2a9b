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

/// The top-level modules of a crate's `src/` and, for each, the others it names as
/// `crate::module` outside its `#[cfg(test)]` code.
fn module_uses(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let top = |rel: &Path| -> String {
        let first = rel.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        first.strip_suffix(".rs").unwrap_or(&first).to_string()
    };
    let mut files = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let modules: BTreeSet<String> =
        files.iter().map(|f| top(f.strip_prefix(src).unwrap())).filter(|m| m != "lib" && m != "main").collect();
    let mut uses: BTreeMap<String, BTreeSet<String>> = modules.iter().map(|m| (m.clone(), BTreeSet::new())).collect();
    for file in &files {
        let rel = file.strip_prefix(src).unwrap();
        let module = top(rel);
        if !modules.contains(&module) || rel.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        // Test code may reach anywhere: it starts at the file's first `#[cfg(test)]`.
        // Comments (doc links included) name modules without using them.
        let code: String = text
            .split("#[cfg(test)]")
            .next()
            .unwrap_or("")
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + 7..];
            // `crate::module...` or a group `crate::{module, Item, module::Item}`.
            let names: Vec<String> = match rest.strip_prefix('{') {
                Some(group) => {
                    let mut depth = 0;
                    let end = group
                        .char_indices()
                        .find(|(_, c)| {
                            match c {
                                '{' => depth += 1,
                                '}' if depth == 0 => return true,
                                '}' => depth -= 1,
                                _ => {}
                            }
                            false
                        })
                        .map_or(group.len(), |(i, _)| i);
                    let mut names = Vec::new();
                    let mut depth = 0;
                    let mut start = true;
                    for (j, c) in group[..end].char_indices() {
                        match c {
                            '{' => depth += 1,
                            '}' => depth -= 1,
                            ',' if depth == 0 => start = true,
                            c if start && !c.is_whitespace() => {
                                names.push(ident(&group[j..]));
                                start = false;
                            }
                            _ => {}
                        }
                    }
                    names
                }
                None => vec![ident(rest)],
            };
            for name in names {
                if name != module && modules.contains(&name) {
                    uses.get_mut(&module).unwrap().insert(name);
                }
            }
        }
    }
    uses
}

/// A cycle among the modules, if any (depth-first search).
fn module_cycle(uses: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        uses: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_string());
        for next in uses.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, uses, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_string());
        None
    }
    let mut done = BTreeSet::new();
    uses.keys().find_map(|m| visit(m, uses, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_circles_inside_a_crate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in [".", "frontend", "solver", "executor", "store", "registry", "image-spec"] {
        let uses = module_uses(&root.join(krate).join("src"));
        assert!(uses.len() > 1 || krate == "image-spec", "{krate}: no modules found");
        if let Some(cycle) = module_cycle(&uses) {
            panic!("module circle in {krate}/src: {}", cycle.join(" → "));
        }
    }
}

#[test]
fn module_uses_reads_paths_and_groups() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir(src.join("b")).unwrap();
    std::fs::write(src.join("lib.rs"), "mod a; mod b; mod c;").unwrap();
    std::fs::write(src.join("a.rs"), "use crate::{Error, b::{X, Y}};\n// crate::c\n").unwrap();
    std::fs::write(src.join("b/mod.rs"), "fn f() { crate::c::g() }\n#[cfg(test)]\nuse crate::a;").unwrap();
    std::fs::write(src.join("c.rs"), "").unwrap();
    let uses = module_uses(src);
    assert_eq!(uses["a"], ["b".to_string()].into());
    assert_eq!(uses["b"], ["c".to_string()].into());
    assert!(uses["c"].is_empty());
}

#[test]
fn the_circle_check_finds_a_circle() {
    let uses: BTreeMap<String, BTreeSet<String>> = [
        ("a".to_string(), ["b".to_string()].into()),
        ("b".to_string(), ["c".to_string()].into()),
        ("c".to_string(), ["a".to_string()].into()),
    ]
    .into();
    assert_eq!(module_cycle(&uses).unwrap(), ["a", "b", "c", "a"]);
}
