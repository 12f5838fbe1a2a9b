//! Which platform a stage and its ops are for. A stage runs on `FROM --platform`'s
//! platform, else on the target's. Ops name a platform only when it is not the
//! build platform (the machine's): a single-platform build for the machine keeps
//! the graph, and the cache keys, it always had, and two target graphs of a
//! multi-platform build differ exactly where their platforms do (see
//! `solver::Graph::merge`).

use super::stage::StageState;
use super::{ConvertError, Converter};
use crate::error::{Location, ParseError};
use image_spec::Platform;

impl Converter<'_> {
    /// The platform of a stage whose `FROM --platform=` expanded to `written`.
    pub(super) fn stage_platform(&self, written: Option<&str>, at: Location) -> Result<Platform, ConvertError> {
        match written {
            Some(p) => Platform::parse(p).map_err(|e| ParseError::invalid(at, e.to_string())),
            None => Ok(self.options.platform.clone()),
        }
    }

    /// `Some(platform)` when `platform` is not the build platform.
    pub(super) fn foreign_platform(&self, platform: &Platform) -> Option<String> {
        (platform.normalized() != self.options.build_platform.normalized()).then(|| platform.to_string())
    }

    /// `->arm64` after a stage's platform in step names, as BuildKit's
    /// `formatTargetPlatform`: the stage runs on another platform than the target's
    /// and has declared a `TARGET*` arg, so its steps differ per target.
    pub(super) fn target_suffix(&self, st: &StageState) -> String {
        let target = &self.options.platform;
        let declared = st.state_env.iter().any(|e| e.starts_with("TARGET"));
        if !declared || st.platform.normalized() == target.normalized() {
            String::new()
        } else if st.platform.os != target.os {
            format!("->{target}")
        } else {
            let variant = target.variant.as_ref().map(|v| format!("/{v}")).unwrap_or_default();
            format!("->{}{variant}", target.architecture)
        }
    }

    /// The platform an image source names: what `FROM --platform` wrote, else the
    /// stage's platform when it is not the build platform.
    pub(super) fn source_platform(&self, written: Option<&String>, platform: &Platform) -> Option<String> {
        written.cloned().or_else(|| self.foreign_platform(platform))
    }
}

#[cfg(test)]
mod tests {
    use crate::{BaseImage, BuildDefinition, BuildOptions, ImageResolver, ResolveError, compile};
    use image_spec::Platform;
    use solver::ir::{ExecOp, Op, SourceOp};
    use std::sync::Mutex;

    /// Remembers which platform each base was asked for.
    #[derive(Default)]
    struct Resolver(Mutex<Vec<String>>);

    impl ImageResolver for Resolver {
        fn resolve(&self, reference: &str, platform: &Platform) -> Result<Option<BaseImage>, ResolveError> {
            self.0.lock().unwrap().push(format!("{reference} {platform}"));
            Ok(Some(BaseImage { reference: reference.into(), ..BaseImage::default() }))
        }
    }

    const CROSS: &str = "FROM --platform=$BUILDPLATFORM busybox AS build\n\
        RUN echo $BUILDARCH > /buildarch\n\
        ARG TARGETARCH\n\
        RUN echo $TARGETARCH > /targetarch\n\
        FROM busybox\n\
        RUN uname -m > /arch\n\
        COPY --from=build /targetarch /\n";

    fn compile_for(target: &str, resolver: &Resolver) -> BuildDefinition {
        let options = BuildOptions {
            multi_platform: true,
            ..BuildOptions::new(Platform::parse(target).unwrap(), Platform::new("linux", "amd64"))
        };
        compile(CROSS, &options, resolver).unwrap()
    }

    fn execs(def: &BuildDefinition) -> Vec<(String, Option<String>, Vec<String>)> {
        def.graph
            .iter()
            .filter_map(|(_, v)| match &v.op {
                Op::Exec(ExecOp { env, .. }) => Some((v.name.clone(), v.platform.clone(), env.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn stages_run_on_their_platform_and_name_it() {
        let resolver = Resolver::default();
        let def = compile_for("linux/arm64", &resolver);
        let execs = execs(&def);
        let find =
            |text: &str| execs.iter().find(|e| e.0.contains(text)).unwrap_or_else(|| panic!("{text}: {execs:?}"));
        let build = find("/buildarch");
        assert_eq!(build.0, "[linux/amd64 build 2/3] RUN echo $BUILDARCH > /buildarch");
        assert_eq!(build.1, None, "the build stage runs on the build platform");
        assert!(find("/targetarch").2.contains(&"TARGETARCH=arm64".to_string()));
        let target = find("/arch");
        assert_eq!(target.0, "[linux/arm64 stage-1 2/3] RUN uname -m > /arch");
        assert_eq!(target.1.as_deref(), Some("linux/arm64"));
        let sources: Vec<Option<String>> = def
            .graph
            .iter()
            .filter_map(|(_, v)| match &v.op {
                Op::Source(SourceOp::Image { platform, .. }) => Some(platform.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(sources, [Some("linux/arm64".to_string()), Some("linux/amd64".to_string())]);
        assert_eq!(*resolver.0.lock().unwrap(), ["busybox linux/arm64", "busybox linux/amd64"]);
    }

    #[test]
    fn two_targets_share_what_runs_on_the_build_platform() {
        let resolver = Resolver::default();
        let mut graph = compile_for("linux/amd64", &resolver).graph;
        let arm = compile_for("linux/arm64", &resolver);
        let before = graph.len();
        graph.merge(&arm.graph);
        let names: Vec<&str> = graph.iter().skip(before).map(|(_, v)| v.name.as_str()).collect();
        // The build stage's base and its first RUN are shared; what reads TARGETARCH
        // and the target stage are per platform.
        assert!(names.iter().all(|n| !n.contains("/buildarch") && !n.contains("build 1/3")), "{names:?}");
        assert!(names.contains(&"[linux/arm64 stage-1 2/3] RUN uname -m > /arch"), "{names:?}");
        assert!(names.contains(&"[linux/amd64->arm64 build 3/3] RUN echo arm64 > /targetarch"), "{names:?}");
        assert_eq!(names.len(), 4, "{names:?}");
    }
}
