//! Hostile names in messages: an error echoes what it is about, but never a path or
//! name of a megabyte. [`shown`] keeps the start of long text and says how much it
//! left out.

use std::borrow::Cow;

/// Text longer than this (in bytes) is cut when echoed.
pub const MAX_SHOWN: usize = 256;

/// `text` as an error message may echo it: whole when short, else its first
/// [`MAX_SHOWN`] bytes (on a character boundary) and how many bytes were cut.
pub fn shown(text: &str) -> Cow<'_, str> {
    cut(text, MAX_SHOWN)
}

/// `text` whole when at most `max` bytes, else its first `max` bytes (on a character
/// boundary) and how many bytes were cut.
pub fn cut(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}… ({} more bytes)", &text[..end], text.len() - end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(shown("short"), "short");
        let long = "é".repeat(1_000_000);
        let cut = shown(&long);
        assert!(cut.len() < MAX_SHOWN + 40, "{}", cut.len());
        assert!(cut.ends_with(&format!("({} more bytes)", long.len() - MAX_SHOWN)), "{cut}");
    }
}
