//! The device allow list of [`crate::Devices::Default`]: runc's default rules. A
//! process may create any device node (`m`, which is harmless on a `nodev` mount and
//! impossible without CAP_MKNOD), but open only the nodes a sandbox's `/dev` has.
//! cgroup v1 takes the rules as `devices.allow` lines after a `devices.deny a`;
//! cgroup v2 as a BPF program (`bpf.rs`).

/// `BPF_DEVCG_ACC_*`, the access bits of both representations.
pub(crate) const MKNOD: u8 = 1;
pub(crate) const READ: u8 = 2;
pub(crate) const WRITE: u8 = 4;
pub(crate) const RWM: u8 = READ | WRITE | MKNOD;

/// `BPF_DEVCG_DEV_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Block = 1,
    Char = 2,
}

/// One allowed device (or all of a kind, or a major's minors, with `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rule {
    pub kind: Kind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: u8,
}

const fn rule(kind: Kind, major: Option<u32>, minor: Option<u32>, access: u8) -> Rule {
    Rule { kind, major, minor, access }
}

const fn chr(major: u32, minor: u32) -> Rule {
    rule(Kind::Char, Some(major), Some(minor), RWM)
}

/// runc's default allow list (without `/dev/net/tun`).
pub(crate) const DEFAULT_ALLOW: [Rule; 11] = [
    rule(Kind::Char, None, None, MKNOD),
    rule(Kind::Block, None, None, MKNOD),
    chr(1, 3),                              // null
    chr(1, 5),                              // zero
    chr(1, 7),                              // full
    chr(1, 8),                              // random
    chr(1, 9),                              // urandom
    chr(5, 0),                              // tty
    chr(5, 1),                              // console
    chr(5, 2),                              // ptmx
    rule(Kind::Char, Some(136), None, RWM), // pts
];

impl Rule {
    /// The cgroup v1 `devices.allow` line: `c 1:3 rwm`, `b *:* m`.
    pub fn v1(&self) -> String {
        let num = |n: Option<u32>| n.map_or("*".to_string(), |n| n.to_string());
        let kind = match self.kind {
            Kind::Block => 'b',
            Kind::Char => 'c',
        };
        let access: String = [(READ, 'r'), (WRITE, 'w'), (MKNOD, 'm')]
            .iter()
            .filter(|(bit, _)| self.access & bit != 0)
            .map(|(_, c)| c)
            .collect();
        format!("{kind} {}:{} {access}", num(self.major), num(self.minor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines() {
        let lines: Vec<String> = DEFAULT_ALLOW.iter().map(Rule::v1).collect();
        assert_eq!(
            lines,
            [
                "c *:* m",
                "b *:* m",
                "c 1:3 rwm",
                "c 1:5 rwm",
                "c 1:7 rwm",
                "c 1:8 rwm",
                "c 1:9 rwm",
                "c 5:0 rwm",
                "c 5:1 rwm",
                "c 5:2 rwm",
                "c 136:* rwm"
            ]
        );
    }
}
