//! RUN: the exec op, its argv (SHELL or exec form, heredoc scripts), environment
//! (ENV plus ARGs in scope, as BuildKit passes them; proxy args beside the op),
//! network and security modes.

use super::args::PROXY_ARGS;
use super::metadata::commit;
use super::stage::{DEFAULT_PATH, StageState, uppercase_command};
use super::{ConvertError, Converter};
use crate::error::ParseError;
use crate::instructions::{Instruction, RunCommand};
use crate::parser::{chomp_heredoc_content, parse_heredoc};
use solver::ir::{ExecOp, FileAction, FileOp, Mount, MountKind, NetworkMode, Op, SecurityMode};
use solver::{Vertex, VertexId};

/// The first line of a heredoc, `...` when there are more.
fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim().replace("\r\n", "\n");
    let mut lines = doc.split('\n');
    let first = lines.next().unwrap_or_default().to_string();
    if lines.next().is_some() { format!("{first}...") } else { first }
}

/// BuildKit's `runCommandString`: `|N K=V... argv` when build args are in scope.
fn run_command_string(args: &[String], st: &StageState) -> String {
    let mut build_env: Vec<String> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (k, v) in &st.args {
        let value = crate::shell::Env::get(&st.scope(), k).or_else(|| v.clone()).unwrap_or_default();
        match seen.iter().position(|s| s == k) {
            Some(i) => build_env[i] = format!("{k}={value}"),
            None => {
                seen.push(k);
                build_env.push(format!("{k}={value}"));
            }
        }
    }
    let mut parts = Vec::new();
    if !build_env.is_empty() {
        parts.push(format!("|{}", build_env.len()));
        parts.extend(build_env);
    }
    parts.extend(args.iter().cloned());
    parts.join(" ")
}

impl Converter<'_> {
    /// The environment of a RUN: the stage's state env (image env, ENV and ARG
    /// values in order) and a default PATH.
    fn run_env(&self, st: &StageState) -> Vec<String> {
        let mut env = st.state_env.clone();
        if !env.iter().any(|e| e.starts_with("PATH=")) {
            env.push(format!("PATH={DEFAULT_PATH}"));
        }
        env
    }

    /// Proxy args given on the command line, for the process's environment but not
    /// the op (BuildKit's `ProxyEnv`): they reach neither the cache key nor the
    /// history. As BuildKit, a proxy given in either spelling (`HTTP_PROXY` or
    /// `http_proxy`; the upper-case one when both are) is set in both, except where
    /// `env` sets that name: a proxy arg declared with `ARG` is an ordinary arg, already
    /// in `env`, and counts like any other.
    fn proxy_env(&self, env: &[String]) -> Vec<(String, String)> {
        let in_env = |name: &str| env.iter().any(|e| e.split_once('=').is_some_and(|(k, _)| k == name));
        let mut out = Vec::new();
        for upper in PROXY_ARGS.iter().filter(|n| n.chars().all(|c| !c.is_ascii_lowercase())) {
            let lower = upper.to_ascii_lowercase();
            let args = &self.options.build_args;
            let Some(value) = args.get(*upper).or_else(|| args.get(&lower)) else { continue };
            for name in [upper.to_string(), lower] {
                if !in_env(&name) {
                    out.push((name, value.clone()));
                }
            }
        }
        out
    }

    /// argv for the RUN, plus a mount holding a heredoc script when it has a shebang.
    fn run_args(&mut self, st: &StageState, run: &RunCommand) -> Result<(Vec<String>, Option<VertexId>), ConvertError> {
        let cmd = &run.command;
        let mut args = cmd.cmd_line.clone();
        let mut script = None;
        if !cmd.files.is_empty() {
            if args.len() != 1 || !cmd.prepend_shell {
                return Err(ParseError::invalid(
                    st.location,
                    format!("parsing produces an invalid run command: {args:?}"),
                ));
            }
            let first = &cmd.files[0];
            let data = if first.chomp { chomp_heredoc_content(&first.content) } else { first.content.clone() };
            if parse_heredoc(&args[0]).map_err(|e| ParseError::new(st.location, e))?.is_some() {
                if data.starts_with("#!") {
                    // A script with its own interpreter: write it to a file and run it.
                    let action = FileAction::Mkfile {
                        path: format!("/{}", first.name),
                        mode: 0o755,
                        data: data.into_bytes(),
                        owner: None,
                    };
                    let scratch = self.scratch_vertex();
                    let mut vertex = Vertex::new(
                        Op::File(FileOp { actions: vec![action] }),
                        vec![scratch],
                        "preparing inline document",
                    );
                    vertex.ignore_cache = st.ignore_cache;
                    script = Some(self.graph.add(vertex));
                    return Ok((vec![format!("/dev/pipes/{}", first.name)], script));
                }
                args = vec![data];
            } else {
                // A command reading heredocs: hand the shell the whole document.
                let mut full = args[0].clone();
                for file in &cmd.files {
                    full.push('\n');
                    full.push_str(&file.content);
                    full.push_str(&file.name);
                }
                args = vec![full];
            }
        }
        if cmd.prepend_shell {
            let mut shell = st.shell();
            shell.extend(args);
            args = shell;
        }
        Ok((args, script))
    }

    pub(super) fn dispatch_run(
        &mut self,
        st: &mut StageState,
        ins: &Instruction,
        run: &RunCommand,
    ) -> Result<(), ConvertError> {
        let (args, script) = self.run_args(st, run)?;
        let mut inputs = vec![st.vertex];
        let mut mounts = Vec::new();
        if let Some(script) = script {
            inputs.push(script);
            mounts.push(Mount {
                target: "/dev/pipes/".into(),
                kind: MountKind::Bind { input: inputs.len() - 1, source: "/".into(), readonly: true },
            });
        }
        let mut ssh_index = 0;
        for spec in &run.mounts {
            let at = ins.flag_location("mount", Some(spec));
            let mount = self.run_mount(st, at, spec, ssh_index, &mut inputs)?;
            ssh_index += usize::from(matches!(mount.kind, MountKind::Ssh { .. }));
            mounts.push(mount);
        }
        let network = match run.network.as_deref() {
            Some("none") => NetworkMode::None,
            Some("host") => NetworkMode::Host,
            _ => NetworkMode::Default,
        };
        let security = match run.security.as_deref() {
            Some("insecure") => SecurityMode::Insecure,
            _ => SecurityMode::Sandbox,
        };
        let env = self.run_env(st);
        let proxy_env = self.proxy_env(&env);
        // `--add-host`, `--ulimit` and `--shm-size` are the build's, set on every exec by
        // the caller (`builder::step_flags`).
        let exec = ExecOp {
            args: args.clone(),
            env,
            cwd: st.workdir(),
            user: st.user(),
            network,
            security,
            mounts,
            extra_hosts: Vec::new(),
            ulimits: Vec::new(),
            shm_size: None,
        };
        let mut text = ins.original.clone();
        if let Some(first) = run.command.files.first()
            && parse_heredoc(&run.command.cmd_line[0]).ok().flatten().is_some()
        {
            text.push_str(&format!(" ({})", summarize_heredoc(&first.content)));
        }
        // BuildKit shows RUN with quotes kept and unset variables left as written.
        let mut lex = self.lex;
        lex.raw_quotes = true;
        lex.skip_unset_env = true;
        let shown = uppercase_command(&lex.process_word(&text, &st.scope()).unwrap_or(text));
        let name = self.prefixed(st, shown, true);
        let vertex = self.add_named_step(st, Op::Exec(exec), inputs, name);
        self.graph.vertex_mut(vertex).proxy_env = proxy_env;
        st.vertex = vertex;
        commit(st, format!("RUN {}", run_command_string(&args, st)), Some(vertex), true);
        Ok(())
    }
}
