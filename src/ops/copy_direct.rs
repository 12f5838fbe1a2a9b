//! A COPY from the build context into a top-level directory the parent filesystem
//! does not have (`COPY . /app/`, the usual way a project gets into an image) is
//! written straight into the new layer's directory, without an overlay mount: nothing
//! below can show through a path that does not exist there, so the upperdir an
//! overlay would leave holds exactly the same entries. Written that way, a file the
//! previous result of the same COPY already holds unchanged is hard-linked from that
//! result's snapshot instead of copied ([`Reuse`]), so a one-file change in a large
//! COPY copies one file; the layer's diffID is then hashed over the new snapshot.

use super::context::Context;
use super::copy::{CopySource, Reuse, apply_copy_reusing};
use super::{BuildWorker, Output, stack_layer};
use anyhow::Result;
use solver::ir::{CopyAction, FileAction, FileOp, Owner};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// The copy and its context when `op` is a single COPY from the context whose
/// destination's first path component exists in none of `lowers` (and that needs
/// nothing from the parent filesystem: no `--chown` by name, no `--parents`, no
/// archive to unpack).
pub fn direct_copy<'a>(
    op: &'a FileOp,
    inputs: &[Output],
    lowers: &[PathBuf],
) -> Option<(&'a CopyAction, Arc<Context>)> {
    let [FileAction::Copy(copy)] = op.actions.as_slice() else { return None };
    let Some(Output::Context(context)) = inputs.get(copy.input) else { return None };
    if copy.parents || copy.unpack_archives || !copy.owner.as_ref().is_none_or(is_numeric) {
        return None;
    }
    let cleaned = crate::ignore::clean_path(&format!("/{}", copy.dest));
    let top = match Path::new(cleaned.trim_start_matches('/')).components().next() {
        Some(Component::Normal(name)) => name.to_owned(),
        _ => return None,
    };
    // Anything there (a directory, a file, a symlink, a whiteout) or an error reading
    // it: the overlay decides.
    let absent = |lower: &PathBuf| matches!(std::fs::symlink_metadata(lower.join(&top)), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    lowers.iter().all(absent).then(|| (copy, context.clone()))
}

/// An owner given by numbers, resolved without the parent's /etc/passwd.
fn is_numeric(owner: &Owner) -> bool {
    owner.user.parse::<u32>().is_ok() && owner.group.as_deref().is_none_or(|g| g.parse::<u32>().is_ok())
}

/// Runs the copy into `upperdir`, taking unchanged files from the previous result of
/// the same copy from the same context directory, and stacks the layer on `parent`.
pub fn exec(
    worker: &BuildWorker<'_>,
    copy: &CopyAction,
    context: Arc<Context>,
    parent: &Output,
    upperdir: PathBuf,
) -> Result<Output> {
    let store = worker.store;
    let parent_layers = parent.layers()?;
    // What a direct copy writes depends on the op and the context's files alone (the
    // parent only decides that it may be direct): the memo is the op's, from this
    // context directory, whatever the parent, so a new base image still links.
    let mut h = solver::KeyHasher::new("copy-reuse");
    h.key(&solver::CacheKey::of("copy", copy));
    h.bytes(context.root().as_os_str().as_encoded_bytes());
    let key = h.finish().to_hex();

    let reuse = Reuse::load(store, &key, context.clone(), &upperdir);
    let reuse = apply_copy_reusing(copy, &CopySource::Context(&context), &upperdir, reuse)?;
    if reuse.linked > 0 {
        tracing::debug!("{} unchanged files linked from the previous result", reuse.linked);
    }
    // The previous result's layer, kept packed: the new one's hash resumes from its
    // checkpoints where the two tars agree.
    let previous = reuse.previous_layer().and_then(|d| store.packed_layer(d));
    let layer =
        crate::layer::diff_to_step_layer_after(store, &upperdir, &worker.options.layer_options, previous.as_ref())?;
    let output = stack_layer(store, parent, upperdir, layer)?;
    if let Output::Layers(layers, _) = &output
        && layers.len() > parent_layers.len()
    {
        let chain = image_spec::chain_ids(&layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>());
        let top = chain.last().expect("one layer at least");
        let layer = &layers.last().expect("one layer at least").diff_id;
        // A lost memo only costs copying everything next time.
        if let Err(e) = reuse.save(store, &key, top, layer) {
            tracing::warn!("remembering the copy for the next build: {e:#}");
        }
    }
    Ok(output)
}
