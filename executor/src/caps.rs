//! Capabilities: the sandboxed process keeps the set its [`crate::Security`] names
//! (Docker's default, less NET_RAW and MKNOD for a build step) and nothing more.

use std::io;

use crate::Capabilities;

/// Drops every capability outside `keep` from the bounding set (needs CAP_SETPCAP, so
/// before switching user).
pub(crate) fn limit_bounding_set(keep: Capabilities) -> io::Result<()> {
    for cap in 0..64u32 {
        if keep.contains(cap) {
            continue;
        }
        // SAFETY: PR_CAPBSET_READ takes a capability number and reads nothing else.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) };
        if present < 0 {
            break; // past the kernel's last capability
        }
        if present == 1 {
            // SAFETY: PR_CAPBSET_DROP takes a capability number.
            if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_V3: u32 = 0x2008_0522;

/// Sets effective and permitted to `keep` (as far as this process has them),
/// inheritable to nothing (after the user switch; for a non-root user the kernel has
/// already cleared them).
pub(crate) fn set_sets(keep: Capabilities) -> io::Result<()> {
    let mut header = CapHeader { version: CAP_V3, pid: 0 };
    let mut current = [CapData::default(); 2];
    // SAFETY: capget(2) v3 writes two data structs, laid out as the kernel's.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut CapHeader, current.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // Bits past the kernel's last capability are not ours to ask for.
    let permitted = u64::from(current[0].permitted) | (u64::from(current[1].permitted) << 32);
    let mask = keep.0 & permitted;
    let data = [
        CapData { effective: mask as u32, permitted: mask as u32, inheritable: 0 },
        CapData { effective: (mask >> 32) as u32, permitted: (mask >> 32) as u32, inheritable: 0 },
    ];
    // SAFETY: capset(2) v3 reads one header and two data structs, laid out as the kernel's.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut CapHeader, data.as_ptr()) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

#[cfg(test)]
mod tests {
    use crate::{Capabilities, Security};

    #[test]
    fn default_mask_is_dockers() {
        assert_eq!(Capabilities::docker_default().0, 0xa80425fb);
    }

    #[test]
    fn a_build_step_has_neither_net_raw_nor_mknod() {
        let step = Security::build_step().capabilities;
        assert_eq!(step.0, 0xa80425fb & !(1 << 13) & !(1 << 27));
        assert!(!step.contains(Capabilities::NET_RAW) && !step.contains(Capabilities::MKNOD));
        assert!(Security::container().capabilities.contains(Capabilities::NET_RAW));
    }
}
