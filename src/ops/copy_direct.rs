//! A COPY from the build context is written straight into the new layer's
//! directory, without an overlay mount, whenever the upperdir an overlay would leave
//! is known without one: the destination's path is made of plain directories in the
//! parent's merged view (or leads where the parent has nothing), and what the copy
//! writes meets nothing there but files it replaces and directories it merges into
//! ([`collide`]). The destination's directories the parent has, and the parent's
//! directories the copy's merge into, are first copied up as overlayfs does
//! ([`copy_up`]), looked up in the parent's snapshots with overlayfs's rules
//! ([`merged`]); then the layer's tar is the overlay path's, byte for byte. An ADD is
//! such a copy unless it has an archive to unpack, and a `--chown` by name is resolved
//! in the parent's merged `/etc/passwd` and `/etc/group`.
//!
//! Written that way, a file the previous result of the same COPY already holds
//! unchanged is hard-linked from that result's snapshot instead of copied ([`Reuse`]),
//! so a one-file change in a large COPY copies one file; the layer's diffID is then
//! hashed over the new snapshot.
//!
//! `BUILDER_DIRECT_COPY=0` sends every COPY through the overlay (a debugging switch:
//! both ways must give the same layers).

mod collide;
mod copy_up;
mod merged;

use super::context::Context;
use super::copy::{CopySource, Reuse, apply_copy_reusing};
use super::{BuildWorker, Output, stack_layer};
use anyhow::Result;
use collide::{DestView, Meeting};
use copy_up::CopiedUp;
use merged::{Found, MergedDir};
use solver::ir::{CopyAction, FileAction, FileOp, Owner};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A copy that is written directly, its destination's directories copied up.
pub struct Direct<'a> {
    copy: &'a CopyAction,
    /// A `--chown` by name, as the numbers it resolved to in the parent.
    owner: Option<Owner>,
    context: Arc<Context>,
    copied_up: CopiedUp,
}

/// Whether direct copies are allowed (`BUILDER_DIRECT_COPY=0` says no).
fn enabled() -> bool {
    std::env::var_os("BUILDER_DIRECT_COPY").is_none_or(|v| v != "0")
}

/// When `op` is a single COPY from the context that needs nothing from the parent
/// filesystem but `--chown` names (no `--parents`, no archive to unpack) and whose
/// upperdir is known without an overlay (see the module's doc): the copy, with the
/// destination's existing directories and those it merges into copied up into
/// `upperdir`. `lowers`: the
/// parent's snapshots, bottom first. `None` leaves `upperdir` as it was.
pub fn direct_copy<'a>(op: &'a FileOp, inputs: &[Output], lowers: &[PathBuf], upperdir: &Path) -> Option<Direct<'a>> {
    let [FileAction::Copy(copy)] = op.actions.as_slice() else { return None };
    let Some(Output::Context(context)) = inputs.get(copy.input) else { return None };
    if copy.parents || !enabled() {
        return None;
    }
    // What the copy writes at its targets (its sources resolved in the context); any
    // error resolving them is for the overlay path to report.
    let tops = collide::tops(copy, context).inspect_err(|e| tracing::debug!("COPY to {}: {e:#}", copy.dest)).ok()?;
    match collide::unpacks_an_archive(copy, &tops) {
        Ok(false) => {}
        Ok(true) => return None,
        Err(e) => {
            tracing::debug!("ADD to {}: {e:#}", copy.dest);
            return None;
        }
    }
    let dest = &copy.dest;
    let root = MergedDir::root(lowers);
    // A `--chown` by name, resolved in the parent's files as the overlay path resolves
    // it in the merged root: the copy is then made with the numbers.
    let owner = match &copy.owner {
        Some(owner) if !is_numeric(owner) => match numeric_owner(&root, owner) {
            Ok(numeric) => Some(numeric),
            Err(e) => {
                tracing::debug!("COPY to {dest}: --chown={}: {e:#}, through the overlay", owner.user);
                return None;
            }
        },
        _ => None,
    };
    let rel = PathBuf::from(crate::ignore::clean_path(&format!("/{dest}")).trim_start_matches('/'));
    let dest_is_dir = dest.ends_with('/') || dest.ends_with("/.") || dest == "." || rel.as_os_str().is_empty();
    // Any error reading the parent or the context: the overlay path decides.
    let merged::Walk { dirs, end } =
        merged::walk(&root, &rel).inspect_err(|e| tracing::debug!("COPY to {dest}: {e}")).ok()?;
    let view = match end {
        None => DestView::Dir(dirs.last().map_or(root, |(_, dir)| dir.clone())),
        Some(Found::Absent) => DestView::Absent,
        // A file at the destination itself is replaced; a symlink anywhere on the
        // way, or a file before its end, is for the overlay to resolve or refuse.
        Some(Found::NonDir(meta)) if dirs.len() + 1 == rel.iter().count() && !meta.is_symlink() => DestView::File,
        Some(_) => {
            tracing::debug!("COPY to {dest}: a non-directory on the way, through the overlay");
            return None;
        }
    };
    let merged = match collide::meeting(copy, context, &tops, &view, dest_is_dir, &rel) {
        Ok(Meeting::Direct(merged)) => merged,
        Ok(Meeting::Overlay(name)) => {
            tracing::debug!("COPY to {dest}: {:?} meets the parent's files, through the overlay", name);
            return None;
        }
        Err(e) => {
            tracing::debug!("COPY to {dest}: {e:#}");
            return None;
        }
    };
    let copied_up =
        CopiedUp::make(upperdir, &dirs, &merged).inspect_err(|e| tracing::debug!("COPY to {dest}: {e:#}")).ok()?;
    tracing::debug!("COPY to {dest}: written directly, {} directories copied up, {} merged", dirs.len(), merged.len());
    Some(Direct { copy, owner, context: context.clone(), copied_up })
}

/// `owner` as numbers, from the merged view's `/etc/passwd` and `/etc/group` (the
/// overlay path's rules, `copy::resolve_owner_in`); an error where the overlay path
/// must decide: a name not found (its error is the overlay path's to give), an `/etc`
/// or a file there that is not plain.
fn numeric_owner(root: &MergedDir, owner: &Owner) -> Result<Owner> {
    let read = |rel: &str| -> Result<String> {
        let path = Path::new(rel);
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return Ok(String::new()) };
        let etc = match merged::walk(root, dir)? {
            merged::Walk { end: Some(Found::Absent), .. } => return Ok(String::new()),
            merged::Walk { end: None, dirs } => dirs.last().map_or_else(|| root.clone(), |(_, d)| d.clone()),
            merged::Walk { end: Some(_), .. } => anyhow::bail!("/{} is not a directory", dir.display()),
        };
        match etc.regular_file(name)? {
            Some(file) => Ok(String::from_utf8_lossy(&std::fs::read(&file)?).into_owned()),
            None => Ok(String::new()),
        }
    };
    let ids = crate::ops::copy::resolve_owner_in(owner, &read)?;
    Ok(Owner { user: ids.uid.to_string(), group: Some(ids.gid.to_string()) })
}

/// An owner given by numbers, resolved without the parent's /etc/passwd.
fn is_numeric(owner: &Owner) -> bool {
    owner.user.parse::<u32>().is_ok() && owner.group.as_deref().is_none_or(|g| g.parse::<u32>().is_ok())
}

/// Runs the copy into `upperdir`, taking unchanged files from the previous result of
/// the same copy from the same context directory, and stacks the layer on `parent`.
pub fn exec(worker: &BuildWorker<'_>, direct: Direct<'_>, parent: &Output, upperdir: PathBuf) -> Result<Output> {
    let Direct { copy, owner, context, copied_up } = direct;
    let store = worker.store;
    let parent_layers = parent.layers()?;
    // The files a direct copy writes depend on the op and the context's files alone
    // (the parent decides that it may be direct, and the copied-up directories, which
    // are never linked): the memo is the op's, from this context directory, whatever
    // the parent, so a new base image still links.
    let mut h = solver::KeyHasher::new("copy-reuse");
    h.key(&solver::CacheKey::of("copy", copy));
    h.bytes(context.root().as_os_str().as_encoded_bytes());
    let key = h.finish().to_hex();

    let reuse = Reuse::load(store, &key, context.clone(), &upperdir);
    let resolved;
    let action = match owner {
        Some(owner) => {
            resolved = CopyAction { owner: Some(owner), ..copy.clone() };
            &resolved
        }
        None => copy,
    };
    let reuse = apply_copy_reusing(action, &CopySource::Context(&context), &upperdir, reuse)?;
    copied_up.prune()?;
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
