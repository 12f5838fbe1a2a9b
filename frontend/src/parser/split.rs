//! Splitting an instruction line into its keyword, its `--flags` and the rest.

fn is_go_space(c: char) -> bool {
    c.is_whitespace()
}

/// `[\t\v\f\r ]+`, the separator BuildKit splits whitespace-delimited arguments on.
pub fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

/// Splits `s` on runs of spaces, tabs, `\v`, `\f` and `\r`, like Go's `regexp.Split(s, n)`.
pub fn split_whitespace_n(s: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while out.len() + 1 < n {
        match rest.find(is_split_space) {
            Some(start) => {
                let end = rest[start..].find(|c| !is_split_space(c)).map_or(rest.len(), |e| start + e);
                out.push(rest[..start].to_string());
                rest = &rest[end..];
            }
            None => break,
        }
    }
    out.push(rest.to_string());
    out
}

/// Keyword, flags and the remaining arguments of a logical line.
pub fn split_command(line: &str) -> (String, Vec<String>, String) {
    let parts = split_whitespace_n(line.trim_matches(is_go_space), 2);
    let cmd = parts[0].clone();
    if parts.len() == 2 {
        let (args, flags) = extract_builder_flags(&parts[1]);
        (cmd, flags, args.trim_matches(is_go_space).to_string())
    } else {
        (cmd, Vec::new(), String::new())
    }
}

/// Takes leading `--flag[=value]` words off `line`; a bare `--` ends the flags.
pub fn extract_builder_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let bytes = line.as_bytes();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word: Vec<u8> = Vec::new();
    let mut quote = 0u8;
    let mut blank_ok = false;
    let mut pos = 0;
    let finish = |w: &[u8]| String::from_utf8_lossy(w).into_owned();
    while pos <= bytes.len() {
        let ch = if pos < bytes.len() { bytes[pos] } else { 0 };
        if phase == Phase::Spaces {
            if pos == bytes.len() {
                break;
            }
            if (ch as char).is_ascii_whitespace() || ch == 0x0b {
                pos += 1;
                continue;
            }
            if ch != b'-' || pos + 1 == bytes.len() || bytes[pos + 1] != b'-' {
                return (line[pos..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if pos == bytes.len() {
            if word != b"--" && (blank_ok || !word.is_empty()) {
                words.push(finish(&word));
            }
            break;
        }
        if phase == Phase::Word {
            if (ch as char).is_ascii_whitespace() || ch == 0x0b {
                phase = Phase::Spaces;
                if word == b"--" {
                    return (line[pos..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(finish(&word));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            let mut ch = ch;
            if ch == b'\\' {
                if pos + 1 == bytes.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = bytes[pos];
            }
            word.push(ch);
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        let mut ch = ch;
        if ch == b'\\' {
            if pos + 1 == bytes.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = bytes[pos];
        }
        word.push(ch);
        pos += 1;
    }
    (String::new(), words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_flags() {
        assert_eq!(
            split_command("COPY --from=a --chown=\"x y\" src dst"),
            ("COPY".into(), vec!["--from=a".into(), "--chown=x y".into()], "src dst".into())
        );
        assert_eq!(split_command("COPY -- --x dst"), ("COPY".into(), vec![], "--x dst".into()));
        assert_eq!(split_command("RUN"), ("RUN".into(), vec![], "".into()));
        assert_eq!(split_command("CMD --doit -- [ ]"), ("CMD".into(), vec!["--doit".into()], "[ ]".into()));
    }

    #[test]
    fn splits_on_whitespace_runs() {
        assert_eq!(split_whitespace_n("a  b\tc", 2), vec!["a", "b\tc"]);
        assert_eq!(split_whitespace_n("a  b\tc ", usize::MAX), vec!["a", "b", "c", ""]);
    }
}
