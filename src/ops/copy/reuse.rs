//! A COPY that changed in a few files costs what changed: unchanged files of the
//! previous result of the same COPY (same op, same context directory) are
//! hard-linked from its snapshot into the new one instead of being copied again.
//!
//! Only files are linked, and only when the new file would be the old one exactly:
//! the source is the one the previous copy read (same stat identity: device, inode,
//! size, mtime and ctime, as the context's stat cache knows a file), or has the
//! content digest it had (bytes, type, mode, owner); the old file was given the
//! owner, mode and mtime this copy gives it; and neither side has extended
//! attributes. Nothing is ever written through a link (the writer replaces files by
//! unlinking them), so snapshots stay immutable: a later RUN that changes such a file
//! copies it up into its own upperdir, as overlayfs does for any lower file.
//!
//! The memo (`cache/copy-reuse/<key>.memo` in the store, key = the op and the context
//! directory, so one per COPY instruction, replaced by each run) names the result's
//! snapshot and, for each copied file, what the copy gave it. It is a hint: a missing
//! snapshot or memo only means copying everything.
//!
//! What a link costs is the `linkat` alone: the old file is neither stat'ed nor
//! listed for extended attributes, and a source whose stat identity is the recorded
//! one is neither hashed nor listed either. Skipping those checks is safe because:
//! - the memo says what the old file was given, and it is bound to the snapshot by
//!   its chain ID, a hash of the layer tars up to it: any snapshot of that chain
//!   holds the entries the memo's copy wrote with the owner, mode, mtime (to the
//!   second, as the tar has it) and extended attributes it gave them, and snapshots
//!   are never changed in place (above), so the layer made with the link is the one
//!   a copy would make. (Only a snapshot of the same chain made another way, say by
//!   a pull of an identical layer, can differ below the second of an mtime; that
//!   reaches no tar, only a later RUN's `stat`, as after any cache hit.)
//! - a source's ctime changes with any change to its bytes, owner, mode or extended
//!   attributes, and cannot be set back; with the same stat identity it has the
//!   recorded digest and still no extended attributes.
//! - should the snapshot or a file in it be gone (a GC since the memo was read), the
//!   link fails and the file is copied; should something be at the destination, the
//!   link fails with `EEXIST` and the writer replaces it as it would for a copy.

mod memo;

use crate::ops::context::{Context, StatKey};
use anyhow::{Context as _, Result};
use image_spec::Digest;
use memo::Memo;
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
    /// The previous result's snapshot and what the copy wrote by destination path.
    previous: Option<(PathBuf, HashMap<String, Written>)>,
    /// The previous result's top layer (its diffID), while its snapshot is there.
    previous_layer: Option<Digest>,
    /// Destination path → what this copy wrote there, for every regular file, in the
    /// batches the writer hands over (not copied into one list: it holds a record per
    /// file of the context).
    written: Vec<Vec<(String, Written)>>,
    pub linked: u64,
}

/// One regular file a copy wrote.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(crate) struct Written {
    /// Content digest of its source (`Context::entry_digest`).
    digest: [u8; 32],
    /// The owner, permission bits and mtime (seconds, nanoseconds) the copy gave it.
    ids: (u32, u32),
    mode: u32,
    mtime: (i64, i64),
    /// The source's stat identity, when the source had no extended attributes then
    /// (and so neither has the copy). Any change to a file's bytes, owner, mode or
    /// extended attributes changes its ctime, so while the identity is the same the
    /// source still has none and still has `digest`.
    plain_source: Option<StatKey>,
}

/// How the writer is to make one regular file.
pub(crate) enum Plan {
    /// Hard-link the previous result's file at this host path.
    Link(PathBuf),
    Copy,
}

/// One regular file this copy writes, for the next copy's memo.
pub(crate) struct Record {
    rel: String,
    written: Written,
}

impl Record {
    /// The file was copied (not linked) from a source with `meta`'s stat identity;
    /// `plain` says the source had no extended attributes.
    pub fn copied(&mut self, meta: &Metadata, plain: bool) {
        self.written.plain_source = plain.then(|| StatKey::of(meta));
    }
}

fn memo_path(store: &Store, key: &str) -> PathBuf {
    store.root().join("cache").join("copy-reuse").join(format!("{key}.memo"))
}

impl Reuse {
    /// Reuse for a copy from `context` into `root`, with the memo stored under `key`.
    pub fn load(store: &Store, key: &str, context: Arc<Context>, root: &Path) -> Reuse {
        let path = memo_path(store, key);
        let memo = match fs::read(&path) {
            Ok(bytes) => Memo::decode(&bytes)
                .inspect_err(|e| tracing::debug!("ignoring copy memo {}: {e:#}", path.display()))
                .ok(),
            Err(_) => None,
        };
        let memo = memo.filter(|memo| store.has_snapshot(&memo.chain));
        let previous_layer = memo.as_ref().and_then(|m| m.layer.clone());
        let previous = memo.map(|memo| (store.snapshot_path(&memo.chain), memo.files.into_iter().flatten().collect()));
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
        let memo = Memo { chain: chain.clone(), layer: Some(layer.clone()), files: self.written };
        store.write_file(&path, "copy-memo", &memo.encode()?, Durability::Renamed)?;
        // An older builder's memo of the same COPY (JSON), which this one never reads.
        let _ = fs::remove_file(path.with_extension("json"));
        Ok(())
    }

    /// Before a regular file `src` (metadata `meta`) is written to `dst` with owner
    /// `ids` and permission bits `mode`: whether the previous result has it already,
    /// and what to record of it for the next copy (see [`Reuse::add`]).
    pub(crate) fn plan(
        &self,
        src: &Path,
        meta: &Metadata,
        dst: &Path,
        ids: (u32, u32),
        mode: u32,
    ) -> Result<(Plan, Option<Record>)> {
        // A file with several names is copied once and linked to itself (the writer's
        // link groups); one outside the copy must not become part of the group.
        let Some(rel) = dst.strip_prefix(&self.root).ok().and_then(Path::to_str).filter(|_| meta.nlink() == 1) else {
            return Ok((Plan::Copy, None));
        };
        let key = StatKey::of(meta);
        let mtime = (meta.mtime(), meta.mtime_nsec());
        let old = self.previous.as_ref().and_then(|(_, files)| files.get(rel));
        let gives = |w: &Written| w.ids == ids && w.mode == mode && w.mtime == mtime;
        let (written, link) = match old {
            // The very file the previous copy read, without extended attributes: its
            // digest is the one recorded, and listing its attributes would find none.
            Some(old) if old.plain_source == Some(key) && gives(old) => (*old, true),
            old => {
                let digest = self.context.entry_digest_of(src, meta)?;
                let link = old.is_some_and(|old| old.digest == digest && gives(old)) && !has_xattrs(src);
                (Written { digest, ids, mode, mtime, plain_source: link.then_some(key) }, link)
            }
        };
        let plan = match &self.previous {
            Some((snapshot, _)) if link => Plan::Link(snapshot.join(rel)),
            _ => Plan::Copy,
        };
        Ok((plan, Some(Record { rel: rel.to_string(), written })))
    }

    /// Notes files written as [`Reuse::plan`] said, `linked` of them linked.
    pub(crate) fn add(&mut self, records: Vec<Record>, linked: u64) {
        let few = records.len() < 64;
        let batch = records.into_iter().map(|r| (r.rel, r.written));
        // A copy on one thread hands over one file at a time: onto the last batch.
        match self.written.last_mut() {
            Some(last) if few && last.len() < 4096 => last.extend(batch),
            _ => self.written.push(batch.collect()),
        }
        self.linked += linked;
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
        // The two names of a file stay one file.
        assert_eq!(ino(&new.join("linked-twice.txt")), ino(&second_dir.join("app/other-name.txt")));

        // A memo whose snapshot is gone is no memo.
        std::fs::remove_dir_all(&snapshot).unwrap();
        let third = run(&dir.path().join("third"));
        assert_eq!(third.linked, 0);
    }

    #[test]
    fn a_source_is_linked_by_its_identity_or_its_digest_and_copied_once_it_has_xattrs() {
        let (dir, store) = store::testing::test_store();
        let ctx = dir.path().join("ctx");
        fs::create_dir_all(&ctx).unwrap();
        for name in ["untouched", "chmodded-back", "gains-xattr"] {
            fs::write(ctx.join(name), name).unwrap();
        }
        let copy = CopyAction::new(1, vec![".".into()], "/app/");
        let mut round = 0;
        let mut run = |touch: &dyn Fn()| {
            touch();
            round += 1;
            let upper = dir.path().join(format!("round-{round}"));
            let context = Arc::new(Context::new(&ctx, &[]).unwrap());
            context.digest_selection(&copy).unwrap();
            fs::create_dir_all(&upper).unwrap();
            let reuse = Reuse::load(&store, "k", context.clone(), &upper);
            let reuse = apply_copy_reusing(&copy, &CopySource::Context(&context), &upper, reuse).unwrap();
            let chain = Digest::of(format!("round {round}").as_bytes());
            let snapshot = store.commit_snapshot(upper, &chain).unwrap();
            let linked = reuse.linked;
            reuse.save(&store, "k", &chain, &chain).unwrap();
            (snapshot.join("app"), linked)
        };
        let (first, _) = run(&|| {});
        let (second, linked) = run(&|| {
            // Same bytes, mode and mtime, but a new ctime: found by its digest.
            let path = ctx.join("chmodded-back");
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        });
        assert_eq!(linked, 3);
        for name in ["untouched", "chmodded-back", "gains-xattr"] {
            assert_eq!(ino(&first.join(name)), ino(&second.join(name)), "{name}");
        }
        if let Err(e) = xattr::set(ctx.join("gains-xattr"), "user.builder-test", b"1") {
            println!(
                "SKIPPED a_source_is_linked_by_its_identity_or_its_digest_and_copied_once_it_has_xattrs: no user xattrs here ({e})"
            );
            return;
        }
        for expected_links in [2, 2] {
            let (third, linked) = run(&|| {});
            assert_eq!(linked, expected_links, "the file with an xattr is copied, every time");
            assert_ne!(ino(&second.join("gains-xattr")), ino(&third.join("gains-xattr")));
            assert_eq!(xattr::get(third.join("gains-xattr"), "user.builder-test").unwrap(), Some(b"1".to_vec()));
            assert_eq!(ino(&first.join("untouched")), ino(&third.join("untouched")));
        }
    }

    /// Everything a layer's tar says of a tree, by path.
    fn listing(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut groups: HashMap<u64, String> = HashMap::new();
        for entry in walk(root) {
            let meta = fs::symlink_metadata(&entry).unwrap();
            let rel = entry.strip_prefix(root).unwrap().display().to_string();
            let content = if meta.is_file() {
                let first = groups.entry(meta.ino()).or_insert_with(|| rel.clone());
                format!("{:?} first name {first}", fs::read(&entry).unwrap())
            } else if meta.is_symlink() {
                format!("-> {}", fs::read_link(&entry).unwrap().display())
            } else {
                String::new()
            };
            let xattrs: Vec<_> = xattr::list(&entry).map(|l| l.collect()).unwrap_or_default();
            out.push(format!(
                "{rel} {:o} {}:{} {}.{} {content} {xattrs:?}",
                meta.mode(),
                meta.uid(),
                meta.gid(),
                meta.mtime(),
                meta.mtime_nsec()
            ));
        }
        out
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut names: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        names.sort();
        for path in names {
            out.push(path.clone());
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                out.extend(walk(&path));
            }
        }
        out
    }

    #[test]
    fn the_thread_pool_writes_what_one_thread_writes() {
        let (dir, store) = store::testing::test_store();
        let ctx = dir.path().join("ctx");
        for (i, rel) in ["a/x", "a/only-a", "a/deep/er/file", "b/x", "b/y", "b/deep/other"].iter().enumerate() {
            let path = ctx.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, rel).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600 + i as u32)).unwrap();
            filetime::set_file_mtime(&path, filetime::FileTime::from_unix_time(1_600_000_000 + i as i64, 7)).unwrap();
        }
        std::os::unix::fs::symlink("x", ctx.join("b/link")).unwrap();
        fs::hard_link(ctx.join("b/y"), ctx.join("b/deep/y-again")).unwrap();
        fs::set_permissions(ctx.join("a/deep"), fs::Permissions::from_mode(0o555)).unwrap();
        for d in ["a/deep/er", "a/deep", "a", "b/deep", "b"] {
            filetime::set_file_mtime(ctx.join(d), filetime::FileTime::from_unix_time(1_500_000_000, 3)).unwrap();
        }
        // Two sources writing the same names: the second replaces the first's.
        let copy = CopyAction::new(1, vec!["a".into(), "b".into()], "/app/");
        let context = Arc::new(Context::new(&ctx, &[]).unwrap());
        context.digest_selection(&copy).unwrap();

        let (one, pool) = (dir.path().join("one"), dir.path().join("pool"));
        fs::create_dir_all(&one).unwrap();
        fs::create_dir_all(&pool).unwrap();
        crate::ops::copy::apply_copy(&copy, &CopySource::Context(&context), &one).unwrap();
        let reuse = Reuse::load(&store, "k", context.clone(), &pool);
        let reuse = apply_copy_reusing(&copy, &CopySource::Context(&context), &pool, reuse).unwrap();
        // Both x, and every other singly linked file once.
        let written: Vec<_> = reuse.written.iter().flatten().map(|w| &w.0).collect();
        assert_eq!(written.len(), 5, "{written:?}");
        let listed = listing(&one);
        assert!(listed.iter().any(|l| l.starts_with("app/x 100603 ")), "b's x won: {listed:#?}");
        // But for /app itself, made now by both.
        assert_eq!(listed[1..], listing(&pool)[1..]);
    }
}
