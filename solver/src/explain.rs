//! Why a vertex missed the cache: the differences between the record it would make
//! now and the last record made for the same step, as one short line each.
//!
//! Only what the records hold is compared (the op, the worker's facts, the inputs'
//! keys and content entries), so every reason names something the user changed: an
//! env value, a file, a base image, an upstream step.

use crate::cache::{CacheRecord, DepRecord};
use crate::ir::{ExecOp, FileAction, Mount, Op, SourceOp};
use std::cmp::Ordering;

/// At most this many file changes are listed for one input; the rest are counted.
const MAX_FILES: usize = 10;

/// Reasons why `current` (the record the vertex would make now) missed, given the
/// last record made for its step, if any.
pub fn reasons(previous: Option<&CacheRecord>, current: &CacheRecord) -> Vec<String> {
    let Some(previous) = previous else {
        return vec!["first build of this step".to_string()];
    };
    let mut out = Vec::new();
    op_changes(&previous.op, &current.op, &mut out);
    list_changes("", &previous.facts, &current.facts, &mut out);
    dep_changes(&previous.deps, &current.deps, &mut out);
    if out.is_empty() {
        out.push(if previous.key == current.key {
            "the cached result was removed".to_string()
        } else {
            "cache key changed, though no recorded input did".to_string()
        });
    }
    out
}

fn op_changes(previous: &Op, current: &Op, out: &mut Vec<String>) {
    match (previous, current) {
        (Op::Exec(a), Op::Exec(b)) => exec_changes(a, b, out),
        (Op::File(a), Op::File(b)) => file_changes(&a.actions, &b.actions, out),
        (Op::Source(a), Op::Source(b)) => source_changes(a, b, out),
        (Op::Merge, Op::Merge) => {}
        _ => out.push("the step's operation changed".to_string()),
    }
}

fn exec_changes(a: &ExecOp, b: &ExecOp, out: &mut Vec<String>) {
    if a.args != b.args {
        let (old, new) = difference(&a.args.join(" "), &b.args.join(" "));
        out.push(format!("command changed: `{old}` → `{new}`"));
    }
    let env = |e: &[String]| e.iter().map(|kv| split_env(kv)).collect::<Vec<_>>();
    let (old_env, new_env) = (env(&a.env), env(&b.env));
    let before = out.len();
    list_changes("env ", &old_env, &new_env, out);
    if out.len() == before && a.env != b.env {
        out.push("env order changed".to_string());
    }
    if a.cwd != b.cwd {
        out.push(format!("workdir changed {} → {}", a.cwd, b.cwd));
    }
    if a.user != b.user {
        let user = |u: &str| if u.is_empty() { "root".to_string() } else { u.to_string() };
        out.push(format!("user changed {} → {}", user(&a.user), user(&b.user)));
    }
    if a.network != b.network {
        out.push(format!("network changed {:?} → {:?}", a.network, b.network).to_lowercase());
    }
    if a.security != b.security {
        out.push(format!("security changed {:?} → {:?}", a.security, b.security).to_lowercase());
    }
    mount_changes(&a.mounts, &b.mounts, out);
    run_flag_changes(a, b, out);
}

/// The build's `--add-host`, `--ulimit` and `--shm-size`, as written on the command line.
fn run_flag_changes(a: &ExecOp, b: &ExecOp, out: &mut Vec<String>) {
    let none = || "none".to_string();
    let hosts = |e: &ExecOp| e.extra_hosts.iter().map(|h| format!("{}:{}", h.host, h.ip)).collect::<Vec<_>>().join(",");
    let limits = |e: &ExecOp| {
        e.ulimits.iter().map(|u| format!("{}={}:{}", u.name, u.soft, u.hard)).collect::<Vec<_>>().join(",")
    };
    let or_none = |s: String| if s.is_empty() { none() } else { s };
    if a.extra_hosts != b.extra_hosts {
        out.push(format!("--add-host changed {} → {}", or_none(hosts(a)), or_none(hosts(b))));
    }
    if a.ulimits != b.ulimits {
        out.push(format!("--ulimit changed {} → {}", or_none(limits(a)), or_none(limits(b))));
    }
    if a.shm_size != b.shm_size {
        let size = |s: Option<u64>| s.map_or_else(none, |s| s.to_string());
        out.push(format!("--shm-size changed {} → {}", size(a.shm_size), size(b.shm_size)));
    }
}

fn split_env(kv: &str) -> (String, String) {
    match kv.split_once('=') {
        Some((k, v)) => (k.to_string(), v.to_string()),
        None => (kv.to_string(), String::new()),
    }
}

fn mount_changes(a: &[Mount], b: &[Mount], out: &mut Vec<String>) {
    for m in b {
        match a.iter().find(|o| o.target == m.target) {
            None => out.push(format!("mount {} added", m.target)),
            Some(o) if o != m => out.push(format!("mount {} changed", m.target)),
            Some(_) => {}
        }
    }
    for o in a {
        if !b.iter().any(|m| m.target == o.target) {
            out.push(format!("mount {} removed", o.target));
        }
    }
}

fn file_changes(a: &[FileAction], b: &[FileAction], out: &mut Vec<String>) {
    if a.len() != b.len() {
        out.push(format!("file actions changed ({} → {})", a.len(), b.len()));
        return;
    }
    for (x, y) in a.iter().zip(b) {
        match (x, y) {
            (FileAction::Copy(x), FileAction::Copy(y)) if x != y => {
                if x.sources != y.sources {
                    out.push(format!("sources changed {} → {}", x.sources.join(" "), y.sources.join(" ")));
                }
                if x.dest != y.dest {
                    out.push(format!("destination changed {} → {}", x.dest, y.dest));
                }
                if x.owner != y.owner {
                    out.push("owner changed".to_string());
                }
                if x.mode != y.mode {
                    let mode = |m: &Option<String>| m.clone().unwrap_or_else(|| "default".to_string());
                    out.push(format!("mode changed {} → {}", mode(&x.mode), mode(&y.mode)));
                }
                let same_rest = x.sources == y.sources && x.dest == y.dest && x.owner == y.owner && x.mode == y.mode;
                if same_rest || x.input != y.input || x.include != y.include || x.exclude != y.exclude {
                    out.push("copy options changed".to_string());
                }
            }
            (x, y) if x != y => out.push(format!("file action changed: {} → {}", describe(x), describe(y))),
            _ => {}
        }
    }
}

fn describe(action: &FileAction) -> String {
    match action {
        FileAction::Copy(c) => format!("copy {} {}", c.sources.join(" "), c.dest),
        FileAction::Mkdir { path, .. } => format!("mkdir {path}"),
        FileAction::Mkfile { path, .. } => format!("mkfile {path}"),
        FileAction::Rm { path, .. } => format!("rm {path}"),
    }
}

fn source_changes(a: &SourceOp, b: &SourceOp, out: &mut Vec<String>) {
    match (a, b) {
        (SourceOp::Image { reference: r1, platform: p1 }, SourceOp::Image { reference: r2, platform: p2 }) => {
            if r1 != r2 {
                out.push(format!("image changed {r1} → {r2}"));
            }
            if p1 != p2 {
                let p = |p: &Option<String>| p.clone().unwrap_or_else(|| "default".to_string());
                out.push(format!("platform changed {} → {}", p(p1), p(p2)));
            }
        }
        (SourceOp::Local { name: n1, exclude: e1 }, SourceOp::Local { name: n2, exclude: e2 }) => {
            if n1 != n2 {
                out.push(format!("local source changed {n1} → {n2}"));
            }
            if e1 != e2 {
                out.push(format!("exclude patterns of {n2} changed"));
            }
        }
        (SourceOp::Http { url: u1, .. }, SourceOp::Http { url: u2, .. }) if u1 != u2 => {
            out.push(format!("url changed {u1} → {u2}"));
        }
        (a, b) if a != b => out.push("source changed".to_string()),
        _ => {}
    }
}

/// Differences between two `(name, value)` lists: facts or env. The fact `image`
/// reads as "base image".
fn list_changes(prefix: &str, a: &[(String, String)], b: &[(String, String)], out: &mut Vec<String>) {
    let label = |k: &str| {
        if prefix.is_empty() && k == "image" { "base image".to_string() } else { format!("{prefix}{k}") }
    };
    // The last value of a repeated name wins, as with env.
    let value = |list: &[(String, String)], k: &str| list.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let mut seen = Vec::new();
    for (k, v) in b {
        if seen.contains(&k) {
            continue;
        }
        seen.push(k);
        let v = value(b, k).unwrap_or_else(|| v.clone());
        match value(a, k) {
            None => out.push(format!("{} added ({})", label(k), short(&v))),
            Some(old) if old != v => out.push(format!("{} changed {} → {}", label(k), short(&old), short(&v))),
            Some(_) => {}
        }
    }
    for (k, _) in a {
        if !b.iter().any(|(n, _)| n == k) && !seen.contains(&k) {
            seen.push(k);
            out.push(format!("{} removed", label(k)));
        }
    }
}

fn dep_changes(a: &[DepRecord], b: &[DepRecord], out: &mut Vec<String>) {
    if a.len() != b.len() {
        out.push(format!("number of inputs changed ({} → {})", a.len(), b.len()));
        return;
    }
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        let name = y.name.as_deref().or(x.name.as_deref()).map_or_else(|| format!("#{i}"), str::to_string);
        if x.key != y.key {
            // An input that keeps no record (a source) is explained by its facts.
            let before = out.len();
            if !x.facts.is_empty() {
                list_changes("", &x.facts, &y.facts, out);
            }
            if out.len() == before {
                out.push(format!("input {name} changed"));
            }
        }
        match (&x.content, &y.content) {
            (Some(cx), Some(cy)) if cx.digest != cy.digest => {
                let before = out.len();
                entry_changes(&cx.entries, &cy.entries, out);
                if out.len() == before {
                    out.push(format!("content of {name} changed"));
                }
            }
            (Some(_), None) | (None, Some(_)) => out.push(format!("how {name} is read changed")),
            _ => {}
        }
    }
}

/// Merges two path-sorted entry lists into "changed/added/removed" lines.
fn entry_changes(a: &[(String, String)], b: &[(String, String)], out: &mut Vec<String>) {
    let mut lines = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        let order = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) => x.0.cmp(&y.0),
            (Some(_), None) => Ordering::Less,
            _ => Ordering::Greater,
        };
        match order {
            Ordering::Less => {
                lines.push(format!("{} removed", a[i].0));
                i += 1;
            }
            Ordering::Greater => {
                lines.push(format!("{} added", b[j].0));
                j += 1;
            }
            Ordering::Equal => {
                if a[i].1 != b[j].1 {
                    lines.push(format!("{} changed ({} → {})", a[i].0, short(&a[i].1), short(&b[j].1)));
                }
                i += 1;
                j += 1;
            }
        }
    }
    let more = lines.len().saturating_sub(MAX_FILES);
    out.extend(lines.into_iter().take(MAX_FILES));
    if more > 0 {
        out.push(format!("… and {more} more files"));
    }
}

/// Long digests cut to what a reader compares: `sha256:0123456789ab…`, also after a
/// reference (`alpine:3.20@sha256:0123456789ab…`).
fn short(value: &str) -> String {
    if let Some((reference, digest)) = value.rsplit_once('@') {
        return format!("{reference}@{}", short(digest));
    }
    let (algo, hex) = match value.split_once(':') {
        Some((algo, hex)) => (format!("{algo}:"), hex),
        None => (String::new(), value),
    };
    if hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        format!("{algo}{}…", &hex[..12])
    } else {
        value.to_string()
    }
}

/// Long strings cut down to the part that differs, with some context around it:
/// `…sh -c VERSION=2 chmod +x /app…`.
fn difference(a: &str, b: &str) -> (String, String) {
    const MAX: usize = 60;
    const CONTEXT: usize = 16;
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() <= MAX && b.len() <= MAX {
        return (a.iter().collect(), b.iter().collect());
    }
    let prefix = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let room = a.len().min(b.len()) - prefix;
    let suffix = a.iter().rev().zip(b.iter().rev()).take(room).take_while(|(x, y)| x == y).count();
    let start = prefix.saturating_sub(CONTEXT);
    let cut = |s: &[char]| {
        let end = (s.len() - suffix + CONTEXT).min(s.len()).min(start + MAX);
        let mut out = String::new();
        if start > 0 {
            out.push('…');
        }
        out.extend(&s[start..end]);
        if end < s.len() {
            out.push('…');
        }
        out
    };
    (cut(&a), cut(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::ContentDigest;
    use crate::ir::{CopyAction, FileOp, NetworkMode};
    use crate::key::CacheKey;

    fn exec(env: &[&str]) -> Op {
        Op::Exec(ExecOp {
            env: env.iter().map(|s| s.to_string()).collect(),
            cwd: "/src".into(),
            ..ExecOp::new(vec!["/bin/sh".into(), "-c".into(), "make".into()])
        })
    }

    fn record(op: Op, facts: &[(&str, &str)], deps: Vec<DepRecord>) -> CacheRecord {
        let facts: Vec<(String, String)> = facts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        CacheRecord {
            key: CacheKey::of("test", &format!("{op:?}{facts:?}{deps:?}")),
            step_id: Some("Dockerfile:build:2".into()),
            name: "step".into(),
            op,
            facts,
            deps,
            result: vec![],
        }
    }

    fn dep(key: &str, name: &str) -> DepRecord {
        DepRecord {
            key: Some(CacheKey::of("k", &key.to_string())),
            content: None,
            name: Some(name.into()),
            facts: vec![],
        }
    }

    fn content(entries: &[(&str, &str)]) -> DepRecord {
        let entries: Vec<(String, String)> = entries.iter().map(|(p, d)| (p.to_string(), d.to_string())).collect();
        let digest = CacheKey::of("c", &format!("{entries:?}"));
        DepRecord {
            key: None,
            content: Some(ContentDigest { digest, entries }),
            name: Some("context".into()),
            facts: vec![],
        }
    }

    #[test]
    fn first_build() {
        let now = record(exec(&[]), &[], vec![]);
        assert_eq!(reasons(None, &now), ["first build of this step"]);
    }

    #[test]
    fn env_changed_added_removed() {
        let old = record(exec(&["VERSION=1.2", "GONE=x", "PATH=/bin"]), &[], vec![]);
        let now = record(exec(&["VERSION=1.3", "PATH=/bin", "NEW=1"]), &[], vec![]);
        assert_eq!(
            reasons(Some(&old), &now),
            ["env VERSION changed 1.2 → 1.3", "env NEW added (1)", "env GONE removed"]
        );
    }

    #[test]
    fn run_flags_changed() {
        let old = record(exec(&[]), &[], vec![]);
        let mut op = exec(&[]);
        if let Op::Exec(e) = &mut op {
            e.extra_hosts = vec![crate::ir::HostIp { host: "a".into(), ip: "10.0.0.2".parse().unwrap() }];
            e.shm_size = Some(1 << 20);
        }
        assert_eq!(
            reasons(Some(&old), &record(op, &[], vec![])),
            ["--add-host changed none → a:10.0.0.2", "--shm-size changed none → 1048576"]
        );
    }

    #[test]
    fn exec_fields() {
        let old = record(exec(&[]), &[], vec![]);
        let mut op = exec(&[]);
        if let Op::Exec(e) = &mut op {
            e.args[2] = "make all".into();
            e.cwd = "/app".into();
            e.user = "1000".into();
            e.network = NetworkMode::None;
        }
        let now = record(op, &[], vec![]);
        assert_eq!(
            reasons(Some(&old), &now),
            [
                "command changed: `/bin/sh -c make` → `/bin/sh -c make all`",
                "workdir changed /src → /app",
                "user changed root → 1000",
                "network changed default → none",
            ]
        );
    }

    #[test]
    fn long_commands_show_what_differs() {
        let a = "/bin/sh -c apt-get update && apt-get install -y build-essential curl git && rm -rf /var/lib/apt";
        let b = "/bin/sh -c apt-get update && apt-get install -y build-essential curl wget git && rm -rf /var/lib/apt";
        assert_eq!(
            difference(a, b),
            ("…-essential curl git && rm -rf /v…".into(), "…-essential curl wget git && rm -rf /v…".into())
        );
        assert_eq!(difference("make", "make all"), ("make".into(), "make all".into()));
    }

    #[test]
    fn base_image_fact() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let src = Op::Source(SourceOp::Image { reference: "alpine:3.20".into(), platform: None });
        let old = record(src.clone(), &[("image", &a)], vec![]);
        let now = record(src, &[("image", &b)], vec![]);
        assert_eq!(reasons(Some(&old), &now), ["base image changed sha256:aaaaaaaaaaaa… → sha256:bbbbbbbbbbbb…"]);
    }

    #[test]
    fn copied_files() {
        let copy =
            Op::File(FileOp { actions: vec![FileAction::Copy(CopyAction::new(1, vec!["src/".into()], "/app/"))] });
        let old = record(
            copy.clone(),
            &[],
            vec![dep("p", "FROM alpine"), content(&[("src/gone.rs", "1"), ("src/lib.rs", "2"), ("src/main.rs", "3")])],
        );
        let now = record(
            copy,
            &[],
            vec![dep("p", "FROM alpine"), content(&[("src/lib.rs", "2"), ("src/main.rs", "4"), ("src/new.rs", "5")])],
        );
        assert_eq!(
            reasons(Some(&old), &now),
            ["src/gone.rs removed", "src/main.rs changed (3 → 4)", "src/new.rs added"]
        );
    }

    #[test]
    fn many_files_are_counted() {
        let copy = Op::File(FileOp { actions: vec![] });
        let files: Vec<(String, String)> = (0..15).map(|i| (format!("f{i:02}"), "x".to_string())).collect();
        let files: Vec<(&str, &str)> = files.iter().map(|(p, d)| (p.as_str(), d.as_str())).collect();
        let old = record(copy.clone(), &[], vec![content(&[])]);
        let now = record(copy, &[], vec![content(&files)]);
        let r = reasons(Some(&old), &now);
        assert_eq!(r.len(), 11);
        assert_eq!(r[10], "… and 5 more files");
    }

    #[test]
    fn upstream_input_changed() {
        let old = record(exec(&[]), &[], vec![dep("a", "[build 1/3] FROM alpine")]);
        let now = record(exec(&[]), &[], vec![dep("b", "[build 1/3] FROM alpine")]);
        assert_eq!(reasons(Some(&old), &now), ["input [build 1/3] FROM alpine changed"]);
    }

    #[test]
    fn changed_source_input_is_explained_by_its_facts() {
        let image = |hex: &str| vec![("image".to_string(), format!("alpine:3.20@sha256:{}", hex.repeat(64)))];
        let old = record(exec(&[]), &[], vec![DepRecord { facts: image("a"), ..dep("a", "FROM alpine") }]);
        let now = record(exec(&[]), &[], vec![DepRecord { facts: image("b"), ..dep("b", "FROM alpine") }]);
        assert_eq!(
            reasons(Some(&old), &now),
            ["base image changed alpine:3.20@sha256:aaaaaaaaaaaa… → alpine:3.20@sha256:bbbbbbbbbbbb…"]
        );
    }

    #[test]
    fn same_inputs_same_key_means_removed() {
        let old = record(exec(&[]), &[], vec![]);
        assert_eq!(reasons(Some(&old), &old.clone()), ["the cached result was removed"]);
    }
}
