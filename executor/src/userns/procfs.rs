//! A fresh `/proc` in a user namespace: the kernel mounts one only where the procfs
//! it would show is already fully visible to the caller (`mnt_already_visible`): no
//! mount may hide part of it. An unprivileged container's `/proc` has such mounts
//! (Docker's masked paths: `/dev/null` over `/proc/kcore`..., read-only
//! `/proc/sys`), and then a sandbox there cannot have its own. It gets the host's
//! `/proc`, read-only, instead (`sandbox.rs`), in its own PID namespace still: its
//! processes see the others' entries but cannot signal or trace them, which is more
//! than BuildKit's "no process sandbox" keeps (that one shares the PID namespace). The
//! sandbox's parent says so once per process ([`warn_once`]).

use std::sync::OnceLock;

/// The mounts that hide part of this process's `/proc`, if any, from its mountinfo.
fn hiding_mounts(mountinfo: &str) -> Vec<String> {
    mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|point| point.starts_with("/proc/"))
        // binfmt_misc sits on an empty directory of procfs: that hides nothing.
        .filter(|point| *point != "/proc/sys/fs/binfmt_misc")
        .map(String::from)
        .collect()
}

/// In a user namespace whose `/proc` is partly hidden, warns (once per process) that
/// sandboxes get the host's `/proc`, read-only.
pub(crate) fn warn_once() {
    static HIDDEN: OnceLock<Vec<String>> = OnceLock::new();
    let hidden = HIDDEN.get_or_init(|| {
        if super::enter::current().is_none() && nix::unistd::geteuid().is_root() {
            return Vec::new(); // real root mounts procfs anywhere
        }
        hiding_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default())
    });
    static WARNED: OnceLock<()> = OnceLock::new();
    if !hidden.is_empty() {
        WARNED.get_or_init(|| {
            tracing::warn!(
                "no fresh /proc for sandboxes here: mounts hide part of this /proc ({}), as in an unprivileged \
                 container, and the kernel then refuses a new procfs in a user namespace; sandboxes get the host's \
                 /proc read-only, in their own PID namespace still (they see other processes' entries, they cannot \
                 signal them); fix: run builder's container with /proc unmasked (e.g. docker run \
                 --security-opt systempaths=unconfined), as rootless BuildKit documents",
                hidden.join(", ")
            );
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_paths_hide_part_of_proc() {
        let mountinfo = "\
22 1 0:21 / /proc rw,nosuid - proc proc rw
23 22 0:5 /null /proc/kcore rw - devtmpfs udev rw
24 22 0:22 / /proc/sys/fs/binfmt_misc rw - binfmt_misc binfmt_misc rw
25 1 0:23 / /process rw - tmpfs tmpfs rw
";
        assert_eq!(hiding_mounts(mountinfo), ["/proc/kcore"]);
        assert!(hiding_mounts("22 1 0:21 / /proc rw - proc proc rw\n").is_empty());
    }
}
