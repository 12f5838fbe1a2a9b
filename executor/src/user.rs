//! `USER` resolution against the rootfs's `/etc/passwd` and `/etc/group`, the way runc
//! and Docker do it: `name`, `uid`, `name:group`, `uid:gid` and mixes; a numeric uid
//! need not exist; a name must. Parsing is apart from reading the files.

use crate::Error;

/// Who the process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, primary group first.
    pub groups: Vec<u32>,
    /// From passwd; `/` when the user has no entry.
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Well-formed lines of a passwd file; others are skipped, as libc does.
pub(crate) fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    records(text)
        .filter_map(|f| {
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
                home: f.get(5).filter(|h| !h.is_empty()).unwrap_or(&"/").to_string(),
            })
        })
        .collect()
}

/// Well-formed lines of a group file.
pub(crate) fn parse_group(text: &str) -> Vec<GroupEntry> {
    records(text)
        .filter_map(|f| {
            if f.len() < 3 {
                return None;
            }
            let members = f.get(3).map(|m| m.split(',').map(str::trim).filter(|m| !m.is_empty()).map(String::from));
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: members.map(Iterator::collect).unwrap_or_default(),
            })
        })
        .collect()
}

fn records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(|l| l.split(':').collect())
}

/// Resolves `spec` (`""` means root) against parsed passwd and group entries.
pub(crate) fn resolve(spec: &str, passwd: &[PasswdEntry], groups: &[GroupEntry]) -> Result<User, Error> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };

    let numeric_uid = user_part.parse::<u32>().ok();
    let entry = passwd
        .iter()
        .find(|e| e.name == user_part)
        .or_else(|| numeric_uid.and_then(|uid| passwd.iter().find(|e| e.uid == uid)));
    let (uid, primary_gid, home, name) = match (entry, numeric_uid) {
        (Some(e), _) => (e.uid, e.gid, e.home.clone(), Some(e.name.as_str())),
        (None, Some(uid)) => (uid, 0, "/".to_string(), None),
        (None, None) => return Err(Error::UnknownUser(user_part.to_string())),
    };

    if let Some(group_part) = group_part.filter(|g| !g.is_empty()) {
        let numeric_gid = group_part.parse::<u32>().ok();
        let gid = match groups.iter().find(|g| g.name == group_part) {
            Some(g) => g.gid,
            None => numeric_gid.ok_or_else(|| Error::UnknownGroup(group_part.to_string()))?,
        };
        // An explicit group replaces the supplementary groups, as in Docker.
        return Ok(User { uid, gid, groups: vec![gid], home });
    }

    let mut supplementary = vec![primary_gid];
    if let Some(name) = name {
        for g in groups.iter().filter(|g| g.members.iter().any(|m| m == name)) {
            if !supplementary.contains(&g.gid) {
                supplementary.push(g.gid);
            }
        }
    }
    Ok(User { uid, gid: primary_gid, groups: supplementary, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
# a comment
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
broken line
app:x:1000:1000::/home/app:/bin/sh
nohome:x:1001:1001:::/bin/sh
";
    const GROUP: &str = "\
root:x:0:
wheel:x:10:root,app
app:x:1000:
tools:x:2000:app, other
staff:x:50:
";

    fn r(spec: &str) -> Result<User, Error> {
        resolve(spec, &parse_passwd(PASSWD), &parse_group(GROUP))
    }

    #[test]
    fn parses_and_skips_malformed_lines() {
        let p = parse_passwd(PASSWD);
        assert_eq!(p.len(), 4);
        assert_eq!(p[3].home, "/");
        let g = parse_group(GROUP);
        assert_eq!(g[3].members, ["app", "other"]);
        assert!(g[0].members.is_empty());
    }

    #[test]
    fn empty_means_root_with_its_groups() {
        assert_eq!(r("").unwrap(), User { uid: 0, gid: 0, groups: vec![0, 10], home: "/root".into() });
    }

    #[test]
    fn by_name_gets_primary_and_member_groups() {
        assert_eq!(
            r("app").unwrap(),
            User { uid: 1000, gid: 1000, groups: vec![1000, 10, 2000], home: "/home/app".into() }
        );
    }

    #[test]
    fn by_uid_finds_the_entry() {
        let u = r("1000").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1000, "/home/app"));
    }

    #[test]
    fn unknown_numeric_uid_is_fine_with_gid_zero() {
        assert_eq!(r("4242").unwrap(), User { uid: 4242, gid: 0, groups: vec![0], home: "/".into() });
    }

    #[test]
    fn uid_and_gid_numeric() {
        assert_eq!(r("4242:4343").unwrap(), User { uid: 4242, gid: 4343, groups: vec![4343], home: "/".into() });
    }

    #[test]
    fn name_and_group_name() {
        let u = r("app:staff").unwrap();
        assert_eq!((u.uid, u.gid, u.groups), (1000, 50, vec![50]));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert!(matches!(r("nobody"), Err(Error::UnknownUser(n)) if n == "nobody"));
        assert!(matches!(r("app:nogroup"), Err(Error::UnknownGroup(n)) if n == "nogroup"));
    }

    #[test]
    fn without_files_only_numbers_work() {
        assert_eq!(resolve("5:6", &[], &[]).unwrap().gid, 6);
        assert!(resolve("app", &[], &[]).is_err());
    }
}
