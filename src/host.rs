//! What `builder doctor` says about the host around builder itself: whether builder is
//! confined (seccomp, AppArmor, missing capabilities: the marks of an unprivileged
//! container, where rootless BuildKit documents `--security-opt seccomp=unconfined
//! --security-opt apparmor=unconfined`), and which foreign architectures binfmt_misc
//! can run (QEMU emulators, for `--platform`). Read from `/proc` and `/sys` alone.

use std::fmt::Write as _;
use std::path::Path;

/// CAP_SYS_ADMIN's bit in `CapEff`.
const CAP_SYS_ADMIN: u32 = 21;

/// The doctor's lines, each missing piece with the command that fixes it.
pub fn doctor() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mut out = String::new();
    let _ = writeln!(out, "builder's own seccomp: {}", seccomp(&status));
    let _ = writeln!(out, "builder's own AppArmor profile: {}", apparmor());
    if let Some(container) = container() {
        let _ = writeln!(out, "container: {container}");
    }
    let _ = writeln!(out, "network modes: default (private), none, host (build: --allow network.host)");
    let _ = writeln!(out, "emulators (binfmt_misc): {}", emulators(Path::new("/proc/sys/fs/binfmt_misc")));
    out
}

/// The `Seccomp:` line of `/proc/self/status`, said in words.
fn seccomp(status: &str) -> String {
    match field(status, "Seccomp") {
        Some("0") => "none".into(),
        Some("1") => "strict mode".into(),
        Some("2") => "filtered (builder runs under a seccomp profile, a container's most likely: if it forbids \
                      unshare, mount or clone with namespace flags, sandboxes cannot start; fix: run the container \
                      with --security-opt seccomp=unconfined, as rootless BuildKit documents)"
            .into(),
        _ => "unknown (no Seccomp line in /proc/self/status)".into(),
    }
}

fn field<'a>(status: &'a str, name: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

fn apparmor() -> String {
    if !std::fs::read_to_string("/sys/module/apparmor/parameters/enabled").is_ok_and(|s| s.trim() == "Y") {
        return "none (AppArmor is not enabled)".into();
    }
    let current = std::fs::read_to_string("/proc/self/attr/apparmor/current")
        .or_else(|_| std::fs::read_to_string("/proc/self/attr/current"))
        .unwrap_or_default();
    match current.trim() {
        "" | "unconfined" => "unconfined".into(),
        profile => format!(
            "{profile} (a profile may forbid mount or user namespaces; fix: run with an AppArmor profile that \
             allows them, e.g. --security-opt apparmor=unconfined, as rootless BuildKit documents)"
        ),
    }
}

/// Signs that builder runs in a container, and what that container withholds.
fn container() -> Option<String> {
    let marker = ["/.dockerenv", "/run/.containerenv"].into_iter().find(|p| Path::new(p).exists());
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let bounding = field(&status, "CapBnd").and_then(|v| u64::from_str_radix(v, 16).ok()).unwrap_or(u64::MAX);
    let without_admin = bounding & (1 << CAP_SYS_ADMIN) == 0;
    match (marker, without_admin) {
        (None, false) => None,
        (marker, without_admin) => {
            let mut said = marker.map(|m| format!("yes ({m} exists)")).unwrap_or_else(|| "likely".into());
            if without_admin {
                said.push_str(
                    "; CAP_SYS_ADMIN is not in the bounding set (unprivileged): builder works in a user namespace \
                     of its own, where the container's seccomp and AppArmor profiles must allow it",
                );
            }
            Some(said)
        }
    }
}

/// The `qemu-*` (and other) handlers registered in binfmt_misc at `dir`.
fn emulators(dir: &Path) -> String {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return format!("binfmt_misc is not mounted at {} (fix: mount -t binfmt_misc none {0})", dir.display());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "register" && n != "status")
        .filter(|n| std::fs::read_to_string(dir.join(n)).is_ok_and(|t| t.starts_with("enabled")))
        .collect();
    names.sort();
    if names.is_empty() {
        "none: only the host's architecture runs (fix: apt-get install qemu-user-static binfmt-support)".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seccomp_modes_in_words() {
        assert_eq!(seccomp("Name:\tx\nSeccomp:\t0\n"), "none");
        assert!(seccomp("Seccomp:\t2\n").contains("seccomp=unconfined"));
        assert!(seccomp("").starts_with("unknown"));
    }

    #[test]
    fn enabled_emulators_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(emulators(dir.path()).starts_with("none: "));
        std::fs::write(dir.path().join("register"), "").unwrap();
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        std::fs::write(dir.path().join("qemu-aarch64"), "enabled\ninterpreter /usr/bin/qemu-aarch64-static\n").unwrap();
        std::fs::write(dir.path().join("qemu-arm"), "disabled\n").unwrap();
        assert_eq!(emulators(dir.path()), "qemu-aarch64");
        assert!(emulators(&dir.path().join("missing")).contains("mount -t binfmt_misc"));
    }
}
