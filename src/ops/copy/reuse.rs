//! A COPY that changed in a few files costs what changed: unchanged files of the
//! previous result of the same COPY (same op, same context directory) are
//! hard-linked from its snapshot into the new one instead of being copied again.
//!
//! Only files are linked, and only when the new file would be the old one exactly:
//! the source's content digest (from the context's stat cache: bytes, type, mode,
//! owner) is the one the previous copy recorded for that destination, the linked
//! inode already has the owner, mode and mtime this copy gives it, and neither side
//! has extended attributes. Nothing is ever written through a link (the writer
//! replaces files by unlinking them), so snapshots stay immutable: a later RUN that
//! changes such a file copies it up into its own upperdir, as overlayfs does for any
//! lower file.
//!
//! The memo (`cache/copy-reuse/<key>.json` in the store, key = the op and the context
//! directory, so one per COPY instruction, replaced by each run) names the result's
//! snapshot and each copied file's digest. It is a hint: a missing snapshot or memo
//! only means copying everything.

use crate::ops::context::Context;
use anyhow::{Context as _, Result};
use image_spec::Digest;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::{Durability, Store};

/// What one COPY's previous result offers, and what this copy records for the next.
pub struct Reuse {
    context: Arc<Context>,
    /// The directory the copy writes into (the new layer's upperdir).
    root: PathBuf,
    /// The previous result's snapshot and its files' digests by destination path.
    previous: Option<(PathBuf, HashMap<PathBuf, String>)>,
    /// The previous result's top layer (its diffID), while its snapshot is there.
    previous_layer: Option<Digest>,
    /// Destination path → digest of every regular file this copy wrote.
    written: Vec<(String, String)>,
    pub linked: u64,
}

#[derive(Serialize, Deserialize)]
struct Memo {
    /// The chain ID of the result's top layer: its snapshot.
    chain: Digest,
    /// (destination path relative to the layer root, content digest of its source).
    files: Vec<(String, String)>,
    /// The diffID of the result's top layer: the layer's hash may resume from its
    /// checkpoints (`layer::resume`).
    #[serde(default)]
    layer: Option<Digest>,
}

fn memo_path(store: &Store, key: &str) -> PathBuf {
    store.root().join("cache").join("copy-reuse").join(format!("{key}.json"))
}

impl Reuse {
    /// Reuse for a copy from `context` into `root`, with the memo stored under `key`.
    pub fn load(store: &Store, key: &str, context: Arc<Context>, root: &Path) -> Reuse {
        let memo = fs::read(memo_path(store, key))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Memo>(&bytes).ok())
            .filter(|memo| store.has_snapshot(&memo.chain));
        let previous_layer = memo.as_ref().and_then(|m| m.layer.clone());
        let previous = memo.map(|memo| {
            let files = memo.files.into_iter().map(|(rel, digest)| (PathBuf::from(rel), digest)).collect();
            (store.snapshot_path(&memo.chain), files)
        });
        Reuse { context, root: root.to_path_buf(), previous, previous_layer, written: Vec::new(), linked: 0 }
    }

    /// The previous result's top layer (its diffID).
    pub fn previous_layer(&self) -> Option<&Digest> {
        self.previous_layer.as_ref()
    }

    /// Records what this copy wrote as the memo for the next one, whose result is the
    /// snapshot of `chain`.
    pub fn save(self, store: &Store, key: &str, chain: &Digest, layer: &Digest) -> Result<()> {
        let path = memo_path(store, key);
        let dir = path.parent().expect("a memo has a directory");
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let memo = Memo { chain: chain.clone(), files: self.written, layer: Some(layer.clone()) };
        let bytes = serde_json::to_vec(&memo).context("serializing a copy memo")?;
        Ok(store.write_file(&path, "copy-memo", &bytes, Durability::Renamed)?)
    }

    /// Before a regular file `src` (metadata `meta`) is copied to `dst`: links the
    /// previous result's identical file there instead, if there is one whose inode
    /// already has `ids`, `mode` and `meta`'s mtime. Returns whether it did; either
    /// way the file is recorded for the next copy.
    pub fn try_link(&mut self, src: &Path, meta: &Metadata, dst: &Path, ids: (u32, u32), mode: u32) -> Result<bool> {
        let Ok(rel) = dst.strip_prefix(&self.root) else { return Ok(false) };
        if meta.nlink() > 1 {
            return Ok(false);
        }
        let digest = hex::encode(self.context.entry_digest_of(src, meta)?);
        if let Some(rel_str) = rel.to_str() {
            self.written.push((rel_str.to_string(), digest.clone()));
        }
        let Some((snapshot, files)) = &self.previous else { return Ok(false) };
        if files.get(rel) != Some(&digest) || has_xattrs(src) {
            return Ok(false);
        }
        let old = snapshot.join(rel);
        let Ok(old_meta) = fs::symlink_metadata(&old) else { return Ok(false) };
        let same = old_meta.is_file()
            && old_meta.size() == meta.size()
            && (old_meta.uid(), old_meta.gid()) == ids
            && old_meta.mode() & 0o7777 == mode
            && (old_meta.mtime(), old_meta.mtime_nsec()) == (meta.mtime(), meta.mtime_nsec())
            && !has_xattrs(&old);
        if !same {
            return Ok(false);
        }
        // The previous snapshot is a hint: if it cannot be linked from, copy.
        if let Err(e) = fs::hard_link(&old, dst) {
            tracing::debug!("linking {} to {}: {e}", old.display(), dst.display());
            return Ok(false);
        }
        self.linked += 1;
        Ok(true)
    }
}

fn has_xattrs(path: &Path) -> bool {
    xattr::list(path).map_or(true, |mut names| names.next().is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::copy::{CopySource, apply_copy_reusing};
    use solver::ir::CopyAction;
    use std::os::unix::fs::PermissionsExt;

    fn ino(path: &Path) -> u64 {
        fs::symlink_metadata(path).unwrap().ino()
    }

    #[test]
    fn unchanged_files_are_linked_from_the_previous_result_and_changed_ones_copied() {
        let (dir, store) = store::testing::test_store();
        let ctx = dir.path().join("ctx");
        for name in ["same.txt", "edited.txt", "chmodded.txt", "linked-twice.txt"] {
            std::fs::create_dir_all(ctx.join("sub")).unwrap();
            fs::write(ctx.join("sub").join(name), name).unwrap();
        }
        fs::hard_link(ctx.join("sub/linked-twice.txt"), ctx.join("other-name.txt")).unwrap();
        let copy = CopyAction::new(1, vec![".".into()], "/app/");
        let run = |upper: &Path| {
            let context = Arc::new(Context::new(&ctx, &[]).unwrap());
            // As a build does: the cache key reads every file first.
            context.digest_selection(&copy).unwrap();
            fs::create_dir_all(upper).unwrap();
            let reuse = Reuse::load(&store, "k", context.clone(), upper);
            apply_copy_reusing(&copy, &CopySource::Context(&context), upper, reuse).unwrap()
        };

        let first = run(&dir.path().join("first"));
        assert_eq!(first.linked, 0);
        let chain = Digest::of(b"first result");
        let snapshot = store.commit_snapshot(dir.path().join("first"), &chain).unwrap();
        first.save(&store, "k", &chain, &chain).unwrap();

        fs::write(ctx.join("sub/edited.txt"), "new content").unwrap();
        fs::set_permissions(ctx.join("sub/chmodded.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        let second_dir = dir.path().join("second");
        let second = run(&second_dir);
        assert_eq!(second.linked, 1, "only same.txt is unchanged and singly linked");
        let (old, new) = (snapshot.join("app/sub"), second_dir.join("app/sub"));
        assert_eq!(ino(&old.join("same.txt")), ino(&new.join("same.txt")));
        for changed in ["edited.txt", "chmodded.txt", "linked-twice.txt"] {
            assert_ne!(ino(&old.join(changed)), ino(&new.join(changed)), "{changed}");
        }
        assert_eq!(fs::read_to_string(new.join("edited.txt")).unwrap(), "new content");
        assert_eq!(fs::read_to_string(old.join("edited.txt")).unwrap(), "edited.txt");
        assert_eq!(fs::symlink_metadata(old.join("chmodded.txt")).unwrap().mode() & 0o7777, 0o644);
        assert_eq!(fs::symlink_metadata(new.join("chmodded.txt")).unwrap().mode() & 0o7777, 0o600);

        // A memo whose snapshot is gone is no memo.
        std::fs::remove_dir_all(&snapshot).unwrap();
        let third = run(&dir.path().join("third"));
        assert_eq!(third.linked, 0);
    }
}
