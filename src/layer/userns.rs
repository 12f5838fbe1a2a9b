//! Unpacking in builder's own user namespace (rootless, see `src/userns.rs`): there
//! builder is root, but of a namespace, and the kernel says so in three places.
//! - overlayfs mounted with `userxattr` reads its markers from `user.overlay.*`, so
//!   an opaque directory of a lowerdir must carry `user.overlay.opaque` (the tar's
//!   own `*.overlay.*` xattrs are dropped, as ever: an image cannot forge one).
//!   Whiteouts stay 0/0 character devices, which a user namespace may make.
//! - Device nodes cannot be made: they are skipped with a warning, as rootless BuildKit
//!   (containerd's and moby's archive code) skips them in a user namespace.
//! - An owner outside the namespace's mapping cannot be given (EINVAL): the error
//!   names the id and what maps it.

/// Whether builder runs in a user namespace (rootless).
pub(super) fn in_user_namespace() -> bool {
    executor::current_user_namespace().is_some()
}

/// The xattr that makes a lowerdir's directory opaque for the overlays builder mounts.
pub(super) fn opaque_xattr() -> &'static str {
    if in_user_namespace() { "user.overlay.opaque" } else { super::tar_writer::OPAQUE_XATTR }
}

/// `lchown(path, uid, gid)`; in a user namespace, a refusal for an unmapped id says so.
pub(super) fn chown(path: &std::path::Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
        .map_err(|e| unmapped_owner(e, uid, gid).context(format!("chown {uid}:{gid}")))
}

/// A chown's error; in builder's user namespace, EINVAL (an id it does not map) with
/// its cause and fix.
pub(crate) fn unmapped_owner(e: std::io::Error, uid: u32, gid: u32) -> anyhow::Error {
    match executor::current_user_namespace() {
        Some(mapping) if e.raw_os_error() == Some(22) => anyhow::anyhow!(
            "invalid argument: {uid}:{gid} is not mapped in builder's user namespace, which maps only {mapping} \
             (the caller has too few subordinate ids in /etc/subuid and /etc/subgid; see `builder doctor`)"
        ),
        _ => e.into(),
    }
}
