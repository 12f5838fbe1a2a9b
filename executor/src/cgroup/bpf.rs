//! The cgroup v2 device filter: a `BPF_PROG_TYPE_CGROUP_DEVICE` program assembled by
//! hand from the allow list (the design of runc's `devicefilter.go` and crun's
//! `ebpf.c`), loaded with a raw `bpf(2)` and attached to the sandbox's cgroup with
//! `BPF_F_ALLOW_MULTI`, so programs on its ancestors still run too. The kernel runs it
//! on every open and mknod of a device node by the cgroup's processes: 1 allows, 0
//! denies (EPERM). It goes away with the cgroup.
//!
//! The program reads `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32
//! minor; }` (`access_type` = device type in the low 16 bits, access in the high 16)
//! and tries each rule in turn: a rule is a block of compares that jumps to the next
//! block on a mismatch and returns 1 at its end. Past the last block, it returns 0.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

use super::devices::{RWM, Rule};

/// `struct bpf_insn`: opcode, two 4-bit registers, a jump offset, an immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

// Opcodes: class | operation | source.
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        // The bitfields `dst_reg:4, src_reg:4` are laid out from the low bits on
        // little-endian targets, from the high bits on big-endian ones.
        let regs = if cfg!(target_endian = "little") { dst | (src << 4) } else { (dst << 4) | src };
        Insn { code, regs, off, imm }
    }

    #[cfg(test)]
    fn dst(&self) -> usize {
        usize::from(if cfg!(target_endian = "little") { self.regs & 0xf } else { self.regs >> 4 })
    }

    #[cfg(test)]
    fn src(&self) -> usize {
        usize::from(if cfg!(target_endian = "little") { self.regs >> 4 } else { self.regs & 0xf })
    }
}

/// A jump whose offset is patched once its block's length is known.
const NEXT_BLOCK: i16 = i16::MIN;

/// The program allowing exactly `rules` (major and minor numbers must fit an `i32`,
/// which device numbers do: 12 and 20 bits).
pub(crate) fn assemble(rules: &[Rule]) -> Vec<Insn> {
    let mut prog = vec![
        Insn::new(LDX_MEM_W, R2, R1, 0, 0),       // r2 = access_type
        Insn::new(ALU32_AND_K, R2, 0, 0, 0xffff), // r2 = type
        Insn::new(LDX_MEM_W, R3, R1, 0, 0),       // r3 = access_type
        Insn::new(ALU32_RSH_K, R3, 0, 0, 16),     // r3 = access
        Insn::new(LDX_MEM_W, R4, R1, 4, 0),       // r4 = major
        Insn::new(LDX_MEM_W, R5, R1, 8, 0),       // r5 = minor
    ];
    for rule in rules {
        let mut block = vec![Insn::new(JNE_K, R2, 0, NEXT_BLOCK, rule.kind as i32)];
        if rule.access & RWM != RWM {
            // Every bit asked for must be allowed: (access & allowed) == access.
            block.push(Insn::new(ALU32_MOV_X, R1, R3, 0, 0));
            block.push(Insn::new(ALU32_AND_K, R1, 0, 0, i32::from(rule.access)));
            block.push(Insn::new(JNE_X, R1, R3, NEXT_BLOCK, 0));
        }
        if let Some(major) = rule.major {
            block.push(Insn::new(JNE_K, R4, 0, NEXT_BLOCK, major as i32));
        }
        if let Some(minor) = rule.minor {
            block.push(Insn::new(JNE_K, R5, 0, NEXT_BLOCK, minor as i32));
        }
        block.push(Insn::new(ALU32_MOV_K, R0, 0, 0, 1));
        block.push(Insn::new(EXIT, 0, 0, 0, 0));
        let len = block.len();
        for (i, insn) in block.iter_mut().enumerate() {
            if insn.off == NEXT_BLOCK {
                // Relative to the next instruction; the target is the block's end.
                insn.off = (len - i - 1) as i16;
            }
        }
        prog.extend(block);
    }
    prog.push(Insn::new(ALU32_MOV_K, R0, 0, 0, 0));
    prog.push(Insn::new(EXIT, 0, 0, 0, 0));
    prog
}

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `BPF_PROG_LOAD` part of `union bpf_attr` (the kernel zero-fills the rest).
#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
struct ProgAttach {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised `bpf_attr` prefix of the given size for
    // `cmd`; pointers inside it (instructions, license, log) outlive the call.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, std::mem::size_of::<T>()) };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

/// Loads `prog` as a cgroup device program. On failure, the verifier's log (asked
/// for on a second try) is part of the error.
pub(crate) fn load(prog: &[Insn]) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..14].copy_from_slice(b"builder_device");
    let mut attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_name: name,
        ..Default::default()
    };
    let fd = match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EACCES)) => {
            let mut log = vec![0u8; 64 * 1024];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let again = bpf(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]).trim().replace('\n', "; ");
            match again {
                Ok(fd) => fd,
                Err(_) => {
                    return Err(io::Error::new(e.kind(), format!("{} (verifier: {text})", crate::describe_io(&e))));
                }
            }
        }
        Err(e) => return Err(e),
    };
    // SAFETY: a successful BPF_PROG_LOAD returns a new descriptor (close-on-exec) we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Attaches `prog` to the cgroup whose directory `cgroup` is open.
pub(crate) fn attach(prog: &OwnedFd, cgroup: &OwnedFd) -> io::Result<()> {
    let mut attr = ProgAttach {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// The default allow list's program, loaded once per process and attached to every
/// sandbox's cgroup; or why it cannot be loaded (no BPF, not root...).
pub(crate) fn default_program() -> Result<&'static OwnedFd, super::CgroupUnavailable> {
    static PROGRAM: OnceLock<Result<OwnedFd, super::CgroupUnavailable>> = OnceLock::new();
    PROGRAM
        .get_or_init(|| {
            load(&assemble(&super::devices::DEFAULT_ALLOW))
                .map_err(|e| super::CgroupUnavailable::BpfLoad { reason: crate::describe_io(&e) })
        })
        .as_ref()
        .map_err(Clone::clone)
}

#[cfg(test)]
mod tests {
    use super::super::devices::{DEFAULT_ALLOW, Kind, MKNOD, READ, WRITE};
    use super::*;

    /// Runs `prog` the way the kernel would on one device access: enough of an eBPF
    /// interpreter for the instructions `assemble` emits.
    fn run(prog: &[Insn], kind: Kind, access: u8, major: u32, minor: u32) -> u64 {
        let ctx = [(kind as u32) | (u32::from(access) << 16), major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (d, s) = (i.dst(), i.src());
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(s, 1, "loads only from the context");
                    r[d] = u64::from(ctx[i.off as usize / 4]);
                }
                ALU32_AND_K => r[d] = u64::from(r[d] as u32 & i.imm as u32),
                ALU32_RSH_K => r[d] = u64::from((r[d] as u32) >> i.imm),
                ALU32_MOV_K => r[d] = u64::from(i.imm as u32),
                ALU32_MOV_X => r[d] = u64::from(r[s] as u32),
                JNE_K if r[d] != i.imm as i64 as u64 => pc = (pc as isize + i.off as isize) as usize,
                JNE_X if r[d] != r[s] => pc = (pc as isize + i.off as isize) as usize,
                JNE_K | JNE_X => {}
                EXIT => return r[0],
                other => panic!("unexpected opcode {other:#x}"),
            }
            assert!(pc < prog.len(), "jumped out of the program");
        }
    }

    #[test]
    fn one_rule_encodes_as_expected() {
        let prog = assemble(&[Rule { kind: Kind::Char, major: Some(1), minor: None, access: READ }]);
        let tail: Vec<(u8, i16, i32)> = prog[6..].iter().map(|i| (i.code, i.off, i.imm)).collect();
        assert_eq!(
            tail,
            [
                (JNE_K, 6, 2),
                (ALU32_MOV_X, 0, 0),
                (ALU32_AND_K, 0, 2),
                (JNE_X, 3, 0),
                (JNE_K, 2, 1),
                (ALU32_MOV_K, 0, 1),
                (EXIT, 0, 0),
                (ALU32_MOV_K, 0, 0),
                (EXIT, 0, 0)
            ]
        );
        assert_eq!(std::mem::size_of::<Insn>(), 8);
        // r1 = r3: dst in the low nibble on little-endian.
        #[cfg(target_endian = "little")]
        assert_eq!(prog[7].regs, 0x31);
    }

    #[test]
    fn default_program_allows_exactly_the_list() {
        let prog = assemble(&DEFAULT_ALLOW);
        let rw = READ | WRITE;
        for (kind, access, major, minor, allowed) in [
            (Kind::Char, rw, 1, 3, true),     // /dev/null
            (Kind::Char, READ, 1, 9, true),   // /dev/urandom
            (Kind::Char, rw, 136, 7, true),   // a pty
            (Kind::Char, rw, 5, 2, true),     // ptmx
            (Kind::Char, MKNOD, 8, 0, true),  // mknod of anything...
            (Kind::Block, MKNOD, 7, 0, true), // ...even a block device
            (Kind::Block, READ, 7, 0, false), // but not opening it: a loop device
            (Kind::Block, rw, 8, 0, false),   // sda
            (Kind::Char, READ, 1, 1, false),  // /dev/mem
            (Kind::Char, rw, 10, 200, false), // tun
            (Kind::Char, READ | MKNOD, 4, 0, false),
            (Kind::Block, READ, 1, 3, false), // a block device numbered as null
        ] {
            let got = run(&prog, kind, access, major, minor) == 1;
            assert_eq!(got, allowed, "{kind:?} {major}:{minor} access {access}");
        }
    }
}
