//! Store sizes as the commands and the environment write them (`prune
//! --keep-storage`, `BUILDER_GC_KEEP_STORAGE`) and as `du`/`prune` print them. A
//! module of its own because both the commands and the automatic GC use it
//! (`commands → autogc → units`, no circle).

/// A size that cannot be read: the user's mistake wherever it was written (a flag or
/// an environment variable), so `builder::main` makes it a usage error.
#[derive(Debug, thiserror::Error)]
pub enum InvalidSize {
    #[error("invalid size {text:?}")]
    Number { text: String },
    #[error("invalid size {text:?}: unknown unit {unit:?}")]
    Unit { text: String, unit: String },
}

/// `2GB` (1000-based), `2GiB` or `2g` (1024-based, as Docker), or bytes.
pub fn parse_size(s: &str) -> Result<u64, InvalidSize> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().map_err(|_| InvalidSize::Number { text: s.to_string() })?;
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
        other => return Err(InvalidSize::Unit { text: s.to_string(), unit: other.to_string() }),
    };
    Ok((number * scale as f64) as u64)
}

/// `1.500MB`: 1000-based, as Docker prints sizes.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_both_ways() {
        assert_eq!(parse_size("2GB").unwrap(), 2_000_000_000);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
        assert_eq!(parse_size(" 1.5MiB ").unwrap(), 3 << 19);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(matches!(parse_size("lots"), Err(InvalidSize::Number { .. })));
        let err = parse_size("3pb").unwrap_err();
        assert_eq!(err.to_string(), "invalid size \"3pb\": unknown unit \"pb\"");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_500_000), "1.500MB");
    }
}
