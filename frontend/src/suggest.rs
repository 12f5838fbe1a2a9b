//! "Did you mean ...?" suggestions for misspelt instructions, flags and options.

/// Levenshtein distance between two strings, by chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest of `options` to `value` (case-insensitive), if close enough to be a typo.
pub fn closest<'a>(value: &str, options: &[&'a str]) -> Option<&'a str> {
    let lower = value.to_lowercase();
    let max = (lower.chars().count() / 2).clamp(1, 3);
    options
        .iter()
        .map(|o| (distance(&lower, &o.to_lowercase()), *o))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, o)| o)
}

/// Appends ` (did you mean X?)` to `message` when a suggestion exists.
pub fn with_suggestion(message: String, value: &str, options: &[&str]) -> String {
    match closest(value, options) {
        Some(s) => format!("{message} (did you mean {s}?)"),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert_eq!(closest("COPPY", &["COPY", "CMD", "RUN"]), Some("COPY"));
        assert_eq!(closest("xyzzy", &["COPY", "CMD"]), None);
        assert_eq!(closest("chmd", &["chmod", "chown"]), Some("chmod"));
    }
}
