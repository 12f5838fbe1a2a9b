//! What a sandbox's cgroup is configured with: the interface files to write, in
//! order, computed from the [`Resources`] without touching the kernel (so it is
//! tested without root).
//!
//! Memory: the limit, and the same limit for memory + swap, so that swap is no way
//! around it (v1 `memory.memsw.limit_in_bytes`, v2 `memory.swap.max=0`; both files
//! exist only with swap accounting, and without it there is nothing to close). CPU: a
//! CFS quota per 100 ms period. Devices (v1 only; v2 attaches a program): deny all,
//! then allow runc's default list.

use super::Controller;
use super::devices::DEFAULT_ALLOW;
use crate::{CgroupVersion, Resources};

/// The CFS period, in microseconds.
pub(crate) const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel takes (1 ms).
const CPU_MIN_QUOTA_US: u64 = 1_000;

/// One write to an interface file of the sandbox's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Write {
    /// The hierarchy (v1) whose directory has the file.
    pub controller: Controller,
    pub file: &'static str,
    pub value: String,
    /// Skipped when the file does not exist (swap accounting off).
    pub if_present: bool,
}

/// The controllers the limits in `resources` need.
pub(crate) fn required(resources: &Resources) -> Vec<Controller> {
    let mut out = Vec::new();
    if resources.pids.is_some() {
        out.push(Controller::Pids);
    }
    if resources.memory.is_some() {
        out.push(Controller::Memory);
    }
    if resources.cpu_millis.is_some() {
        out.push(Controller::Cpu);
    }
    out
}

/// The CFS quota for `millis` thousandths of a CPU per [`CPU_PERIOD_US`] (at least
/// the kernel's minimum of 1 ms: 0.01 CPU).
pub(crate) fn cpu_quota_us(millis: u64) -> u64 {
    millis.saturating_mul(CPU_PERIOD_US / 1000).max(CPU_MIN_QUOTA_US)
}

/// The writes for `resources`, and the device list if `devices`.
pub(crate) fn writes(version: CgroupVersion, resources: &Resources, devices: bool) -> Vec<Write> {
    let mut out = Vec::new();
    let mut w = |controller, file, value: String, if_present| out.push(Write { controller, file, value, if_present });
    let v1 = version == CgroupVersion::V1;
    if let Some(pids) = resources.pids {
        w(Controller::Pids, "pids.max", pids.to_string(), false);
    }
    if let Some(bytes) = resources.memory {
        if v1 {
            w(Controller::Memory, "memory.limit_in_bytes", bytes.to_string(), false);
            w(Controller::Memory, "memory.memsw.limit_in_bytes", bytes.to_string(), true);
        } else {
            w(Controller::Memory, "memory.max", bytes.to_string(), false);
            w(Controller::Memory, "memory.swap.max", "0".into(), true);
        }
    }
    if let Some(millis) = resources.cpu_millis {
        let quota = cpu_quota_us(millis);
        if v1 {
            w(Controller::Cpu, "cpu.cfs_period_us", CPU_PERIOD_US.to_string(), false);
            w(Controller::Cpu, "cpu.cfs_quota_us", quota.to_string(), false);
        } else {
            w(Controller::Cpu, "cpu.max", format!("{quota} {CPU_PERIOD_US}"), false);
        }
    }
    if devices && v1 {
        w(Controller::Devices, "devices.deny", "a".into(), false);
        for rule in &DEFAULT_ALLOW {
            w(Controller::Devices, "devices.allow", rule.v1(), false);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(writes: &[Write]) -> Vec<String> {
        writes
            .iter()
            .map(|w| format!("{}/{}={}{}", w.controller.name(), w.file, w.value, if w.if_present { "?" } else { "" }))
            .collect()
    }

    fn limits() -> Resources {
        Resources { memory: Some(64 << 20), cpu_millis: Some(1500), pids: Some(64), rlimits: vec![], shm_size: None }
    }

    #[test]
    fn v1_limits_and_devices() {
        let got = show(&writes(CgroupVersion::V1, &limits(), true));
        assert_eq!(
            got[..7],
            [
                "pids/pids.max=64",
                "memory/memory.limit_in_bytes=67108864",
                "memory/memory.memsw.limit_in_bytes=67108864?",
                "cpu/cpu.cfs_period_us=100000",
                "cpu/cpu.cfs_quota_us=150000",
                "devices/devices.deny=a",
                "devices/devices.allow=c *:* m",
            ]
        );
        assert_eq!(got.len(), 6 + DEFAULT_ALLOW.len());
        assert_eq!(got.last().unwrap(), "devices/devices.allow=c 136:* rwm");
    }

    #[test]
    fn v2_limits_and_no_device_files() {
        let got = show(&writes(CgroupVersion::V2, &limits(), true));
        assert_eq!(
            got,
            [
                "pids/pids.max=64",
                "memory/memory.max=67108864",
                "memory/memory.swap.max=0?",
                "cpu/cpu.max=150000 100000"
            ]
        );
    }

    #[test]
    fn nothing_asked_nothing_written() {
        assert_eq!(writes(CgroupVersion::V1, &Resources::default(), false), []);
        assert_eq!(required(&Resources::default()), []);
        assert_eq!(required(&limits()), [Controller::Pids, Controller::Memory, Controller::Cpu]);
    }

    #[test]
    fn cpu_quota_has_a_floor() {
        assert_eq!(cpu_quota_us(100), 10_000);
        assert_eq!(cpu_quota_us(1), 1_000);
        assert_eq!(cpu_quota_us(u64::MAX), u64::MAX);
    }
}
