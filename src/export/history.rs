//! The history of an exported image, dated as BuildKit's exporter dates it: the
//! config of the result with the base history followed by one entry per instruction.

use anyhow::{Context as _, Result};
use image_spec::{History, ImageConfig, LayerInfo, RootFs, host_platform};

use crate::ops::Output;

/// The image config of the result: the stage's config, its layers' diffIDs, and the
/// base history followed by one entry per instruction.
///
/// Times, as BuildKit gives them: with `SOURCE_DATE_EPOCH`, the epoch everywhere;
/// else a step's new layer is dated when it was made (a cached step keeps the time of
/// the build that made it, [`Output::made`]), the other entries take their times from
/// the layers around them ([`fill_history_times`]) and the image is as old as its last
/// entry. An unchanged build therefore gives the same image, on this store or on any
/// other that imports its cache.
pub fn image_config(
    definition: &frontend::BuildDefinition,
    layers: &[LayerInfo],
    step_outputs: &[Output],
    epoch: Option<i64>,
) -> Result<ImageConfig> {
    let epoch = epoch.map(|e| crate::archive::created_time(Some(e)));
    let mut history = definition.image.base_history.clone();
    let base_layers = history.iter().filter(|h| h.empty_layer != Some(true)).count();
    let mut seen = base_layers.min(layers.len());
    let mut outputs = step_outputs.iter();
    for step in &definition.image.history {
        let mut made = None;
        if step.layer.is_some() {
            let output = outputs.next().context("missing step output")?;
            let count = output.layers()?.len();
            if count > seen {
                seen = count;
                made = Some(output.made().map_or_else(|| crate::archive::created_time(None), str::to_string));
            }
        }
        history.push(History {
            created: epoch.clone().or_else(|| made.clone()),
            created_by: Some(step.created_by.clone()),
            author: None,
            comment: step.comment.clone(),
            empty_layer: made.is_none().then_some(true),
        });
    }
    fill_history_times(&mut history);
    let created = epoch.or_else(|| history.iter().rev().find_map(|h| h.created.clone()));
    let platform = host_platform();
    Ok(ImageConfig {
        created,
        author: None,
        architecture: platform.architecture,
        os: platform.os,
        variant: platform.variant,
        config: definition.image.config.clone(),
        rootfs: RootFs { kind: "layers".into(), diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect() },
        history,
        inline_cache: None,
    })
}

/// Dates the history entries that have no time, as BuildKit's exporter does: those
/// before the build's first new layer take that layer's time, later ones the time of
/// the layer before them.
fn fill_history_times(history: &mut [History]) {
    let mut created = None;
    let mut undated = false;
    for entry in history.iter() {
        match &entry.created {
            Some(time) => {
                created = Some(time.clone());
                if undated {
                    break;
                }
            }
            None => undated = true,
        }
    }
    let mut undated = false;
    for entry in history.iter_mut() {
        match &entry.created {
            Some(time) if undated => created = Some(time.clone()),
            Some(_) => {}
            None => {
                undated = true;
                entry.created = created.clone();
            }
        }
    }
}
