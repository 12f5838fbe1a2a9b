//! `builder build --call=check|outline|targets` (and `--check`): answer about the
//! Dockerfile instead of building it, printed as buildx prints BuildKit's
//! subrequest results; `,format=json` prints their JSON.
//!
//! `check` exits 1 when it finds anything (BuildKit's `result.statuscode`) or when the
//! Dockerfile cannot be built; the others exit 0.

use anyhow::{Result, anyhow, bail};
use frontend::lint::{self, Finding, Report};
use frontend::{BuildOptions, ImageResolver};
use serde_json::{Value, json};
use std::fmt::Write as _;

/// What `--call` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub name: CallName,
    pub json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CallName {
    Build,
    Check,
    Outline,
    Targets,
}

/// `--call NAME[,format=json]` (buildx's `lint` and `--check` are `check`).
pub fn parse_call(value: Option<&str>, check: bool) -> Result<Call, String> {
    let value = match (value, check) {
        (Some(v), true) if !v.starts_with("check") => return Err("--check and --call cannot be used together".into()),
        (None, true) => "check",
        (Some(v), _) => v,
        (None, false) => "build",
    };
    let mut fields = value.split(',');
    let name = match fields.next().unwrap_or_default() {
        "build" => CallName::Build,
        "check" | "lint" => CallName::Check,
        "outline" => CallName::Outline,
        "targets" => CallName::Targets,
        other => return Err(format!("unknown --call {other:?} (want build, check, outline or targets)")),
    };
    let mut json = false;
    for field in fields {
        match field.split_once('=') {
            Some(("format", "json")) => json = true,
            Some(("format", "text")) => json = false,
            _ => return Err(format!("invalid --call option {field:?} (want format=json or format=text)")),
        }
    }
    Ok(Call { name, json })
}

/// Runs the call; returns the exit code.
pub fn run(call: &Call, dockerfile: &str, options: &BuildOptions, resolver: &dyn ImageResolver) -> Result<u8> {
    match call.name {
        CallName::Check => {
            let report = lint::lint(dockerfile, options, resolver, true);
            print!(
                "{}",
                if call.json { check_json(&report, options) } else { check_text(&report, dockerfile, options) }
            );
            if let Some(e) =
                report.error.as_ref().map(|e| anyhow!("{e}")).or_else(|| report.violation().map(|v| anyhow!(v)))
            {
                bail!(crate::ExitError { code: 1, error: Some(e), hint: None });
            }
            Ok(u8::from(!report.findings.is_empty()))
        }
        CallName::Targets => {
            let targets = lint::targets(dockerfile, options).map_err(crate::usage_error)?;
            print!("{}", if call.json { targets_json(&targets) } else { targets_text(&targets) });
            Ok(0)
        }
        CallName::Outline => {
            let outline = lint::outline(dockerfile, options).map_err(crate::usage_error)?;
            print!("{}", if call.json { outline_json(&outline) } else { outline_text(&outline) });
            Ok(0)
        }
        CallName::Build => Ok(0),
    }
}

/// During a build: each finding of the stages the target needs is a warning of the
/// step that loads the definition (`RuleName: message (line N)`, as BuildKit), and
/// `# check=error=true` makes any of them fail the build.
pub fn warn_during_build(
    dockerfile: &str,
    options: &BuildOptions,
    resolver: &dyn ImageResolver,
    task: &crate::progress::Task<'_>,
) -> Result<()> {
    let report = lint::lint(dockerfile, options, resolver, false);
    for finding in &report.findings {
        task.warn(finding.short());
    }
    if let Some(violation) = report.violation() {
        bail!(crate::ExitError { code: 2, error: Some(anyhow!(violation)), hint: None });
    }
    Ok(())
}

/// The lines of a finding with two of context, as BuildKit shows a source range.
fn snippet(out: &mut String, dockerfile: &str, name: &str, finding: &Finding) {
    let lines: Vec<&str> = dockerfile.lines().collect();
    let _ = writeln!(out, "{name}:{}", finding.start_line);
    let _ = writeln!(out, "--------------------");
    let first = finding.start_line.saturating_sub(2).max(1);
    let last = (finding.end_line + 2).min(lines.len());
    for n in first..=last {
        let mark = if (finding.start_line..=finding.end_line).contains(&n) { ">>>" } else { "   " };
        let _ = writeln!(out, " {n:>3} | {mark} {}", lines.get(n - 1).unwrap_or(&""));
    }
    let _ = writeln!(out, "--------------------");
}

fn check_text(report: &Report, dockerfile: &str, options: &BuildOptions) -> String {
    let mut out = String::new();
    match report.findings.len() {
        0 if report.error.is_none() => out.push_str("Check complete, no warnings found.\n"),
        0 => {}
        1 => out.push_str("Check complete, 1 warning has been found!\n"),
        n => {
            let _ = writeln!(out, "Check complete, {n} warnings have been found!");
        }
    }
    for finding in &report.findings {
        let _ = writeln!(out, "\nWARNING: {} - {}\n{}", finding.rule.name, finding.rule.url(), finding.message);
        snippet(&mut out, dockerfile, &options.dockerfile_name, finding);
    }
    out
}

fn range(start: usize, end: usize) -> Value {
    json!({ "sourceIndex": 0, "ranges": [{ "start": { "line": start }, "end": { "line": end } }] })
}

fn check_json(report: &Report, options: &BuildOptions) -> String {
    let warnings: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            json!({
                "ruleName": f.rule.name,
                "description": f.rule.description,
                "url": f.rule.url(),
                "detail": f.message,
                "location": range(f.start_line, f.end_line),
            })
        })
        .collect();
    let mut result = json!({
        "warnings": warnings,
        "sources": [{ "filename": options.dockerfile_name, "language": "Dockerfile" }],
    });
    if let Some(e) = &report.error {
        let line = e.location.line;
        result["buildError"] = json!({ "message": e.kind.to_string(), "location": range(line, line) });
    }
    format!("{}\n", serde_json::to_string_pretty(&result).unwrap_or_default())
}

/// Columns padded to the widest cell plus `gap`, as Go's tabwriter.
fn table(rows: &[Vec<String>], gap: usize) -> String {
    let mut widths = Vec::new();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if widths.len() <= i {
                widths.push(0);
            }
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}", width = widths[i] + gap);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn targets_text(targets: &[lint::Target]) -> String {
    let mut rows = vec![vec!["TARGET".to_string(), "DESCRIPTION".to_string()]];
    for t in targets {
        let name = match (&t.name, t.default) {
            (None, _) => "(default)".to_string(),
            (Some(n), true) => format!("{n} (default)"),
            (Some(n), false) => n.clone(),
        };
        rows.push(vec![name, t.description.clone().unwrap_or_default()]);
    }
    table(&rows, 1)
}

fn targets_json(targets: &[lint::Target]) -> String {
    let list: Vec<Value> = targets
        .iter()
        .map(|t| {
            let mut v = json!({ "base": t.base, "location": range(t.line, t.line) });
            if let Some(n) = &t.name {
                v["name"] = json!(n);
            }
            if t.default {
                v["default"] = json!(true);
            }
            if let Some(d) = &t.description {
                v["description"] = json!(d);
            }
            if let Some(p) = &t.platform {
                v["platform"] = json!(p);
            }
            v
        })
        .collect();
    format!("{}\n", serde_json::to_string_pretty(&json!({ "targets": list })).unwrap_or_default())
}

fn outline_text(outline: &lint::Outline) -> String {
    let mut out = String::new();
    if outline.name.is_some() || outline.description.is_some() {
        let mut rows = vec![vec!["TARGET:".to_string(), outline.name.clone().unwrap_or("(default)".into())]];
        if let Some(d) = &outline.description {
            rows.push(vec!["DESCRIPTION:".into(), d.clone()]);
        }
        out.push_str(&table(&rows, 1));
        out.push('\n');
    }
    if !outline.args.is_empty() {
        let mut rows = vec![vec!["BUILD ARG".to_string(), "VALUE".into(), "DESCRIPTION".into()]];
        for a in &outline.args {
            rows.push(vec![
                a.name.clone(),
                a.value.clone().unwrap_or_default(),
                a.description.clone().unwrap_or_default(),
            ]);
        }
        out.push_str(&table(&rows, 3));
        out.push('\n');
    }
    for (title, items) in [("SECRET", &outline.secrets), ("SSH", &outline.ssh)] {
        if items.is_empty() {
            continue;
        }
        let mut rows = vec![vec![title.to_string(), "REQUIRED".into()]];
        for s in items {
            rows.push(vec![s.name.clone(), if s.required { "true".into() } else { String::new() }]);
        }
        out.push_str(&table(&rows, 3));
        out.push('\n');
    }
    out
}

fn outline_json(outline: &lint::Outline) -> String {
    let item = |i: &lint::OutlineItem| {
        let mut v = json!({ "name": i.name, "location": range(i.line, i.line) });
        if let Some(value) = &i.value {
            v["value"] = json!(value);
        }
        if let Some(d) = &i.description {
            v["description"] = json!(d);
        }
        if i.required {
            v["required"] = json!(true);
        }
        v
    };
    let mut v = json!({});
    if let Some(n) = &outline.name {
        v["name"] = json!(n);
    }
    if let Some(d) = &outline.description {
        v["description"] = json!(d);
    }
    for (key, items) in [("args", &outline.args), ("secrets", &outline.secrets), ("ssh", &outline.ssh)] {
        if !items.is_empty() {
            v[key] = Value::Array(items.iter().map(item).collect());
        }
    }
    format!("{}\n", serde_json::to_string_pretty(&v).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_values() {
        assert_eq!(parse_call(None, true).unwrap(), Call { name: CallName::Check, json: false });
        assert_eq!(parse_call(Some("check,format=json"), false).unwrap(), Call { name: CallName::Check, json: true });
        assert_eq!(parse_call(Some("targets"), false).unwrap().name, CallName::Targets);
        assert_eq!(parse_call(None, false).unwrap().name, CallName::Build);
        assert!(parse_call(Some("outline"), true).is_err());
        assert!(parse_call(Some("explode"), false).is_err());
        assert!(parse_call(Some("check,format=yaml"), false).is_err());
    }

    #[test]
    fn tables_pad_like_tabwriter() {
        let rows = vec![vec!["TARGET".to_string(), "DESCRIPTION".into()], vec!["build".into(), "compiles".into()]];
        assert_eq!(table(&rows, 1), "TARGET DESCRIPTION\nbuild  compiles\n");
    }
}
