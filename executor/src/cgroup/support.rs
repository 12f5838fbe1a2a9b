//! What this host lets builder enforce, and why not: the layout (read once per
//! process, since builder may move itself on cgroup v2), then for each controller
//! whether our cgroup of its hierarchy is mounted read-write and writable by us, and
//! on v2 whether the controller is delegated (`v2.rs`) or BPF works (`bpf.rs`).

use std::sync::OnceLock;

use super::discover::{Layout, OwnCgroup};
use super::{BASE, CgroupUnavailable, Controller, bpf, explain, v2, writable};
use crate::{CgroupVersion, Isolation, Support};

/// Set to `v2`, makes builder use a hybrid host's cgroup2 mount rather than the v1
/// hierarchies (it has no controllers there, but the BPF device filter works): for
/// testing the v2 path on a v1 host.
pub(crate) const PREFER_V2_ENV: &str = "_BUILDER_EXECUTOR_CGROUP";

/// This process's cgroup layout, as it was first looked at.
pub(crate) fn layout() -> &'static Layout {
    static LAYOUT: OnceLock<Layout> = OnceLock::new();
    LAYOUT.get_or_init(|| Layout::read(std::env::var(PREFER_V2_ENV).is_ok_and(|v| v == "v2")))
}

pub(crate) fn version(layout: &Layout) -> Result<CgroupVersion, CgroupUnavailable> {
    match layout {
        Layout::V1(_) => Ok(CgroupVersion::V1),
        Layout::V2(Ok(_)) => Ok(CgroupVersion::V2),
        Layout::V2(Err(why)) | Layout::Missing(why) => Err(why.clone()),
    }
}

/// Whether a pids limit can be enforced here ([`crate::probe_pids`]).
pub(crate) fn pids() -> Support {
    check(layout(), Controller::Pids)
}

/// Whether sandbox cgroups can have `controller` (for `Devices` on v2: the BPF filter).
pub(crate) fn check(layout: &Layout, controller: Controller) -> Support {
    let own = match layout.own(controller) {
        Ok(own) => own,
        Err(why) => return Support::NotEnforced(why),
    };
    if let Err(why) = usable(own) {
        return Support::NotEnforced(why);
    }
    let base = own.dir.join(BASE);
    match (layout, controller) {
        (Layout::V1(_), _) => Support::Enforced(format!("cgroup v1, in {}", base.display())),
        (_, Controller::Devices) => match bpf::default_program() {
            Ok(_) => Support::Enforced(format!("cgroup v2 BPF device program, in {}", base.display())),
            Err(why) => Support::NotEnforced(why),
        },
        _ => match v2::readiness(own, controller) {
            Ok(how) => Support::Enforced(how),
            Err(why) => Support::NotEnforced(why),
        },
    }
}

/// Mounted read-write, and ours to make cgroups in.
fn usable(own: &OwnCgroup) -> Result<(), CgroupUnavailable> {
    if own.readonly {
        return Err(CgroupUnavailable::ReadOnly { mountpoint: own.mountpoint.clone() });
    }
    let base = own.dir.join(BASE);
    let dir = if base.is_dir() { base } else { own.dir.clone() };
    writable(&dir).map_err(|e| CgroupUnavailable::NotWritable { reason: explain(&e), dir })
}

/// What cgroups give sandboxes here, with what [`crate::probe`] found of user
/// namespaces (not a cgroup matter, so the caller's).
pub(crate) fn isolation(user_namespace: crate::UserNamespaces) -> Isolation {
    let layout = layout();
    Isolation {
        cgroup: version(layout),
        pids: check(layout, Controller::Pids),
        memory: check(layout, Controller::Memory),
        cpu: check(layout, Controller::Cpu),
        devices: check(layout, Controller::Devices),
        user_namespace,
    }
}
