//! `CopyIgnoredFile`: a `COPY`/`ADD` source from the context that `.dockerignore`
//! excludes. As BuildKit, only when the patterns have no `!` exclusion (what a
//! re-included file inside an excluded directory means cannot be told statically).

/// `.dockerignore` patterns (already cleaned by the caller, as the build reads them).
pub(crate) struct Ignore<'a> {
    patterns: &'a [String],
}

impl<'a> Ignore<'a> {
    /// `None` when nothing is ignored or an exclusion makes the check unreliable.
    pub fn new(patterns: &'a [String]) -> Option<Self> {
        (!patterns.is_empty() && !patterns.iter().any(|p| p.starts_with('!'))).then_some(Ignore { patterns })
    }

    /// The cleaned source when the patterns exclude it or a parent directory of it.
    pub fn ignored(&self, source: &str) -> Option<String> {
        let cleaned = clean(source);
        let parts: Vec<&str> = cleaned.split('/').filter(|p| !p.is_empty()).collect();
        if parts.is_empty() {
            // The context root itself: only a pattern excluding everything in it.
            let all = self.patterns.iter().any(|p| matches!(p.as_str(), "*" | "**" | "**/*"));
            return all.then_some(if source.starts_with('/') { "/".into() } else { ".".into() });
        }
        let hit = (1..=parts.len()).any(|n| {
            self.patterns.iter().any(|p| {
                let pattern: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
                match_segments(&pattern, &parts[..n])
            })
        });
        hit.then_some(cleaned)
    }
}

/// Go's `path.Clean`, without the leading `/` (sources are context-relative).
fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            p => out.push(p),
        }
    }
    out.join("/")
}

/// Path components against pattern components; `**` spans any number of them.
fn match_segments(pattern: &[&str], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((&"**", rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..])),
        Some((first, rest)) => path
            .split_first()
            .is_some_and(|(p, tail)| glob(first.as_bytes(), p.as_bytes()) && match_segments(rest, tail)),
    }
}

/// One component: `*`, `?`, `[...]` (`^` negates) and `\` escapes, as Go's
/// `filepath.Match` within a component.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        Some((b'?', rest)) => !name.is_empty() && glob(rest, &name[1..]),
        Some((b'[', rest)) => {
            let Some(end) = rest.iter().position(|&c| c == b']') else { return false };
            let Some((&c, tail)) = name.split_first() else { return false };
            let (negated, class) = match rest[..end].split_first() {
                Some((b'^', class)) => (true, class),
                _ => (false, &rest[..end]),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negated && glob(&rest[end + 1..], tail)
        }
        Some((b'\\', rest)) if !rest.is_empty() => name.first() == Some(&rest[0]) && glob(&rest[1..], &name[1..]),
        Some((&p, rest)) => name.first() == Some(&p) && glob(rest, &name[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_files_and_their_parents() {
        let patterns = vec!["secret".to_string(), "*.log".into(), "build/**/tmp".into()];
        let ignore = Ignore::new(&patterns).unwrap();
        assert_eq!(ignore.ignored("./secret").as_deref(), Some("secret"));
        assert_eq!(ignore.ignored("secret/key.pem").as_deref(), Some("secret/key.pem"));
        assert_eq!(ignore.ignored("a.log").as_deref(), Some("a.log"));
        assert_eq!(ignore.ignored("build/x/y/tmp/z").as_deref(), Some("build/x/y/tmp/z"));
        assert!(ignore.ignored("src/a.log").is_none());
        assert!(ignore.ignored(".").is_none());
        let all = vec!["*".to_string()];
        assert_eq!(Ignore::new(&all).unwrap().ignored(".").as_deref(), Some("."));
        assert!(Ignore::new(&["a".to_string(), "!a/b".into()]).is_none());
        assert!(glob(b"[^a]x", b"bx") && !glob(b"[^a]x", b"ax") && glob(b"f[0-9]", b"f7"));
    }
}
