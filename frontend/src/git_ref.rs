//! Git URLs as `ADD` and `--build-context` take them (BuildKit's `dfgitutil.ParseGitRef`):
//! `https://host/repo.git#ref:subdir`, `ssh://`, `git://`, scp-style `git@host:repo.git`,
//! the query form `...repo.git?ref=v1&subdir=docs&checksum=abc&keep-git-dir=1`, and,
//! beyond BuildKit, `file:///path/repo` for a repository on this machine.

use solver::ir::GitSource;

/// A git URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitRef {
    /// What git clones: the URL without fragment or query.
    pub remote: String,
    /// A branch, tag or commit; empty for the remote's HEAD.
    pub reference: String,
    /// Relative, cleaned (`a/b`); empty for the whole tree.
    pub subdir: String,
    /// `?checksum=`/`?commit=`: the commit the ref must resolve to.
    pub checksum: Option<String>,
    /// `?keep-git-dir=`.
    pub keep_git_dir: Option<bool>,
    /// `?submodules=`: true unless it says false.
    pub submodules: bool,
}

impl GitRef {
    /// How the ref is shown: the remote without its password, and `#ref:subdir`.
    pub fn display(&self) -> String {
        shown(&self.source(None, None))
    }

    /// The source op of this ref; `checksum` and `keep_git_dir` from flags win over
    /// the URL's query.
    pub fn source(&self, keep_git_dir: Option<bool>, checksum: Option<String>) -> GitSource {
        GitSource {
            remote: self.remote.clone(),
            reference: self.reference.clone(),
            subdir: self.subdir.clone(),
            keep_git_dir: keep_git_dir.or(self.keep_git_dir).unwrap_or(false),
            submodules: self.submodules,
            checksum: checksum.or_else(|| self.checksum.clone()),
        }
    }
}

/// `remote` without a password (`https://user:token@host/...` → `https://user:xxxxx@host/...`),
/// for names and messages.
pub fn redact_remote(remote: &str) -> String {
    let Some((scheme, rest)) = remote.split_once("://") else { return remote.to_string() };
    let authority = rest.split('/').next().unwrap_or(rest);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            let path = &rest[authority.len()..];
            format!("{scheme}://{user}:xxxxx@{host}{path}")
        }
        _ => remote.to_string(),
    }
}

/// How a git source is shown: `remote#ref:subdir`, without a password.
pub fn shown(git: &GitSource) -> String {
    let mut out = redact_remote(&git.remote);
    if !git.reference.is_empty() || !git.subdir.is_empty() {
        out.push('#');
        out.push_str(&git.reference);
    }
    if !git.subdir.is_empty() {
        out.push(':');
        out.push_str(&git.subdir);
    }
    out
}

/// Whether `s` is an scp-style ssh address (`user@host:path`), as git reads one.
fn is_scp_style(s: &str) -> bool {
    let Some((user_host, path)) = s.split_once(':') else { return false };
    let Some((user, host)) = user_host.split_once('@') else { return false };
    !path.is_empty()
        && !user.is_empty()
        && !host.is_empty()
        && user.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// `Some` when `src` names a git repository; the error says what is wrong with a
/// URL that is one but cannot be used.
pub fn parse_git_ref(src: &str) -> Option<Result<GitRef, String>> {
    let lower = src.to_ascii_lowercase();
    let scheme = lower.split_once("://").map(|(s, _)| s);
    let (without_fragment, fragment) = match src.split_once('#') {
        Some((u, f)) => (u, Some(f)),
        None => (src, None),
    };
    let (remote, query) = match without_fragment.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (without_fragment, None),
    };
    let is_git = match scheme {
        Some("git" | "ssh" | "file") => true,
        // An HTTP(S) URL is a repository only when its path ends in `.git`.
        Some("http" | "https") => remote.ends_with(".git"),
        Some(_) => false,
        None => is_scp_style(remote),
    };
    if !is_git {
        return None;
    }
    Some(parse_parts(src, remote, fragment, query))
}

fn parse_parts(src: &str, remote: &str, fragment: Option<&str>, query: Option<&str>) -> Result<GitRef, String> {
    let mut git = GitRef {
        remote: remote.to_string(),
        reference: String::new(),
        subdir: String::new(),
        checksum: None,
        keep_git_dir: None,
        submodules: true,
    };
    if let Some(fragment) = fragment {
        let (reference, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        git.reference = reference.to_string();
        git.subdir = clean_subdir(subdir);
    }
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let conflict = |what: &str, a: &str| format!("git url {src:?}: {what} conflicts: {a:?} vs {value:?}");
        match key {
            "ref" | "tag" | "branch" => {
                if !git.reference.is_empty() && git.reference != value {
                    return Err(conflict("ref", &git.reference));
                }
                git.reference = value.to_string();
            }
            "subdir" => {
                let value = clean_subdir(value);
                if !git.subdir.is_empty() && git.subdir != value {
                    return Err(conflict("subdir", &git.subdir));
                }
                git.subdir = value;
            }
            "checksum" | "commit" => git.checksum = Some(value.to_string()),
            "keep-git-dir" => git.keep_git_dir = Some(query_bool(src, key, value)?),
            "submodules" => git.submodules = query_bool(src, key, value)?,
            _ => return Err(format!("git url {src:?}: unknown query {key:?}")),
        }
        if value.is_empty() && !matches!(key, "keep-git-dir" | "submodules") {
            return Err(format!("git url {src:?}: query {key:?} has no value"));
        }
    }
    if git.reference.starts_with('-') {
        return Err(format!("git url {src:?}: invalid ref {:?}", git.reference));
    }
    Ok(git)
}

/// A boolean query value; alone (`?keep-git-dir`) it means true.
fn query_bool(src: &str, key: &str, value: &str) -> Result<bool, String> {
    match value {
        "" | "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("git url {src:?}: invalid {key} value {value:?}")),
    }
}

/// `/a/./b/../c/` → `a/c`, never above the repository's root.
fn clean_subdir(subdir: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in subdir.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> GitRef {
        parse_git_ref(s).expect("a git url").expect("valid")
    }

    #[test]
    fn fragments_name_ref_and_subdir() {
        let g = parse("https://github.com/moby/buildkit.git#v0.14.1:docs/");
        assert_eq!(g.remote, "https://github.com/moby/buildkit.git");
        assert_eq!((g.reference.as_str(), g.subdir.as_str()), ("v0.14.1", "docs"));
        let g = parse("git@github.com:moby/buildkit.git#main:/../a/./b");
        assert_eq!(g.remote, "git@github.com:moby/buildkit.git");
        assert_eq!((g.reference.as_str(), g.subdir.as_str()), ("main", "a/b"));
        let g = parse("file:///srv/repo.git");
        assert_eq!((g.remote.as_str(), g.reference.as_str()), ("file:///srv/repo.git", ""));
    }

    #[test]
    fn query_form() {
        assert!(parse("https://host/r.git").submodules);
        assert!(!parse("https://host/r.git?submodules=false").submodules);
        let g = parse("https://host/r.git?ref=v1&subdir=x&checksum=abc&keep-git-dir=true");
        assert_eq!(g.remote, "https://host/r.git");
        assert_eq!((g.reference.as_str(), g.subdir.as_str()), ("v1", "x"));
        assert_eq!((g.checksum.as_deref(), g.keep_git_dir), (Some("abc"), Some(true)));
        assert!(parse_git_ref("https://host/r.git#v1?ref=v2").is_some());
        let err = parse_git_ref("https://host/r.git?ref=v1&branch=v2").unwrap().unwrap_err();
        assert!(err.contains("ref conflicts"), "{err}");
        let err = parse_git_ref("https://host/r.git?colour=red").unwrap().unwrap_err();
        assert!(err.contains("unknown query \"colour\""), "{err}");
    }

    #[test]
    fn what_is_not_git() {
        for s in ["https://example.com/x.tar.gz", "src/", "ftp://host/r.git", "./a@b:c", "C:foo"] {
            assert!(parse_git_ref(s).is_none(), "{s}");
        }
        for s in ["git://h/r", "ssh://git@h/r", "git@h:r", "HTTPS://h/r.git"] {
            assert!(parse_git_ref(s).is_some(), "{s}");
        }
    }

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redact_remote("https://u:tok@h/r.git"), "https://u:xxxxx@h/r.git");
        assert_eq!(redact_remote("https://h/r.git"), "https://h/r.git");
        assert_eq!(parse("https://u:tok@h/r.git#v1:d").display(), "https://u:xxxxx@h/r.git#v1:d");
    }

    #[test]
    fn flags_win_over_query() {
        let g = parse("https://host/r.git?keep-git-dir=1&checksum=aa");
        let s = g.source(Some(false), Some("bb".into()));
        assert!(!s.keep_git_dir);
        assert_eq!(s.checksum.as_deref(), Some("bb"));
        assert!(g.source(None, None).keep_git_dir);
    }
}
