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
