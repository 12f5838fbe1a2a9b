//! Limits and the device cgroup, on real sandboxes (as root): each test skips, saying
//! why, where [`probe`] finds what it needs missing. `v2_child` is this binary re-run
//! with builder told to use the host's cgroup2 mount, to test the v2 path (the BPF
//! device filter) on a hybrid host.

use crate::common::*;
use executor::*;
use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

fn skip(why: impl std::fmt::Display) {
    println!("    skipped: {why}");
}

/// `Some(reason)` if `support` is not enforced here.
fn missing(what: &str, support: &Support) -> Option<String> {
    match support {
        Support::Enforced(_) => None,
        Support::NotEnforced(why) => Some(format!("{what} not enforced here: {why}")),
    }
}

pub fn probe_describes_this_host() {
    let isolation = probe();
    for line in isolation.to_string().lines() {
        println!("    {line}");
    }
    // What a v1 host with writable hierarchies (this CI) gives a root builder.
    if isolation.cgroup == Ok(CgroupVersion::V1) && fs::metadata("/sys/fs/cgroup/pids/cgroup.procs").is_ok() {
        assert!(isolation.pids.is_enforced(), "{isolation}");
    }
}

pub fn pids_limit_stops_a_fork_bomb() {
    if let Some(why) = missing("pids limit", &probe().pids) {
        return skip(why);
    }
    let img = Image::busybox();
    let mut spec = img.spec(&["sh", "-c", "for i in $(seq 200); do sleep 86423 & done; echo all-started"]);
    spec.resources.pids = Some(64);
    let out = run_captured(&spec);
    assert!(out.stderr.contains("can't fork"), "{out:?}");
    assert!(!out.stdout.contains("all-started"), "{out:?}");
    assert!(matches!(out.status, Ok(s) if !s.success()), "{out:?}");
    assert_eq!(processes_matching("sleep 86423"), 0);
    // The same without the limit: all 200 start (and die with the sandbox).
    spec.resources.pids = None;
    let out = run_captured(&spec);
    assert_eq!(out.stdout, "all-started\n", "{out:?}");
    assert_eq!(processes_matching("sleep 86423"), 0);
}

pub fn memory_limit_kills_a_hog() {
    if let Some(why) = missing("memory limit", &probe().memory) {
        return skip(why);
    }
    let img = Image::busybox();
    // The shell holds the 200 MB of the substitution itself.
    let mut spec = img.spec(&["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}"]);
    spec.resources.memory = Some(64 << 20);
    let out = run_captured(&spec);
    assert_eq!(out.status, Ok(ExitStatus::Signal(libc::SIGKILL)), "{out:?}");
    assert_eq!(out.status.as_ref().unwrap().code(), 137);
    assert!(!out.stdout.contains("survived"), "{out:?}");
    // A limit too small for the sandbox's init as well: still the process killed.
    spec.resources.memory = Some(1 << 20);
    let out = run_captured(&spec);
    assert_eq!(out.status, Ok(ExitStatus::Signal(libc::SIGKILL)), "{out:?}");
    // A modest need fits.
    spec.resources.memory = Some(64 << 20);
    spec.process.args[2] = "x=$(head -c 2000000 /dev/zero | tr '\\0' a); echo survived ${#x}".into();
    assert_eq!(run_captured(&spec).stdout, "survived 2000000\n");
}

/// Reads `cpu` seconds the shell and its children used, as `/proc/$$/stat` says.
fn cpu_seconds(stat: &str) -> f64 {
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // After the command: state(0) ppid ... utime(11) stime(12) cutime(13) cstime(14).
    let ticks: u64 = fields[11..15].iter().map(|f| f.parse::<u64>().unwrap()).sum();
    // SAFETY: sysconf has no preconditions.
    ticks as f64 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

pub fn cpu_quota_throttles_a_busy_loop() {
    if let Some(why) = missing("CPU limit", &probe().cpu) {
        return skip(why);
    }
    let img = Image::busybox();
    // Busy for 1 to 2 s of wall time (whole seconds of `date`), then its CPU time.
    let mut spec = img.spec(&[
        "sh",
        "-c",
        "end=$(($(date +%s) + 2)); while [ $(date +%s) -lt $end ]; do :; done; cat /proc/$$/stat",
    ]);
    spec.resources.cpu_millis = Some(100);
    let out = run_captured(&spec);
    assert_eq!(out.status, Ok(ExitStatus::Code(0)), "{out:?}");
    let cpu = cpu_seconds(&out.stdout);
    println!("    busy for 1-2 s at 0.1 CPU: {cpu:.2} s of CPU");
    // At 0.1 CPU, 0.2 s at most, and a period or two of slack; unthrottled, 1-2 s.
    assert!(cpu < 0.6, "{cpu} s of CPU: {out:?}");
}

/// The sandbox's cgroups, from its own `/proc/self/cgroup`, as host directories.
fn cgroup_dirs(proc_self_cgroup: &str) -> Vec<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut dirs = Vec::new();
    for line in proc_self_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
        if !path.contains("/builder/") {
            continue;
        }
        for m in mountinfo.lines() {
            let f: Vec<&str> = m.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-").unwrap();
            let (fstype, options) = (f[sep + 1], f[sep + 3]);
            let ours = match controllers {
                "" => fstype == "cgroup2",
                list => fstype == "cgroup" && list.split(',').all(|c| options.split(',').any(|o| o == c)),
            };
            if let (true, Some(rel)) = (ours, path.strip_prefix(f[3].trim_end_matches('/'))) {
                dirs.push(PathBuf::from(format!("{}/{}", f[4], rel.trim_start_matches('/'))));
                break;
            }
        }
    }
    dirs
}

pub fn sandbox_cgroups_are_removed() {
    if let Some(why) = missing("pids limit", &probe().pids) {
        return skip(why);
    }
    let img = Image::busybox();
    let mut spec = img.spec(&["sh", "-c", "cat /proc/self/cgroup; sleep 86424 & exit 3"]);
    spec.resources.pids = Some(100);
    let out = run_captured(&spec);
    assert_eq!(out.status, Ok(ExitStatus::Code(3)), "{out:?}");
    let dirs = cgroup_dirs(&out.stdout);
    let expected = if probe().devices.is_enforced() && probe().cgroup == Ok(CgroupVersion::V1) { 2 } else { 1 };
    assert_eq!(dirs.len(), expected, "pids (and devices on v1): {dirs:?} from {out:?}");
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy();
        assert!(name.starts_with(&format!("{}-", std::process::id())), "{dir:?}");
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    assert_eq!(processes_matching("86424"), 0);
}

pub fn stale_cgroups_of_dead_builders_are_removed() {
    let isolation = probe();
    if let Some(why) = missing("pids limit", &isolation.pids) {
        return skip(why);
    }
    let img = Image::busybox();
    let mut spec = img.spec(&["cat", "/proc/self/cgroup"]);
    spec.resources.pids = Some(100);
    let dirs = cgroup_dirs(&run_captured(&spec).stdout);
    let base = dirs[0].parent().unwrap().to_path_buf();
    // A pid no process has (above pid_max), and one that is alive (init).
    let stale = base.join(format!("{}-0", 1 << 22));
    let alive = base.join("1-0");
    fs::create_dir_all(&stale).unwrap();
    fs::create_dir_all(&alive).unwrap();
    let out = run_captured(&spec);
    let gone = !stale.exists();
    let kept = alive.exists();
    let _ = fs::remove_dir(&stale);
    let _ = fs::remove_dir(&alive);
    let _ = fs::remove_dir(&base);
    assert_eq!(out.status, Ok(ExitStatus::Code(0)), "{out:?}");
    assert!(gone, "{} should have been removed", stale.display());
    assert!(kept, "{} belongs to a live process", alive.display());
}

/// A loop device over a temp file holding a marker; detached when dropped.
struct LoopDevice {
    path: String,
    major: u64,
    minor: u64,
    _file: tempfile::NamedTempFile,
}

const MARKER: &str = "LOOP-MARKER";

impl LoopDevice {
    fn new() -> Result<LoopDevice, String> {
        let file = tempfile::NamedTempFile::new().unwrap();
        fs::write(file.path(), format!("{MARKER}{}", "\0".repeat(4096))).unwrap();
        let out = Command::new("losetup")
            .args(["-f", "--show"])
            .arg(file.path())
            .output()
            .map_err(|e| format!("cannot run losetup: {e}"))?;
        if !out.status.success() {
            return Err(format!("losetup failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let meta = fs::metadata(&path).map_err(|e| format!("{path}: {e}"))?;
        assert!(meta.file_type().is_block_device());
        let rdev = meta.rdev();
        Ok(LoopDevice { path, major: libc::major(rdev) as u64, minor: libc::minor(rdev) as u64, _file: file })
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.path]).status();
    }
}

/// A sandbox with every capability and no seccomp filter, so that only the device
/// cgroup stands between it and a host block device it makes a node for on a tmpfs
/// it mounts itself (without `nodev`, unlike every mount the sandbox makes).
fn read_block_device(major: u64, minor: u64, devices: Devices) -> Output {
    let img = Image::busybox();
    let script = format!(
        "mkdir -p /mnt && mount -t tmpfs t /mnt && mknod /mnt/b b {major} {minor} && head -c {} /mnt/b; echo; \
         echo x > /dev/null && head -c 1 /dev/zero | wc -c",
        MARKER.len()
    );
    let mut spec = img.spec(&["sh", "-c", &script]);
    spec.security = Security { capabilities: Capabilities::all(), seccomp: false, devices, ..Security::insecure() };
    run_captured(&spec)
}

fn assert_device_filter(major: u64, minor: u64) {
    let denied = read_block_device(major, minor, Devices::Default);
    assert!(denied.stderr.contains("Operation not permitted"), "{denied:?}");
    assert!(!denied.stdout.contains(MARKER), "{denied:?}");
    assert!(denied.stdout.ends_with("\n1\n"), "/dev/null and /dev/zero still work: {denied:?}");
    let allowed = read_block_device(major, minor, Devices::All);
    assert!(allowed.stdout.starts_with(MARKER), "{allowed:?}");
}

pub fn device_cgroup_denies_host_block_devices() {
    if let Some(why) = missing("device filter", &probe().devices) {
        return skip(why);
    }
    let dev = match LoopDevice::new() {
        Ok(dev) => dev,
        Err(why) => return skip(why),
    };
    assert_device_filter(dev.major, dev.minor);
}

pub const V2_CHILD: &str = "--cgroup-v2-child";

/// In a child told to use cgroup v2 (`_BUILDER_EXECUTOR_CGROUP=v2`): the device
/// filter as a BPF program, and limits that cannot be had there refused. Prints
/// `skipped: ...` and succeeds where v2 is not usable.
pub fn v2_child() -> i32 {
    let isolation = probe();
    if isolation.cgroup != Ok(CgroupVersion::V2) {
        println!("skipped: no cgroup v2 mount ({:?})", isolation.cgroup);
        return 0;
    }
    let mut args = std::env::args().skip_while(|a| a != V2_CHILD).skip(1);
    let (major, minor): (u64, u64) = (args.next().unwrap().parse().unwrap(), args.next().unwrap().parse().unwrap());
    if let Some(why) = missing("device filter", &isolation.devices) {
        println!("skipped: {why}");
        return 0;
    }
    assert_device_filter(major, minor);
    // One cgroup, in the v2 hierarchy, gone afterwards.
    let img = Image::busybox();
    let out = img.run(&["cat", "/proc/self/cgroup"]);
    let dirs = cgroup_dirs(&out.stdout);
    assert!(dirs.len() == 1 && out.stdout.contains("0::/"), "{dirs:?} from {out:?}");
    assert!(!dirs[0].exists(), "{} left behind", dirs[0].display());
    // A limit whose controller is not delegated here is an error naming it.
    if let Support::NotEnforced(why) = &isolation.pids {
        let img = Image::busybox();
        let mut spec = img.spec(&["true"]);
        spec.resources.pids = Some(10);
        let out = run_captured(&spec);
        let err = out.status.unwrap_err();
        assert!(err.contains("pids limit") && err.contains(&why.to_string()), "{err}");
        println!("refused as it should: {err}");
    }
    println!("v2 ok");
    0
}

pub fn v2_device_filter_is_a_bpf_program() {
    let dev = match LoopDevice::new() {
        Ok(dev) => dev,
        Err(why) => return skip(why),
    };
    let out = Command::new(std::env::current_exe().unwrap())
        .args([V2_CHILD, &dev.major.to_string(), &dev.minor.to_string()])
        .env("_BUILDER_EXECUTOR_CGROUP", "v2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for line in stdout.lines() {
        println!("    {line}");
    }
    assert!(stdout.contains("v2 ok") || stdout.contains("skipped"), "{stdout}");
}

/// Whether this process has CAP_SYS_RESOURCE (24), needed to raise a hard limit.
fn can_raise_hard_limits() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let eff = status.lines().find_map(|l| l.strip_prefix("CapEff:\t")).unwrap();
    u64::from_str_radix(eff.trim(), 16).unwrap() & (1 << 24) != 0
}

pub fn rlimits_apply_before_the_user_switch() {
    let img = Image::busybox();
    let mut spec = img.spec(&["sh", "-c", "ulimit -n; ulimit -Hn; ulimit -Hl; id -u"]);
    spec.process.user = "app".into();
    // Above the usual 8 MiB hard limit, which only root (with CAP_SYS_RESOURCE) may
    // raise: so the limits are set before the switch to `app`.
    let memlock = if can_raise_hard_limits() {
        64 << 20
    } else {
        skip("raising a hard limit: this root lacks CAP_SYS_RESOURCE; lowering it instead");
        1 << 20
    };
    spec.resources.rlimits = vec![
        Rlimit { resource: libc::RLIMIT_NOFILE, soft: 123, hard: 456 },
        Rlimit { resource: libc::RLIMIT_MEMLOCK, soft: memlock, hard: memlock },
    ];
    let out = run_captured(&spec);
    assert_eq!(out.stdout, format!("123\n456\n{}\n1000\n", memlock >> 10), "{out:?}");
    spec.resources.rlimits = vec![Rlimit { resource: 4242, soft: 1, hard: 1 }];
    let err = run_captured(&spec).status.unwrap_err();
    assert!(err.contains("rlimit 4242") && err.contains("unknown resource"), "{err}");
}
