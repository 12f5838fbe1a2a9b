//! Conversion behaviour the golden files do not pin one by one.

use crate::Location;
use crate::{BaseImage, BuildDefinition, BuildOptions, Error, ImageResolver, ResolveError, compile};
use image_spec::{ContainerConfig, Platform};
use solver::ir::{ExecOp, FileAction, Op, SourceOp};
use solver::{CacheKey, Vertex, VertexId};

struct Resolver;

impl ImageResolver for Resolver {
    fn resolve(&self, reference: &str, _platform: &Platform) -> Result<Option<BaseImage>, ResolveError> {
        match reference {
            "base:1" => Ok(Some(BaseImage {
                reference: "docker.io/library/base:1".into(),
                config: ContainerConfig {
                    env: Some(vec!["PATH=/bin".into(), "FROM_BASE=yes".into()]),
                    working_dir: Some("/srv".into()),
                    user: Some("nobody".into()),
                    ..ContainerConfig::default()
                },
                history: Vec::new(),
            })),
            "down:1" => Err("connection refused".into()),
            _ => Ok(None),
        }
    }
}

fn options() -> BuildOptions {
    BuildOptions::new(Platform::new("linux", "amd64"), Platform::new("linux", "amd64"))
}

fn build(text: &str, options: &BuildOptions) -> Result<BuildDefinition, Error> {
    compile(text, options, &Resolver)
}

fn reachable_images(def: &BuildDefinition) -> Vec<String> {
    def.graph
        .ancestors(&[def.target])
        .into_iter()
        .filter_map(|id| match &def.graph.vertex(id).op {
            Op::Source(SourceOp::Image { reference, .. }) => Some(reference.clone()),
            _ => None,
        })
        .collect()
}

fn last_exec_vertex(def: &BuildDefinition) -> Vertex {
    def.graph.iter().map(|(_, v)| v).filter(|v| matches!(v.op, Op::Exec(_))).last().expect("an exec vertex").clone()
}

fn last_exec(def: &BuildDefinition) -> ExecOp {
    match last_exec_vertex(def).op {
        Op::Exec(e) => e,
        _ => unreachable!(),
    }
}

/// What the solver's keys are made of here: each op's digest and its inputs.
fn key_inputs(def: &BuildDefinition) -> Vec<(CacheKey, Vec<VertexId>)> {
    def.graph.iter().map(|(_, v)| (CacheKey::of("op", &v.op), v.inputs.clone())).collect()
}

#[test]
fn target_prunes_unused_stages() {
    let text = "FROM a:1 AS one\nRUN x\nFROM b:1 AS two\nRUN y\nFROM c:1\nCOPY --from=one /x /x\n";
    let def = build(text, &options()).unwrap();
    assert_eq!(reachable_images(&def), vec!["c:1", "a:1"]);
    assert!(
        def.graph
            .iter()
            .all(|(_, v)| !matches!(&v.op, Op::Source(SourceOp::Image { reference, .. }) if reference == "b:1"))
    );

    let def = build(text, &BuildOptions { target: Some("TWO".into()), ..options() }).unwrap();
    assert_eq!(reachable_images(&def), vec!["b:1"]);
}

#[test]
fn base_config_flows_into_run() {
    let def = build("FROM base:1\nENV A=1\nRUN id\n", &options()).unwrap();
    let exec = last_exec(&def);
    assert_eq!(exec.env, vec!["PATH=/bin", "FROM_BASE=yes", "A=1"]);
    assert_eq!((exec.cwd.as_str(), exec.user.as_str()), ("/srv", "nobody"));
    assert_eq!(def.image.config.user.as_deref(), Some("nobody"));
}

#[test]
fn unknown_base_is_an_empty_image_and_resolver_errors_point_at_from() {
    let def = build("FROM nowhere:1\nRUN true\n", &options()).unwrap();
    assert_eq!(last_exec(&def).cwd, "/");
    let e = build("FROM scratch\nFROM down:1\n", &options()).unwrap_err();
    assert_eq!(e.to_string(), "Dockerfile:2:1: failed to resolve base image down:1: connection refused");
}

#[test]
fn build_args_override_and_warn() {
    let mut opts = options();
    opts.build_args.insert("TAG".into(), "2".into());
    opts.build_args.insert("EXTRA".into(), "x".into());
    opts.build_args.insert("HTTPS_PROXY".into(), "http://p".into());
    let def = build("ARG TAG=1\nFROM img:$TAG\nARG TAG\nRUN echo $TAG\n", &opts).unwrap();
    assert_eq!(reachable_images(&def), vec!["img:2"]);
    let exec = last_exec(&def);
    assert!(exec.env.contains(&"TAG=2".to_string()));
    let proxy = |k: &str| (k.to_string(), "http://p".to_string());
    assert_eq!(last_exec_vertex(&def).proxy_env, [proxy("HTTPS_PROXY"), proxy("https_proxy")]);
    assert_eq!(def.warnings, vec!["one or more build-args [EXTRA] were not consumed"]);
    assert_eq!(def.image.history.last().unwrap().created_by, "RUN |1 TAG=2 /bin/sh -c echo $TAG # buildkit");
}

#[test]
fn proxy_args_reach_run_beside_the_op_not_in_its_key_or_history() {
    let text = "FROM base:1\nRUN echo \"proxy=$HTTP_PROXY\" > /p\n";
    let mut opts = options();
    opts.build_args.insert("HTTP_PROXY".into(), "http://p:3128".into());
    opts.build_args.insert("no_proxy".into(), "localhost".into());
    let def = build(text, &opts).unwrap();
    let vertex = last_exec_vertex(&def);
    let pairs = |v: &[(&str, &str)]| v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    // Both spellings of each proxy given, as BuildKit sets them.
    let both = [("HTTP_PROXY", "http://p:3128"), ("http_proxy", "http://p:3128"), ("NO_PROXY", "localhost")];
    assert_eq!(vertex.proxy_env, pairs(&[both[0], both[1], both[2], ("no_proxy", "localhost")]));
    assert!(!last_exec(&def).env.iter().any(|e| e.contains("PROXY") || e.contains("proxy")), "{:?}", vertex.op);
    assert!(def.image.history.iter().all(|h| !h.created_by.contains("p:3128")), "{:?}", def.image.history);
    assert!(!format!("{:?}", def.image.config).contains("p:3128"));
    // Predefined args never warn as unused.
    assert_eq!(def.warnings, Vec::<String>::new());

    // The same keys with another proxy or none at all.
    let without = build(text, &options()).unwrap();
    assert!(last_exec_vertex(&without).proxy_env.is_empty());
    assert_eq!(key_inputs(&def), key_inputs(&without));
    opts.build_args.insert("HTTP_PROXY".into(), "http://other:1".into());
    assert_eq!(key_inputs(&build(text, &opts).unwrap()), key_inputs(&without));

    // Unused by any RUN: still no warning.
    let def = build("FROM base:1\nCOPY a /a\n", &opts).unwrap();
    assert_eq!(def.warnings, Vec::<String>::new());
}

#[test]
fn declared_proxy_arg_and_env_are_ordinary_and_win() {
    let mut opts = options();
    opts.build_args.insert("HTTP_PROXY".into(), "http://p:3128".into());
    opts.build_args.insert("HTTPS_PROXY".into(), "http://given".into());
    let text = "FROM base:1\nARG HTTP_PROXY\nENV HTTPS_PROXY=http://env\nRUN wget x\n";
    let def = build(text, &opts).unwrap();
    let exec = last_exec(&def);
    // As in BuildKit: a declared ARG is in the env, the key and the history.
    assert!(exec.env.contains(&"HTTP_PROXY=http://p:3128".to_string()), "{:?}", exec.env);
    assert!(exec.env.contains(&"HTTPS_PROXY=http://env".to_string()), "{:?}", exec.env);
    // The other spellings still come as proxy env.
    let expected = [("http_proxy", "http://p:3128"), ("https_proxy", "http://given")];
    let expected: Vec<(String, String)> = expected.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    assert_eq!(last_exec_vertex(&def).proxy_env, expected);
    assert_eq!(
        def.image.history.last().unwrap().created_by,
        "RUN |1 HTTP_PROXY=http://p:3128 /bin/sh -c wget x # buildkit"
    );
    assert_ne!(key_inputs(&def), key_inputs(&build(text, &options()).unwrap()));
}

#[test]
fn forward_copy_from_and_no_cache() {
    let text = "FROM a:1\nCOPY --from=later /x /x\nFROM b:1 AS later\n";
    let def = build(text, &BuildOptions { target: Some("".into()), no_cache: true, ..options() }).unwrap();
    assert!(def.graph.iter().all(|(_, v)| v.ignore_cache));
    assert_eq!(reachable_images(&def), vec!["b:1"]);

    let def = build(text, &BuildOptions { target: None, ..options() }).unwrap();
    assert_eq!(reachable_images(&def), vec!["b:1"]);
    let def = build(
        "FROM a:1 AS first\nCOPY --from=later /x /x\nFROM b:1 AS later\n",
        &BuildOptions { target: Some("first".into()), ..options() },
    )
    .unwrap();
    let mut images = reachable_images(&def);
    images.sort();
    assert_eq!(images, vec!["a:1", "b:1"]);
}

#[test]
fn labels_from_options_and_onbuild_recorded() {
    let mut opts = options();
    opts.labels.insert("ci".into(), "1".into());
    let def = build("FROM scratch\nLABEL a=b\nONBUILD RUN make\n", &opts).unwrap();
    let labels = def.image.config.labels.clone().unwrap();
    assert_eq!(labels.get("ci").map(String::as_str), Some("1"));
    assert_eq!(labels.get("a").map(String::as_str), Some("b"));
    assert_eq!(def.image.config.on_build, Some(vec!["RUN make".to_string()]));
}

#[test]
fn escape_directive_applies_to_expansion() {
    let def = build("# escape=`\nFROM scratch\nENV A=x`$B\nWORKDIR C:\\dir\n", &options()).unwrap();
    assert!(def.image.config.env.unwrap().contains(&"A=x$B".to_string()));
    let mkdir = def.graph.iter().find_map(|(_, v)| match &v.op {
        Op::File(f) => f.actions.first().cloned(),
        _ => None,
    });
    assert!(matches!(mkdir, Some(FileAction::Mkdir { path, .. }) if path == "/C:\\dir"));
}

#[test]
fn errors_point_at_the_instruction() {
    let e = build("FROM scratch\nRUN --mount=type=cache,target=/ x\n", &options()).unwrap_err();
    assert_eq!((e.location, e.kind.to_string().as_str()), (Location::new(2, 5), "invalid mount target \"/\""));
    let e = build("FROM scratch\n  COPY --chown=1 \\\n    --chmod=99x a /b\n", &options()).unwrap_err();
    assert_eq!(e.location, Location::new(3, 5), "flag errors point at the flag");
    let e =
        build("FROM scratch\nRUN --mount=type=tmpfs,target=/t --mount=type=bind,mode=1 x\n", &options()).unwrap_err();
    assert_eq!(e.location, Location::new(2, 34), "and at the one of several at fault");
    let e = build("FROM scratch\nEXPOSE 80/xyz\n", &options()).unwrap_err();
    assert_eq!(e.kind.to_string(), "invalid proto: xyz");
    let e = build("FROM scratch\nCOPY --from=1 /a /b\n", &options()).unwrap_err();
    assert_eq!(e.to_string(), "Dockerfile:2:6: invalid stage index 1: there are only 1 stages");
    let e = build("FROM scratch\nCOPY --from=0 /a /b\n", &options()).unwrap_err();
    assert_eq!(e.to_string(), "Dockerfile:2:6: circular dependency detected on stage: 0");
    let e = build("FROM scratch\n  EXPOSE 80/xyz\n", &options()).unwrap_err();
    assert_eq!(e.location, Location::new(2, 3), "other errors point at the instruction");
    let e = build("FROM scratch\nWORKDIR ${x\n", &options()).unwrap_err();
    assert!(matches!(e.kind, crate::ParseErrorKind::BadExpansion { .. }), "{e:?}");
}

fn with_contexts(contexts: &[(&str, crate::NamedContext)]) -> BuildOptions {
    let mut o = options();
    o.named_contexts = contexts.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    o
}

fn local(source: &str) -> crate::NamedContext {
    crate::NamedContext::Local { source: source.into() }
}

fn local_sources(def: &BuildDefinition) -> Vec<String> {
    def.graph
        .ancestors(&[def.target])
        .into_iter()
        .filter_map(|id| match &def.graph.vertex(id).op {
            Op::Source(SourceOp::Local { name, .. }) => Some(name.clone()),
            _ => None,
        })
        .collect()
}

/// `--build-context NAME=docker-image://REF` replaces the image `FROM NAME` names (by
/// its short form, as BuildKit looks it up), and its config is REF's.
#[test]
fn a_named_image_context_replaces_the_image() {
    let options = with_contexts(&[("alpine", crate::NamedContext::Image("base:1".into()))]);
    for from in ["alpine", "alpine:latest", "docker.io/library/alpine"] {
        let def = build(&format!("FROM {from}\nRUN id\n"), &options).unwrap();
        assert_eq!(reachable_images(&def), vec!["base:1"], "FROM {from}");
        assert_eq!(last_exec(&def).user, "nobody");
    }
    // Another tag is another name.
    let def = build("FROM alpine:3.20\nRUN id\n", &options).unwrap();
    assert_eq!(reachable_images(&def), vec!["alpine:3.20"]);
    // COPY --from and RUN --mount=from too.
    let def = build("FROM scratch\nCOPY --from=alpine /a /a\n", &options).unwrap();
    assert_eq!(reachable_images(&def), vec!["base:1"]);
}

/// A local directory context: `COPY --from=NAME` reads it as it reads the build
/// context; `FROM NAME` makes it the stage's filesystem.
#[test]
fn a_named_local_context_is_a_directory_to_copy_from_or_build_on() {
    let options = with_contexts(&[("assets", local("context:assets"))]);
    let def = build("FROM base:1\nCOPY --from=assets /logo.png /srv/\n", &options).unwrap();
    assert_eq!(local_sources(&def), vec!["context:assets"]);

    let def = build("FROM assets\nRUN ls\n", &options).unwrap();
    assert_eq!(local_sources(&def), vec!["context:assets"]);
    assert!(reachable_images(&def).is_empty());
    let copy = def.graph.iter().map(|(_, v)| v).find(|v| v.name.contains("FROM assets")).expect("a FROM step");
    assert!(matches!(&copy.op, Op::File(f) if matches!(&f.actions[..], [FileAction::Copy(c)] if c.input == 1)));
}

/// A context named as a stage replaces the stage: what it would have run is not in
/// the graph, and stages built on it or copying from it get the context.
#[test]
fn a_named_context_replaces_the_stage_of_its_name() {
    let text =
        "FROM base:1 AS deps\nRUN make deps\nFROM deps AS app\nRUN make\nFROM base:1 AS out\nCOPY --from=deps /x /x\n";
    let options = with_contexts(&[("deps", crate::NamedContext::Image("prebuilt:2".into()))]);
    // The stage built FROM it, and the one copying from it.
    for target in ["app", "out"] {
        let def = build(text, &BuildOptions { target: Some(target.into()), ..options.clone() }).unwrap();
        assert!(reachable_images(&def).contains(&"prebuilt:2".to_string()), "target {target}");
        assert!(def.graph.iter().all(|(_, v)| !v.name.contains("make deps")), "the replaced stage was converted");
    }

    let options = with_contexts(&[("deps", local("context:deps"))]);
    let def = build(text, &options).unwrap();
    assert_eq!(local_sources(&def), vec!["context:deps"]);
}

fn git_sources(def: &BuildDefinition) -> Vec<solver::ir::GitSource> {
    def.graph
        .ancestors(&[def.target])
        .into_iter()
        .filter_map(|id| match &def.graph.vertex(id).op {
            Op::Source(SourceOp::Git(git)) => Some(git.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn add_git_urls_become_git_sources_with_flags() {
    let def = build(
        "FROM scratch\n\
         ADD --keep-git-dir=true --checksum=be1f38e https://h/r.git#v1:docs /d/\n\
         ADD git@h:o/r.git /e/\n",
        &options(),
    )
    .unwrap();
    let mut got = git_sources(&def);
    got.sort_by(|a, b| a.remote.cmp(&b.remote));
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].remote.as_str(), got[0].reference.as_str(), got[0].subdir.as_str()), ("git@h:o/r.git", "", ""));
    assert!(!got[0].keep_git_dir && got[0].checksum.is_none());
    assert_eq!((got[1].reference.as_str(), got[1].subdir.as_str()), ("v1", "docs"));
    assert!(got[1].keep_git_dir);
    assert_eq!(got[1].checksum.as_deref(), Some("be1f38e"));
    // A bad query is an error at the ADD.
    let err = build("FROM scratch\nADD https://h/r.git?colour=red /d/\n", &options()).unwrap_err();
    assert!(err.to_string().contains("Dockerfile:2") && err.to_string().contains("unknown query"), "{err}");
}

#[test]
fn git_and_http_named_contexts_are_filesystems() {
    let git = crate::parse_git_ref("https://h/r.git#main").unwrap().unwrap().source(None, None);
    let options = with_contexts(&[
        ("src", crate::NamedContext::Git(git.clone())),
        ("web", crate::NamedContext::Http { url: "https://h/c.tar.gz".into() }),
    ]);
    let def = build("FROM src\nCOPY --from=web / /web/\n", &options).unwrap();
    assert_eq!(git_sources(&def), [git]);
    let http = def.graph.ancestors(&[def.target]).into_iter().any(|id| {
        matches!(&def.graph.vertex(id).op, Op::Source(SourceOp::Http { url, filename, .. })
            if url == "https://h/c.tar.gz" && filename.as_deref() == Some("context"))
    });
    assert!(http);
}
