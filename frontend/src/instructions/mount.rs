//! `RUN --mount=type=...,k=v`: the CSV options of one mount, checked as BuildKit's
//! `commands_runmount.go` checks them. Values are expanded by the caller's expander.

use crate::error::ParseErrorKind;
use crate::shell::ExpansionError;
use crate::suggest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    fn name(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub kind: MountType,
    pub from: Option<String>,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub id: String,
    pub sharing: Option<String>,
    pub required: bool,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub env: Option<String>,
}

/// Splits one CSV record (Go's `encoding/csv`: `"` quotes, `""` inside quotes).
fn csv_fields(value: &str) -> Result<Vec<String>, ParseErrorKind> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = value.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            '"' if quoted => quoted = false,
            '"' if at_start => quoted = true,
            ',' if !quoted => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            c => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err(ParseErrorKind::invalid(format!("failed to parse csv mounts: unterminated quote in {value:?}")));
    }
    fields.push(field);
    Ok(fields)
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ParseErrorKind> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(ParseErrorKind::invalid(format!("invalid value for {key}: {value}"))),
    }
}

/// Docker's `units.RAMInBytes`: `64m`, `1g`, `512kb`, `1.5GiB`, plain bytes.
pub fn ram_in_bytes(value: &str) -> Result<u64, ParseErrorKind> {
    let bad = || ParseErrorKind::invalid(format!("invalid size: {value:?}"));
    let num_len = value.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(value.len());
    let number: f64 = value[..num_len].parse().map_err(|_| bad())?;
    let unit = value[num_len..].trim_start_matches(' ').to_ascii_lowercase();
    let unit = unit.trim_end_matches('b').trim_end_matches('i');
    let scale: f64 = match unit {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024f64.powi(2),
        "g" => 1024f64.powi(3),
        "t" => 1024f64.powi(4),
        "p" => 1024f64.powi(5),
        _ => return Err(bad()),
    };
    Ok((number * scale) as u64)
}

const KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

/// Parses one `--mount` value; `expand` expands each option value.
pub fn parse_mount(
    value: &str,
    expand: &dyn Fn(&str) -> Result<String, ExpansionError>,
) -> Result<Mount, ParseErrorKind> {
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: String::new(),
        target: String::new(),
        read_only: false,
        id: String::new(),
        sharing: None,
        required: false,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        env: None,
    };
    let mut ro_auto = true;
    for field in csv_fields(value)? {
        let (key, raw) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(raw) = raw else {
            match key.as_str() {
                "readonly" | "ro" => m.read_only = true,
                "readwrite" | "rw" => m.read_only = false,
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => m.required = true,
                "required" => {
                    return Err(ParseErrorKind::invalid(format!(
                        "unexpected key 'required' for mount type '{}'",
                        m.kind.name()
                    )));
                }
                _ => return Err(ParseErrorKind::invalid(format!("invalid field '{field}' must be a key=value pair"))),
            }
            ro_auto = false;
            continue;
        };
        let v = if key == "from" {
            // Stage names are resolved before any ARG is known.
            if raw.find('$').is_some_and(|i| i != raw.len() - 1) {
                return Err(ParseErrorKind::invalid(
                    "'from' doesn't support variable expansion, define alias stage instead",
                ));
            }
            raw.to_string()
        } else {
            expand(raw)?
        };
        let unexpected =
            |m: &Mount| ParseErrorKind::invalid(format!("unexpected key '{key}' for mount type '{}'", m.kind.name()));
        match key.as_str() {
            "type" => {
                m.kind = match v.to_ascii_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        let msg = format!("unsupported mount type {v:?}");
                        return Err(ParseErrorKind::invalid(suggest::with_suggestion(
                            msg,
                            &v,
                            &["bind", "cache", "tmpfs", "secret", "ssh"],
                        )));
                    }
                }
            }
            "from" => m.from = Some(v),
            "source" | "src" => m.source = v,
            "target" | "dst" | "destination" => m.target = v,
            "readonly" | "ro" => {
                m.read_only = parse_bool(&key, &v)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.read_only = !parse_bool(&key, &v)?;
                ro_auto = false;
            }
            "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => m.required = parse_bool(&key, &v)?,
            "required" => return Err(unexpected(&m)),
            "size" if m.kind == MountType::Tmpfs => m.size = Some(ram_in_bytes(&v)?),
            "size" => return Err(unexpected(&m)),
            "id" => m.id = v,
            "sharing" => {
                if m.kind != MountType::Cache {
                    return Err(ParseErrorKind::invalid(format!(
                        "invalid cache sharing set for {} mount",
                        m.kind.name()
                    )));
                }
                let s = v.to_ascii_lowercase();
                if !matches!(s.as_str(), "shared" | "private" | "locked") {
                    return Err(ParseErrorKind::invalid(format!("unsupported sharing value {v:?}")));
                }
                m.sharing = Some(s);
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&v, 8)
                        .map_err(|_| ParseErrorKind::invalid(format!("invalid value {v} for mode")))?,
                )
            }
            "uid" => {
                m.uid = Some(v.parse().map_err(|_| ParseErrorKind::invalid(format!("invalid value {v} for uid")))?)
            }
            "gid" => {
                m.gid = Some(v.parse().map_err(|_| ParseErrorKind::invalid(format!("invalid value {v} for gid")))?)
            }
            "env" => m.env = Some(v),
            _ => {
                let msg = format!("unexpected key '{key}' in '{field}'");
                return Err(ParseErrorKind::invalid(suggest::with_suggestion(msg, &key, KEYS)));
            }
        }
    }
    if !matches!(m.kind, MountType::Secret | MountType::Ssh | MountType::Cache) {
        for (set, what) in [(m.mode.is_some(), "mode"), (m.uid.is_some(), "uid"), (m.gid.is_some(), "gid")] {
            if set {
                return Err(ParseErrorKind::invalid(format!("{what} not allowed for {:?} type mounts", m.kind.name())));
            }
        }
    }
    if ro_auto {
        m.read_only = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(ParseErrorKind::invalid("secret mount should not have a from"));
        }
        if m.source.is_empty() && m.target.is_empty() && m.id.is_empty() && m.env.is_none() {
            return Err(ParseErrorKind::invalid("invalid secret mount. one of source, target required"));
        }
        if !m.source.is_empty() && !m.id.is_empty() {
            return Err(ParseErrorKind::invalid("both source and id can't be set"));
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(v: &str) -> Result<String, ExpansionError> {
        Ok(v.to_string())
    }

    #[test]
    fn parses_mounts() {
        let m = parse_mount("type=cache,target=/root/.cache,sharing=locked,mode=0755,uid=1", &plain).unwrap();
        assert_eq!((m.kind, m.read_only, m.mode, m.uid), (MountType::Cache, false, Some(0o755), Some(1)));
        let m = parse_mount("target=/src,from=build,rw", &plain).unwrap();
        assert_eq!((m.kind, m.read_only, m.from.as_deref()), (MountType::Bind, false, Some("build")));
        let m = parse_mount("type=tmpfs,target=/t,size=64m", &plain).unwrap();
        assert_eq!(m.size, Some(64 << 20));
        assert!(parse_mount("type=bind,mode=0700", &plain).is_err());
        assert!(parse_mount("type=secret", &plain).is_err());
        assert!(parse_mount("from=$STAGE,target=/x", &plain).is_err());
        assert_eq!(
            parse_mount("type=cache,targte=/x", &plain).unwrap_err().to_string(),
            "unexpected key 'targte' in 'targte=/x' (did you mean target?)"
        );
    }
}
