//! `/etc/subuid` and `/etc/subgid`: the subordinate id ranges an ordinary user may map
//! into a user namespace (through the setuid helpers `newuidmap`/`newgidmap`). A line
//! is `USER:START:COUNT`, USER a name or a numeric uid, as shadow's `subid(5)` says;
//! a user may have several lines. Parsing is apart from reading the files.

use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// `count` ids from `start` on the host, delegated to one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubordinateRange {
    pub start: u32,
    pub count: u32,
}

impl SubordinateRange {
    /// The last id of the range.
    pub fn end(&self) -> u32 {
        self.start + (self.count - 1)
    }
}

/// The ranges of the user called `name` (if known) or numbered `uid`, in file order.
/// Malformed lines, empty ranges and ranges that run past the last id are skipped, as
/// shadow skips them.
pub(crate) fn parse(text: &str, name: Option<&str>, uid: u32) -> Vec<SubordinateRange> {
    let uid = uid.to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let mut fields = line.split(':');
            let (owner, start, count) = (fields.next()?, fields.next()?, fields.next()?);
            if fields.next().is_some() || !(Some(owner) == name || owner == uid) {
                return None;
            }
            let (start, count): (u32, u32) = (start.trim().parse().ok()?, count.trim().parse().ok()?);
            // The last id (u32::MAX) is never a valid one: (uid_t)-1 means "unchanged".
            (count > 0 && u64::from(start) + u64::from(count) <= u64::from(u32::MAX))
                .then_some(SubordinateRange { start, count })
        })
        .collect()
}

/// The ranges in the file at `path` (a missing file has none).
pub(crate) fn read(path: &Path, name: Option<&str>, uid: u32) -> io::Result<Vec<SubordinateRange>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(parse(&String::from_utf8_lossy(&bytes), name, uid)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUBUID: &str = "\
alice:100000:65536
bob:165536:65536
# a comment
1001:231072:1000
alice:300000:10
broken
carol:x:10
dave:10:0
erin:4294967000:1000
frank:1:2:3
";

    fn r(start: u32, count: u32) -> SubordinateRange {
        SubordinateRange { start, count }
    }

    #[test]
    fn by_name_every_line_in_order() {
        assert_eq!(parse(SUBUID, Some("alice"), 1000), [r(100000, 65536), r(300000, 10)]);
    }

    #[test]
    fn by_numeric_uid_too() {
        assert_eq!(parse(SUBUID, Some("bob"), 1001), [r(165536, 65536), r(231072, 1000)]);
        assert_eq!(parse(SUBUID, None, 1001), [r(231072, 1000)]);
    }

    #[test]
    fn malformed_empty_and_overflowing_ranges_are_skipped() {
        for name in ["carol", "dave", "erin", "frank", "broken", "nobody"] {
            assert_eq!(parse(SUBUID, Some(name), 4242), [], "{name}");
        }
    }

    #[test]
    fn a_name_is_not_a_prefix() {
        assert_eq!(parse("alice2:1:5\n", Some("alice"), 7), []);
        assert_eq!(r(100000, 65536).end(), 165535);
    }
}
