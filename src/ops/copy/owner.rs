//! `--chown` owners resolved in the destination filesystem's `/etc/passwd` and
//! `/etc/group`, as BuildKit does: a number is taken as is, a name must exist, and a
//! user without a group gets its primary group (a numeric user, the same number).

use crate::ops::context::tree::resolve_in_root;
use anyhow::{Context as _, Result, bail};
use solver::ir::Owner;
use std::fs;
use std::io;
use std::path::Path;

/// A numeric owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ids {
    pub uid: u32,
    pub gid: u32,
}

pub(crate) fn resolve_owner(root: &Path, owner: &Owner) -> Result<Ids> {
    resolve_owner_in(owner, &|rel| read_etc(root, rel))
}

/// [`resolve_owner`] with `/etc/passwd` and `/etc/group` read by `read_etc` (given
/// `etc/passwd` or `etc/group`; a missing file reads as empty).
pub(crate) fn resolve_owner_in(owner: &Owner, read_etc: &dyn Fn(&str) -> Result<String>) -> Result<Ids> {
    let user = owner.user.trim();
    // `--chown=:group` keeps root as the user.
    let (uid, primary_gid) = match user.parse::<u32>() {
        _ if user.is_empty() => (0, 0),
        Ok(uid) => (uid, uid),
        Err(_) => {
            let passwd = read_etc("etc/passwd")?;
            match find_entry(&passwd, user) {
                Some(fields) => (parse_id(fields.get(2), user, "passwd")?, parse_id(fields.get(3), user, "passwd")?),
                None => bail!("unable to find user {user}: no matching entries in passwd file"),
            }
        }
    };
    let gid = match owner.group.as_deref().map(str::trim).filter(|g| !g.is_empty()) {
        None => primary_gid,
        Some(group) => match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = read_etc("etc/group")?;
                match find_entry(&groups, group) {
                    Some(fields) => parse_id(fields.get(2), group, "group")?,
                    None => bail!("unable to find group {group}: no matching entries in group file"),
                }
            }
        },
    };
    Ok(Ids { uid, gid })
}

/// A file of the destination root, resolved like a chroot would; missing is empty.
fn read_etc(root: &Path, rel: &str) -> Result<String> {
    let resolved = resolve_in_root(root, Path::new(rel), true)?;
    let path = root.join(resolved);
    match fs::read(&path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("reading /{rel}")),
    }
}

/// The `:`-separated fields of the first line whose first field is `name`.
fn find_entry<'a>(text: &'a str, name: &str) -> Option<Vec<&'a str>> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
}

fn parse_id(field: Option<&&str>, name: &str, file: &str) -> Result<u32> {
    field.and_then(|f| f.trim().parse().ok()).with_context(|| format!("malformed {file} entry for {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(user: &str, group: Option<&str>) -> Owner {
        Owner { user: user.to_string(), group: group.map(str::to_string) }
    }

    #[test]
    fn names_and_numbers() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        fs::write(root.path().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
            .unwrap();
        fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:\napp:x:1001:\n").unwrap();
        let r = |u, g| resolve_owner(root.path(), &owner(u, g));
        assert_eq!(r("app", None).unwrap(), Ids { uid: 1000, gid: 1001 });
        assert_eq!(r("app", Some("staff")).unwrap(), Ids { uid: 1000, gid: 50 });
        assert_eq!(r("42", None).unwrap(), Ids { uid: 42, gid: 42 });
        assert_eq!(r("42", Some("7")).unwrap(), Ids { uid: 42, gid: 7 });
        assert_eq!(r("0", Some("app")).unwrap(), Ids { uid: 0, gid: 1001 });
        assert_eq!(r("", Some("staff")).unwrap(), Ids { uid: 0, gid: 50 });
        let err = r("nobody", None).unwrap_err().to_string();
        assert!(err.contains("unable to find user nobody"), "{err}");
        let err = r("app", Some("wheel")).unwrap_err().to_string();
        assert!(err.contains("unable to find group wheel"), "{err}");
    }

    #[test]
    fn passwd_symlink_stays_inside_root() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("real")).unwrap();
        fs::write(root.path().join("real/passwd"), "builder-test-user:x:4242:4343::/:/bin/sh\n").unwrap();
        fs::create_dir(root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/real/passwd", root.path().join("etc/passwd")).unwrap();
        assert_eq!(
            resolve_owner(root.path(), &owner("builder-test-user", None)).unwrap(),
            Ids { uid: 4242, gid: 4343 }
        );
        // No /etc/passwd at all: only numbers work.
        let empty = tempfile::tempdir().unwrap();
        assert!(resolve_owner(empty.path(), &owner("root", None)).is_err());
        assert_eq!(resolve_owner(empty.path(), &owner("0", None)).unwrap(), Ids { uid: 0, gid: 0 });
    }
}
