//! Golden tests: every `testdata/dockerfiles/<case>/Dockerfile` compiles to exactly
//! `graph` (or, for error cases, fails with exactly `error`). An optional `options`
//! file sets build options, one per line: `target=NAME`, `build-arg=K=V`,
//! `label=K=V`, `platform=os/arch`, `no-cache`, `no-cache-filter=STAGE`,
//! `dockerignore=PATTERN`. Run with `UPDATE_GOLDEN=1` to rewrite the expectations.

use frontend::{BaseImage, BuildOptions, ImageResolver, ResolveError, compile, print_graph};
use image_spec::{ContainerConfig, History, Platform};
use std::fs;
use std::path::{Path, PathBuf};

/// A few well-known images with fixed configs; anything else is unknown (`Ok(None)`).
struct FakeResolver;

impl ImageResolver for FakeResolver {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<Option<BaseImage>, ResolveError> {
        let env = |e: &[&str]| Some(e.iter().map(|s| s.to_string()).collect());
        let history = vec![History { created_by: Some(format!("base layer of {reference}")), ..History::default() }];
        let config = match reference {
            "alpine:3.20" | "alpine" => ContainerConfig {
                env: env(&["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]),
                cmd: Some(vec!["/bin/sh".into()]),
                ..ContainerConfig::default()
            },
            "golang:1.23" => ContainerConfig {
                env: env(&[
                    "PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "GOPATH=/go",
                ]),
                working_dir: Some("/go".into()),
                ..ContainerConfig::default()
            },
            "onbuild-base:1" => ContainerConfig {
                env: env(&["PATH=/usr/bin:/bin"]),
                on_build: Some(vec!["COPY . /app/src".into(), "RUN make -C /app/src".into()]),
                ..ContainerConfig::default()
            },
            "broken:1" => return Err("registry unreachable".into()),
            _ => return Ok(None),
        };
        let reference = format!("docker.io/library/{reference}@{platform}");
        Ok(Some(BaseImage { reference, config, history }))
    }
}

fn options_for(case: &Path) -> BuildOptions {
    let mut options = BuildOptions::new(Platform::new("linux", "amd64"), Platform::new("linux", "amd64"));
    let Ok(text) = fs::read_to_string(case.join("options")) else { return options };
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        let pair = || {
            let (k, v) = value.split_once('=').unwrap_or((value, ""));
            (k.to_string(), v.to_string())
        };
        match key {
            "target" => options.target = Some(value.into()),
            "build-arg" => {
                options.build_args.insert(pair().0, pair().1);
            }
            "label" => {
                options.labels.insert(pair().0, pair().1);
            }
            "platform" => {
                let (os, arch) = value.split_once('/').unwrap();
                options.platform = Platform::new(os, arch);
            }
            "no-cache" => options.no_cache = true,
            "no-cache-filter" => options.no_cache_filter.push(value.into()),
            "dockerignore" => options.dockerignore.push(value.into()),
            other => panic!("{}: unknown option {other}", case.display()),
        }
    }
    options
}

fn cases() -> Vec<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/dockerfiles");
    let mut out: Vec<PathBuf> = fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    out.sort();
    out
}

#[test]
fn golden_graphs() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let all = cases();
    let mut failures = Vec::new();
    for case in &all {
        let text = fs::read_to_string(case.join("Dockerfile")).unwrap();
        let (file, got) = match compile(&text, &options_for(case), &FakeResolver) {
            Ok(def) => ("graph", print_graph(&def)),
            Err(e) => ("error", format!("{e}\n")),
        };
        let other = if file == "graph" { "error" } else { "graph" };
        if update {
            fs::write(case.join(file), &got).unwrap();
            let _ = fs::remove_file(case.join(other));
            continue;
        }
        match fs::read_to_string(case.join(file)) {
            Ok(want) if want == got => {}
            Ok(want) => failures.push(format!("{}/{file}:\n--- want\n{want}--- got\n{got}", case.display())),
            Err(_) => failures.push(format!("{}: no {file} file; got:\n{got}", case.display())),
        }
    }
    println!("golden graphs: {}/{}", all.len() - failures.len(), all.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
