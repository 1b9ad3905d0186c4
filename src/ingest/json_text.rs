//! Compact JSON text: nested objects are stored whole, without the insignificant white space a
//! pretty-printed export puts in them, so that the same object reads the same whichever export
//! it came from.

use std::borrow::Cow;

/// Tracks, byte by byte, whether JSON text is inside a string literal.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct StringState {
    in_str: bool,
    escaped: bool,
}

impl StringState {
    /// Feeds one byte; true when it belongs to a string literal (its quotes included).
    #[inline]
    pub(crate) fn feed(&mut self, c: u8) -> bool {
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

    /// Whether the last byte fed left the text inside a string literal.
    #[inline]
    pub(crate) fn in_str(&self) -> bool {
        self.in_str
    }
}

/// Removes white space outside strings. The input must be valid JSON (it comes from a parsed
/// `RawValue`); the output is the same JSON value, byte for byte inside strings. Text that is
/// already compact, the usual case, is borrowed, not copied.
pub(crate) fn compact(raw: &str) -> Cow<'_, str> {
    let b = raw.as_bytes();
    // A scalar (a `RawValue` carries no white space around it) has none to remove.
    if !matches!(b.first(), Some(b'{' | b'[')) {
        return Cow::Borrowed(raw);
    }
    let Some(first) = next_layout_space(b, 0) else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(b.len());
    let mut from = 0;
    let mut at = Some(first);
    while let Some(ws) = at {
        // Everything cut at is ASCII white space, so every slice lies on character boundaries.
        out.push_str(&raw[from..ws]);
        from = ws;
        while from < b.len() && is_space(b[from]) {
            from += 1;
        }
        at = next_layout_space(b, from);
    }
    out.push_str(&raw[from..]);
    Cow::Owned(out)
}

#[inline]
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\r' | b'\t')
}

/// The first white space at or after `i` that lies outside a string literal; string bodies are
/// skipped with `memchr`, so long strings (SDP bodies, descriptions) cost little.
fn next_layout_space(b: &[u8], mut i: usize) -> Option<usize> {
    while i < b.len() {
        match b[i] {
            b'"' => i = string_end(b, i),
            c if is_space(c) => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// The index just past the string literal whose opening quote is at `open`.
fn string_end(b: &[u8], open: usize) -> usize {
    let mut i = open + 1;
    while let Some(off) = memchr::memchr2(b'"', b'\\', &b[i..]) {
        let j = i + off;
        if b[j] == b'"' {
            return j + 1;
        }
        i = j + 2;
        if i >= b.len() {
            break;
        }
    }
    b.len()
}

/// Cuts text to at most `max` bytes on a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
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
        assert!(matches!(compact(r#"{"a":"x y"}"#), Cow::Borrowed(_)));
        assert!(matches!(compact(r#""x y""#), Cow::Borrowed(_)));
        let escapes = "{ \"k\\\\\" : \"\\\\\" , \"q\": \"a\\\" \\\\ b\" }";
        assert_eq!(compact(escapes), r#"{"k\\":"\\","q":"a\" \\ b"}"#);
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
