//! Compact JSON text: nested objects are stored whole, without the insignificant white space a
//! pretty-printed export puts in them, so that the same object reads the same whichever export
//! it came from.

/// Removes white space outside strings. The input must be valid JSON (it comes from a parsed
/// `RawValue`); the output is the same JSON value, byte for byte inside strings.
pub fn compact(raw: &str) -> String {
    let b = raw.as_bytes();
    if !b.iter().any(|c| matches!(c, b' ' | b'\n' | b'\r' | b'\t')) {
        return raw.to_owned();
    }
    let mut out = Vec::with_capacity(b.len());
    let mut in_str = false;
    let mut escaped = false;
    for &c in b {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if !matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
            if c == b'"' {
                in_str = true;
            }
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
