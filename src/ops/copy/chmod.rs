//! `COPY --chmod` modes: octal (`0755`) or symbolic (`u+x,g-w,o=r`, `+x`, `a=rX`).

use anyhow::{Result, bail};

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ModeSpec {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Clause {
    /// Bits of `ugo` the clause applies to (as a mask over 0o777 plus special bits).
    who: u32,
    ops: Vec<(char, Perms)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Perms {
    /// `rwxXst` letters.
    Letters(String),
    /// Copy from `u`, `g` or `o` of the current mode.
    From(char),
}

const WHO_U: u32 = 0o4700;
const WHO_G: u32 = 0o2070;
const WHO_O: u32 = 0o1007;

impl ModeSpec {
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.trim();
        if text.is_empty() {
            bail!("invalid mode: empty");
        }
        if text.chars().all(|c| c.is_ascii_digit()) {
            let mode = u32::from_str_radix(text, 8).map_err(|_| anyhow::anyhow!("invalid mode {text:?}: not octal"))?;
            if mode > 0o7777 {
                bail!("invalid mode {text:?}: out of range");
            }
            return Ok(ModeSpec::Octal(mode));
        }
        let mut clauses = Vec::new();
        for clause in text.split(',') {
            clauses.push(parse_clause(clause).map_err(|e| anyhow::anyhow!("invalid mode {text:?}: {e}"))?);
        }
        Ok(ModeSpec::Symbolic(clauses))
    }

    /// The mode (permission and special bits) a copied file or directory gets, given
    /// its source mode.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            ModeSpec::Octal(bits) => *bits,
            ModeSpec::Symbolic(clauses) => {
                let mut mode = mode & 0o7777;
                for clause in clauses {
                    mode = clause.apply(mode, is_dir);
                }
                mode
            }
        }
    }
}

fn parse_clause(clause: &str) -> Result<Clause> {
    let mut chars = clause.chars().peekable();
    let mut who = 0;
    while let Some(&c) = chars.peek() {
        who |= match c {
            'u' => WHO_U,
            'g' => WHO_G,
            'o' => WHO_O,
            'a' => WHO_U | WHO_G | WHO_O,
            _ => break,
        };
        chars.next();
    }
    if who == 0 {
        who = WHO_U | WHO_G | WHO_O;
    }
    let mut ops = Vec::new();
    while let Some(op) = chars.next() {
        if !matches!(op, '+' | '-' | '=') {
            bail!("unexpected {op:?} in {clause:?}");
        }
        let mut letters = String::new();
        let mut from = None;
        while let Some(&c) = chars.peek() {
            match c {
                'r' | 'w' | 'x' | 'X' | 's' | 't' if from.is_none() => letters.push(c),
                'u' | 'g' | 'o' if letters.is_empty() && from.is_none() => from = Some(c),
                '+' | '-' | '=' => break,
                _ => bail!("unexpected {c:?} in {clause:?}"),
            }
            chars.next();
        }
        ops.push((op, from.map(Perms::From).unwrap_or(Perms::Letters(letters))));
    }
    if ops.is_empty() {
        bail!("missing operator in {clause:?}");
    }
    Ok(Clause { who, ops })
}

impl Clause {
    fn apply(&self, mut mode: u32, is_dir: bool) -> u32 {
        for (op, perms) in &self.ops {
            let bits = match perms {
                Perms::Letters(letters) => letter_bits(letters, mode, is_dir),
                Perms::From(source) => {
                    let triple = match source {
                        'u' => (mode >> 6) & 7,
                        'g' => (mode >> 3) & 7,
                        _ => mode & 7,
                    };
                    triple | (triple << 3) | (triple << 6)
                }
            } & self.who;
            mode = match op {
                '+' => mode | bits,
                '-' => mode & !bits,
                // `=` clears the named classes' bits (not set-id bits of a directory,
                // like chmod) and sets the given ones.
                _ => {
                    let keep = if is_dir { 0o6000 } else { 0 };
                    (mode & !(self.who & !keep)) | bits
                }
            };
        }
        mode
    }
}

fn letter_bits(letters: &str, mode: u32, is_dir: bool) -> u32 {
    let mut bits = 0;
    for c in letters.chars() {
        bits |= match c {
            'r' => 0o444,
            'w' => 0o222,
            'x' => 0o111,
            'X' if is_dir || mode & 0o111 != 0 => 0o111,
            's' => 0o6000,
            't' => 0o1000,
            _ => 0,
        };
    }
    bits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(spec: &str, mode: u32, is_dir: bool) -> u32 {
        ModeSpec::parse(spec).unwrap().apply(mode, is_dir)
    }

    #[test]
    fn octal_replaces_the_mode() {
        assert_eq!(apply("0755", 0o600, false), 0o755);
        assert_eq!(apply("644", 0o777, true), 0o644);
        assert_eq!(apply("4755", 0o600, false), 0o4755);
        assert!(ModeSpec::parse("0999").is_err());
        assert!(ModeSpec::parse("77777").is_err());
    }

    #[test]
    fn symbolic_modes() {
        assert_eq!(apply("u+x", 0o644, false), 0o744);
        assert_eq!(apply("+x", 0o644, false), 0o755);
        assert_eq!(apply("g-w,o=r", 0o666, false), 0o644);
        assert_eq!(apply("a=r", 0o755, false), 0o444);
        assert_eq!(apply("go-rwx", 0o755, true), 0o700);
        assert_eq!(apply("u=rwx,g=rx,o=", 0o600, false), 0o750);
        assert_eq!(apply("o=u", 0o640, false), 0o646);
        assert_eq!(apply("u+s", 0o755, false), 0o4755);
        assert_eq!(apply("+t", 0o755, true), 0o1755);
    }

    #[test]
    fn capital_x_only_for_dirs_or_executables() {
        assert_eq!(apply("a+X", 0o644, false), 0o644);
        assert_eq!(apply("a+X", 0o744, false), 0o755);
        assert_eq!(apply("a+X", 0o644, true), 0o755);
    }

    #[test]
    fn invalid_symbolic_modes() {
        for bad in ["", "u", "z+x", "u+q", "u+x,", "+x-"] {
            if bad == "+x-" {
                // A trailing operator with no letters is allowed by chmod: removes nothing.
                assert!(ModeSpec::parse(bad).is_ok());
                continue;
            }
            assert!(ModeSpec::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
