//! Names a layer must not carry: a file a step creates under a `.wh.` name would
//! read as a whiteout (or the opaque marker) once the layer is saved and loaded or
//! pushed and pulled.

use image_spec::Compression;

#[test]
fn a_step_that_creates_whiteout_names_makes_no_layer() {
    let (dir, store) = store::testing::test_store();
    for name in [".wh...", ".wh..wh..opq", ".wh.hidden", "sub/.wh.x"] {
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(upper.join("sub")).unwrap();
        std::fs::write(upper.join("ordinary"), "x").unwrap();
        std::fs::write(upper.join(name), "").unwrap();
        let error = format!("{:#}", super::diff_to_layer(&store, &upper, Compression::Gzip).unwrap_err());
        assert!(error.contains("reserved for whiteouts") && error.contains(name), "{name}: {error}");
        std::fs::remove_dir_all(&upper).unwrap();
    }
    // Names that only contain `.wh.` further in are ordinary.
    let upper = dir.path().join("upper");
    std::fs::create_dir_all(&upper).unwrap();
    std::fs::write(upper.join("a.wh.b"), "x").unwrap();
    assert!(super::diff_to_layer(&store, &upper, Compression::Gzip).unwrap().is_some());
}

/// A deterministic generator for the property test below.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// A random upperdir: directories (some opaque), files, symlinks, hardlinks and
/// whiteouts, under names that overlap (so replacements and links meet).
fn random_upper(root: &std::path::Path, rng: &mut Rng) {
    use std::os::unix::fs::{PermissionsExt as _, symlink};
    let names = ["a", "b", "c", "d.txt", "e e", "f-é"];
    let mut dirs = vec![root.to_path_buf()];
    let mut files = Vec::new();
    for _ in 0..4 + rng.below(20) {
        let parent = dirs[rng.below(dirs.len())].clone();
        let path = parent.join(names[rng.below(names.len())]);
        if std::fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        match rng.below(6) {
            0 => {
                std::fs::create_dir(&path).unwrap();
                if rng.below(4) == 0 {
                    xattr::set(&path, super::tar_writer::OPAQUE_XATTR, b"y").unwrap();
                }
                dirs.push(path);
            }
            1 | 2 => {
                let content: Vec<u8> = (0..rng.below(3000)).map(|i| (i * 7 + rng.below(256)) as u8).collect();
                std::fs::write(&path, content).unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode([0o644, 0o755, 0o600][rng.below(3)]))
                    .unwrap();
                files.push(path);
            }
            3 => symlink(["../a", "/etc/passwd", "b", "nowhere"][rng.below(4)], &path).unwrap(),
            4 if !files.is_empty() => std::fs::hard_link(&files[rng.below(files.len())], &path).unwrap(),
            _ => {
                let dev = rustix::fs::makedev(0, 0);
                rustix::fs::mknodat(rustix::fs::CWD, &path, rustix::fs::FileType::CharacterDevice, 0.into(), dev)
                    .unwrap();
            }
        }
    }
}

/// Every entry under `root`: path, type, and content, target, inode group or
/// whiteout/opaque mark — what a lower layer must look like to overlay.
fn describe(root: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
    let mut inodes: std::collections::HashMap<u64, String> = std::collections::HashMap::new();
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(root).unwrap().display().to_string();
        let meta = entry.path().symlink_metadata().unwrap();
        let ft = meta.file_type();
        let what = if ft.is_dir() {
            let opaque = xattr::get(entry.path(), super::tar_writer::OPAQUE_XATTR).unwrap().is_some();
            format!("dir opaque={opaque}")
        } else if ft.is_symlink() {
            format!("symlink {}", std::fs::read_link(entry.path()).unwrap().display())
        } else if ft.is_char_device() {
            format!("whiteout rdev={}", meta.rdev())
        } else {
            let first = inodes.entry(meta.ino()).or_insert_with(|| rel.clone()).clone();
            format!(
                "file {:o} {:?} linked-with={first}",
                meta.mode() & 0o7777,
                Digest::of(&std::fs::read(entry.path()).unwrap())
            )
        };
        out.push(format!("{rel}: {what}"));
    }
    out
}

use image_spec::Digest;

#[test]
fn layers_round_trip_through_tar_and_fsck_agrees() {
    if !rustix::process::geteuid().is_root() {
        println!("SKIPPED layers_round_trip_through_tar_and_fsck_agrees: whiteouts and trusted xattrs need root");
        return;
    }
    let (dir, store) = store::testing::test_store();
    let rounds = std::env::var("BUILDER_LAYER_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(40);
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    for round in 0..rounds {
        let upper = dir.path().join(format!("upper{round}"));
        std::fs::create_dir(&upper).unwrap();
        random_upper(&upper, &mut rng);
        let Some(layer) = super::diff_to_layer(&store, &upper, Compression::Gzip).unwrap() else { continue };
        let snapshot = dir.path().join(format!("snap{round}"));
        std::fs::create_dir(&snapshot).unwrap();
        super::unpack_layer(&store, &layer, &snapshot).unwrap();
        assert_eq!(describe(&snapshot), describe(&upper), "round {round}");
        let problems = super::verify::verify_snapshot(&store, &layer, &snapshot).unwrap();
        assert!(problems.is_empty(), "round {round}: {problems:?}\n{:#?}", describe(&upper));
    }
}
