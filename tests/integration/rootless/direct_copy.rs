//! The direct COPY into destinations the parent has, rootless: the copy-up and the
//! merged view read a user namespace's snapshots (`user.overlay.*` markers, owners
//! through the id mapping) and still give the images the overlay path gives.

use super::harness::*;
use crate::util::{copy_tree, testdata};

const EPOCH: &str = "1700000000";

#[test]
fn rootless_direct_copies_into_existing_destinations_give_the_overlay_paths_images() {
    let test = "rootless_direct_copies_into_existing_destinations_give_the_overlay_paths_images";
    let Some(r) = Rootless::new(test, true) else { return };
    let owner = format!("{}:{}", r.user.uid, r.user.gid);
    let tar = r.home.join("busybox.tar");
    for (shape, direct) in
        [("workdir", 2), ("odd-parents", 3), ("whiteout-opaque", 3), ("chown-name", 2), ("merge-dirs", 1)]
    {
        let ctx = r.home.join(shape);
        copy_tree(&testdata(&format!("direct-copy/{shape}")), &ctx);
        if shape == "odd-parents" {
            let _ = xattr::set(ctx.join("base/opt/odd"), "user.direct-copy", b"kept");
        }
        sh("chown", &["-R", &owner, ctx.to_str().unwrap()]).unwrap();
        let mut ids = Vec::new();
        for switch in ["1", "0"] {
            let store = r.home.join(format!("store-{shape}-{switch}"));
            let iid = r.home.join(format!("{shape}-{switch}.iid"));
            let root = ["--root", store.to_str().unwrap()];
            let mut import = r.cmd(&[&root[..], &["import", tar.to_str().unwrap(), "busybox:latest"]].concat());
            ok(&import.env("SOURCE_DATE_EPOCH", EPOCH).output().unwrap(), "import");
            let args = ["build", "--progress=plain", "--iidfile", iid.to_str().unwrap(), ctx.to_str().unwrap()];
            let out = r
                .cmd(&[&root[..], &args[..]].concat())
                .env("SOURCE_DATE_EPOCH", EPOCH)
                .env("BUILDER_LOG", "warn,builder::ops=debug")
                .env("BUILDER_DIRECT_COPY", switch)
                .output()
                .unwrap();
            let err = stderr(&out);
            assert!(out.status.success(), "{shape} ({switch}):\n{err}");
            let expected = if switch == "1" { direct } else { 0 };
            assert_eq!(err.matches("written directly").count(), expected, "{shape} ({switch}):\n{err}");
            ids.push(std::fs::read_to_string(iid).unwrap());
        }
        assert_eq!(ids[0], ids[1], "{shape}: the direct copy made another image");
    }
}
