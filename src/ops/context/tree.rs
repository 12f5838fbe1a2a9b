//! A source filesystem as a copy sees it: paths resolved inside its root like a
//! chroot, wildcards expanded the way BuildKit does, `.dockerignore`d paths invisible,
//! and the entries below a selected path walked in sorted order.

use crate::ignore::{Matcher, clean_path};
use anyhow::{Context as _, Result, bail};
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

mod walk;

/// Symlinks followed while resolving one path before giving up, like Linux's ELOOP.
const MAX_SYMLINKS: usize = 255;

/// Resolves `path` inside `root` as if `root` were `/`: `..` stops at the root and
/// symlinks (absolute or relative) are followed within it, never to the host. The
/// final component is followed only when `follow_final`. Returns the resolved path
/// relative to `root` (empty for the root itself); missing components are kept as is.
pub(crate) fn resolve_in_root(root: &Path, path: &Path, follow_final: bool) -> Result<PathBuf> {
    let mut pending: VecDeque<OsString> = components(path).collect();
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;
    while let Some(component) = pending.pop_front() {
        if component == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate = root.to_path_buf();
        candidate.extend(&resolved);
        candidate.push(&component);
        let follow = !pending.is_empty() || follow_final;
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if follow && meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    bail!("too many levels of symbolic links resolving {}", path.display());
                }
                let target =
                    fs::read_link(&candidate).with_context(|| format!("reading link {}", candidate.display()))?;
                if target.is_absolute() {
                    resolved.clear();
                }
                for part in components(&target).collect::<Vec<_>>().into_iter().rev() {
                    pending.push_front(part);
                }
            }
            Ok(_) => resolved.push(component),
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
                resolved.push(component)
            }
            Err(e) => return Err(e).with_context(|| format!("stat {}", candidate.display())),
        }
    }
    Ok(resolved.iter().collect())
}

/// The normal and `..` components of a path; `/` and `.` are dropped.
fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// A relative path as the `/`-separated text patterns are matched against.
pub(crate) fn slash_path(rel: &Path) -> String {
    let text = rel.to_string_lossy();
    if text.is_empty() { ".".to_string() } else { text.into_owned() }
}

/// Docker's `containsWildcards`: `*`, `?` or `[` not escaped by `\`.
pub(crate) fn contains_wildcards(name: &str) -> bool {
    let mut chars = name.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// A top-level path a copy source names (after wildcard expansion).
pub(crate) struct Selected {
    /// Resolved path relative to the source root (empty for the root).
    pub rel: PathBuf,
    /// The name it gets under a directory destination: the last component of the
    /// requested path, before a final symlink is followed.
    pub name: OsString,
    /// The requested path (cleaned, relative to the root, symlinks unresolved).
    pub requested: PathBuf,
    /// What `COPY --parents` keeps under the destination: the requested path, or
    /// what follows a `/./` pivot in it.
    pub parents_rel: PathBuf,
    pub host: PathBuf,
    pub meta: Metadata,
    /// Matched by a wildcard, so the copy's include/exclude patterns apply to it.
    pub wildcard: bool,
}

/// One entry below (or at) a selected path.
pub(crate) struct Entry {
    /// Path relative to the selected path; empty for the selected path itself.
    pub rel: PathBuf,
    pub host: PathBuf,
    pub meta: Metadata,
}

/// A copy's own `include`/`exclude` patterns, matched against paths relative to
/// the source being copied.
#[derive(Default)]
pub(crate) struct CopyFilter {
    include: Option<Matcher>,
    exclude: Option<Matcher>,
}

impl CopyFilter {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        let build = |patterns: &[String]| -> Result<Option<Matcher>> {
            if patterns.is_empty() { Ok(None) } else { Matcher::new(patterns).map(Some) }
        };
        Ok(CopyFilter {
            include: build(include).context("invalid include pattern")?,
            exclude: build(exclude).context("invalid exclude pattern")?,
        })
    }

    /// Whether the copy has no patterns of its own.
    fn is_empty(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }

    fn excluded(&self, rel: &str) -> bool {
        self.exclude.as_ref().is_some_and(|m| m.matches(rel)) || self.include.as_ref().is_some_and(|m| !m.matches(rel))
    }

    /// Whether something below the filtered-out directory `rel` could still pass.
    fn may_pass_below(&self, rel: &str) -> bool {
        let exclude_ok = match &self.exclude {
            Some(m) if m.matches(rel) => m.may_include_below(rel),
            _ => true,
        };
        let include_ok = match &self.include {
            Some(m) if !m.matches(rel) => m.may_match_below(rel),
            _ => true,
        };
        exclude_ok && include_ok
    }
}

/// A source root, optionally filtered by `.dockerignore` patterns.
pub(crate) struct SourceFs<'a> {
    pub root: &'a Path,
    ignore: Option<&'a Matcher>,
    /// A build context (for error messages): missing and ignored look the same.
    context: bool,
}

impl<'a> SourceFs<'a> {
    /// `ignore` is given for a build context (even when it has no patterns).
    pub fn new(root: &'a Path, ignore: Option<&'a Matcher>) -> Self {
        SourceFs { root, ignore: ignore.filter(|m| !m.is_empty()), context: ignore.is_some() }
    }

    fn ignored(&self, rel: &str) -> bool {
        self.ignore.is_some_and(|m| m.matches(rel))
    }

    /// Whether a path that exists is visible: not ignored, or an ignored directory
    /// that an exception re-includes something in.
    fn visible(&self, rel: &Path, host: &Path, meta: &Metadata) -> Result<bool> {
        let text = slash_path(rel);
        if !self.ignored(&text) {
            return Ok(true);
        }
        if !meta.is_dir() || !self.ignore.is_some_and(|m| m.may_include_below(&text)) {
            return Ok(false);
        }
        let mut out = Vec::new();
        self.walk_dir(host, rel, Path::new(""), &CopyFilter::default(), &mut out)?;
        Ok(!out.is_empty())
    }

    /// The error for a source that does not exist (or is ignored).
    fn not_found(&self, source: &str) -> anyhow::Error {
        if self.context {
            anyhow::anyhow!(
                "COPY failed: file not found in build context or excluded by .dockerignore: stat {source}: file does not exist"
            )
        } else {
            anyhow::anyhow!("COPY failed: stat {source}: file does not exist")
        }
    }

    /// Expands one copy source into the paths it names. A plain path that does not
    /// exist is an error; a wildcard that matches nothing gives an empty list.
    pub fn resolve_source(&self, source: &str, allow_wildcard: bool, follow: bool) -> Result<Vec<Selected>> {
        let (pivot, kept) = split_pivot(source);
        let cleaned = clean_path(&format!("/{source}"));
        let requested = PathBuf::from(cleaned.trim_start_matches('/'));
        if allow_wildcard && contains_wildcards(&cleaned) {
            return self.expand_wildcard(&requested, follow, pivot.as_deref());
        }
        let parents_rel = match (&pivot, kept) {
            (Some(_), Some(kept)) => kept,
            _ => requested.clone(),
        };
        match self.select(&requested, parents_rel, follow, false)? {
            Some(selected) => Ok(vec![selected]),
            None => Err(self.not_found(source.trim_start_matches('/'))),
        }
    }

    /// Resolves one requested path; `None` when it is missing or invisible.
    fn select(&self, requested: &Path, parents_rel: PathBuf, follow: bool, wildcard: bool) -> Result<Option<Selected>> {
        let rel = resolve_in_root(self.root, requested, follow)?;
        let host = self.root.join(&rel);
        let meta = match fs::symlink_metadata(&host) {
            Ok(meta) => meta,
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("stat {}", host.display())),
        };
        if !self.visible(&rel, &host, &meta)? {
            return Ok(None);
        }
        let name = requested.file_name().map(OsStr::to_os_string).unwrap_or_default();
        let requested = requested.to_path_buf();
        Ok(Some(Selected { rel, name, requested, parents_rel, host, meta, wildcard }))
    }

    /// BuildKit's `ResolveWildcards`: the path up to the first component with a
    /// wildcard is resolved, the rest is matched component by component while
    /// walking below it; a matching directory is not descended into.
    fn expand_wildcard(&self, requested: &Path, follow: bool, pivot: Option<&Path>) -> Result<Vec<Selected>> {
        let mut base = PathBuf::new();
        let mut globs: Vec<String> = Vec::new();
        for part in requested.iter() {
            let text = part.to_string_lossy();
            if globs.is_empty() && !contains_wildcards(&text) {
                base.push(part);
            } else {
                globs.push(text.into_owned());
            }
        }
        let base_rel = resolve_in_root(self.root, &base, true)?;
        let base_host = self.root.join(&base_rel);
        match fs::metadata(&base_host) {
            Ok(meta) if meta.is_dir() => {}
            _ => return Ok(Vec::new()),
        }
        let mut matches = Vec::new();
        self.match_level(&base_host, &base_rel, &base, &globs, &mut matches)?;
        let mut selected = Vec::new();
        for requested_match in matches {
            let parents_rel = match pivot {
                Some(pivot) => {
                    requested_match.strip_prefix(pivot).map(Path::to_path_buf).unwrap_or(requested_match.clone())
                }
                None => requested_match.clone(),
            };
            if let Some(s) = self.select(&requested_match, parents_rel, follow, true)? {
                selected.push(s);
            }
        }
        Ok(selected)
    }

    fn match_level(
        &self,
        dir_host: &Path,
        dir_rel: &Path,
        dir_requested: &Path,
        globs: &[String],
        out: &mut Vec<PathBuf>,
    ) -> Result<()> {
        let Some((glob, rest)) = globs.split_first() else { return Ok(()) };
        for (name, meta) in sorted_entries(dir_host)? {
            if !crate::ignore::glob_match(glob, &name.to_string_lossy()) {
                continue;
            }
            let host = dir_host.join(&name);
            let rel = dir_rel.join(&name);
            if !self.visible(&rel, &host, &meta)? {
                continue;
            }
            if rest.is_empty() {
                out.push(dir_requested.join(&name));
            } else if meta.is_dir() {
                self.match_level(&host, &rel, &dir_requested.join(&name), rest, out)?;
            }
        }
        Ok(())
    }

    /// `selected` and everything below it that is visible and passes `filter`, in
    /// sorted pre-order. A directory that is filtered out itself but holds entries
    /// re-included by an exception is kept as their parent.
    pub fn collect(&self, selected: &Selected, filter: &CopyFilter) -> Result<Vec<Entry>> {
        let mut out = vec![Entry { rel: PathBuf::new(), host: selected.host.clone(), meta: selected.meta.clone() }];
        if selected.meta.is_dir() {
            self.walk_dir(&selected.host, &selected.rel, Path::new(""), filter, &mut out)?;
        }
        Ok(out)
    }

    /// Whether a wildcard match passes the copy's filter (its name is what counts).
    pub fn passes(selected: &Selected, filter: &CopyFilter) -> bool {
        !selected.wildcard || !filter.excluded(&selected.name.to_string_lossy())
    }
}

/// Splits `a/./b/c` at its `/./` pivot: `(Some("a"), Some("b/c"))`. A pivot tells
/// `COPY --parents` which leading directories to drop.
fn split_pivot(source: &str) -> (Option<PathBuf>, Option<PathBuf>) {
    let trimmed = source.trim_start_matches("./").trim_start_matches('/');
    match trimmed.find("/./") {
        Some(i) => {
            let base = clean_path(&format!("/{}", &trimmed[..i]));
            let kept = clean_path(&format!("/{}", &trimmed[i + 3..]));
            (Some(PathBuf::from(base.trim_start_matches('/'))), Some(PathBuf::from(kept.trim_start_matches('/'))))
        }
        None => (None, None),
    }
}

/// Directory entries and their `lstat`, sorted bytewise by name like Go's
/// `filepath.Walk`. An entry removed while listing is left out.
pub(crate) fn sorted_entries(dir: &Path) -> Result<Vec<(OsString, Metadata)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading directory {}", dir.display()))?;
        // `DirEntry::metadata` is an `fstatat` relative to the open directory: no
        // path walk per entry, and it never follows a symlink.
        match entry.metadata() {
            Ok(meta) => entries.push((entry.file_name(), meta)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("stat {}", entry.path().display())),
        }
    }
    entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(entries)
}
