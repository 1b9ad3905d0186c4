//! Compact JSON text: nested objects are stored whole, without the insignificant white space a
//! pretty-printed export puts in them, so that the same object reads the same whichever export
//! it came from.

/// Tracks, byte by byte, whether JSON text is inside a string literal.
#[derive(Debug, Default, Clone, Copy)]
pub struct StringState {
    in_str: bool,
    escaped: bool,
}

impl StringState {
    /// Feeds one byte; true when it belongs to a string literal (its quotes included).
    #[inline]
    pub fn feed(&mut self, c: u8) -> bool {
        if self.in_str {
            if self.escaped {
                self.escaped = false;
            } else if c == b'\\' {
                self.escaped = true;
            } else if c == b'"' {
                self.in_str = false;
            }
            true
        } else if c == b'"' {
            self.in_str = true;
            true
        } else {
            false
        }
    }
}

/// Removes white space outside strings. The input must be valid JSON (it comes from a parsed
/// `RawValue`); the output is the same JSON value, byte for byte inside strings.
pub fn compact(raw: &str) -> String {
    let b = raw.as_bytes();
    if !b.iter().any(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t')) {
        return raw.to_owned();
    }
    let mut out = Vec::with_capacity(b.len());
    let mut st = StringState::default();
    for &c in b {
        if st.feed(c) || !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            out.push(c);
        }
    }
    // Only ASCII white space outside strings was removed, so the bytes are still UTF-8.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

/// Cuts text to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_keeps_strings_and_drops_layout() {
        let pretty = "{\n  \"a\": \"x y\\\" z\",\n  \"b\" : [ 1, 2 ]\n}";
        assert_eq!(compact(pretty), r#"{"a":"x y\" z","b":[1,2]}"#);
        assert_eq!(compact(r#"{"a":1}"#), r#"{"a":1}"#);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
