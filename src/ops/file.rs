//! File ops: COPY, ADD, WORKDIR's mkdir... applied through overlayfs so that the
//! result is exactly the layer Docker would produce.

use super::copy::{CopySource, apply_file_action};
use super::{BuildWorker, Output, stack_layer};
use anyhow::{Context as _, Result};
use solver::ir::{FileAction, FileOp};

pub fn exec(worker: &BuildWorker<'_>, op: &FileOp, inputs: &[Output]) -> Result<Output> {
    let store = worker.store;
    let parent_output = inputs.first().context("file op without a root filesystem input")?;
    let parent = parent_output.layers()?;
    let lowers = crate::layer::ensure_snapshots(store, parent)?;
    let scratch = store.temp_dir("file")?;
    let upperdir = scratch.path().join("upper");
    let workdir = scratch.path().join("work");
    std::fs::create_dir_all(&upperdir)?;
    std::fs::create_dir_all(&workdir)?;
    if let Some(direct) = super::copy_direct::direct_copy(op, inputs, &lowers, &upperdir) {
        return super::copy_direct::exec(worker, direct, parent_output, upperdir);
    }

    let mut roots = vec![executor::Rootfs {
        lowerdirs: lowers.into_iter().rev().collect(),
        upper: Some(executor::Upper { upperdir: upperdir.clone(), workdir }),
        readonly: false,
    }];
    // Other filesystem inputs (COPY --from) are mounted read-only beside the target.
    let mut view_of_input = vec![None; inputs.len()];
    for (i, input) in inputs.iter().enumerate().skip(1) {
        if let Output::Layers(layers, _) = input {
            let lowers = crate::layer::ensure_snapshots(store, layers)?;
            view_of_input[i] = Some(roots.len());
            roots.push(executor::Rootfs { lowerdirs: lowers.into_iter().rev().collect(), upper: None, readonly: true });
        }
    }

    let applied = executor::with_rootfs_mounted(&roots, |paths| -> Result<()> {
        for action in &op.actions {
            let input = match action {
                FileAction::Copy(copy) => Some(copy.input),
                _ => None,
            };
            let source = match input {
                None => None,
                Some(i) => match inputs.get(i).with_context(|| format!("copy from missing input {i}"))? {
                    Output::Context(context) => Some(CopySource::Context(context)),
                    Output::Layers(..) => Some(CopySource::Root(&paths[view_of_input[i].expect("view mounted")])),
                },
            };
            apply_file_action(action, source.as_ref(), &paths[0])?;
        }
        Ok(())
    })?;
    applied?;
    let layer = crate::layer::diff_to_step_layer(store, &upperdir, &worker.options.layer_options)?;
    stack_layer(store, parent_output, upperdir, layer)
}
