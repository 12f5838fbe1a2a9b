//! `builder build --platform A,B`: the Dockerfile is compiled once per target
//! platform and the graphs merged into one ([`solver::Graph::merge`]), so what is the
//! same for every platform — the build context, a stage on `$BUILDPLATFORM`, a COPY
//! of the same files onto the same input — is one vertex, solved once. Each platform
//! then gets its image, and the outputs combine them ([`crate::export::multi`]).

use crate::export::OutputSpec;
use crate::export::multi::PlatformResult;
use crate::progress::Task;
use anyhow::{Result, anyhow};
use image_spec::{Digest, ImageConfig, Platform, host_platform};
use solver::ProgressSink;
use store::Store;

/// The `--platform` values (each may be a comma-separated list): the platforms in
/// the order given, each once; the machine's when none is given.
pub fn parse(values: &[String]) -> Result<Vec<Platform>> {
    let mut platforms: Vec<Platform> = Vec::new();
    for value in values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|v| !v.is_empty()) {
        let platform = Platform::parse(value).map_err(|e| crate::usage_error(anyhow!("--platform: {e}")))?;
        if !platforms.iter().any(|p| p.normalized() == platform.normalized()) {
            platforms.push(platform);
        }
    }
    if platforms.is_empty() {
        platforms.push(host_platform());
    }
    Ok(platforms)
}

/// The image config says which platform the image is for.
pub fn set_config_platform(config: &mut ImageConfig, platform: &Platform) {
    config.architecture = platform.architecture.clone();
    config.os = platform.os.clone();
    config.variant = platform.variant.clone();
}

/// One graph for every platform: each definition's graph becomes the merged one and
/// its vertex ids (target, history layers) are moved into it.
pub fn merge(compiled: Vec<(Platform, frontend::BuildDefinition)>) -> Vec<(Platform, frontend::BuildDefinition)> {
    let mut graph = solver::Graph::new();
    let mut moved = Vec::with_capacity(compiled.len());
    for (platform, mut definition) in compiled {
        let ids = graph.merge(&definition.graph);
        definition.target = ids[definition.target.0];
        for step in &mut definition.image.history {
            step.layer = step.layer.map(|id| ids[id.0]);
        }
        moved.push((platform, definition));
    }
    for (_, definition) in &mut moved {
        definition.graph = graph.clone();
    }
    moved
}

/// Runs every output for the platforms' results; returns the digest of their index
/// (written to the store when no output wrote one).
pub fn export_all(
    store: &Store,
    outputs: &[OutputSpec],
    results: &[PlatformResult],
    progress: &dyn ProgressSink,
) -> Result<Digest> {
    let mut index = None;
    for output in outputs {
        let task = Task::start(progress, crate::export::step_name(output));
        let written = crate::export::multi::export(store, output, results, &task);
        let written = task.finish(written)?;
        index = index.or(written);
    }
    match index {
        Some(index) => Ok(index),
        // Filesystem outputs only: the index is still worth reporting.
        None => {
            Ok(crate::export::multi::write_index(store, &OutputSpec::new(crate::export::OutputKind::Image), results)?.1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_a_list_given_once_each() {
        let given = ["linux/amd64,linux/arm64".to_string(), "linux/aarch64, linux/arm/v7".to_string()];
        let parsed: Vec<String> = parse(&given).unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(parsed, ["linux/amd64", "linux/arm64", "linux/arm/v7"]);
        assert_eq!(parse(&[]).unwrap(), [host_platform()]);
        assert!(parse(&["linux".to_string()]).unwrap_err().to_string().contains("invalid platform \"linux\""));
        assert_eq!(crate::export::multi::platform_dir(&parsed_one("linux/arm/v7")), "linux_arm_v7");
    }

    fn parsed_one(s: &str) -> Platform {
        Platform::parse(s).unwrap()
    }
}
