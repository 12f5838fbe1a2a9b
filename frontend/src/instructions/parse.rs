//! One parse function per instruction, as BuildKit's `instructions/parse.go`.

use super::bflags::Flags;
use super::health::parse_healthcheck;
use super::{
    AddCommand, ArgDef, Command, CopyCommand, Dockerfile, Instruction, KeyValue, RunCommand, ShellCommand,
    SourceContent, SourcesAndDest, Stage,
};
use crate::error::{Location, ParseError, ParseErrorKind};
use crate::parser::{Ast, Node, chomp_heredoc_content, parse_heredoc};
use crate::suggest;

const INSTRUCTIONS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn at_least_one(name: &str) -> ParseErrorKind {
    ParseErrorKind::MissingArgument { instruction: name.to_string() }
}

fn exactly_one(name: &str) -> ParseErrorKind {
    ParseErrorKind::NotOneArgument { instruction: name.to_string() }
}

fn key_values(node: &Node, name: &str) -> Result<Vec<KeyValue>, ParseErrorKind> {
    if node.args.is_empty() {
        return Err(at_least_one(name));
    }
    if !node.args.len().is_multiple_of(3) {
        return Err(ParseErrorKind::invalid(format!("Bad input to {name}, too many arguments")));
    }
    Ok(node.args.chunks(3).map(|c| KeyValue { key: c[0].clone(), value: c[1].clone() }).collect())
}

fn shell_command(node: &Node) -> ShellCommand {
    let cmd_line = if node.json || node.args.is_empty() { node.args.clone() } else { vec![node.args.join(" ")] };
    ShellCommand { cmd_line, prepend_shell: !node.json, files: node.heredocs.clone() }
}

fn sources_and_dest(node: &Node, name: &str) -> Result<SourcesAndDest, ParseErrorKind> {
    if node.args.len() < 2 {
        return Err(ParseErrorKind::invalid(format!(
            "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
        )));
    }
    let (srcs, dest) = node.args.split_at(node.args.len() - 1);
    let dest = dest[0].clone();
    if !node.json && parse_heredoc(&dest)?.is_some() {
        return Err(ParseErrorKind::invalid(format!("{name} cannot accept a heredoc as a destination")));
    }
    let mut out = SourcesAndDest { dest, ..SourcesAndDest::default() };
    let mut docs = node.heredocs.iter();
    for src in srcs {
        let heredoc = if node.json { None } else { parse_heredoc(src)? };
        match heredoc.and_then(|_| docs.next()) {
            Some(doc) => {
                let data = if doc.chomp { chomp_heredoc_content(&doc.content) } else { doc.content.clone() };
                out.contents.push(SourceContent { path: doc.name.clone(), data, expand: doc.expand });
            }
            None => out.sources.push(src.clone()),
        }
    }
    Ok(out)
}

fn parse_copy(node: &Node, flags: &mut Flags) -> Result<Command, ParseErrorKind> {
    flags.add_string("from").add_string("chown").add_string("chmod").add_bool("link").add_bool("parents");
    flags.add_strings("exclude");
    flags.parse()?;
    Ok(Command::Copy(CopyCommand {
        files: sources_and_dest(node, "COPY")?,
        from: flags.string("from"),
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        parents: flags.bool("parents").unwrap_or(false),
        exclude: flags.strings("exclude"),
    }))
}

fn parse_add(node: &Node, flags: &mut Flags) -> Result<Command, ParseErrorKind> {
    flags.add_string("chown").add_string("chmod").add_bool("link").add_string("checksum");
    flags.add_bool("keep-git-dir").add_bool("unpack").add_strings("exclude");
    flags.parse()?;
    Ok(Command::Add(AddCommand {
        files: sources_and_dest(node, "ADD")?,
        chown: flags.string("chown"),
        chmod: flags.string("chmod"),
        link: flags.bool("link").unwrap_or(false),
        checksum: flags.string("checksum"),
        keep_git_dir: flags.bool("keep-git-dir"),
        unpack: flags.bool("unpack"),
        exclude: flags.strings("exclude"),
    }))
}

fn parse_run(node: &Node, flags: &mut Flags) -> Result<Command, ParseErrorKind> {
    flags.add_strings("mount").add_string("network").add_string("security");
    flags.parse()?;
    if node.args.is_empty() {
        return Err(at_least_one("RUN"));
    }
    let network = flags.string("network");
    if let Some(n) = &network
        && !matches!(n.as_str(), "default" | "none" | "host")
    {
        return Err(ParseErrorKind::invalid(format!("unsupported network mode {n:?}")));
    }
    let security = flags.string("security");
    if let Some(s) = &security
        && !matches!(s.as_str(), "sandbox" | "insecure")
    {
        return Err(ParseErrorKind::invalid(format!("unsupported security mode {s:?}")));
    }
    Ok(Command::Run(RunCommand { command: shell_command(node), mounts: flags.strings("mount"), network, security }))
}

fn parse_onbuild(node: &Node) -> Result<Command, ParseErrorKind> {
    let Some(sub) = &node.sub else {
        return Err(at_least_one("ONBUILD"));
    };
    let trigger = sub.value.to_uppercase();
    if matches!(trigger.as_str(), "ONBUILD" | "FROM" | "MAINTAINER") {
        return Err(ParseErrorKind::invalid(format!("{trigger} isn't allowed as an ONBUILD trigger")));
    }
    // The original line minus the leading `ONBUILD`.
    let original = node.original.trim_start();
    let expression = original[original.find(char::is_whitespace).unwrap_or(original.len())..].trim_start();
    Ok(Command::Onbuild(expression.to_string()))
}

fn single(node: &Node, name: &str) -> Result<String, ParseErrorKind> {
    match node.args.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(exactly_one(name)),
    }
}

fn parse_arg(node: &Node) -> Result<Command, ParseErrorKind> {
    if node.args.is_empty() {
        return Err(at_least_one("ARG"));
    }
    let mut defs = Vec::new();
    for arg in &node.args {
        let def = match arg.split_once('=') {
            Some(("", _)) => return Err(ParseErrorKind::invalid("ARG names can not be blank")),
            Some((k, v)) => ArgDef { key: k.to_string(), value: Some(v.to_string()) },
            None => ArgDef { key: arg.clone(), value: None },
        };
        defs.push(def);
    }
    Ok(Command::Arg(defs))
}

/// Parses one instruction other than FROM.
pub fn parse_node(node: &Node) -> Result<Instruction, ParseErrorKind> {
    let keyword = node.value.to_uppercase();
    let mut flags = Flags::new(&node.flags);
    let command = match keyword.as_str() {
        "ENV" => Command::Env(key_values(node, "ENV")?),
        "LABEL" => Command::Label(key_values(node, "LABEL")?),
        "MAINTAINER" => Command::Maintainer(single(node, "MAINTAINER")?),
        "ADD" => parse_add(node, &mut flags)?,
        "COPY" => parse_copy(node, &mut flags)?,
        "ONBUILD" => parse_onbuild(node)?,
        "WORKDIR" => Command::Workdir(single(node, "WORKDIR")?),
        "RUN" => parse_run(node, &mut flags)?,
        "CMD" => Command::Cmd(shell_command(node)),
        "ENTRYPOINT" => Command::Entrypoint(shell_command(node)),
        "HEALTHCHECK" => Command::Healthcheck(parse_healthcheck(&node.args, node.json, &mut flags)?),
        "EXPOSE" => {
            if node.args.is_empty() {
                return Err(at_least_one("EXPOSE"));
            }
            Command::Expose(node.args.clone())
        }
        "USER" => Command::User(single(node, "USER")?),
        "VOLUME" => {
            if node.args.is_empty() {
                return Err(at_least_one("VOLUME"));
            }
            let vols: Vec<String> = node.args.iter().map(|v| v.trim().to_string()).collect();
            if vols.iter().any(String::is_empty) {
                return Err(ParseErrorKind::invalid("VOLUME specified can not be an empty string"));
            }
            Command::Volume(vols)
        }
        "STOPSIGNAL" => Command::StopSignal(single(node, "STOPSIGNAL")?),
        "ARG" => parse_arg(node)?,
        "SHELL" => {
            if node.args.is_empty() {
                return Err(at_least_one("SHELL"));
            }
            if !node.json {
                return Err(ParseErrorKind::invalid("SHELL requires the arguments to be in JSON form"));
            }
            Command::Shell(node.args.clone())
        }
        "FROM" => return Err(ParseErrorKind::invalid("FROM is only allowed at the start of a stage")),
        _ => {
            let suggestion = suggest::closest(&node.value, INSTRUCTIONS).map(str::to_string);
            return Err(ParseErrorKind::UnknownInstruction { instruction: node.value.clone(), suggestion });
        }
    };
    // Instructions without flag definitions reject any flag given.
    if !matches!(keyword.as_str(), "ADD" | "COPY" | "RUN" | "HEALTHCHECK") {
        flags.parse()?;
    }
    let Location { line, column } = node.location();
    let flags = node.flags.iter().map(|f| (f.clone(), node.flag_location(f))).collect();
    Ok(Instruction { command, keyword, original: node.original.clone(), line, column, flags })
}

/// `^[a-z][a-z0-9-_.]*$`
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn parse_from(node: &Node) -> Result<Stage, ParseErrorKind> {
    let mut flags = Flags::new(&node.flags);
    flags.add_string("platform");
    flags.parse()?;
    let name = match node.args.as_slice() {
        [_] => None,
        [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => {
            let name = name.to_lowercase();
            if !valid_stage_name(&name) {
                return Err(ParseErrorKind::invalid(format!(
                    "invalid name for build stage: {name:?}, name can't start with a number or contain symbols"
                )));
            }
            Some(name)
        }
        [_, _, _] => return Err(ParseErrorKind::invalid("FROM requires either one or three arguments")),
        _ => return Err(ParseErrorKind::invalid("FROM requires either one or three arguments")),
    };
    Ok(Stage {
        name,
        base_name: node.args[0].clone(),
        platform: flags.string("platform").filter(|p| !p.is_empty()),
        instructions: Vec::new(),
        original: node.original.clone(),
        line: node.start_line,
        column: node.location().column,
    })
}

/// Groups the AST into stages, typing every instruction.
pub fn parse_dockerfile(ast: &Ast) -> Result<Dockerfile, ParseError> {
    let mut out = Dockerfile { escape_token: ast.directives.escape_token, ..Dockerfile::default() };
    for node in &ast.children {
        // Flag errors point at the flag, the others at the keyword.
        let at = |kind: ParseErrorKind| {
            let location = kind.flag().map_or_else(|| node.location(), |flag| node.flag_location(&flag));
            ParseError::new(location, kind)
        };
        if node.keyword() == "from" {
            let stage = parse_from(node).map_err(at)?;
            if let Some(name) = &stage.name
                && out.stages.iter().any(|s| s.name.as_deref() == Some(name))
            {
                return Err(at(ParseErrorKind::invalid(format!("duplicate stage name {name:?}"))));
            }
            out.stages.push(stage);
            continue;
        }
        let instruction = parse_node(node).map_err(at)?;
        match out.stages.last_mut() {
            Some(stage) => stage.instructions.push(instruction),
            None => match instruction.command {
                Command::Arg(defs) => out.meta_args.extend(defs.into_iter().map(|d| (d, node.location()))),
                _ => return Err(at(ParseErrorKind::invalid("no build stage in current context"))),
            },
        }
    }
    if out.stages.is_empty() {
        let line = ast.children.last().map_or(1, |n| n.end_line);
        return Err(ParseError::invalid(Location::line(line), "no build stage in current context"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::parse;

    fn df(text: &str) -> Result<Dockerfile, ParseError> {
        parse_dockerfile(&parse(text).unwrap())
    }

    #[test]
    fn stages_and_meta_args() {
        let d = df("ARG V=1\nFROM a:$V AS Build\nRUN x\nFROM scratch\nCOPY --from=build /a /b\n").unwrap();
        assert_eq!(d.meta_args.len(), 1);
        assert_eq!(d.stages[0].name.as_deref(), Some("build"));
        assert_eq!(d.stages[1].instructions.len(), 1);
    }

    #[test]
    fn errors_point_at_lines() {
        let e = df("FROM a\n\nCOPPY x y\n").unwrap_err();
        assert_eq!(e.to_string(), "3:1: unknown instruction \"COPPY\" (did you mean COPY?)");
        let e = df("FROM a\n  COPY --chmd=755 x y\n").unwrap_err();
        assert_eq!(e.to_string(), "2:8: unknown flag: --chmd (did you mean chmod?)");
        let e = df("FROM a\n\tRUN x\nFROM --platform b\n").unwrap_err();
        assert_eq!(e.location, Location::new(3, 6));
        assert_eq!(e.kind, ParseErrorKind::MissingFlagValue { flag: "platform".into() });
        assert!(df("RUN x\n").is_err());
        assert!(df("FROM a AS 1x\n").is_err());
        assert!(df("FROM a\nENV --x=1 A=b\n").is_err());
    }

    #[test]
    fn copy_heredoc_sources() {
        let d = df("FROM a\nCOPY <<EOF /f\nhi\nEOF\n").unwrap();
        let Command::Copy(c) = &d.stages[0].instructions[0].command else { panic!() };
        assert_eq!(c.files.contents[0].data, "hi\n");
        assert!(c.files.sources.is_empty());
    }
}
