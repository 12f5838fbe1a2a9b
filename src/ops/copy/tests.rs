use super::*;
use solver::ir::{FileAction, Owner};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use tempfile::TempDir;

fn write(root: &Path, rel: &str, data: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

fn mode(root: &Path, rel: &str) -> u32 {
    fs::symlink_metadata(root.join(rel)).unwrap().mode() & 0o7777
}

fn exists(root: &Path, rel: &str) -> bool {
    fs::symlink_metadata(root.join(rel)).is_ok()
}

fn is_root() -> bool {
    let probe = tempfile::tempdir().unwrap();
    let ok = std::os::unix::fs::chown(probe.path(), Some(0), Some(0)).is_ok()
        && std::os::unix::fs::chown(probe.path(), Some(1), Some(1)).is_ok();
    if !ok {
        println!("skipping: needs root to change owners");
    }
    ok
}

/// A source tree and an empty destination.
struct Fixture {
    src: TempDir,
    dst: TempDir,
}

impl Fixture {
    fn new() -> Self {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        write(s, "a.txt", "a");
        write(s, "b.txt", "b");
        write(s, "c.md", "c");
        write(s, "dir/one.txt", "one");
        write(s, "dir/sub/two.txt", "two");
        fs::set_permissions(s.join("dir/sub/two.txt"), fs::Permissions::from_mode(0o751)).unwrap();
        symlink("one.txt", s.join("dir/link")).unwrap();
        Fixture { src, dst: tempfile::tempdir().unwrap() }
    }

    fn copy(&self, action: &CopyAction) -> Result<()> {
        apply_copy(action, &CopySource::Root(self.src.path()), self.dst.path())
    }

    fn d(&self) -> &Path {
        self.dst.path()
    }
}

fn action(sources: &[&str], dest: &str) -> CopyAction {
    CopyAction::new(1, sources.iter().map(|s| s.to_string()).collect(), dest)
}

#[test]
fn file_to_path_and_into_directory() {
    let f = Fixture::new();
    f.copy(&action(&["a.txt"], "/x/renamed.txt")).unwrap();
    assert_eq!(read(f.d(), "x/renamed.txt"), "a");
    assert_eq!(mode(f.d(), "x"), 0o755);
    f.copy(&action(&["a.txt"], "/into/")).unwrap();
    assert_eq!(read(f.d(), "into/a.txt"), "a");
    // An existing directory takes the file inside even without a slash.
    f.copy(&action(&["b.txt"], "/into")).unwrap();
    assert_eq!(read(f.d(), "into/b.txt"), "b");
}

#[test]
fn without_create_dest_path_the_parent_must_exist() {
    let f = Fixture::new();
    let mut a = action(&["a.txt"], "/missing/a.txt");
    a.create_dest_path = false;
    let err = format!("{:#}", f.copy(&a).unwrap_err());
    assert!(err.contains("/missing/a.txt"), "{err}");
    fs::create_dir(f.d().join("present")).unwrap();
    let mut a = action(&["a.txt"], "/present/a.txt");
    a.create_dest_path = false;
    f.copy(&a).unwrap();
    assert_eq!(read(f.d(), "present/a.txt"), "a");
}

#[test]
fn existing_files_and_links_are_replaced_not_followed() {
    let f = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    fs::write(outside.path().join("target"), "host").unwrap();
    fs::create_dir(f.d().join("app")).unwrap();
    // A symlink inside the copied tree is replaced, never written through.
    symlink(outside.path().join("target"), f.d().join("app/one.txt")).unwrap();
    fs::write(f.d().join("app/sub"), "a file where a directory goes").unwrap();
    let err = f.copy(&action(&["dir"], "/app/")).unwrap_err();
    assert!(format!("{err:#}").contains("cannot copy to non-directory"), "{err:#}");
    assert_eq!(read(f.d(), "app/one.txt"), "one");
    assert_eq!(fs::read_to_string(outside.path().join("target")).unwrap(), "host");
}

#[test]
fn directory_copies_its_contents() {
    let f = Fixture::new();
    f.copy(&action(&["dir"], "/app")).unwrap();
    assert_eq!(read(f.d(), "app/one.txt"), "one");
    assert_eq!(read(f.d(), "app/sub/two.txt"), "two");
    assert_eq!(mode(f.d(), "app/sub/two.txt"), 0o751);
    assert_eq!(fs::read_link(f.d().join("app/link")).unwrap(), Path::new("one.txt"));
    assert!(!exists(f.d(), "app/dir"));
    f.copy(&action(&["."], "/all/")).unwrap();
    assert_eq!(read(f.d(), "all/dir/sub/two.txt"), "two");
    assert_eq!(read(f.d(), "all/a.txt"), "a");
}

#[test]
fn directory_without_contents_only_goes_inside_existing_dir() {
    let f = Fixture::new();
    fs::create_dir(f.d().join("existing")).unwrap();
    let mut a = action(&["dir"], "/existing");
    a.dir_contents_only = false;
    f.copy(&a).unwrap();
    assert_eq!(read(f.d(), "existing/dir/one.txt"), "one");
}

#[test]
fn wildcards() {
    let f = Fixture::new();
    f.copy(&action(&["*.txt"], "/w/")).unwrap();
    assert_eq!(read(f.d(), "w/a.txt"), "a");
    assert_eq!(read(f.d(), "w/b.txt"), "b");
    assert!(!exists(f.d(), "w/c.md"));
    f.copy(&action(&["dir/*"], "/d/")).unwrap();
    assert_eq!(read(f.d(), "d/one.txt"), "one");
    // Like Docker, a directory matched by a wildcard copies its contents.
    assert_eq!(read(f.d(), "d/two.txt"), "two");
    assert!(!exists(f.d(), "d/sub"));
    f.copy(&action(&["d?r/s*/t*.txt"], "/deep/")).unwrap();
    assert_eq!(read(f.d(), "deep/two.txt"), "two");

    let err = f.copy(&action(&["*.none"], "/e/")).unwrap_err().to_string();
    assert!(err.contains("*.none"), "{err}");
    let mut empty = action(&["*.none"], "/e/");
    empty.allow_empty_wildcard = true;
    f.copy(&empty).unwrap();

    // Several matches need a directory destination.
    let err = f.copy(&action(&["*.txt"], "/single")).unwrap_err().to_string();
    assert!(err.contains("must be a directory and end with a /"), "{err}");
}

#[test]
fn multiple_sources_need_a_slash() {
    let f = Fixture::new();
    let err = f.copy(&action(&["a.txt", "b.txt"], "/multi")).unwrap_err().to_string();
    assert!(err.contains("must be a directory and end with a /"), "{err}");
    f.copy(&action(&["a.txt", "b.txt"], "/multi/")).unwrap();
    assert_eq!(read(f.d(), "multi/b.txt"), "b");
}

#[test]
fn missing_source_names_it() {
    let f = Fixture::new();
    let err = f.copy(&action(&["missing.txt"], "/x")).unwrap_err();
    assert!(format!("{err:#}").contains("missing.txt"), "{err:#}");
}

#[test]
fn sources_are_clamped_to_their_root() {
    let outer = tempfile::tempdir().unwrap();
    write(outer.path(), "secret", "host");
    let src = outer.path().join("root");
    write(&src, "secret", "inside");
    symlink("/secret", src.join("abs-link")).unwrap();
    symlink("../../secret", src.join("rel-link")).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let copy = |sources: &[&str], dest: &str| apply_copy(&action(sources, dest), &CopySource::Root(&src), dst.path());
    copy(&["../secret"], "/a").unwrap();
    assert_eq!(read(dst.path(), "a"), "inside");
    copy(&["abs-link"], "/b").unwrap();
    assert_eq!(read(dst.path(), "b"), "inside");
    copy(&["rel-link"], "/c").unwrap();
    assert_eq!(read(dst.path(), "c"), "inside");
    // Without following, the link itself is copied.
    let mut no_follow = action(&["abs-link"], "/d");
    no_follow.follow_symlinks = false;
    apply_copy(&no_follow, &CopySource::Root(&src), dst.path()).unwrap();
    assert_eq!(fs::read_link(dst.path().join("d")).unwrap(), Path::new("/secret"));
}

#[test]
fn destination_symlinks_resolve_inside_dest_root() {
    let f = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), f.d().join("escape")).unwrap();
    symlink("/real", f.d().join("app")).unwrap();
    f.copy(&action(&["a.txt"], "/escape/")).unwrap();
    assert!(!exists(outside.path(), "a.txt"), "wrote through a symlink to the host");
    assert_eq!(read(f.d(), &format!("{}/a.txt", outside.path().display())[1..]), "a");
    f.copy(&action(&["a.txt"], "/app/")).unwrap();
    assert_eq!(read(f.d(), "real/a.txt"), "a");
}

#[test]
fn parents_keep_the_source_path() {
    let f = Fixture::new();
    let mut a = action(&["dir/sub/two.txt", "a.txt"], "/p/");
    a.parents = true;
    f.copy(&a).unwrap();
    assert_eq!(read(f.d(), "p/dir/sub/two.txt"), "two");
    assert_eq!(read(f.d(), "p/a.txt"), "a");
    let mut pivot = action(&["./dir/./sub/two.txt"], "/q/");
    pivot.parents = true;
    f.copy(&pivot).unwrap();
    assert_eq!(read(f.d(), "q/sub/two.txt"), "two");
    let mut wild = action(&["dir/*/two.txt"], "/r/");
    wild.parents = true;
    f.copy(&wild).unwrap();
    assert_eq!(read(f.d(), "r/dir/sub/two.txt"), "two");
}

#[test]
fn exclude_and_include_patterns() {
    let f = Fixture::new();
    let mut a = action(&["."], "/ex/");
    a.exclude = vec!["*.md".into(), "dir/sub".into()];
    f.copy(&a).unwrap();
    assert!(exists(f.d(), "ex/a.txt"));
    assert!(!exists(f.d(), "ex/c.md"));
    assert!(exists(f.d(), "ex/dir/one.txt"));
    assert!(!exists(f.d(), "ex/dir/sub"));

    let mut w = action(&["*"], "/wx/");
    w.exclude = vec!["*.txt".into()];
    f.copy(&w).unwrap();
    assert!(!exists(f.d(), "wx/a.txt"));
    assert!(exists(f.d(), "wx/c.md"));

    let mut i = action(&["."], "/in/");
    i.include = vec!["**/two.txt".into()];
    f.copy(&i).unwrap();
    assert_eq!(read(f.d(), "in/dir/sub/two.txt"), "two");
    assert!(!exists(f.d(), "in/a.txt"));
    assert!(!exists(f.d(), "in/dir/one.txt"));
}

#[test]
fn chmod_applies_to_files_and_dirs() {
    let f = Fixture::new();
    let mut a = action(&["dir"], "/m/");
    a.mode = Some("0640".into());
    f.copy(&a).unwrap();
    assert_eq!(mode(f.d(), "m/one.txt"), 0o640);
    assert_eq!(mode(f.d(), "m/sub"), 0o640);
    let mut s = action(&["dir"], "/s/");
    s.mode = Some("go-rwx,u+x".into());
    f.copy(&s).unwrap();
    assert_eq!(mode(f.d(), "s/one.txt"), 0o700);
    assert_eq!(mode(f.d(), "s/sub/two.txt"), 0o700);
    let mut bad = action(&["a.txt"], "/bad");
    bad.mode = Some("u+q".into());
    assert!(f.copy(&bad).is_err());
}

#[test]
fn mtimes_hardlinks_and_xattrs_are_kept() {
    let f = Fixture::new();
    let s = f.src.path();
    let when = filetime::FileTime::from_unix_time(1_600_000_000, 0);
    filetime::set_file_mtime(s.join("dir/one.txt"), when).unwrap();
    filetime::set_file_mtime(s.join("dir/sub"), when).unwrap();
    fs::hard_link(s.join("dir/one.txt"), s.join("dir/hard.txt")).unwrap();
    let xattrs = xattr::set(s.join("a.txt"), "user.builder.test", b"v").is_ok();
    f.copy(&action(&["."], "/t/")).unwrap();
    let meta = |rel: &str| fs::symlink_metadata(f.d().join(rel)).unwrap();
    assert_eq!(meta("t/dir/one.txt").mtime(), 1_600_000_000);
    assert_eq!(meta("t/dir/sub").mtime(), 1_600_000_000);
    assert_eq!(meta("t/dir/hard.txt").ino(), meta("t/dir/one.txt").ino());
    if xattrs {
        assert_eq!(xattr::get(f.d().join("t/a.txt"), "user.builder.test").unwrap(), Some(b"v".to_vec()));
    } else {
        println!("skipping xattr check: filesystem has no user xattrs");
    }
}

#[test]
fn context_source_hides_ignored_files() {
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "keep.txt", "k");
    write(src.path(), "secret.env", "s");
    write(src.path(), "cache/big.bin", "x");
    write(src.path(), "cache/keep/me.txt", "me");
    let context = Context::new(src.path(), &["*.env".into(), "cache".into(), "!cache/keep".into()]).unwrap();
    let dst = tempfile::tempdir().unwrap();
    apply_copy(&action(&["."], "/app/"), &CopySource::Context(&context), dst.path()).unwrap();
    assert!(exists(dst.path(), "app/keep.txt"));
    assert!(!exists(dst.path(), "app/secret.env"));
    assert!(!exists(dst.path(), "app/cache/big.bin"));
    assert_eq!(read(dst.path(), "app/cache/keep/me.txt"), "me");
    let err = apply_copy(&action(&["secret.env"], "/x"), &CopySource::Context(&context), dst.path()).unwrap_err();
    assert!(err.to_string().contains("excluded by .dockerignore: stat secret.env"), "{err}");
    apply_copy(&action(&["*"], "/w/"), &CopySource::Context(&context), dst.path()).unwrap();
    assert!(!exists(dst.path(), "w/secret.env"));
}

#[test]
fn add_unpacks_tar_and_gzip_archives() {
    let f = Fixture::new();
    let s = f.src.path();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(5);
    header.set_mode(0o600);
    header.set_mtime(1_500_000_000);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    builder.append_data(&mut header, "pkg/hello.txt", &b"hello"[..]).unwrap();
    let tar_bytes = builder.into_inner().unwrap();
    fs::write(s.join("plain.tar"), &tar_bytes).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &tar_bytes).unwrap();
    fs::write(s.join("pkg.tar.gz"), gz.finish().unwrap()).unwrap();

    let mut add = action(&["plain.tar"], "/opt");
    add.unpack_archives = true;
    f.copy(&add).unwrap();
    assert_eq!(read(f.d(), "opt/pkg/hello.txt"), "hello");
    assert_eq!(mode(f.d(), "opt/pkg/hello.txt"), 0o600);
    let mut add = action(&["pkg.tar.gz"], "/gz/");
    add.unpack_archives = true;
    f.copy(&add).unwrap();
    assert_eq!(read(f.d(), "gz/pkg/hello.txt"), "hello");
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    std::io::Write::write_all(&mut bz, &tar_bytes).unwrap();
    fs::write(s.join("pkg.tar.bz2"), bz.finish().unwrap()).unwrap();
    let mut add = action(&["pkg.tar.bz2"], "/bz/");
    add.unpack_archives = true;
    f.copy(&add).unwrap();
    assert_eq!(read(f.d(), "bz/pkg/hello.txt"), "hello");

    fs::write(s.join("pkg.tar.zst"), zstd::encode_all(&tar_bytes[..], 3).unwrap()).unwrap();
    let mut add = action(&["pkg.tar.zst"], "/zst/");
    add.unpack_archives = true;
    f.copy(&add).unwrap();
    assert_eq!(read(f.d(), "zst/pkg/hello.txt"), "hello");

    // No xz encoder is linked in; the xz tool makes the fixture where it exists.
    fs::write(s.join("pkg.tar"), &tar_bytes).unwrap();
    match std::process::Command::new("xz").arg("-k").arg(s.join("pkg.tar")).status() {
        Ok(status) if status.success() => {
            let mut add = action(&["pkg.tar.xz"], "/xz/");
            add.unpack_archives = true;
            f.copy(&add).unwrap();
            assert_eq!(read(f.d(), "xz/pkg/hello.txt"), "hello");
        }
        _ => println!("skipping xz: no xz tool"),
    }

    // Anything else is copied as is, and so is an archive when ADD is not asked.
    let mut add = action(&["a.txt"], "/plain/");
    add.unpack_archives = true;
    f.copy(&add).unwrap();
    assert_eq!(read(f.d(), "plain/a.txt"), "a");
    f.copy(&action(&["pkg.tar.gz"], "/copied/")).unwrap();
    assert!(exists(f.d(), "copied/pkg.tar.gz"));
}

#[test]
fn add_refuses_entries_outside_the_destination() {
    let f = Fixture::new();
    let outside = tempfile::tempdir().unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_size(0);
    header.set_mode(0o777);
    header.set_cksum();
    builder.append_link(&mut header, "escape", outside.path()).unwrap();
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o644);
    header.set_cksum();
    builder.append_data(&mut header, "escape/owned.txt", &b"bad"[..]).unwrap();
    let mut raw = tar::Header::new_old();
    raw.as_old_mut().name[..13].copy_from_slice(b"../../dotdot!");
    raw.set_size(3);
    raw.set_mode(0o644);
    raw.set_cksum();
    builder.append(&raw, &b"bad"[..]).unwrap();
    fs::write(f.src.path().join("evil.tar"), builder.into_inner().unwrap()).unwrap();
    let mut add = action(&["evil.tar"], "/x/");
    add.unpack_archives = true;
    let err = format!("{:#}", f.copy(&add).unwrap_err());
    assert!(err.contains("points outside the destination"), "{err}");
    assert!(!exists(outside.path(), "owned.txt"), "archive wrote outside the destination");
    // The symlink is followed as if the destination were the root.
    let inside = format!("x/{}/owned.txt", outside.path().display());
    assert_eq!(read(f.d(), &inside.replace("//", "/")), "bad");
    assert!(!exists(f.d(), "../dotdot!"));
}

#[test]
fn add_keeps_hardlinks_and_replaces_what_is_in_the_way() {
    let f = Fixture::new();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_cksum();
    builder.append_data(&mut header, "./bin/tool", &b"tool"[..]).unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Link);
    link.set_size(0);
    link.set_mode(0o644);
    link.set_uid(0);
    link.set_gid(0);
    link.set_cksum();
    builder.append_link(&mut link, "bin/alias", "bin/tool").unwrap();
    fs::write(f.src.path().join("tools.tar"), builder.into_inner().unwrap()).unwrap();
    // An absolute symlink in the destination image resolves inside it.
    fs::create_dir_all(f.d().join("usr/bin")).unwrap();
    symlink("/usr/bin", f.d().join("bin")).unwrap();
    let mut add = action(&["tools.tar"], "/");
    add.unpack_archives = true;
    f.copy(&add).unwrap();
    assert_eq!(read(f.d(), "usr/bin/tool"), "tool");
    let meta = |rel: &str| fs::metadata(f.d().join(rel)).unwrap();
    assert_eq!(meta("usr/bin/alias").ino(), meta("usr/bin/tool").ino());
}

#[test]
fn owner_is_reset_for_context_and_kept_for_stages() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    std::os::unix::fs::chown(f.src.path().join("a.txt"), Some(1234), Some(2345)).unwrap();
    f.copy(&action(&["a.txt"], "/stage.txt")).unwrap();
    let meta = fs::metadata(f.d().join("stage.txt")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1234, 2345));
    let context = Context::new(f.src.path(), &[]).unwrap();
    apply_copy(&action(&["a.txt"], "/ctx.txt"), &CopySource::Context(&context), f.d()).unwrap();
    let meta = fs::metadata(f.d().join("ctx.txt")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0));
}

#[test]
fn chown_by_name_and_number() {
    if !is_root() {
        return;
    }
    let f = Fixture::new();
    write(f.d(), "etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n");
    write(f.d(), "etc/group", "root:x:0:\napp:x:1001:\nstaff:x:50:\n");
    let mut a = action(&["dir"], "/home/app/dir/");
    a.owner = Some(Owner { user: "app".into(), group: None });
    f.copy(&a).unwrap();
    for rel in ["home/app/dir", "home/app/dir/one.txt", "home/app/dir/sub/two.txt", "home/app/dir/link"] {
        let meta = fs::symlink_metadata(f.d().join(rel)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1000, 1001), "{rel}");
    }
    // Created parents belong to the --chown owner too.
    let meta = fs::metadata(f.d().join("home/app")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
    let mut n = action(&["a.txt"], "/n.txt");
    n.owner = Some(Owner { user: "7".into(), group: Some("staff".into()) });
    f.copy(&n).unwrap();
    let meta = fs::metadata(f.d().join("n.txt")).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (7, 50));
    let mut unknown = action(&["a.txt"], "/u.txt");
    unknown.owner = Some(Owner { user: "ghost".into(), group: None });
    let err = format!("{:#}", f.copy(&unknown).unwrap_err());
    assert!(err.contains("ghost"), "{err}");
}

#[test]
fn file_actions() {
    let dst = tempfile::tempdir().unwrap();
    let d = dst.path();
    let apply = |a: FileAction| apply_file_action(&a, None, d);
    apply(FileAction::Mkdir { path: "/a/b/c".into(), mode: 0o700, make_parents: true, owner: None }).unwrap();
    assert_eq!(mode(d, "a/b/c"), 0o700);
    assert!(apply(FileAction::Mkdir { path: "/x/y".into(), mode: 0o755, make_parents: false, owner: None }).is_err());
    apply(FileAction::Mkdir { path: "/a".into(), mode: 0o755, make_parents: false, owner: None }).unwrap();
    apply(FileAction::Mkfile { path: "/a/f.txt".into(), mode: 0o640, data: b"data".to_vec(), owner: None }).unwrap();
    assert_eq!(read(d, "a/f.txt"), "data");
    assert_eq!(mode(d, "a/f.txt"), 0o640);
    apply(FileAction::Mkfile { path: "/a/g.log".into(), mode: 0o644, data: Vec::new(), owner: None }).unwrap();
    apply(FileAction::Mkfile { path: "/a/h.log".into(), mode: 0o644, data: Vec::new(), owner: None }).unwrap();

    apply(FileAction::Rm { path: "/a/*.log".into(), allow_not_found: false, allow_wildcard: true }).unwrap();
    assert!(!exists(d, "a/g.log") && !exists(d, "a/h.log") && exists(d, "a/f.txt"));
    assert!(apply(FileAction::Rm { path: "/nope".into(), allow_not_found: false, allow_wildcard: false }).is_err());
    apply(FileAction::Rm { path: "/nope".into(), allow_not_found: true, allow_wildcard: false }).unwrap();
    assert!(apply(FileAction::Rm { path: "/*.none".into(), allow_not_found: false, allow_wildcard: true }).is_err());
    // A symlink is removed, not what it points to.
    symlink("/a", d.join("link")).unwrap();
    apply(FileAction::Rm { path: "/link".into(), allow_not_found: false, allow_wildcard: false }).unwrap();
    assert!(exists(d, "a/f.txt"));
    apply(FileAction::Rm { path: "/a".into(), allow_not_found: false, allow_wildcard: false }).unwrap();
    assert!(!exists(d, "a"));

    let copy = FileAction::Copy(action(&["x"], "/y"));
    assert!(apply_file_action(&copy, None, d).is_err());
}

#[test]
fn mkfile_and_mkdir_stay_inside_the_root() {
    let dst = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), dst.path().join("out")).unwrap();
    let a = FileAction::Mkfile { path: "/out/f".into(), mode: 0o644, data: b"x".to_vec(), owner: None };
    let _ = apply_file_action(&a, None, dst.path());
    assert!(!exists(outside.path(), "f"));
    let m = FileAction::Mkdir { path: "/../../out/d".into(), mode: 0o755, make_parents: true, owner: None };
    apply_file_action(&m, None, dst.path()).unwrap();
    assert!(!exists(outside.path(), "d"));
}
