//! Capabilities: the sandboxed process keeps Docker's default set and nothing more.

use std::io;

/// CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
/// NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
pub(crate) const DOCKER_DEFAULT: [u32; 14] = [0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

fn default_mask() -> u64 {
    DOCKER_DEFAULT.iter().fold(0, |m, c| m | (1u64 << c))
}

/// Drops every capability outside the default set from the bounding set (needs
/// CAP_SETPCAP, so before switching user).
pub(crate) fn limit_bounding_set() -> io::Result<()> {
    for cap in 0..64u32 {
        if DOCKER_DEFAULT.contains(&cap) {
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

/// Sets effective and permitted to the default set, inheritable to nothing (after the
/// user switch; for a non-root user the kernel has already cleared them).
pub(crate) fn set_default_sets() -> io::Result<()> {
    let mask = default_mask();
    let mut header = CapHeader { version: CAP_V3, pid: 0 };
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
    #[test]
    fn default_mask_is_dockers() {
        assert_eq!(super::default_mask(), 0xa80425fb);
    }
}
