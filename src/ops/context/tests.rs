use super::*;
use std::os::unix::fs::{PermissionsExt, symlink};

fn write(root: &Path, rel: &str, data: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

/// A context with a few files, dirs, a symlink and ignored paths.
fn sample() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "a.txt", "a");
    write(root, "b.txt", "b");
    write(root, "src/main.rs", "fn main() {}");
    write(root, "src/lib/util.rs", "pub fn f() {}");
    write(root, "docs/readme.md", "docs");
    write(root, "node_modules/dep/index.js", "js");
    write(root, "node_modules/keep/keep.js", "kept");
    write(root, "secret.env", "TOKEN=1");
    symlink("a.txt", root.join("link")).unwrap();
    dir
}

fn excludes() -> Vec<String> {
    vec!["node_modules".into(), "!node_modules/keep".into(), "*.env".into()]
}

fn copy(sources: &[&str]) -> CopyAction {
    CopyAction::new(1, sources.iter().map(|s| s.to_string()).collect(), "/dst/")
}

fn digest(context: &Context, sources: &[&str]) -> ContentDigest {
    context.digest_selection(&copy(sources)).unwrap()
}

fn paths(d: &ContentDigest) -> Vec<&str> {
    d.entries.iter().map(|(p, _)| p.as_str()).collect()
}

#[test]
fn selects_exactly_the_copied_paths() {
    let dir = sample();
    let context = Context::new(dir.path(), &excludes()).unwrap();
    assert_eq!(paths(&digest(&context, &["a.txt"])), ["a.txt"]);
    assert_eq!(paths(&digest(&context, &["src"])), ["src", "src/lib", "src/lib/util.rs", "src/main.rs"]);
    assert_eq!(paths(&digest(&context, &["*.txt"])), ["a.txt", "b.txt"]);
    assert_eq!(
        paths(&digest(&context, &["."])),
        [
            ".",
            "a.txt",
            "b.txt",
            "docs",
            "docs/readme.md",
            "link",
            "node_modules",
            "node_modules/keep",
            "node_modules/keep/keep.js",
            "src",
            "src/lib",
            "src/lib/util.rs",
            "src/main.rs"
        ]
    );
}

#[test]
fn unselected_and_ignored_changes_do_not_count() {
    let dir = sample();
    let context = Context::new(dir.path(), &excludes()).unwrap();
    let before_src = digest(&context, &["src"]).digest;
    let before_all = digest(&context, &["."]).digest;
    write(dir.path(), "b.txt", "changed");
    assert_eq!(digest(&context, &["src"]).digest, before_src);
    let after_b = digest(&context, &["."]).digest;
    assert_ne!(after_b, before_all);
    write(dir.path(), "secret.env", "TOKEN=2");
    write(dir.path(), "node_modules/dep/index.js", "changed");
    write(dir.path(), "node_modules/new.js", "new");
    assert_eq!(digest(&context, &["."]).digest, after_b);
    write(dir.path(), "node_modules/keep/keep.js", "changed");
    assert_ne!(digest(&context, &["."]).digest, after_b);
}

#[test]
fn content_mode_and_link_target_count_but_mtime_does_not() {
    let dir = sample();
    let context = Context::new(dir.path(), &[]).unwrap();
    let base = digest(&context, &["."]).digest;
    let file = dir.path().join("a.txt");
    filetime::set_file_mtime(&file, filetime::FileTime::from_unix_time(1_000_000, 0)).unwrap();
    assert_eq!(digest(&context, &["."]).digest, base, "mtime must not count");

    fs::set_permissions(&file, fs::Permissions::from_mode(0o755)).unwrap();
    let after_mode = digest(&context, &["."]).digest;
    assert_ne!(after_mode, base);

    fs::remove_file(dir.path().join("link")).unwrap();
    symlink("b.txt", dir.path().join("link")).unwrap();
    let after_link = digest(&context, &["."]).digest;
    assert_ne!(after_link, after_mode);

    write(dir.path(), "a.txt", "A");
    assert_ne!(digest(&context, &["."]).digest, after_link);
}

#[test]
fn copy_filters_narrow_the_selection() {
    let dir = sample();
    let context = Context::new(dir.path(), &[]).unwrap();
    let mut action = copy(&["src"]);
    action.exclude = vec!["lib".into()];
    let selected = context.digest_selection(&action).unwrap();
    assert_eq!(paths(&selected), ["src", "src/main.rs"]);
    write(dir.path(), "src/lib/util.rs", "changed");
    assert_eq!(context.digest_selection(&action).unwrap().digest, selected.digest);

    let mut action = copy(&["."]);
    action.include = vec!["**/*.rs".into()];
    assert_eq!(
        paths(&context.digest_selection(&action).unwrap()),
        [".", "src", "src/lib", "src/lib/util.rs", "src/main.rs"]
    );
}

#[test]
fn missing_source_is_a_clear_error() {
    let dir = sample();
    let context = Context::new(dir.path(), &excludes()).unwrap();
    let err = context.digest_selection(&copy(&["missing.txt"])).unwrap_err().to_string();
    assert!(err.contains("file not found in build context or excluded by .dockerignore: stat missing.txt"), "{err}");
    // Ignored files are as good as absent.
    let err = context.digest_selection(&copy(&["secret.env"])).unwrap_err().to_string();
    assert!(err.contains("stat secret.env"), "{err}");
    assert!(context.digest_selection(&copy(&["node_modules/dep/index.js"])).is_err());
    assert!(context.digest_selection(&copy(&["*.nothing"])).is_err());
    let plain = Context::new(dir.path(), &[]).unwrap();
    let err = plain.digest_selection(&copy(&["missing.txt"])).unwrap_err().to_string();
    assert!(err.contains("excluded by .dockerignore: stat missing.txt"), "{err}");
    let mut empty_ok = copy(&["*.nothing"]);
    empty_ok.allow_empty_wildcard = true;
    assert!(context.digest_selection(&empty_ok).unwrap().entries.is_empty());
}

#[test]
fn sources_never_escape_the_context() {
    let outer = tempfile::tempdir().unwrap();
    write(outer.path(), "outside.txt", "host");
    let root = outer.path().join("ctx");
    write(&root, "inside.txt", "ctx");
    symlink("/etc", root.join("etc-link")).unwrap();
    let context = Context::new(&root, &[]).unwrap();
    assert!(context.digest_selection(&copy(&["../outside.txt"])).is_err());
    assert_eq!(paths(&digest(&context, &["../inside.txt"])), ["inside.txt"]);
    // The link itself is selected as a link; following it stays in the context.
    assert!(context.digest_selection(&copy(&["etc-link/passwd"])).is_err());
}

#[test]
fn stat_cache_avoids_rereading_unchanged_files() {
    let dir = sample();
    let cache_dir = tempfile::tempdir().unwrap();
    let cache_file = cache_dir.path().join("stat-cache");
    let first = {
        let context = Context::with_stat_cache(dir.path(), &[], cache_file.clone()).unwrap();
        let d = digest(&context, &["."]);
        assert_eq!(context.files_read(), 8);
        let again = digest(&context, &["."]);
        assert_eq!(context.files_read(), 8, "second scan must hit the cache");
        assert_eq!(again, d);
        d
    };
    assert!(cache_file.exists(), "cache saved on drop");
    let context = Context::with_stat_cache(dir.path(), &[], cache_file.clone()).unwrap();
    assert_eq!(digest(&context, &["."]), first);
    assert_eq!(context.files_read(), 0, "a new process reuses the saved cache");
    write(dir.path(), "a.txt", "changed");
    let changed = digest(&context, &["."]);
    assert_eq!(context.files_read(), 1);
    assert_ne!(changed.digest, first.digest);
}

#[test]
fn a_copy_writes_the_paths_its_key_was_computed_over_and_walks_again_after() {
    use crate::ops::copy::{CopySource, apply_copy};
    let dir = sample();
    let context = Context::new(dir.path(), &excludes()).unwrap();
    let mut copy = copy(&["."]);
    copy.exclude = vec!["docs".into()];
    context.digest_selection(&copy).unwrap();
    // Added after the key was computed: not what the key describes.
    write(dir.path(), "late.txt", "late");
    let out = tempfile::tempdir().unwrap();
    let (first, second) = (out.path().join("first"), out.path().join("second"));
    for dest in [&first, &second] {
        fs::create_dir_all(dest).unwrap();
        apply_copy(&copy, &CopySource::Context(&context), dest).unwrap();
    }
    let dest = copy.dest.trim_start_matches('/');
    assert!(first.join(dest).join("src/lib/util.rs").exists());
    assert!(first.join(dest).join("node_modules/keep/keep.js").exists());
    for left_out in ["late.txt", "docs", "secret.env", "node_modules/dep"] {
        assert!(!first.join(dest).join(left_out).exists(), "{left_out}");
    }
    // The walk is the digest's once: the next copy walks the context itself.
    assert!(second.join(dest).join("late.txt").exists());
    assert!(!second.join(dest).join("docs").exists());
}
