//! COPY and ADD: sources from the context, another stage, an image or a URL; inline
//! heredoc files; destination resolved against WORKDIR; `--chown`, `--chmod`,
//! `--parents`, `--exclude`; ADD's archive unpacking and `--checksum`.

use super::metadata::{commit, join_path, owner};
use super::stage::StageState;
use super::{ConvertError, Converter};
use crate::error::ParseError;
use crate::instructions::{AddCommand, CopyCommand, Instruction, SourcesAndDest};
use crate::shell::Lex;
use solver::VertexId;
use solver::ir::{CopyAction, FileAction, FileOp, Op, SourceOp};

/// What COPY and ADD have in common, after expansion.
struct CopyPlan {
    sources: Vec<String>,
    contents: Vec<(String, String)>,
    dest: String,
    chown: Option<String>,
    chmod: Option<String>,
    exclude: Vec<String>,
}

/// `0755` or `u+x,g-w`: the modes COPY/ADD `--chmod` accepts.
fn valid_chmod(mode: &str) -> bool {
    if !mode.is_empty() && mode.len() <= 4 && mode.chars().all(|c| c.is_digit(8)) {
        return true;
    }
    !mode.is_empty()
        && mode.split(',').all(|clause| {
            let op = clause.find(['+', '-', '=']);
            op.is_some_and(|i| {
                clause[..i].chars().all(|c| "ugoa".contains(c)) && clause[i..].chars().all(|c| "+-=rwxXst".contains(c))
            })
        })
}

fn is_url(src: &str) -> bool {
    src.starts_with("http://") || src.starts_with("https://")
}

/// The file name an HTTP source is saved as: the last path segment of the URL.
fn url_filename(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = without_query.split_once("://").map_or(without_query, |(_, r)| r);
    match after_scheme.split_once('/') {
        Some((_, path)) => path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("__unnamed__").to_string(),
        None => "__unnamed__".to_string(),
    }
}

/// Destination in the image, absolute, keeping a trailing `/` (a directory).
fn resolve_dest(st: &StageState, dest: &str, many_sources: bool) -> String {
    let mut out = join_path(&st.workdir(), dest);
    let is_dir = dest.ends_with('/') || dest == "." || dest.ends_with("/.") || many_sources;
    if is_dir && !out.ends_with('/') {
        out.push('/');
    }
    out
}

impl Converter<'_> {
    fn plan(
        &self,
        st: &StageState,
        ins: &Instruction,
        files: &SourcesAndDest,
        chown: &Option<String>,
        chmod: &Option<String>,
        exclude: &[String],
    ) -> Result<CopyPlan, ConvertError> {
        let expand = |w: &str| st.expand(&self.lex, w);
        let mut sources = Vec::new();
        for s in &files.sources {
            sources.push(expand(s)?);
        }
        let mut contents = Vec::new();
        for c in &files.contents {
            let data = if c.expand {
                let mut raw = Lex::new('\\');
                raw.skip_process_quotes = true;
                raw.process_word(&c.data, &st.scope()).map_err(|e| ParseError::expansion(st.location, e))?
            } else {
                c.data.clone()
            };
            contents.push((c.path.clone(), data));
        }
        let chown = chown.as_deref().map(expand).transpose()?.filter(|c| !c.is_empty());
        let chmod = chmod.as_deref().map(expand).transpose()?.filter(|c| !c.is_empty());
        if let Some(mode) = &chmod
            && !valid_chmod(mode)
        {
            let at = ins.flag_location("chmod", None);
            return Err(ParseError::invalid(at, format!("invalid chmod parameter {mode:?}")));
        }
        let mut excludes = Vec::new();
        for e in exclude {
            excludes.push(expand(e)?);
        }
        let dest_word = expand(&files.dest)?;
        let dest = resolve_dest(st, &dest_word, sources.len() + contents.len() > 1);
        Ok(CopyPlan { sources, contents, dest, chown, chmod, exclude: excludes })
    }

    /// Adds the file op of a COPY/ADD and its history entry.
    fn finish_copy(
        &mut self,
        st: &mut StageState,
        ins: &Instruction,
        plan: &CopyPlan,
        mut actions: Vec<FileAction>,
        mut inputs: Vec<VertexId>,
        link: bool,
    ) {
        for (name, data) in &plan.contents {
            let path = if plan.dest.ends_with('/') { format!("{}{name}", plan.dest) } else { plan.dest.clone() };
            let parent = path.rsplit_once('/').map_or("/", |(p, _)| if p.is_empty() { "/" } else { p });
            let made = actions.iter().any(|a| matches!(a, FileAction::Mkdir { path, .. } if path == parent));
            if parent != "/" && !made {
                actions.push(FileAction::Mkdir {
                    path: parent.to_string(),
                    mode: 0o755,
                    make_parents: true,
                    owner: None,
                });
            }
            let mode = plan.chmod.as_deref().and_then(|m| u32::from_str_radix(m, 8).ok()).unwrap_or(0o644);
            let owner = plan.chown.as_deref().map(owner);
            actions.push(FileAction::Mkfile { path, mode, data: data.clone().into_bytes(), owner });
        }
        // `--link`: the files go into a layer of their own, made on scratch (so that
        // it is cached whatever the stage holds, and reused as it is when the stage's
        // base changes) and merged onto the stage, as BuildKit does.
        inputs.insert(0, if link { self.scratch_vertex() } else { st.vertex });
        let mut vertex = self.add_step(st, Op::File(FileOp { actions }), inputs, &ins.original, true);
        if link {
            let name = format!("{} (merged)", self.graph.vertex(vertex).name);
            let merge = self.add_named_step(st, Op::Merge, vec![st.vertex, vertex], name);
            // Its own step id: a miss of the copy and one of the merge are told apart.
            let step_id = &mut self.graph.vertex_mut(merge).step_id;
            *step_id = step_id.take().map(|id| format!("{id}:merge"));
            vertex = merge;
        }
        st.vertex = vertex;
        let mut msg = ins.keyword.clone();
        for s in &plan.sources {
            msg.push_str(&format!(" {s}"));
        }
        for (name, _) in &plan.contents {
            msg.push_str(&format!(" <<{name}"));
        }
        msg.push_str(&format!(" {}", plan.dest));
        commit(st, msg, Some(vertex), true);
    }

    fn copy_action(plan: &CopyPlan, input: usize, sources: Vec<String>) -> CopyAction {
        let mut action = CopyAction::new(input, sources, plan.dest.clone());
        action.owner = plan.chown.as_deref().map(owner);
        action.mode = plan.chmod.clone();
        action.exclude = plan.exclude.clone();
        action
    }

    pub(super) fn dispatch_copy(
        &mut self,
        st: &mut StageState,
        ins: &Instruction,
        c: &CopyCommand,
    ) -> Result<(), ConvertError> {
        let plan = self.plan(st, ins, &c.files, &c.chown, &c.chmod, &c.exclude)?;
        let mut actions = Vec::new();
        let mut inputs = Vec::new();
        if !plan.sources.is_empty() {
            let source = match &c.from {
                Some(from) => self.source_for(from, st.index, ins.flag_location("from", None))?,
                None => self.context_vertex(),
            };
            inputs.push(source);
            let mut action = Self::copy_action(&plan, 1, plan.sources.clone());
            action.parents = c.parents;
            actions.push(FileAction::Copy(action));
        }
        self.finish_copy(st, ins, &plan, actions, inputs, c.link);
        Ok(())
    }

    pub(super) fn dispatch_add(
        &mut self,
        st: &mut StageState,
        ins: &Instruction,
        a: &AddCommand,
    ) -> Result<(), ConvertError> {
        let plan = self.plan(st, ins, &a.files, &a.chown, &a.chmod, &a.exclude)?;
        let checksum = a.checksum.as_deref().map(|c| st.expand(&self.lex, c)).transpose()?;
        let mut gits = Vec::new();
        let mut others = Vec::new();
        for src in &plan.sources {
            match crate::git_ref::parse_git_ref(src) {
                Some(parsed) => gits.push(parsed.map_err(|e| ParseError::invalid(ins.location(), e))?),
                None => others.push(src.clone()),
            }
        }
        let (urls, locals): (Vec<String>, Vec<String>) = others.into_iter().partition(|s| is_url(s));
        if checksum.is_some() && !locals.is_empty() {
            return Err(ParseError::invalid(ins.location(), "checksum can't be specified for non-HTTP(S) sources"));
        }
        let mut actions = Vec::new();
        let mut inputs = Vec::new();
        if !locals.is_empty() {
            inputs.push(self.context_vertex());
            let mut action = Self::copy_action(&plan, inputs.len(), locals);
            action.unpack_archives = a.unpack.unwrap_or(true);
            actions.push(FileAction::Copy(action));
        }
        for url in urls {
            let filename = url_filename(&url);
            let op = Op::Source(SourceOp::Http {
                url: url.clone(),
                checksum: checksum.clone(),
                filename: Some(filename.clone()),
            });
            let mut vertex = solver::Vertex::new(op, vec![], url.clone());
            vertex.ignore_cache = st.ignore_cache;
            inputs.push(self.graph.add(vertex));
            let mut action = Self::copy_action(&plan, inputs.len(), vec![filename]);
            action.allow_wildcard = false;
            action.unpack_archives = a.unpack.unwrap_or(false);
            actions.push(FileAction::Copy(action));
        }
        // A repository's checkout (its subdir, `.git` only if asked) goes into dest
        // as a directory's contents, as BuildKit's `ADD <git url>` does.
        for git in gits {
            let checksum = checksum.clone().filter(|c| !c.is_empty());
            let op = Op::Source(SourceOp::Git(git.source(a.keep_git_dir, checksum)));
            let mut vertex = solver::Vertex::new(op, vec![], git.display());
            vertex.ignore_cache = st.ignore_cache;
            inputs.push(self.graph.add(vertex));
            let mut action = Self::copy_action(&plan, inputs.len(), vec![".".into()]);
            action.allow_wildcard = false;
            actions.push(FileAction::Copy(action));
        }
        self.finish_copy(st, ins, &plan, actions, inputs, a.link);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_forms() {
        assert!(valid_chmod("755"));
        assert!(valid_chmod("0644"));
        assert!(valid_chmod("u+x,g-w"));
        assert!(valid_chmod("a=rX"));
        assert!(!valid_chmod("999"));
        assert!(!valid_chmod("rwx"));
    }

    #[test]
    fn urls() {
        assert_eq!(url_filename("https://example.com/a/b.tar.gz?x=1"), "b.tar.gz");
        assert_eq!(url_filename("https://example.com"), "__unnamed__");
    }
}
