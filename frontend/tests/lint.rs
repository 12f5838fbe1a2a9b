//! Build-check goldens: each `testdata/lint/NAME.Dockerfile` is checked (every
//! stage, as `--call=check`) and its findings, one `RuleName: message (line N)` each,
//! must be exactly `NAME.expected` (then `ERROR: ...` if the file cannot be built);
//! `NAME.dockerignore` gives the ignore patterns.

use frontend::lint::{self, Report};
use frontend::{BaseImage, BuildOptions, ImageResolver, ResolveError};
use image_spec::{ContainerConfig, Platform};
use std::fs;
use std::path::{Path, PathBuf};

struct Alpine;

impl ImageResolver for Alpine {
    fn resolve(&self, reference: &str, _platform: &Platform) -> Result<Option<BaseImage>, ResolveError> {
        if !reference.starts_with("alpine") {
            return Err(format!("{reference}: not in this test's registry").into());
        }
        let env = vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string()];
        let config = ContainerConfig { env: Some(env), ..ContainerConfig::default() };
        Ok(Some(BaseImage { reference: reference.into(), config, history: Vec::new() }))
    }
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/lint")
}

fn options(dockerignore: Vec<String>) -> BuildOptions {
    BuildOptions { dockerignore, ..BuildOptions::new(Platform::new("linux", "amd64"), Platform::new("linux", "amd64")) }
}

fn check(path: &Path) -> Report {
    let text = fs::read_to_string(path).unwrap();
    let ignore = fs::read_to_string(path.with_extension("dockerignore")).unwrap_or_default();
    let patterns = ignore.lines().filter(|l| !l.is_empty()).map(str::to_string).collect();
    lint::lint(&text, &options(patterns), &Alpine, true)
}

#[test]
fn every_rule_has_a_golden_case() {
    let mut cases: Vec<PathBuf> = fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    for case in &cases {
        let report = check(case);
        let mut got: String = report.findings.iter().map(|f| format!("{}\n", f.short())).collect();
        if let Some(e) = &report.error {
            got.push_str(&format!("ERROR: {e}\n"));
        }
        let want = fs::read_to_string(case.with_extension("expected")).unwrap();
        if got != want {
            failures.push(format!("{}:\n--- want\n{want}--- got\n{got}", case.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // One case per documented rule, named after its page.
    for rule in lint::rules::ALL {
        assert!(dir().join(format!("{}.Dockerfile", rule.slug)).exists(), "no golden case for {}", rule.name);
    }
}

#[test]
fn error_directive_turns_findings_into_a_violation() {
    let text = "# check=error=true\nFROM alpine AS Build\nmaintainer me\n";
    let report = lint::lint(text, &options(Vec::new()), &Alpine, true);
    assert_eq!(report.findings.len(), 3, "{:?}", report.findings);
    assert_eq!(
        report.violation().as_deref(),
        Some("lint violation found for rules: ConsistentInstructionCasing, MaintainerDeprecated, StageNameCasing")
    );
    let clean = lint::lint("# check=error=true\nFROM alpine\n", &options(Vec::new()), &Alpine, true);
    assert!(clean.findings.is_empty() && clean.violation().is_none());
}

#[test]
fn only_the_stages_the_target_needs_are_dispatched() {
    let text = "FROM alpine AS a\nWORKDIR rel\nFROM alpine AS b\nCOPY $X /x\nFROM a\n";
    let mut opts = options(Vec::new());
    let report = lint::lint(text, &opts, &Alpine, false);
    let rules: Vec<&str> = report.findings.iter().map(|f| f.rule.name).collect();
    assert_eq!(rules, ["WorkdirRelativePath"]);
    opts.target = Some("b".into());
    let report = lint::lint(text, &opts, &Alpine, false);
    let rules: Vec<&str> = report.findings.iter().map(|f| f.rule.name).collect();
    assert_eq!(rules, ["UndefinedVar"]);
}

#[test]
fn build_errors_come_with_the_findings_before_them() {
    let report = lint::lint("FROM alpine AS Base\nCOPPY a b\n", &options(Vec::new()), &Alpine, true);
    assert_eq!(report.findings.len(), 1);
    let error = report.error.unwrap().to_string();
    assert!(error.starts_with("Dockerfile:2:1: unknown instruction"), "{error}");
    let bad = lint::lint("# check=bogus\nFROM alpine\n", &options(Vec::new()), &Alpine, true);
    assert!(bad.error.unwrap().to_string().contains("invalid check option"));
}
