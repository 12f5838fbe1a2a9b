//! Hints: the next step for a user, shown after an error whose cause is known to have
//! one (`hint: …`). They come from the typed errors of the chain, never from its text.

use registry::RegistryError;

/// The hint for `error`, from the first cause of its chain that has one.
pub fn for_error(error: &anyhow::Error) -> Option<String> {
    error.chain().find_map(|cause| {
        if let Some(executor::Error::Sys { source, .. }) = cause.downcast_ref::<executor::Error>()
            && source.kind() == std::io::ErrorKind::PermissionDenied
        {
            return Some("`builder doctor` shows which isolation steps this host allows".to_string());
        }
        // A registry error is a link of its own, or inside the client's error enum
        // (which shows it transparently).
        let registry = cause.downcast_ref::<RegistryError>().or(match cause.downcast_ref::<registry::Error>() {
            Some(registry::Error::Registry(e)) => Some(e),
            _ => None,
        });
        if let Some(registry) = registry
            && registry.status == Some(401)
        {
            return Some(format!("log in with `builder login {}`", registry.host));
        }
        if cause.downcast_ref::<LowSpace>().is_some()
            || cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::StorageFull)
        {
            return Some(full_disk_hint());
        }
        None
    })
}

/// Below this much free space, the filesystem of the store counts as full.
const LOW_SPACE: u64 = 64 << 20;

/// The store's filesystem was (nearly) full when something failed: measured where it
/// happened (a step's upperdir is gone by the time the error is printed), so a step
/// that failed to write ("No space left on device", or a tool's vaguer "I/O error")
/// is explained by a measurement, not by reading its message.
#[derive(Debug, thiserror::Error)]
#[error("the filesystem of {} had {} free", path.display(), crate::units::human_size(*free))]
pub struct LowSpace {
    pub path: std::path::PathBuf,
    pub free: u64,
}

/// [`LowSpace`] if the filesystem holding `path` is (nearly) full now.
pub fn low_space(path: &std::path::Path) -> Option<LowSpace> {
    let fs = rustix::fs::statvfs(path).ok()?;
    let free = fs.f_bavail.saturating_mul(fs.f_frsize);
    let size = fs.f_blocks.saturating_mul(fs.f_frsize);
    (free < LOW_SPACE.min(size / 100).max(1 << 20)).then(|| LowSpace { path: path.to_path_buf(), free })
}

fn full_disk_hint() -> String {
    "the disk is full: `builder prune` removes build cache, `builder du` shows what holds the rest".to_string()
}

/// A hint when the filesystem holding the store at `root` is (nearly) full now.
pub fn for_full_disk(root: &std::path::Path) -> Option<String> {
    low_space(root).map(|_| full_disk_hint())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn a_sandbox_refused_its_setup() {
        let denied = std::io::Error::from_raw_os_error(1);
        let error = anyhow::Error::new(executor::Error::Sys { what: "clone sandbox init".into(), source: denied })
            .context("[2/2] RUN make");
        assert_eq!(for_error(&error).unwrap(), "`builder doctor` shows which isolation steps this host allows");
        let missing = std::io::Error::from_raw_os_error(2);
        let error = anyhow::Error::new(executor::Error::Sys { what: "mount /x".into(), source: missing });
        assert_eq!(for_error(&error), None);
    }

    #[test]
    fn a_registry_wants_a_login() {
        let unauthorized = RegistryError {
            host: "registry.example:5000".into(),
            repository: "team/app".into(),
            action: "fetching manifest 1 of".into(),
            status: Some(401),
            detail: "HTTP 401 Unauthorized".into(),
            source: None,
        };
        let error = Err::<(), _>(registry::Error::from(unauthorized)).context("pushing team/app:1").unwrap_err();
        assert_eq!(for_error(&error).unwrap(), "log in with `builder login registry.example:5000`");
        assert_eq!(for_error(&anyhow::anyhow!("HTTP 401 Unauthorized")), None, "text alone gives no hint");
    }
}
