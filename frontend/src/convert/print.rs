//! A stable text dump of a compiled build, for golden tests and `--debug` output:
//! every vertex with its op, inputs and labels, then the image config and history.

use crate::BuildDefinition;
use crate::parser::go_quote;
use solver::VertexId;
use solver::ir::{CopyAction, ExecOp, FileAction, Mount, MountKind, Op, Owner, SourceOp};
use std::fmt::Write;

fn q(s: &str) -> String {
    go_quote(s)
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| q(s)).collect();
    format!("[{}]", quoted.join(", "))
}

fn owner(o: &Option<Owner>) -> String {
    match o {
        None => String::new(),
        Some(Owner { user, group: None }) => format!(" owner={}", q(user)),
        Some(Owner { user, group: Some(g) }) => format!(" owner={}", q(&format!("{user}:{g}"))),
    }
}

fn source(op: &SourceOp) -> String {
    match op {
        SourceOp::Scratch => "source scratch".into(),
        SourceOp::Image { reference, platform } => {
            let p = platform.as_ref().map(|p| format!(" platform={}", q(p))).unwrap_or_default();
            format!("source image {}{p}", q(reference))
        }
        SourceOp::Local { name, exclude } => format!("source local {} exclude={}", q(name), list(exclude)),
        SourceOp::Http { url, checksum, filename } => {
            let c = checksum.as_ref().map(|c| format!(" checksum={}", q(c))).unwrap_or_default();
            let f = filename.as_ref().map(|f| format!(" filename={}", q(f))).unwrap_or_default();
            format!("source http {}{c}{f}", q(url))
        }
        SourceOp::Git(g) => {
            let mut c = g.checksum.as_ref().map(|c| format!(" checksum={}", q(c))).unwrap_or_default();
            if !g.submodules {
                c.push_str(" submodules=false");
            }
            format!(
                "source git {} ref={} subdir={} keep_git_dir={}{c}",
                q(&g.remote),
                q(&g.reference),
                q(&g.subdir),
                g.keep_git_dir
            )
        }
    }
}

fn mount(m: &Mount) -> String {
    let kind = match &m.kind {
        MountKind::Bind { input, source, readonly } => format!("bind input={input} source={} ro={readonly}", q(source)),
        MountKind::Cache { id, sharing, from, source, mode, uid, gid, readonly } => format!(
            "cache id={} sharing={sharing:?} from={from:?} source={} mode={} uid={uid:?} gid={gid:?} ro={readonly}",
            q(id),
            q(source),
            mode.map_or("None".into(), |m| format!("{m:o}")),
        ),
        MountKind::Tmpfs { size } => format!("tmpfs size={size:?}"),
        MountKind::Secret { id, env, required, mode, uid, gid } => {
            format!("secret id={} env={env:?} required={required} mode={mode:o} uid={uid} gid={gid}", q(id))
        }
        MountKind::Ssh { id, required, mode, uid, gid } => {
            format!("ssh id={} required={required} mode={mode:o} uid={uid} gid={gid}", q(id))
        }
    };
    format!("mount {} {kind}", q(&m.target))
}

fn exec(out: &mut String, e: &ExecOp, proxy_env: &[(String, String)]) {
    let _ = writeln!(out, "  exec {}", list(&e.args));
    let _ = writeln!(out, "    env {}", list(&e.env));
    if !proxy_env.is_empty() {
        let pairs: Vec<String> = proxy_env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(out, "    proxy_env {}", list(&pairs));
    }
    let _ =
        writeln!(out, "    cwd={} user={} network={:?} security={:?}", q(&e.cwd), q(&e.user), e.network, e.security);
    for m in &e.mounts {
        let _ = writeln!(out, "    {}", mount(m));
    }
    // The build's `--add-host`, `--ulimit` and `--shm-size`, when given.
    for h in &e.extra_hosts {
        let _ = writeln!(out, "    add_host {}:{}", q(&h.host), h.ip);
    }
    for u in &e.ulimits {
        let _ = writeln!(out, "    ulimit {}={}:{}", q(&u.name), u.soft, u.hard);
    }
    if let Some(size) = e.shm_size {
        let _ = writeln!(out, "    shm_size={size}");
    }
}

fn copy(c: &CopyAction) -> String {
    let mut s = format!("copy input={} {} -> {}", c.input, list(&c.sources), q(&c.dest));
    s.push_str(&owner(&c.owner));
    if let Some(m) = &c.mode {
        s.push_str(&format!(" mode={}", q(m)));
    }
    let defaults = CopyAction::new(c.input, c.sources.clone(), c.dest.clone());
    let flags = [
        ("follow_symlinks", c.follow_symlinks, defaults.follow_symlinks),
        ("dir_contents_only", c.dir_contents_only, defaults.dir_contents_only),
        ("allow_wildcard", c.allow_wildcard, defaults.allow_wildcard),
        ("allow_empty_wildcard", c.allow_empty_wildcard, defaults.allow_empty_wildcard),
        ("create_dest_path", c.create_dest_path, defaults.create_dest_path),
        ("unpack_archives", c.unpack_archives, defaults.unpack_archives),
        ("parents", c.parents, defaults.parents),
    ];
    for (name, value, default) in flags {
        if value != default {
            s.push_str(&format!(" {name}={value}"));
        }
    }
    if !c.include.is_empty() {
        s.push_str(&format!(" include={}", list(&c.include)));
    }
    if !c.exclude.is_empty() {
        s.push_str(&format!(" exclude={}", list(&c.exclude)));
    }
    s
}

fn file_action(a: &FileAction) -> String {
    match a {
        FileAction::Copy(c) => copy(c),
        FileAction::Mkdir { path, mode, make_parents, owner: o } => {
            format!("mkdir {} mode={mode:o} parents={make_parents}{}", q(path), owner(o))
        }
        FileAction::Mkfile { path, mode, data, owner: o } => {
            format!("mkfile {} mode={mode:o}{} data={}", q(path), owner(o), q(&String::from_utf8_lossy(data)))
        }
        FileAction::Rm { path, allow_not_found, allow_wildcard } => {
            format!("rm {} allow_not_found={allow_not_found} allow_wildcard={allow_wildcard}", q(path))
        }
    }
}

fn id(v: VertexId) -> String {
    format!("#{}", v.0)
}

/// Dumps a build definition as stable, line-oriented text.
pub fn print_graph(def: &BuildDefinition) -> String {
    let mut out = String::new();
    for (vid, v) in def.graph.iter() {
        let inputs: Vec<String> = v.inputs.iter().map(|i| id(*i)).collect();
        let _ = writeln!(out, "{} {}", id(vid), q(&v.name));
        let mut labels = format!("  inputs=[{}]", inputs.join(", "));
        if let Some(s) = &v.step_id {
            labels.push_str(&format!(" step={}", q(s)));
        }
        if let Some(g) = &v.group {
            labels.push_str(&format!(" group={}", q(g)));
        }
        if v.ignore_cache {
            labels.push_str(" ignore_cache");
        }
        if let Some(p) = &v.platform {
            labels.push_str(&format!(" platform={}", q(p)));
        }
        let _ = writeln!(out, "{labels}");
        match &v.op {
            Op::Source(s) => {
                let _ = writeln!(out, "  {}", source(s));
            }
            Op::Exec(e) => exec(&mut out, e, &v.proxy_env),
            Op::File(f) => {
                for a in &f.actions {
                    let _ = writeln!(out, "  {}", file_action(a));
                }
            }
            Op::Merge => {
                let _ = writeln!(out, "  merge");
            }
        }
    }
    let _ = writeln!(out, "target {}", id(def.target));
    let config = serde_json::to_string_pretty(&def.image.config).unwrap_or_default();
    let _ = writeln!(out, "config {config}");
    let _ = writeln!(out, "base history: {} entries", def.image.base_history.len());
    for h in &def.image.history {
        let layer = h.layer.map(|l| format!(" layer={}", id(l))).unwrap_or_default();
        let _ = writeln!(out, "history {}{layer}", q(&h.created_by));
    }
    for w in &def.warnings {
        let _ = writeln!(out, "warning {}", q(w));
    }
    out
}
