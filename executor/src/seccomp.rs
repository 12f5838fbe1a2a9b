//! The default seccomp filter: which syscalls a sandboxed process may make at all.
//!
//! This module owns the profile and its BPF. A `RUN` step or a `builder run` container
//! ([`crate::Security::seccomp`]) gets the equivalent of moby's default profile
//! (`profiles/seccomp/default.json`): a syscall outside moby's allowlist fails with EPERM,
//! a few are allowed only with harmless arguments (`clone` without namespace flags,
//! `socket` of any family but AF_ALG and AF_VSOCK, `personality` with moby's values),
//! `clone3` answers ENOSYS so that libc falls back to `clone`, whose flags a filter can
//! see, and the capability set ([`crate::Security::capabilities`]) opens what it opens
//! in moby (CAP_SYS_ADMIN: mount, unshare, setns, bpf...; CAP_SYS_PTRACE: kcmp...).
//! An allowlist rather than a denylist because every kernel adds syscalls (io_uring, the
//! new mount API...) that reach code no build step needs: unknown means denied. The same
//! list as moby's, because what runs under `docker build` must run here, and no more.
//!
//! The profile is data, by syscall name; per-ABI tables (`seccomp/*.rs`, from the
//! kernel's syscall tables) turn names into numbers, skipping those an ABI lacks, as
//! libseccomp does; `seccompiler` compiles the BPF. The sandbox init compiles the
//! filter before it forks the process ([`Filter::new`]); the forked child installs it
//! as its last step before `execve` ([`Filter::install`]: syscalls only), after
//! `no_new_privs`, which lets a process without CAP_SYS_ADMIN load a filter.

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch, sock_filter,
};

use crate::Capabilities;

// `allow`, not `expect`: the other architectures' tables are dead only per target
// and arch, and the unit tests read all of them, so the lint fires in some builds only.
#[cfg_attr(not(target_arch = "aarch64"), allow(dead_code))]
mod aarch64;
#[cfg_attr(not(target_arch = "riscv64"), allow(dead_code))]
mod riscv64;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod x86;
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
mod x86_64;

/// moby's allowlist: allowed whatever the capabilities and the arguments. Names that an
/// architecture lacks (`chown32`, `_llseek`...) are skipped there.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    // The kernel itself wants CAP_SYS_TIME to change the clock; reading is free.
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "getxattrat",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listmount",
    "listxattr",
    "listxattrat",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "mseal",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    // Only makes a handle; opening one (open_by_handle_at) wants CAP_DAC_READ_SEARCH.
    "name_to_handle_at",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "removexattrat",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "riscv_hwprobe",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    // Stacking a filter of one's own only ever narrows this one.
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "setxattrat",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    // The 32-bit x86 multiplexer: moby allows it whole, so its socket() reaches AF_VSOCK
    // and AF_ALG, which the direct `socket` rule refuses (moby says as much).
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statmount",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "uretprobe",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
    // moby allows these three from kernel 4.8 on (before it, a tracer could make a
    // tracee skip its filter); the sandbox's overlay options (metacopy=off) already
    // need 4.19.
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
];

/// Allowed only with some arguments (moby's `args` rules), unless a capability below
/// allows the syscall outright.
const WITH_ARGS: &[(&str, Args)] = &[("socket", Args::SocketFamily), ("personality", Args::Personality)];

// Capability numbers (`linux/capability.h`) that open syscalls in moby's profile.
const CAP_DAC_READ_SEARCH: u32 = 2;
const CAP_SYS_MODULE: u32 = 16;
const CAP_SYS_RAWIO: u32 = 17;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_PACCT: u32 = 20;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_BOOT: u32 = 22;
const CAP_SYS_NICE: u32 = 23;
const CAP_SYS_TIME: u32 = 25;
const CAP_SYS_TTY_CONFIG: u32 = 26;
const CAP_SYSLOG: u32 = 34;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What each capability opens, as in moby: the kernel would refuse these anyway without
/// the capability, but the filter also keeps their code out of reach.
const BY_CAPABILITY: &[(u32, &[&str])] = &[
    (CAP_DAC_READ_SEARCH, &["open_by_handle_at"]),
    (
        CAP_SYS_ADMIN,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    (CAP_SYS_BOOT, &["reboot"]),
    (Capabilities::SYS_CHROOT, &["chroot"]),
    (CAP_SYS_MODULE, &["delete_module", "init_module", "finit_module"]),
    (CAP_SYS_PACCT, &["acct"]),
    (CAP_SYS_PTRACE, &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]),
    (CAP_SYS_RAWIO, &["iopl", "ioperm"]),
    (CAP_SYS_TIME, &["settimeofday", "stime", "clock_settime", "clock_settime64"]),
    (CAP_SYS_TTY_CONFIG, &["vhangup"]),
    (CAP_SYS_NICE, &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    (CAP_SYSLOG, &["syslog"]),
    (CAP_BPF, &["bpf"]),
    (CAP_PERFMON, &["perf_event_open"]),
];

/// The namespace flags a process without CAP_SYS_ADMIN may not pass to `clone` (an
/// unprivileged user namespace would give it a CAP_SYS_ADMIN of its own). `clone3` takes
/// its flags in memory, out of a filter's sight: hence its ENOSYS.
const NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// The `personality` values moby allows: PER_LINUX, PER_LINUX32, UNAME26,
/// UNAME26|PER_LINUX32, and 0xffffffff (a query).
const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// With which arguments a syscall is allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Args {
    Any,
    /// `clone` whose flags (argument 0) have none of [`NAMESPACE_FLAGS`].
    CloneWithoutNamespaces,
    /// `socket` of any family but AF_ALG (38) and AF_VSOCK (40).
    SocketFamily,
    /// `personality` with one of [`PERSONALITIES`].
    Personality,
}

impl Args {
    /// The rules (any one matching allows the call) for these arguments.
    fn rules(self) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
        // Both `int`s in the kernel: only the low 32 bits count, so only they are compared.
        let int_arg0 = |op, value| SeccompCondition::new(0, SeccompCmpArgLen::Dword, op, value);
        let one = |cond| SeccompRule::new(vec![cond]);
        match self {
            Args::Any => Ok(vec![]),
            Args::CloneWithoutNamespaces => Ok(vec![one(SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(NAMESPACE_FLAGS),
                0,
            )?)?]),
            Args::SocketFamily => {
                let (alg, vsock) = (libc::AF_ALG as u64, libc::AF_VSOCK as u64);
                Ok(vec![
                    one(int_arg0(SeccompCmpOp::Lt, alg)?)?,
                    one(int_arg0(SeccompCmpOp::Eq, alg + 1)?)?,
                    one(int_arg0(SeccompCmpOp::Gt, vsock)?)?,
                ])
            }
            Args::Personality => PERSONALITIES.iter().map(|&p| one(int_arg0(SeccompCmpOp::Eq, p)?)).collect(),
        }
    }
}

/// moby's profile for one capability set, by syscall name.
#[derive(Debug)]
struct Profile {
    /// Each allowed syscall with the argument patterns it is allowed with.
    allowed: BTreeMap<&'static str, Vec<Args>>,
    /// Syscalls that answer ENOSYS rather than EPERM.
    enosys: Vec<&'static str>,
}

impl Profile {
    fn new(caps: Capabilities) -> Self {
        let mut profile = Profile { allowed: BTreeMap::new(), enosys: Vec::new() };
        for name in ALLOWED {
            profile.allow(name, Args::Any);
        }
        for &(name, args) in WITH_ARGS {
            profile.allow(name, args);
        }
        for &(cap, names) in BY_CAPABILITY {
            if caps.contains(cap) {
                names.iter().for_each(|name| profile.allow(name, Args::Any));
            }
        }
        if !caps.contains(CAP_SYS_ADMIN) {
            profile.allow("clone", Args::CloneWithoutNamespaces);
            profile.enosys.push("clone3");
        }
        profile
    }

    fn allow(&mut self, name: &'static str, args: Args) {
        self.allowed.entry(name).or_default().push(args);
    }

    /// The seccompiler rules of an allowed syscall: none (so: any arguments) as soon as
    /// one pattern is [`Args::Any`].
    fn rules(args: &[Args]) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
        if args.contains(&Args::Any) {
            return Ok(vec![]);
        }
        let mut rules = Vec::new();
        for a in args {
            rules.extend(a.rules()?);
        }
        Ok(rules)
    }
}

/// One syscall ABI that a process on this machine may use.
struct Abi {
    /// `AUDIT_ARCH_*`: what the kernel puts in `seccomp_data.arch` for this ABI's syscalls.
    audit_arch: u32,
    /// Numbers of the syscalls the profile names, where this ABI has them.
    syscalls: &'static [(&'static str, i64)],
    /// Allowed on this architecture only (moby's per-architecture rules).
    extra: &'static [&'static str],
}

impl Abi {
    fn number(&self, name: &str) -> Option<i64> {
        self.syscalls.iter().find(|(n, _)| *n == name).map(|&(_, nr)| nr)
    }
}

// `AUDIT_ARCH_*` of `linux/audit.h`: the ELF machine, 64BIT (0x8000_0000), LE (0x4000_0000).
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH_I386: u32 = 0x4000_0003;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;
#[cfg(target_arch = "riscv64")]
const AUDIT_ARCH_RISCV64: u32 = 0xc000_00f3;

/// The ABIs filtered here, native first. Each gets its own programs, which let the
/// other ABIs' syscalls through to theirs and kill a process making a syscall of any
/// other ABI (seccompiler's own behaviour on an architecture mismatch).
///
/// On x86_64 that is moby's x86 sub-architecture too: i386 binaries (`--platform
/// linux/386`) and `int 0x80` from 64-bit ones are filtered with the i386 numbers. The
/// x32 ABI (moby's other sub-architecture) reports itself as x86_64 with bit 30 set in
/// the number, which matches no rule: EPERM for every x32 syscall, so x32 binaries (off
/// by default in distribution kernels) do not run. On aarch64, 32-bit ARM processes
/// (moby's arm sub-architecture) are killed with SIGSYS: no table for them here.
#[cfg(target_arch = "x86_64")]
const ABIS: &[Abi] = &[
    Abi { audit_arch: AUDIT_ARCH_X86_64, syscalls: x86_64::SYSCALLS, extra: &["arch_prctl", "modify_ldt"] },
    Abi { audit_arch: AUDIT_ARCH_I386, syscalls: x86::SYSCALLS, extra: &["modify_ldt"] },
];
// moby's arm64 extras (arm_fadvise64_64, cacheflush, set_tls...) are 32-bit ARM syscalls.
#[cfg(target_arch = "aarch64")]
const ABIS: &[Abi] = &[Abi { audit_arch: AUDIT_ARCH_AARCH64, syscalls: aarch64::SYSCALLS, extra: &[] }];
#[cfg(target_arch = "riscv64")]
const ABIS: &[Abi] =
    &[Abi { audit_arch: AUDIT_ARCH_RISCV64, syscalls: riscv64::SYSCALLS, extra: &["riscv_flush_icache"] }];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "riscv64")))]
const ABIS: &[Abi] = &[];

/// The compiled filter: BPF programs to load in order.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    programs: Vec<BpfProgram>,
}

impl Filter {
    /// moby's default profile for a process whose capabilities are at most `caps`,
    /// compiled for this machine.
    pub(crate) fn new(caps: Capabilities) -> io::Result<Self> {
        Self::compile(&Profile::new(caps), ABIS)
    }

    /// One seccompiler filter has one action on a match and one otherwise, so the
    /// profile becomes two programs per ABI: the allowlist (ALLOW, else EPERM) and the
    /// ENOSYS list (ENOSYS, else ALLOW). The kernel runs every loaded program and keeps
    /// the most restrictive action; between two ERRNOs (EPERM and ENOSYS for `clone3`)
    /// the most recently loaded program wins, so the ENOSYS programs come last.
    fn compile(profile: &Profile, abis: &[Abi]) -> io::Result<Self> {
        let unsupported =
            || io::Error::new(io::ErrorKind::Unsupported, format!("no filter for {}", std::env::consts::ARCH));
        let Some(native) = abis.first() else { return Err(unsupported()) };
        let target = TargetArch::try_from(std::env::consts::ARCH).map_err(|_| unsupported())?;
        let backend = |e: seccompiler::BackendError| io::Error::other(e.to_string());
        let (mut allowlists, mut enosys) = (Vec::new(), Vec::new());
        for abi in abis {
            let others: Vec<u32> = abis.iter().map(|a| a.audit_arch).filter(|&a| a != abi.audit_arch).collect();
            let mut allowed = profile.allowed.clone();
            for name in abi.extra {
                allowed.entry(name).or_default().push(Args::Any);
            }
            let mut rules = BTreeMap::new();
            for (name, args) in &allowed {
                if let Some(nr) = abi.number(name) {
                    rules.insert(nr, Profile::rules(args).map_err(backend)?);
                }
            }
            let program =
                SeccompFilter::new(rules, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow, target)
                    .and_then(BpfProgram::try_from)
                    .map_err(backend)?;
            allowlists.push(retarget(program, native.audit_arch, abi.audit_arch, &others)?);
            let rules: BTreeMap<i64, Vec<SeccompRule>> =
                profile.enosys.iter().filter_map(|name| abi.number(name)).map(|nr| (nr, vec![])).collect();
            if !rules.is_empty() {
                let program =
                    SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::ENOSYS as u32), target)
                        .and_then(BpfProgram::try_from)
                        .map_err(backend)?;
                enosys.push(retarget(program, native.audit_arch, abi.audit_arch, &others)?);
            }
        }
        allowlists.extend(enosys);
        Ok(Filter { programs: allowlists })
    }

    /// Loads the programs into the calling thread, for good. Allocates nothing: fit for a
    /// forked child. The caller has set `no_new_privs` (loading sets it again anyway).
    pub(crate) fn install(&self) -> io::Result<()> {
        for program in &self.programs {
            seccompiler::apply_filter(program).map_err(|e| match e {
                seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => e,
                _ => io::ErrorKind::InvalidInput.into(),
            })?;
        }
        Ok(())
    }
}

const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
/// `offsetof(struct seccomp_data, arch)`.
const ARCH_OFFSET: u32 = 4;
/// `BPF_MAXINSNS`: the kernel's limit on a program's length.
const MAX_INSTRUCTIONS: usize = 4096;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter { code, jt: 0, jf: 0, k }
}

fn jeq(k: u32, jt: u8) -> sock_filter {
    sock_filter { code: JEQ_K, jt, jf: 0, k }
}

/// seccompiler compiles for one architecture: its programs start with `arch == target ?
/// go on : KILL_PROCESS`. This replaces that check with: `abi` goes on to the rules
/// (numbered for `abi`, whatever the target), each of `others` is allowed (its own
/// programs judge it), anything else is killed. The rest of a program only jumps
/// forwards within itself, so it may move.
fn retarget(program: BpfProgram, target: u32, abi: u32, others: &[u32]) -> io::Result<BpfProgram> {
    let check = [stmt(LD_W_ABS, ARCH_OFFSET), jeq(target, 1), stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS)];
    if program.len() < check.len() || program[..check.len()] != check {
        return Err(io::Error::other("seccompiler's architecture check is not where it was"));
    }
    let n = others.len();
    // [load arch] [abi? -> rules] [other? -> allow]... [kill] ([allow]) [rules...]
    let (allow_at, rules_at) = if n == 0 { (0, 3) } else { (3 + n, 4 + n) };
    let mut out = Vec::with_capacity(program.len() + n + 2);
    out.push(stmt(LD_W_ABS, ARCH_OFFSET));
    out.push(jeq(abi, (rules_at - 2) as u8));
    for (i, &other) in others.iter().enumerate() {
        out.push(jeq(other, (allow_at - (2 + i) - 1) as u8));
    }
    out.push(stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS));
    if n > 0 {
        out.push(stmt(RET_K, libc::SECCOMP_RET_ALLOW));
    }
    out.extend_from_slice(&program[check.len()..]);
    if out.len() > MAX_INSTRUCTIONS {
        return Err(io::Error::other(format!("filter of {} instructions, past the kernel's limit", out.len())));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Security;
    use std::collections::BTreeSet;

    fn allowed(caps: Capabilities) -> BTreeSet<&'static str> {
        Profile::new(caps).allowed.into_keys().collect()
    }

    /// The syscall tables, by architecture.
    fn tables() -> [(&'static str, &'static [(&'static str, i64)]); 4] {
        [
            ("x86_64", x86_64::SYSCALLS),
            ("x86", x86::SYSCALLS),
            ("aarch64", aarch64::SYSCALLS),
            ("riscv64", riscv64::SYSCALLS),
        ]
    }

    #[test]
    fn the_allowlist_has_no_duplicates_and_the_essentials() {
        let unique: BTreeSet<_> = ALLOWED.iter().collect();
        assert_eq!(unique.len(), ALLOWED.len(), "a name twice in ALLOWED");
        for (_, names) in BY_CAPABILITY {
            assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), names.len());
        }
        let step = allowed(Security::build_step().capabilities);
        for name in [
            "read",
            "write",
            "openat",
            "close",
            "mmap",
            "execve",
            "execveat",
            "exit_group",
            "futex",
            "clone",
            "wait4",
            "rt_sigreturn",
            "rt_sigaction",
            "brk",
            "socket",
            "personality",
            "chroot",
            "prctl",
            "seccomp",
        ] {
            assert!(step.contains(name), "{name} must be allowed");
        }
    }

    #[test]
    fn a_build_step_gets_none_of_the_dangerous_ones() {
        let profile = Profile::new(Security::build_step().capabilities);
        for name in [
            "unshare",
            "setns",
            "mount",
            "umount2",
            "pivot_root",
            "fsopen",
            "fsconfig",
            "fsmount",
            "move_mount",
            "open_tree",
            "fspick",
            "mount_setattr",
            "keyctl",
            "add_key",
            "request_key",
            "bpf",
            "perf_event_open",
            "kexec_load",
            "kexec_file_load",
            "open_by_handle_at",
            "init_module",
            "finit_module",
            "delete_module",
            "reboot",
            "swapon",
            "swapoff",
            "userfaultfd",
            "io_uring_setup",
            "io_uring_enter",
            "io_uring_register",
            "syslog",
            "acct",
            "quotactl",
            "iopl",
            "ioperm",
            "lookup_dcookie",
            "settimeofday",
            "clock_settime",
            "kcmp",
            "pidfd_getfd",
            "clone3",
            "sethostname",
            "vhangup",
            "mbind",
        ] {
            assert!(!profile.allowed.contains_key(name), "{name} must be denied");
        }
        assert_eq!(profile.allowed["clone"], [Args::CloneWithoutNamespaces]);
        assert_eq!(profile.allowed["socket"], [Args::SocketFamily]);
        assert_eq!(profile.enosys, ["clone3"]);
    }

    #[test]
    fn capabilities_open_what_they_open_in_moby() {
        let base = allowed(Capabilities(0));
        let with = |cap: u32| allowed(Capabilities::of(&[cap])).difference(&base).copied().collect::<Vec<_>>();
        assert!(!base.contains("chroot"));
        assert_eq!(with(Capabilities::SYS_CHROOT), ["chroot"]);
        assert_eq!(with(CAP_SYS_PTRACE), ["kcmp", "pidfd_getfd", "process_madvise"]);
        assert_eq!(with(CAP_SYS_TIME), ["clock_settime", "clock_settime64", "settimeofday", "stime"]);
        assert_eq!(with(CAP_BPF), ["bpf"]);
        assert_eq!(with(CAP_PERFMON), ["perf_event_open"]);
        assert_eq!(with(CAP_SYSLOG), ["syslog"]);
        assert_eq!(with(CAP_SYS_MODULE), ["delete_module", "finit_module", "init_module"]);
        assert_eq!(with(CAP_SYS_BOOT), ["reboot"]);
        assert_eq!(with(CAP_DAC_READ_SEARCH), ["open_by_handle_at"]);
        let admin = Profile::new(Capabilities::of(&[CAP_SYS_ADMIN]));
        for name in ["mount", "umount2", "unshare", "setns", "clone3", "fsopen", "bpf", "sethostname"] {
            assert_eq!(admin.allowed[name], [Args::Any], "{name}");
        }
        assert_eq!(admin.allowed["clone"], [Args::Any], "CAP_SYS_ADMIN clones with any flags");
        assert!(admin.enosys.is_empty());
        // Nothing opens these.
        let all = allowed(Capabilities::all());
        for name in ["keyctl", "add_key", "request_key", "kexec_load", "userfaultfd", "io_uring_setup", "pivot_root"] {
            assert!(!all.contains(name), "{name}");
        }
    }

    #[test]
    fn tables_are_consistent() {
        let named: BTreeSet<&str> = ALLOWED
            .iter()
            .copied()
            .chain(WITH_ARGS.iter().map(|(n, _)| *n))
            .chain(BY_CAPABILITY.iter().flat_map(|(_, names)| names.iter().copied()))
            .chain(["clone", "clone3", "arch_prctl", "modify_ldt", "riscv_flush_icache"])
            .collect();
        for (arch, table) in tables() {
            let names: BTreeSet<_> = table.iter().map(|(n, _)| *n).collect();
            let numbers: BTreeSet<_> = table.iter().map(|(_, nr)| *nr).collect();
            assert_eq!(names.len(), table.len(), "{arch}: a name twice");
            assert_eq!(numbers.len(), table.len(), "{arch}: a number twice");
            assert!(table.windows(2).all(|w| w[0].0 < w[1].0), "{arch}: keep the table sorted");
            for name in &names {
                assert!(named.contains(name), "{arch}: {name} is in no rule");
            }
            for essential in ["read", "write", "execve", "exit_group", "clone", "clone3", "futex", "rt_sigreturn"] {
                assert!(names.contains(essential), "{arch}: {essential} missing");
            }
            assert_eq!(table.iter().find(|(n, _)| *n == "clone3").unwrap().1, 435, "{arch}");
        }
    }

    /// The native table agrees with libc's numbers (gnu targets, where libc has them all).
    #[test]
    #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
    fn native_numbers_are_libcs() {
        macro_rules! check {
            ($($name:ident)*) => {$(
                let name = &stringify!($name)[4..];
                assert_eq!(ABIS[0].number(name), Some(libc::$name), "{name}");
            )*};
        }
        check!(SYS_read SYS_write SYS_open SYS_close SYS_stat SYS_fstat SYS_lstat SYS_poll SYS_lseek SYS_mmap
            SYS_mprotect SYS_munmap SYS_brk SYS_rt_sigaction SYS_rt_sigprocmask SYS_rt_sigreturn SYS_ioctl
            SYS_pread64 SYS_readv SYS_access SYS_pipe SYS_select SYS_sched_yield SYS_mremap SYS_dup2 SYS_socket
            SYS_connect SYS_clone SYS_fork SYS_vfork SYS_execve SYS_exit SYS_wait4 SYS_kill SYS_uname SYS_fcntl
            SYS_getdents SYS_getcwd SYS_chdir SYS_rename SYS_mkdir SYS_chown SYS_umask SYS_ptrace SYS_personality
            SYS_arch_prctl SYS_modify_ldt SYS_chroot SYS_mount SYS_umount2 SYS_iopl SYS_ioperm SYS_reboot
            SYS_init_module SYS_delete_module SYS_gettid SYS_futex SYS_set_tid_address SYS_exit_group
            SYS_openat SYS_newfstatat SYS_unshare SYS_splice SYS_pipe2 SYS_perf_event_open SYS_setns
            SYS_finit_module SYS_sched_setattr SYS_seccomp SYS_getrandom SYS_memfd_create SYS_bpf SYS_execveat
            SYS_statx SYS_rseq SYS_pidfd_send_signal SYS_open_tree SYS_move_mount SYS_fsopen SYS_fsconfig
            SYS_fsmount SYS_fspick SYS_pidfd_open SYS_clone3 SYS_close_range SYS_openat2 SYS_pidfd_getfd
            SYS_faccessat2 SYS_process_madvise SYS_epoll_pwait2 SYS_mount_setattr SYS_quotactl_fd
            SYS_landlock_create_ruleset SYS_landlock_add_rule SYS_landlock_restrict_self SYS_memfd_secret
            SYS_process_mrelease SYS_futex_waitv SYS_set_mempolicy_home_node SYS_fchmodat2 SYS_mseal);
    }

    /// The native table agrees with libc's numbers (gnu targets, where libc has them all).
    #[test]
    #[cfg(all(target_arch = "aarch64", target_env = "gnu"))]
    fn native_numbers_are_libcs() {
        macro_rules! check {
            ($($name:ident)*) => {$(
                let name = &stringify!($name)[4..];
                assert_eq!(ABIS[0].number(name), Some(libc::$name), "{name}");
            )*};
        }
        check!(SYS_read SYS_write SYS_openat SYS_close SYS_fstat SYS_newfstatat SYS_lseek SYS_mmap SYS_mprotect
            SYS_munmap SYS_brk SYS_rt_sigaction SYS_rt_sigreturn SYS_ioctl SYS_clone SYS_execve SYS_exit
            SYS_exit_group SYS_wait4 SYS_futex SYS_personality SYS_chroot SYS_mount SYS_umount2 SYS_unshare
            SYS_setns SYS_ptrace SYS_socket SYS_bpf SYS_perf_event_open SYS_seccomp SYS_clone3 SYS_close_range
            SYS_openat2 SYS_pidfd_getfd SYS_faccessat2 SYS_memfd_secret SYS_futex_waitv SYS_mseal);
    }

    #[test]
    fn the_filter_compiles_for_this_machine() {
        for security in [Security::build_step(), Security::container(), Security::insecure()] {
            let filter = Filter::new(security.capabilities).unwrap();
            let per_abi = if security.capabilities.contains(CAP_SYS_ADMIN) { 1 } else { 2 };
            assert_eq!(filter.programs.len(), ABIS.len() * per_abi);
            for program in &filter.programs {
                assert!(program.len() <= MAX_INSTRUCTIONS);
                assert_eq!(program[0], stmt(LD_W_ABS, ARCH_OFFSET));
            }
        }
    }

    #[test]
    fn retarget_sends_each_abi_to_its_rules() {
        let body = [stmt(LD_W_ABS, 0), stmt(RET_K, libc::SECCOMP_RET_ERRNO)];
        let compiled: Vec<_> = [stmt(LD_W_ABS, ARCH_OFFSET), jeq(7, 1), stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS)]
            .into_iter()
            .chain(body.clone())
            .collect();
        let p = retarget(compiled.clone(), 7, 9, &[7]).unwrap();
        // Run the prefix by hand: where does each arch land?
        let land = |arch: u32| {
            let mut pc = 1;
            loop {
                let i = &p[pc];
                match i.code {
                    JEQ_K => pc += 1 + if arch == i.k { i.jt as usize } else { i.jf as usize },
                    _ => return pc,
                }
            }
        };
        assert_eq!(&p[land(9)..], &body, "the abi's own syscalls reach its rules");
        assert_eq!(p[land(7)], stmt(RET_K, libc::SECCOMP_RET_ALLOW), "the sibling's are left to its programs");
        assert_eq!(p[land(5)], stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS));
        let alone = retarget(compiled.clone(), 7, 7, &[]).unwrap();
        assert_eq!(alone, compiled, "without siblings, seccompiler's own check");
        assert!(retarget(body.to_vec(), 7, 7, &[]).is_err());
    }

    /// Runs `probe` in a forked child, under `filter` if any, and returns the numbers it
    /// fills in (None if the child died of a signal). The child only makes syscalls.
    fn in_child(filter: Option<&Filter>, probe: impl Fn(&mut [i64; 16])) -> Option<[i64; 16]> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 writes two descriptors into the array.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
        // SAFETY: the child makes syscalls only (the filter is compiled, the closure
        // allocates nothing) and leaves through _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let mut results = [0i64; 16];
            if let Some(filter) = filter {
                // SAFETY: plain prctl with integers, as the sandbox init does.
                unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
                if filter.install().is_err() {
                    // SAFETY: leaving the forked child.
                    unsafe { libc::_exit(3) };
                }
            }
            probe(&mut results);
            // SAFETY: writes the array's bytes to the pipe, then leaves the forked child.
            unsafe {
                libc::write(fds[1], results.as_ptr().cast(), std::mem::size_of_val(&results));
                libc::_exit(0);
            }
        }
        // SAFETY: closing our copy of the write end.
        unsafe { libc::close(fds[1]) };
        let mut results = [0i64; 16];
        // SAFETY: reads at most the array's size into it.
        let n = unsafe { libc::read(fds[0], results.as_mut_ptr().cast(), std::mem::size_of_val(&results)) };
        let mut status = 0;
        // SAFETY: reaps our own child; closes our read end.
        unsafe {
            libc::waitpid(pid, &mut status, 0);
            libc::close(fds[0]);
        }
        assert!(!libc::WIFEXITED(status) || libc::WEXITSTATUS(status) == 0, "the child failed: {status:#x}");
        (n as usize == std::mem::size_of_val(&results)).then_some(results)
    }

    /// A raw syscall's result, with -errno for a failure.
    fn sys(rc: libc::c_long) -> i64 {
        if rc == -1 { -i64::from(io::Error::last_os_error().raw_os_error().unwrap_or(0)) } else { rc }
    }

    /// Variadic syscall arguments, full width.
    type Long = libc::c_long;
    const EPERM: i64 = -(libc::EPERM as i64);
    const ENOSYS: i64 = -(libc::ENOSYS as i64);

    #[test]
    fn a_filtered_process_is_refused_what_moby_refuses() {
        let filter = Filter::new(Security::build_step().capabilities).unwrap();
        let r = in_child(Some(&filter), |r| {
            // SAFETY: each call passes integers and null pointers; none of them touches
            // memory of ours, and those that create something are refused or undone.
            unsafe {
                r[0] = sys(libc::syscall(libc::SYS_keyctl, 0 as Long, -3 as Long, 0 as Long)); // KEYCTL_GET_KEYRING_ID
                r[1] = sys(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER as Long));
                r[2] = sys(libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0 as Long));
                r[3] = sys(libc::syscall(libc::SYS_getpid));
                r[4] =
                    sys(libc::syscall(libc::SYS_socket, libc::AF_VSOCK as Long, libc::SOCK_STREAM as Long, 0 as Long));
                r[5] =
                    sys(libc::syscall(libc::SYS_socket, libc::AF_UNIX as Long, libc::SOCK_STREAM as Long, 0 as Long));
                if r[5] >= 0 {
                    libc::close(r[5] as i32);
                }
                r[6] = sys(libc::syscall(libc::SYS_personality, 0xffff_ffff as Long));
                r[7] = sys(libc::syscall(libc::SYS_personality, libc::ADDR_NO_RANDOMIZE as Long));
                r[8] = sys(libc::syscall(
                    libc::SYS_clone,
                    (libc::CLONE_NEWUSER | libc::SIGCHLD) as Long,
                    0 as Long,
                    0 as Long,
                    0 as Long,
                    0 as Long,
                ));
                // A plain fork through clone still works.
                let child = sys(libc::syscall(
                    libc::SYS_clone,
                    libc::SIGCHLD as Long,
                    0 as Long,
                    0 as Long,
                    0 as Long,
                    0 as Long,
                ));
                if child == 0 {
                    libc::_exit(7);
                }
                let mut status = 0;
                r[9] = if child > 0 && libc::waitpid(child as i32, &mut status, 0) == child as i32 {
                    i64::from(libc::WEXITSTATUS(status))
                } else {
                    child
                };
                // Without the filter: ENOENT, EINVAL, EFAULT, EFAULT, EBADF.
                r[10] = sys(libc::syscall(
                    libc::SYS_mount,
                    0 as Long,
                    c"/no/such/dir".as_ptr(),
                    0 as Long,
                    libc::MS_REMOUNT as Long,
                    0 as Long,
                ));
                r[11] = sys(libc::syscall(libc::SYS_bpf, 999 as Long, 0 as Long, 0 as Long));
                r[12] = sys(libc::syscall(
                    libc::SYS_perf_event_open,
                    0 as Long,
                    0 as Long,
                    -1 as Long,
                    -1 as Long,
                    0 as Long,
                ));
                r[13] = sys(libc::syscall(libc::SYS_io_uring_setup, 1 as Long, 0 as Long));
                r[14] = sys(libc::syscall(libc::SYS_setns, -1 as Long, 0 as Long));
                r[15] = sys(libc::syscall(libc::SYS_getppid));
            }
        })
        .expect("the child reports");
        assert_eq!(r[0], EPERM, "keyctl");
        assert_eq!(r[1], EPERM, "unshare(CLONE_NEWUSER)");
        assert_eq!(r[2], ENOSYS, "clone3");
        assert!(r[3] > 0, "getpid: {}", r[3]);
        assert_eq!(r[4], EPERM, "socket(AF_VSOCK)");
        assert!(r[5] >= 0, "socket(AF_UNIX): {}", r[5]);
        assert!(r[6] >= 0, "personality query: {}", r[6]);
        assert_eq!(r[7], EPERM, "personality(ADDR_NO_RANDOMIZE)");
        assert_eq!(r[8], EPERM, "clone(CLONE_NEWUSER)");
        assert_eq!(r[9], 7, "clone without namespaces (a fork)");
        assert_eq!(&r[10..15], &[EPERM; 5], "mount, bpf, perf_event_open, io_uring_setup, setns");
        assert!(r[15] > 0);
    }

    #[test]
    fn cap_sys_admin_opens_namespaces_but_never_keyctl() {
        let filter = Filter::new(Capabilities::all()).unwrap();
        let r = in_child(Some(&filter), |r| {
            // SAFETY: integer arguments and null pointers; unshare(0) changes nothing.
            unsafe {
                r[0] = sys(libc::syscall(libc::SYS_unshare, 0 as Long));
                r[1] = sys(libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0 as Long));
                r[2] = sys(libc::syscall(libc::SYS_keyctl, 0 as Long, -3 as Long, 0 as Long));
            }
        })
        .expect("the child reports");
        assert_eq!(r[0], 0, "unshare(0)");
        assert!(r[1] != ENOSYS && r[1] < 0, "clone3 reaches the kernel (which refuses a null struct): {}", r[1]);
        assert_eq!(r[2], EPERM, "keyctl");
    }

    /// A 32-bit x86 syscall (`int 0x80`) with up to three arguments; -errno on failure.
    #[cfg(target_arch = "x86_64")]
    fn int80(nr: u32, a: u32, b: u32, c: u32) -> i64 {
        let ret: u32;
        // SAFETY: enters the kernel through the i386 entry with integer arguments (LLVM
        // keeps rbx, so arg 0 goes through a scratch register); r8-r11 are declared
        // clobbered, as older kernels zeroed them.
        unsafe {
            std::arch::asm!(
                "xchg {a}, rbx",
                "int 0x80",
                "xchg {a}, rbx",
                a = inout(reg) u64::from(a) => _,
                inlateout("eax") nr => ret,
                in("ecx") b,
                in("edx") c,
                lateout("r8") _,
                lateout("r9") _,
                lateout("r10") _,
                lateout("r11") _,
            );
        }
        i64::from(ret as i32)
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn i386_syscalls_are_filtered_with_i386_numbers() {
        const GETPID: u32 = 20;
        const MOUNT: u32 = 21;
        const PERSONALITY: u32 = 136;
        const KEYCTL: u32 = 288;
        const UNSHARE: u32 = 310;
        const SOCKET: u32 = 359;
        const CLONE3: u32 = 435;
        assert_eq!(ABIS[1].number("getpid"), Some(GETPID.into()));
        assert_eq!(ABIS[1].number("socket"), Some(SOCKET.into()));
        // Without IA32 emulation, `int 0x80` kills the child or answers ENOSYS.
        let probe = in_child(None, |r| {
            r[0] = int80(GETPID, 0, 0, 0);
            // SAFETY: getpid has no arguments.
            r[1] = unsafe { libc::syscall(libc::SYS_getpid) };
        });
        if probe.is_none_or(|r| r[0] != r[1]) {
            println!("no i386 syscalls on this kernel; skipped");
            return;
        }
        let filter = Filter::new(Security::build_step().capabilities).unwrap();
        let r = in_child(Some(&filter), |r| {
            r[0] = int80(GETPID, 0, 0, 0);
            r[1] = int80(KEYCTL, 0, (-3i32) as u32, 0);
            r[2] = int80(UNSHARE, libc::CLONE_NEWUSER as u32, 0, 0);
            r[3] = int80(CLONE3, 0, 0, 0);
            r[4] = int80(MOUNT, 0, 0, 0);
            r[5] = int80(SOCKET, libc::AF_VSOCK as u32, libc::SOCK_STREAM as u32, 0);
            r[6] = int80(PERSONALITY, 0xffff_ffff, 0, 0);
            // SAFETY: getpid has no arguments.
            r[7] = unsafe { libc::syscall(libc::SYS_getpid) };
        })
        .expect("a filtered i386 syscall must not kill the process");
        assert_eq!(r[0], r[7], "i386 getpid");
        assert_eq!(&r[1..6], &[EPERM, EPERM, ENOSYS, EPERM, EPERM], "keyctl, unshare, clone3, mount, socket(AF_VSOCK)");
        assert!(r[6] >= 0, "i386 personality query: {}", r[6]);
    }
}
