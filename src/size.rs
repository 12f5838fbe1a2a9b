//! Sizes as users write them (`2GB`, `512MiB`, `2g`) and as builder prints them.

use anyhow::{Result, bail};

/// `2GB` (1000-based), `2GiB` or `2g` (1024-based, as Docker), or bytes.
pub fn parse_size(s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| crate::usage_error(anyhow::anyhow!("invalid size {s:?}")))?;
    let scale: u64 = match unit.trim() {
        "" | "b" => 1,
        "kb" => 1000,
        "mb" => 1000_u64.pow(2),
        "gb" => 1000_u64.pow(3),
        "tb" => 1000_u64.pow(4),
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        other => bail!(crate::usage_error(anyhow::anyhow!("invalid size {s:?}: unknown unit {other:?}"))),
    };
    Ok((number * scale as f64) as u64)
}

pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n}B") } else { format!("{v:.3}{}", UNITS[unit]) }
}
