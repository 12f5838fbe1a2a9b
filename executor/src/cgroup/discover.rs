//! Where the cgroup hierarchies are mounted and where this process sits in each,
//! from `/proc/self/mountinfo` and `/proc/self/cgroup`. Pure parsing: the tests feed
//! it text.
//!
//! cgroup v1 is used wherever a v1 hierarchy carries one of our controllers, as runc
//! does: on a hybrid host the v2 mount (`/sys/fs/cgroup/unified`) has no controllers.
//! Otherwise the cgroup2 mount is used. A process's cgroup path (`/proc/self/cgroup`)
//! is relative to the hierarchy's root, and a mount may show only a subtree of it
//! (mountinfo's root field, in containers): our directory is the mountpoint joined
//! with the path below that root.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use super::{CgroupUnavailable, Controller};

/// The fields of a mountinfo line that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    /// What part of the filesystem (for cgroupfs: of the hierarchy) is mounted.
    pub root: String,
    pub mountpoint: PathBuf,
    /// Mounted read-only (per mount or per superblock).
    pub readonly: bool,
    pub fstype: String,
    /// Superblock options: for cgroup v1, the hierarchy's controllers among them.
    pub super_options: Vec<String>,
}

/// `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS`
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_mount_line).collect()
}

fn parse_mount_line(line: &str) -> Option<MountEntry> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    let fstype = fields.get(sep + 1)?;
    let super_options: Vec<String> = fields.get(sep + 3).unwrap_or(&"").split(',').map(String::from).collect();
    let readonly = fields[5].split(',').any(|o| o == "ro") || super_options.iter().any(|o| o == "ro");
    Some(MountEntry {
        root: String::from_utf8_lossy(&unescape(fields[3])).into_owned(),
        mountpoint: PathBuf::from(OsString::from_vec(unescape(fields[4]))),
        readonly,
        fstype: fstype.to_string(),
        super_options,
    })
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

/// A line of `/proc/self/cgroup`: `ID:CONTROLLERS:PATH` (v2: `0::PATH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Membership {
    pub id: u32,
    /// Empty for the v2 hierarchy; `name=systemd` and the like for named ones.
    pub controllers: Vec<String>,
    pub path: String,
}

pub(crate) fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?.parse().ok()?;
            let controllers = parts.next()?;
            let path = parts.next()?.to_string();
            let controllers = controllers.split(',').filter(|c| !c.is_empty()).map(String::from).collect();
            Some(Membership { id, controllers, path })
        })
        .collect()
}

/// This process's cgroup directory in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnCgroup {
    /// Where the hierarchy is mounted.
    pub mountpoint: PathBuf,
    /// Our own cgroup's directory (below `mountpoint`).
    pub dir: PathBuf,
    pub readonly: bool,
    /// We are in the hierarchy's root cgroup (as far as we can see: in a cgroup
    /// namespace the root shown may not be the real one).
    pub is_root: bool,
}

/// The cgroup setup of this host, as far as builder cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Layout {
    /// For each of our controllers, our cgroup in its hierarchy, or why there is none.
    V1(Vec<(Controller, Result<OwnCgroup, CgroupUnavailable>)>),
    /// Our cgroup in the unified hierarchy, or why it cannot be used.
    V2(Result<OwnCgroup, CgroupUnavailable>),
    /// No cgroup filesystem at all.
    Missing(CgroupUnavailable),
}

impl Layout {
    /// Reads this process's layout. `prefer_v2` picks a hybrid host's v2 mount.
    pub fn read(prefer_v2: bool) -> Layout {
        let read = |path: &str| std::fs::read_to_string(path).map_err(|e| CgroupUnavailable::unreadable(path, &e));
        let mountinfo = match read("/proc/self/mountinfo") {
            Ok(t) => t,
            Err(why) => return Layout::Missing(why),
        };
        let cgroup = match read("/proc/self/cgroup") {
            Ok(t) => t,
            Err(why) => return Layout::Missing(why),
        };
        layout(&parse_mountinfo(&mountinfo), &parse_proc_cgroup(&cgroup), prefer_v2)
    }

    /// Our cgroup in the hierarchy that has `controller` (v2: the one hierarchy).
    pub fn own(&self, controller: Controller) -> Result<&OwnCgroup, CgroupUnavailable> {
        match self {
            Layout::V1(list) => match list.iter().find(|(c, _)| *c == controller) {
                Some((_, own)) => own.as_ref().map_err(Clone::clone),
                None => Err(CgroupUnavailable::NotMounted { controller: controller.name() }),
            },
            Layout::V2(own) => own.as_ref().map_err(Clone::clone),
            Layout::Missing(why) => Err(why.clone()),
        }
    }
}

pub(crate) fn layout(mounts: &[MountEntry], memberships: &[Membership], prefer_v2: bool) -> Layout {
    let has = |m: &MountEntry, c: Controller| m.fstype == "cgroup" && m.super_options.iter().any(|o| o == c.name());
    let v1 = mounts.iter().any(|m| Controller::ALL.iter().any(|c| has(m, *c)));
    let v2 = mounts.iter().find(|m| m.fstype == "cgroup2");
    match (v1, v2) {
        (true, v2) if !(prefer_v2 && v2.is_some()) => Layout::V1(
            Controller::ALL
                .iter()
                .map(|&c| {
                    let own = match memberships.iter().find(|m| m.controllers.iter().any(|n| n == c.name())) {
                        None => Err(CgroupUnavailable::NotListed { controller: c.name() }),
                        Some(member) => resolve(mounts.iter().filter(|m| has(m, c)), &member.path)
                            .unwrap_or(Err(CgroupUnavailable::NotMounted { controller: c.name() })),
                    };
                    (c, own)
                })
                .collect(),
        ),
        (_, Some(_)) => Layout::V2(match memberships.iter().find(|m| m.id == 0 && m.controllers.is_empty()) {
            None => Err(CgroupUnavailable::NoV2Membership),
            Some(member) => resolve(mounts.iter().filter(|m| m.fstype == "cgroup2"), &member.path)
                .expect("at least the one cgroup2 mount"),
        }),
        _ => Layout::Missing(CgroupUnavailable::NoFilesystem),
    }
}

/// Our directory under the first of `mounts` (all of one hierarchy) that shows `path`;
/// `None` if there is no mount at all.
fn resolve<'a>(
    mounts: impl Iterator<Item = &'a MountEntry>,
    path: &str,
) -> Option<Result<OwnCgroup, CgroupUnavailable>> {
    let mut first_error = None;
    for m in mounts {
        match Path::new(path).strip_prefix(&m.root) {
            Ok(rel) => {
                let dir = if rel.as_os_str().is_empty() { m.mountpoint.clone() } else { m.mountpoint.join(rel) };
                return Some(Ok(OwnCgroup {
                    mountpoint: m.mountpoint.clone(),
                    dir,
                    readonly: m.readonly,
                    is_root: path == "/",
                }));
            }
            Err(_) => {
                first_error.get_or_insert_with(|| CgroupUnavailable::OutsideMount {
                    cgroup: path.to_string(),
                    root: m.root.clone(),
                    mountpoint: m.mountpoint.clone(),
                });
            }
        }
    }
    first_error.map(Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine: v1 controllers, cpu and cpuacct apart, a v2 mount without any.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_SELF: &str = "\
9:name=systemd:/
8:pids:/
5:devices:/
4:memory:/process_api/2e6f
2:cpuacct:/
1:cpu:/
0::/
";

    fn own(mountpoint: &str, dir: &str, is_root: bool) -> Result<OwnCgroup, CgroupUnavailable> {
        Ok(OwnCgroup { mountpoint: mountpoint.into(), dir: dir.into(), readonly: false, is_root })
    }

    #[test]
    fn mountinfo_fields_and_escapes() {
        let m = parse_mountinfo(
            "50 31 0:40 /a\\040b /mnt/c\\134d ro,nosuid shared:5 master:1 - cgroup cgroup rw,cpu,cpuacct\n\
             garbage line\n\
             51 31 0:41 / /x rw - cgroup2 none rw,nsdelegate\n",
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].root, "/a b");
        assert_eq!(m[0].mountpoint, Path::new("/mnt/c\\d"));
        assert!(m[0].readonly);
        assert_eq!(m[0].fstype, "cgroup");
        assert_eq!(m[0].super_options, ["rw", "cpu", "cpuacct"]);
        assert!(!m[1].readonly);
        assert_eq!(m[1].fstype, "cgroup2");
    }

    #[test]
    fn proc_self_cgroup_lines() {
        let m = parse_proc_cgroup("4:cpu,cpuacct:/a:b\n0::/user.slice/x.scope\n");
        assert_eq!(m[0], Membership { id: 4, controllers: vec!["cpu".into(), "cpuacct".into()], path: "/a:b".into() });
        assert_eq!(m[1], Membership { id: 0, controllers: vec![], path: "/user.slice/x.scope".into() });
    }

    #[test]
    fn hybrid_host_uses_v1_with_nested_paths() {
        let l = layout(&parse_mountinfo(HYBRID), &parse_proc_cgroup(HYBRID_SELF), false);
        assert_eq!(
            l,
            Layout::V1(vec![
                (Controller::Pids, own("/sys/fs/cgroup/pids", "/sys/fs/cgroup/pids", true)),
                (Controller::Memory, own("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/process_api/2e6f", false)),
                (Controller::Cpu, own("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu", true)),
                (Controller::Devices, own("/sys/fs/cgroup/devices", "/sys/fs/cgroup/devices", true)),
            ])
        );
        // Asked for, the v2 mount of the same host (it has no controllers).
        let l = layout(&parse_mountinfo(HYBRID), &parse_proc_cgroup(HYBRID_SELF), true);
        assert_eq!(l, Layout::V2(own("/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified", true)));
    }

    #[test]
    fn comounted_cpu_and_a_missing_controller() {
        let mounts = parse_mountinfo(
            "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct ro,nosuid - cgroup cgroup rw,cpu,cpuacct\n\
             31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
        );
        let me = parse_proc_cgroup("3:cpu,cpuacct:/docker/abc\n2:memory:/docker/abc\n");
        let Layout::V1(list) = layout(&mounts, &me, false) else { panic!("v1 expected") };
        assert_eq!(list[0], (Controller::Pids, Err(CgroupUnavailable::NotListed { controller: "pids" })));
        assert_eq!(list[0].1.as_ref().unwrap_err().to_string(), "/proc/self/cgroup lists no pids hierarchy");
        let cpu = list[2].1.as_ref().unwrap();
        assert_eq!(cpu.dir, Path::new("/sys/fs/cgroup/cpu,cpuacct/docker/abc"));
        assert!(cpu.readonly);
    }

    #[test]
    fn container_mount_shows_a_subtree() {
        // A container's view without a cgroup namespace: the mount's root is its cgroup.
        let mounts = parse_mountinfo("40 30 0:30 /docker/abc /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n");
        let Layout::V1(list) = layout(&mounts, &parse_proc_cgroup("8:pids:/docker/abc/sub\n"), false) else { panic!() };
        assert_eq!(list[0].1, own("/sys/fs/cgroup/pids", "/sys/fs/cgroup/pids/sub", false));
        let Layout::V1(list) = layout(&mounts, &parse_proc_cgroup("8:pids:/other\n"), false) else { panic!() };
        let why = list[0].1.as_ref().unwrap_err();
        assert_eq!(
            *why,
            CgroupUnavailable::OutsideMount {
                cgroup: "/other".into(),
                root: "/docker/abc".into(),
                mountpoint: "/sys/fs/cgroup/pids".into()
            }
        );
        assert!(why.to_string().contains("/other is outside the part (/docker/abc)"), "{why}");
    }

    #[test]
    fn pure_v2_and_nothing_at_all() {
        let mounts = parse_mountinfo(
            "29 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n",
        );
        let me = parse_proc_cgroup("0::/system.slice/ci.service\n");
        assert_eq!(
            layout(&mounts, &me, false),
            Layout::V2(own("/sys/fs/cgroup", "/sys/fs/cgroup/system.slice/ci.service", false))
        );
        assert_eq!(layout(&[], &me, false), Layout::Missing(CgroupUnavailable::NoFilesystem));
        assert_eq!(layout(&mounts, &[], false), Layout::V2(Err(CgroupUnavailable::NoV2Membership)));
    }
}
