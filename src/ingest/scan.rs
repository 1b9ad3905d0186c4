//! Splitting a decoded input file into units of JSON text without parsing it.
//!
//! A file is either line-delimited (NDJSON, or minified pages one per line): every non-blank
//! line is a unit, and a broken line costs only itself. Or it is a stream of pretty-printed
//! values (a document, an array, pages saved one after another): a structural scan finds where
//! each top-level value ends. Valid JSON never holds a raw newline inside a string, so a string
//! still open at the end of a line marks the value as broken; the scan gives that value up and
//! starts again on the next line. Units are parsed later, in parallel.

use memchr::memchr;

use super::json_text::StringState;

/// How a file's values are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Lines,
    Stream,
}

/// One unit of input: a byte range and the line it starts on (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unit {
    pub start: usize,
    pub end: usize,
    pub line: u64,
    /// Why the scan could not find the unit's end, if it could not.
    pub broken: Option<Broken>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// The input ended inside the value.
    Truncated,
    /// The value was still open where the next top-level value starts (a line opening with
    /// `{` or `[` in its first column).
    Unclosed,
    /// A line ended inside a string.
    NewlineInString,
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Line layout when most of the first non-blank lines (up to 16) are each a whole JSON object
/// or array, so that a broken line at the top of an NDJSON file costs only itself; a
/// pretty-printed file has almost no such lines. `buf` is the whole input or its first part; a
/// last line without its line end is not judged, unless it is the only one.
pub fn detect_layout(buf: &[u8]) -> Layout {
    const LOOK: usize = 16;
    let (mut pos, mut seen, mut whole) = (0, 0, 0);
    while pos < buf.len() && seen < LOOK {
        let end = match memchr(b'\n', &buf[pos..]) {
            Some(i) => pos + i,
            None if seen > 0 => break,
            None => buf.len(),
        };
        let line = trim(&buf[pos..end]);
        if !line.is_empty() {
            seen += 1;
            if matches!(line[0], b'{' | b'[') && is_complete_value(line) {
                whole += 1;
            }
        }
        pos = end + 1;
    }
    if seen == 0 || whole * 2 > seen {
        Layout::Lines
    } else {
        Layout::Stream
    }
}

fn trim(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_ws(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_ws(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// Whether `s` (starting with `{` or `[`) closes its first value exactly at its end.
fn is_complete_value(s: &[u8]) -> bool {
    matches!(scan_value(s, 0), Scanned::Complete(end) if end == s.len())
}

enum Scanned {
    /// The value ends just before this offset.
    Complete(usize),
    /// A newline at this offset fell inside a string.
    NewlineInString(usize),
    Truncated,
}

/// Scans one object or array starting at `start`, tracking strings and nesting.
fn scan_value(buf: &[u8], start: usize) -> Scanned {
    let mut depth = 0usize;
    let mut st = StringState::default();
    for (i, &c) in buf.iter().enumerate().skip(start) {
        if st.feed(c) {
            if c == b'\n' {
                return Scanned::NewlineInString(i);
            }
            continue;
        }
        match c {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Scanned::Complete(i + 1);
                }
            }
            _ => {}
        }
    }
    Scanned::Truncated
}

/// After a broken value, the next top-level value starts on a line that opens with `{` or `[`
/// in its first column (pretty printers indent everything inside a value). Everything before
/// that line belongs to the broken value.
fn resync(buf: &[u8], newline: usize) -> usize {
    let mut pos = newline;
    while pos < buf.len() {
        let next = pos + 1;
        if matches!(buf.get(next), Some(b'{' | b'[')) {
            return next;
        }
        pos = memchr(b'\n', &buf[next..]).map_or(buf.len(), |i| next + i);
    }
    buf.len()
}

/// The line ends in `s`.
pub fn count_lines(s: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', s).count() as u64
}

/// The units of a stream-layout buffer, in order.
pub fn stream_units(buf: &[u8]) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut pos = 0;
    let mut line = 1u64;
    loop {
        while pos < buf.len() && is_ws(buf[pos]) {
            if buf[pos] == b'\n' {
                line += 1;
            }
            pos += 1;
        }
        if pos >= buf.len() {
            break;
        }
        let start = pos;
        let (end, broken) = if matches!(buf[pos], b'{' | b'[') {
            match scan_value(buf, pos) {
                Scanned::Complete(end) => (end, None),
                Scanned::NewlineInString(nl) => (resync(buf, nl), Some(Broken::NewlineInString)),
                // Never closed: it ends where the next top-level value starts, so one
                // unclosed bracket costs only itself.
                Scanned::Truncated => match memchr(b'\n', &buf[pos..]) {
                    Some(i) if resync(buf, pos + i) < buf.len() => {
                        (resync(buf, pos + i), Some(Broken::Unclosed))
                    }
                    _ => (buf.len(), Some(Broken::Truncated)),
                },
            }
        } else {
            // A scalar or stray text at the top level: the rest of its line, up to a value
            // opening on it.
            let mut end = pos;
            while end < buf.len() && !matches!(buf[end], b'\n' | b'{' | b'[') {
                end += 1;
            }
            while end > pos && is_ws(buf[end - 1]) {
                end -= 1;
            }
            (end, None)
        };
        units.push(Unit {
            start,
            end,
            line,
            broken,
        });
        line += count_lines(&buf[start..end]);
        pos = end;
    }
    units
}

/// Splits a line-layout buffer into chunks of about `target` bytes, each ending on a line
/// boundary, with the line number each starts on.
pub fn line_chunks(buf: &[u8], target: usize) -> Vec<(usize, usize, u64)> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut line = 1u64;
    while start < buf.len() {
        let want = (start + target.max(1)).min(buf.len());
        let end = if want == buf.len() {
            buf.len()
        } else {
            memchr(b'\n', &buf[want..]).map_or(buf.len(), |i| want + i + 1)
        };
        chunks.push((start, end, line));
        line += count_lines(&buf[start..end]);
        start = end;
    }
    chunks
}

/// The non-blank lines of a chunk as units, with absolute offsets and line numbers.
pub fn line_units(buf: &[u8], start: usize, end: usize, first_line: u64) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut pos = start;
    let mut line = first_line;
    while pos < end {
        let eol = memchr(b'\n', &buf[pos..end]).map_or(end, |i| pos + i);
        let mut s = pos;
        let mut e = eol;
        while s < e && is_ws(buf[s]) {
            s += 1;
        }
        while e > s && is_ws(buf[e - 1]) {
            e -= 1;
        }
        if s < e {
            units.push(Unit {
                start: s,
                end: e,
                line,
                broken: None,
            });
        }
        line += 1;
        pos = eol + 1;
    }
    units
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts<'a>(buf: &'a [u8], units: &[Unit]) -> Vec<(&'a str, u64)> {
        units
            .iter()
            .map(|u| {
                (
                    std::str::from_utf8(&buf[u.start..u.end]).unwrap_or("?"),
                    u.line,
                )
            })
            .collect()
    }

    #[test]
    fn ndjson_is_line_layout_and_pretty_is_stream() {
        assert_eq!(detect_layout(b"{\"a\":1}\n{\"a\":2}\n"), Layout::Lines);
        assert_eq!(detect_layout(b"\n\n[{\"a\":1}]"), Layout::Lines);
        assert_eq!(detect_layout(b"{\n \"a\": 1\n}\n"), Layout::Stream);
        assert_eq!(detect_layout(b"[\n{\"a\":1}\n]"), Layout::Stream);
        assert_eq!(detect_layout(b"{\"a\":1}{\"a\":2}"), Layout::Stream);
        // A broken first line does not make an NDJSON file a stream.
        assert_eq!(
            detect_layout(b"[1,2\n{\"a\":1}\n{\"a\":2}\n"),
            Layout::Lines
        );
        assert_eq!(
            detect_layout(b"not json\n{\"a\":1}\n{\"a\":2}\n"),
            Layout::Lines
        );
    }

    #[test]
    fn stream_units_find_each_top_level_value_and_its_line() {
        let buf = b"{\n \"a\": \"}{\"\n}\n\n[1,\n2]  7\n{\"b\":{\"c\":[]}}";
        let u = stream_units(buf);
        assert_eq!(
            texts(buf, &u),
            vec![
                ("{\n \"a\": \"}{\"\n}", 1),
                ("[1,\n2]", 5),
                ("7", 6),
                ("{\"b\":{\"c\":[]}}", 7)
            ]
        );
        assert!(u.iter().all(|x| x.broken.is_none()));
    }

    #[test]
    fn an_unclosed_value_and_stray_text_cost_only_themselves() {
        let buf = b"[1,2\n{\"a\":1}\nnot json\n{\"b\":2}\n";
        let units = stream_units(buf);
        let t = texts(buf, &units);
        assert_eq!(
            t,
            vec![
                ("[1,2\n", 1),
                ("{\"a\":1}", 2),
                ("not json", 3),
                ("{\"b\":2}", 4)
            ]
        );
        assert_eq!(units[0].broken, Some(Broken::Unclosed));
        assert_eq!(units[2].broken, None);
    }

    #[test]
    fn a_broken_string_costs_only_its_value() {
        let buf = b"{\"a\": \"oops\n{\"a\": 2}\n";
        let u = stream_units(buf);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].broken, Some(Broken::NewlineInString));
        assert_eq!(texts(buf, &u)[1], ("{\"a\": 2}", 2));
        // The rest of a broken pretty value goes with it, up to the next value in column 0.
        let buf = b"{\n  \"a\": \"oops\n  \"b\": {\n  }\n}\n[1]\n";
        let u = stream_units(buf);
        assert_eq!(u.len(), 2);
        assert_eq!(texts(buf, &u)[1], ("[1]", 6));
        let t = stream_units(b"{\"a\": [1, 2");
        assert_eq!(t[0].broken, Some(Broken::Truncated));
    }

    #[test]
    fn line_chunks_cover_the_buffer_on_line_boundaries() {
        let buf = b"{\"a\":1}\r\n\n{\"a\":2}\n{\"a\":3}";
        let chunks = line_chunks(buf, 3);
        assert_eq!(chunks, vec![(0, 9, 1), (9, 18, 2), (18, 25, 4)]);
        let all: Vec<_> = chunks
            .iter()
            .flat_map(|&(s, e, l)| line_units(buf, s, e, l))
            .collect();
        assert_eq!(
            texts(buf, &all),
            vec![("{\"a\":1}", 1), ("{\"a\":2}", 3), ("{\"a\":3}", 4)]
        );
    }
}
