//! Instructions that change the image config rather than the filesystem (ENV,
//! LABEL, CMD, ...), plus ARG and WORKDIR, and the history entries they write.

use super::stage::StageState;
use super::{ConvertError, Converter};
use crate::HistoryStep;
use crate::error::ParseError;
use crate::instructions::{ArgDef, Command, Instruction, KeyValue, ShellCommand};
use crate::parser::go_quote_list;
use image_spec::HealthConfig;
use solver::VertexId;
use solver::ir::{FileAction, FileOp, Op, Owner};
use std::collections::BTreeMap;

pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

/// Appends a history entry; steps run by the builder get BuildKit's ` # buildkit`.
pub(super) fn commit(st: &mut StageState, created_by: String, layer: Option<VertexId>, buildkit_step: bool) {
    let created_by = if buildkit_step { format!("{created_by} # buildkit") } else { created_by };
    st.image.history.push(HistoryStep { created_by, comment: Some(HISTORY_COMMENT.into()), layer });
}

/// `user:group` as an owner.
pub fn owner(spec: &str) -> Owner {
    match spec.split_once(':') {
        Some((u, g)) => Owner { user: u.to_string(), group: Some(g.to_string()) },
        None => Owner { user: spec.to_string(), group: None },
    }
}

/// Go's `path.Join("/", ...)` followed by `path.Clean`.
pub fn clean_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Resolves `path` against the working directory `dir`.
pub fn join_path(dir: &str, path: &str) -> String {
    if path.starts_with('/') { clean_path(path) } else { clean_path(&format!("{dir}/{path}")) }
}

/// Parses EXPOSE specs (`80`, `80/udp`, `8000-8010/tcp`) into `port/proto` keys.
fn port_specs(specs: &[String]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for spec in specs {
        // `ip:hostPort:containerPort` forms: only the container part matters here.
        let spec = spec.rsplit(':').next().unwrap_or(spec);
        let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
        let proto = proto.to_lowercase();
        if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
            return Err(format!("invalid proto: {proto}"));
        }
        let bad = || format!("invalid containerPort: {ports}");
        let (start, end) = match ports.split_once('-') {
            Some((a, b)) => (a.parse::<u16>().map_err(|_| bad())?, b.parse::<u16>().map_err(|_| bad())?),
            None => {
                let p = ports.parse::<u16>().map_err(|_| bad())?;
                (p, p)
            }
        };
        if end < start {
            return Err(bad());
        }
        out.extend((start..=end).map(|p| format!("{p}/{proto}")));
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Go's `%+v` of a health config, as BuildKit's `HEALTHCHECK` history shows it.
fn health_history(h: &HealthConfig) -> String {
    let d = |n: Option<i64>| go_duration(n.unwrap_or(0));
    format!(
        "HEALTHCHECK {{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
        h.test.as_deref().unwrap_or(&[]).join(" "),
        d(h.interval),
        d(h.timeout),
        d(h.start_period),
        d(h.start_interval),
        h.retries.unwrap_or(0)
    )
}

/// Go's `time.Duration.String()` for whole units as Dockerfiles write them.
fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    if ns % 1_000_000_000 != 0 {
        return format!("{}ms", ns / 1_000_000);
    }
    let secs = ns / 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

fn with_shell(st: &StageState, cmd: &ShellCommand) -> Vec<String> {
    if cmd.prepend_shell && !cmd.cmd_line.is_empty() {
        let mut args = st.shell();
        args.push(cmd.cmd_line.join(" "));
        args
    } else {
        cmd.cmd_line.clone()
    }
}

impl Converter<'_> {
    fn expand_pairs(&self, st: &StageState, pairs: &[KeyValue]) -> Result<Vec<(String, String)>, ConvertError> {
        let mut out = Vec::new();
        for kv in pairs {
            out.push((st.expand(&self.lex, &kv.key)?, st.expand(&self.lex, &kv.value)?));
        }
        Ok(out)
    }

    pub(super) fn dispatch_metadata(&mut self, st: &mut StageState, ins: &Instruction) -> Result<(), ConvertError> {
        let created_by = match &ins.command {
            Command::Env(pairs) => {
                let mut msg = String::from("ENV");
                for (k, v) in self.expand_pairs(st, pairs)? {
                    msg.push_str(&format!(" {k}={v}"));
                    st.config_env_index.set(st.image.config.env.get_or_insert_with(Vec::new), &k, &v);
                    st.state_env_index.set(&mut st.state_env, &k, &v);
                }
                msg
            }
            Command::Label(pairs) => {
                let mut msg = String::from("LABEL");
                for (k, v) in self.expand_pairs(st, pairs)? {
                    msg.push_str(&format!(" {k}={v}"));
                    st.image.config.labels.get_or_insert_with(BTreeMap::new).insert(k, v);
                }
                msg
            }
            Command::Maintainer(m) => format!("MAINTAINER {m}"),
            Command::User(user) => {
                let user = st.expand(&self.lex, user)?;
                st.image.config.user = Some(user.clone());
                format!("USER {user}")
            }
            Command::Expose(ports) => {
                let mut words = Vec::new();
                for p in ports {
                    words.extend(
                        self.lex.process_words(p, &st.scope()).map_err(|e| ParseError::expansion(ins.location(), e))?,
                    );
                }
                let specs = port_specs(&words).map_err(|e| ParseError::invalid(ins.location(), e))?;
                let exposed = st.image.config.exposed_ports.get_or_insert_with(BTreeMap::new);
                for p in &specs {
                    exposed.insert(p.clone(), serde_json::json!({}));
                }
                let map: Vec<String> = specs.iter().map(|p| format!("{p}:{{}}")).collect();
                format!("EXPOSE map[{}]", map.join(" "))
            }
            Command::Volume(volumes) => {
                let mut expanded = Vec::new();
                for v in volumes {
                    let v = st.expand(&self.lex, v)?;
                    if v.is_empty() {
                        return Err(ParseError::invalid(ins.location(), "VOLUME specified can not be an empty string"));
                    }
                    expanded.push(v);
                }
                let map = st.image.config.volumes.get_or_insert_with(BTreeMap::new);
                for v in &expanded {
                    map.insert(v.clone(), serde_json::json!({}));
                }
                format!("VOLUME [{}]", expanded.join(" "))
            }
            Command::StopSignal(signal) => {
                let signal = st.expand(&self.lex, signal)?;
                st.image.config.stop_signal = Some(signal.clone());
                format!("STOPSIGNAL {signal}")
            }
            Command::Healthcheck(health) => {
                st.image.config.healthcheck = Some(health.clone());
                health_history(health)
            }
            Command::Shell(shell) => {
                st.image.config.shell = Some(shell.clone());
                format!("SHELL [{}]", shell.join(" "))
            }
            Command::Cmd(cmd) => {
                let args = with_shell(st, cmd);
                st.image.config.cmd = Some(args.clone());
                st.image.config.args_escaped = Some(true);
                st.cmd_set = true;
                format!("CMD {}", go_quote_list(&args))
            }
            Command::Entrypoint(cmd) => {
                let args = with_shell(st, cmd);
                st.image.config.entrypoint = Some(args.clone());
                if !st.cmd_set {
                    st.image.config.cmd = None;
                }
                format!("ENTRYPOINT {}", go_quote_list(&args))
            }
            Command::Onbuild(expression) => {
                // BuildKit records the trigger in the config only, without history.
                st.image.config.on_build.get_or_insert_with(Vec::new).push(expression.clone());
                return Ok(());
            }
            Command::Run(_) | Command::Copy(_) | Command::Add(_) | Command::Workdir(_) | Command::Arg(_) => {
                unreachable!("dispatched elsewhere")
            }
        };
        commit(st, created_by, None, false);
        Ok(())
    }

    pub(super) fn dispatch_arg(&mut self, st: &mut StageState, defs: &[ArgDef]) -> Result<(), ConvertError> {
        let mut parts = Vec::new();
        for def in defs {
            self.used_args.insert(def.key.clone());
            let value = match (self.options.build_args.get(&def.key), &def.value) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(default)) => Some(st.expand(&self.lex, default)?),
                (None, None) => self.meta.get(&def.key).cloned().flatten(),
            };
            parts.push(match &value {
                Some(v) => format!("{}={v}", def.key),
                None => def.key.clone(),
            });
            if let Some(v) = &value {
                st.state_env_index.set(&mut st.state_env, &def.key, v);
            }
            st.args.push((def.key.clone(), value));
        }
        commit(st, format!("ARG {}", parts.join(" ")), None, false);
        Ok(())
    }

    pub(super) fn dispatch_workdir(
        &mut self,
        st: &mut StageState,
        ins: &Instruction,
        path: &str,
    ) -> Result<(), ConvertError> {
        let path = st.expand(&self.lex, path)?;
        let wd = join_path(&st.workdir(), &path);
        st.image.config.working_dir = Some(wd.clone());
        let mut layer = None;
        if wd != "/" {
            let user = st.user();
            let owner = (!user.is_empty()).then(|| owner(&user));
            let action = FileAction::Mkdir { path: wd.clone(), mode: 0o755, make_parents: true, owner };
            let op = Op::File(FileOp { actions: vec![action] });
            let vertex = self.add_step(st, op, vec![st.vertex], &ins.original, true);
            st.vertex = vertex;
            layer = Some(vertex);
        }
        commit(st, format!("WORKDIR {wd}"), layer, false);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(join_path("/app", "src/../bin/"), "/app/bin");
        assert_eq!(join_path("/app", "/x"), "/x");
        assert_eq!(clean_path(""), "/");
    }

    #[test]
    fn ports() {
        assert_eq!(
            port_specs(&["80".into(), "53/UDP".into(), "8000-8001".into()]).unwrap(),
            vec!["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]
        );
        assert!(port_specs(&["x".into()]).is_err());
    }

    #[test]
    fn env_replaces_in_place() {
        let mut env = vec!["A=1".to_string(), "B=2".to_string()];
        super::super::env_index::EnvIndex::default().set(&mut env, "A", "3");
        assert_eq!(env, vec!["A=3", "B=2"]);
    }

    #[test]
    fn health_history_like_go() {
        let h = HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), "true".into()]),
            interval: Some(30_000_000_000),
            retries: Some(3),
            ..HealthConfig::default()
        };
        assert_eq!(
            health_history(&h),
            "HEALTHCHECK {Test:[CMD-SHELL true] Interval:30s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}"
        );
    }
}
