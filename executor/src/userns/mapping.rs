//! [`IdMapping`]: which host ids a sandbox's user namespace maps its ids to, as the
//! kernel takes it (`/proc/PID/uid_map` lines) and as callers need it, to translate
//! the owners of files a sandbox wrote ([`IdMap::to_container`]) or that it must see
//! ([`IdMap::to_host`]).
//!
//! The layout is rootless Podman's and BuildKit's: container id 0 is the caller's own
//! id, and container ids 1, 2... run through the caller's subordinate ranges, in the
//! order of `/etc/subuid` (`/etc/subgid`). Without subordinate ranges only 0 is mapped.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::subid::SubordinateRange;

/// The kernel takes at most this many lines per map (since Linux 4.15).
const MAX_RANGES: usize = 340;

/// `size` consecutive ids from `container` inside the namespace are `host`... outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub container: u32,
    pub host: u32,
    pub size: u32,
}

/// One map (of uids or of gids): ranges that overlap neither inside nor outside.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMap {
    pub ranges: Vec<IdRange>,
}

impl IdMap {
    /// The map of [`IdMapping`]'s layout: 0 → `own`, then 1... through `subordinate`.
    pub(crate) fn new(own: u32, subordinate: &[SubordinateRange]) -> IdMap {
        let mut ranges = vec![IdRange { container: 0, host: own, size: 1 }];
        let mut next = 1u32;
        'ranges: for range in subordinate {
            // A line may repeat or overlap another, or hold our own id: the kernel
            // refuses a host id mapped twice, so only what is still free is taken.
            let mut free = vec![(u64::from(range.start), u64::from(range.start) + u64::from(range.count))];
            for taken in &ranges {
                let (t0, t1) = (u64::from(taken.host), u64::from(taken.host) + u64::from(taken.size));
                free = free
                    .into_iter()
                    .flat_map(|(a, b)| [(a, b.min(t0)), (a.max(t1), b)])
                    .filter(|(a, b)| a < b)
                    .collect();
            }
            for (start, end) in free {
                // Container ids end at u32::MAX - 1: (uid_t)-1 is no id.
                let room = u64::from(u32::MAX - next);
                let size = (end - start).min(room);
                if size == 0 || ranges.len() == MAX_RANGES {
                    break 'ranges;
                }
                ranges.push(IdRange { container: next, host: start as u32, size: size as u32 });
                next += size as u32;
            }
        }
        ranges.sort_by_key(|r| r.container);
        IdMap { ranges }
    }

    /// The host id of container id `id`, if it is mapped.
    pub fn to_host(&self, id: u32) -> Option<u32> {
        self.ranges.iter().find(|r| id >= r.container && id - r.container < r.size).map(|r| r.host + (id - r.container))
    }

    /// The container id of host id `host`, if it is mapped (an unmapped one is seen
    /// in the sandbox as the overflow id, 65534).
    pub fn to_container(&self, host: u32) -> Option<u32> {
        self.ranges.iter().find(|r| host >= r.host && host - r.host < r.size).map(|r| r.container + (host - r.host))
    }

    /// How many ids are mapped.
    pub fn len(&self) -> u64 {
        self.ranges.iter().map(|r| u64::from(r.size)).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The text for `/proc/PID/uid_map` (or `gid_map`), one range a line.
    pub(crate) fn proc_text(&self) -> String {
        self.ranges.iter().map(|r| format!("{} {} {}\n", r.container, r.host, r.size)).collect()
    }

    /// The arguments of `newuidmap PID` (or `newgidmap`) after the pid.
    pub(crate) fn helper_args(&self) -> Vec<String> {
        self.ranges.iter().flat_map(|r| [r.container, r.host, r.size]).map(|n| n.to_string()).collect()
    }
}

impl fmt::Display for IdMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.ranges.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            match r.size {
                1 => write!(f, "{sep}{} -> {}", r.container, r.host)?,
                n => write!(f, "{sep}{}-{} -> {}-{}", r.container, r.container + (n - 1), r.host, r.host + (n - 1))?,
            }
        }
        Ok(())
    }
}

/// The uids and gids of a sandbox's user namespace. [`crate::id_mapping`] says which
/// one sandboxes get here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub uid: IdMap,
    pub gid: IdMap,
}

impl IdMapping {
    /// Root to (`uid`, `gid`), then the subordinate ranges.
    pub(crate) fn new(uid: u32, gid: u32, subuids: &[SubordinateRange], subgids: &[SubordinateRange]) -> Self {
        IdMapping { uid: IdMap::new(uid, subuids), gid: IdMap::new(gid, subgids) }
    }

    /// Only root is mapped (no subordinate ids): files of any other owner cannot be
    /// made in the sandbox (`chown` fails with EINVAL), nor can a process run as
    /// another user.
    pub fn is_single_id(&self) -> bool {
        self.uid.len() <= 1 || self.gid.len() <= 1
    }
}

impl fmt::Display for IdMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "uids {}; gids {}", self.uid, self.gid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u32, count: u32) -> SubordinateRange {
        SubordinateRange { start, count }
    }

    fn ranges(map: &IdMap) -> Vec<(u32, u32, u32)> {
        map.ranges.iter().map(|r| (r.container, r.host, r.size)).collect()
    }

    #[test]
    fn root_is_the_caller_and_the_rest_are_subordinate() {
        let m = IdMapping::new(1000, 1001, &[r(100000, 65536)], &[r(200000, 65536)]);
        assert_eq!(ranges(&m.uid), [(0, 1000, 1), (1, 100000, 65536)]);
        assert_eq!(ranges(&m.gid), [(0, 1001, 1), (1, 200000, 65536)]);
        assert_eq!(m.uid.proc_text(), "0 1000 1\n1 100000 65536\n");
        assert_eq!(m.uid.helper_args(), ["0", "1000", "1", "1", "100000", "65536"]);
        assert!(!m.is_single_id());
        assert_eq!(m.to_string(), "uids 0 -> 1000, 1-65536 -> 100000-165535; gids 0 -> 1001, 1-65536 -> 200000-265535");
    }

    #[test]
    fn translation_both_ways() {
        let m = IdMap::new(1000, &[r(100000, 65536)]);
        assert_eq!(m.to_host(0), Some(1000));
        assert_eq!(m.to_host(1001), Some(101000));
        assert_eq!(m.to_host(65536), Some(165535));
        assert_eq!(m.to_host(65537), None);
        assert_eq!(m.to_container(1000), Some(0));
        assert_eq!(m.to_container(101000), Some(1001));
        assert_eq!(m.to_container(0), None);
        assert_eq!(m.to_container(165536), None);
    }

    #[test]
    fn several_ranges_follow_each_other() {
        let m = IdMap::new(1000, &[r(100000, 10), r(500000, 5)]);
        assert_eq!(ranges(&m), [(0, 1000, 1), (1, 100000, 10), (11, 500000, 5)]);
        assert_eq!(m.to_host(12), Some(500001));
        assert_eq!(m.len(), 16);
    }

    #[test]
    fn overlaps_and_our_own_id_are_mapped_once() {
        // A duplicate line, a range holding the caller's id, an overlapping range.
        let m = IdMap::new(1005, &[r(1000, 10), r(1000, 10), r(1008, 4)]);
        assert_eq!(ranges(&m), [(0, 1005, 1), (1, 1000, 5), (6, 1006, 4), (10, 1010, 2)]);
        let hosts: Vec<u32> = (0..12).map(|id| m.to_host(id).unwrap()).collect();
        let mut sorted = hosts.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), hosts.len(), "no host id twice: {hosts:?}");
    }

    #[test]
    fn without_subordinate_ids_only_root() {
        let m = IdMapping::new(1000, 1000, &[], &[]);
        assert_eq!(ranges(&m.uid), [(0, 1000, 1)]);
        assert!(m.is_single_id());
        assert_eq!(m.uid.to_host(1001), None);
        assert_eq!(m.uid.to_string(), "0 -> 1000");
    }

    #[test]
    fn container_ids_stop_before_the_invalid_one() {
        // Every host id but the invalid one, ours included.
        let m = IdMap::new(7, &[r(0, u32::MAX)]);
        assert_eq!(ranges(&m), [(0, 7, 1), (1, 0, 7), (8, 8, u32::MAX - 8)]);
        assert_eq!(m.len(), u64::from(u32::MAX));
        assert_eq!(m.to_host(u32::MAX - 1), Some(u32::MAX - 1));
        assert_eq!(m.to_host(u32::MAX), None);
    }

    #[test]
    fn at_most_340_ranges() {
        let many: Vec<_> = (0..500).map(|i| r(100000 + i * 10, 5)).collect();
        assert_eq!(IdMap::new(1000, &many).ranges.len(), MAX_RANGES);
    }
}
