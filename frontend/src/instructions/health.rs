//! HEALTHCHECK: its options and Go-style durations (`30s`, `1m30s`, `1.5h`).

use super::bflags::Flags;
use crate::error::ParseErrorKind;
use image_spec::HealthConfig;

/// Parses a Go duration into nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, ParseErrorKind> {
    let bad = || ParseErrorKind::invalid(format!("time: invalid duration {s:?}"));
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(ParseErrorKind::invalid(format!("time: missing or unknown unit in duration {s:?}"))),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    let total = total.round() as i64;
    Ok(if neg { -total } else { total })
}

fn parse_interval(flags: &Flags, name: &str) -> Result<Option<i64>, ParseErrorKind> {
    let Some(value) = flags.string(name) else { return Ok(None) };
    if value.is_empty() {
        return Ok(None);
    }
    let d = parse_duration(&value)?;
    if d == 0 {
        return Ok(None);
    }
    if d < 1_000_000 {
        return Err(ParseErrorKind::invalid(format!("Interval {name:?} cannot be less than 1ms")));
    }
    Ok(Some(d))
}

/// `HEALTHCHECK [--options] CMD ...` or `HEALTHCHECK NONE`.
pub fn parse_healthcheck(args: &[String], json: bool, flags: &mut Flags) -> Result<HealthConfig, ParseErrorKind> {
    let Some(first) = args.first() else {
        return Err(ParseErrorKind::invalid("HEALTHCHECK requires at least one argument"));
    };
    let typ = first.to_uppercase();
    let rest = &args[1..];
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err(ParseErrorKind::invalid("HEALTHCHECK NONE takes no arguments"));
        }
        flags.parse()?;
        return Ok(HealthConfig { test: Some(vec!["NONE".into()]), ..HealthConfig::default() });
    }
    flags.add_string("interval").add_string("timeout").add_string("start-period").add_string("start-interval");
    flags.add_string("retries");
    flags.parse()?;
    if typ != "CMD" {
        return Err(ParseErrorKind::invalid(format!("Unknown type {typ:?} in HEALTHCHECK (try CMD)")));
    }
    let cmd: Vec<String> = if json || rest.is_empty() { rest.to_vec() } else { vec![rest.join(" ")] };
    if cmd.is_empty() {
        return Err(ParseErrorKind::invalid("Missing command after HEALTHCHECK CMD"));
    }
    let kind = if json { "CMD" } else { "CMD-SHELL" };
    let mut test = vec![kind.to_string()];
    test.extend(cmd);
    let retries = match flags.string("retries").filter(|r| !r.is_empty()) {
        Some(r) => {
            let n: i64 = r.parse().map_err(|_| ParseErrorKind::invalid(format!("invalid --retries value {r:?}")))?;
            if n < 0 {
                return Err(ParseErrorKind::invalid(format!("--retries cannot be negative ({n})")));
            }
            Some(n).filter(|n| *n != 0)
        }
        None => None,
    };
    Ok(HealthConfig {
        test: Some(test),
        interval: parse_interval(flags, "interval")?,
        timeout: parse_interval(flags, "timeout")?,
        start_period: parse_interval(flags, "start-period")?,
        start_interval: parse_interval(flags, "start-interval")?,
        retries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), 30_000_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("1.5h").unwrap(), 5_400_000_000_000);
        assert!(parse_duration("5").is_err());
    }

    #[test]
    fn healthcheck() {
        let mut flags = Flags::new(&["--interval=5s".into(), "--retries=3".into()]);
        let h = parse_healthcheck(&["CMD".into(), "curl -f x".into()], false, &mut flags).unwrap();
        assert_eq!(h.test.unwrap(), vec!["CMD-SHELL", "curl -f x"]);
        assert_eq!(h.interval, Some(5_000_000_000));
        assert_eq!(h.retries, Some(3));
    }
}
