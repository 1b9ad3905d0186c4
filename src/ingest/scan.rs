//! Splitting a decoded input file into units of JSON text without parsing it.
//!
//! A file is either line-delimited (NDJSON, or minified pages one per line): every non-blank
//! line is a unit, and a broken line costs only itself. Or it is a stream of pretty-printed
//! values (a document, an array, pages saved one after another): a structural scan finds where
//! each top-level value ends. Valid JSON never holds a raw newline inside a string, so a string
//! still open at the end of a line marks the value as broken; the scan gives that value up and
//! starts again on the next line. Units are parsed later, in parallel.

use super::json_text::StringState;

/// How a file's values are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Lines,
    Stream,
}

/// Where a unit sits in the file's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nest {
    /// A top-level value: a line of NDJSON, or a value of a stream.
    Top,
    /// An element of a top-level array.
    Array,
    /// An element of a crossbar envelope's `data` array (`{"data":[...], ...}`).
    Data,
}

/// One unit of input: a byte range and the line it starts on (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unit {
    pub start: usize,
    pub end: usize,
    pub line: u64,
    /// Why the scan could not find the unit's end, if it could not.
    pub broken: Option<Broken>,
    /// The unit's index in its array (top-level array or envelope `data`); None at the top.
    pub record: Option<u64>,
    pub nest: Nest,
}

impl Unit {
    fn top(start: usize, end: usize, line: u64) -> Self {
        Unit {
            start,
            end,
            line,
            broken: None,
            record: None,
            nest: Nest::Top,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Broken {
    /// The input ended inside the value.
    Truncated,
    /// The value was still open where the next value starts (a line opening with `{` or `[`
    /// no further right than the value itself started).
    Unclosed,
    /// A line ended inside a string.
    NewlineInString,
    /// The value was longer than the record size limit before its end was found: the unit holds
    /// its first bytes only, and the rest was skipped without being held.
    TooLarge,
    /// An array was still open at the end of the input (an empty unit on the line the array
    /// opened); its elements before were read.
    ArrayNotClosed,
}

fn is_ws(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

/// Line layout when most of the first non-blank lines (up to 16) are each a whole JSON object
/// or array, so that a broken line at the top of an NDJSON file costs only itself; a
/// pretty-printed file has almost no such lines. `buf` is the whole input or its first part; a
/// last line without its line end is not judged, unless it is the only one.
pub(crate) fn detect_layout(buf: &[u8]) -> Layout {
    const LOOK: usize = 16;
    let (mut pos, mut seen, mut whole) = (0, 0, 0);
    while pos < buf.len() && seen < LOOK {
        let (end, next) = match memchr::memchr2(b'\n', b'\r', &buf[pos..]) {
            Some(i) => (pos + i, after_line_end(buf, pos + i)),
            None if seen > 0 => break,
            None => (buf.len(), buf.len()),
        };
        let line = trim(&buf[pos..end]);
        if !line.is_empty() {
            seen += 1;
            if matches!(line[0], b'{' | b'[') && is_complete_value(line) {
                whole += 1;
            }
        }
        pos = next;
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

/// How a scan of one value from its opening bracket ended.
enum Scanned {
    /// The value ends just before this offset.
    Complete(usize),
    /// A line end at this offset fell inside a string: the value is broken.
    NewlineInString(usize),
    /// The buffer ended inside the value.
    Open,
}

/// Scans one object or array starting at `start`, tracking strings and nesting. String bodies
/// are crossed with `memchr`, so long strings (SDP bodies) cost little.
fn scan_value(buf: &[u8], start: usize) -> Scanned {
    let mut depth = 0usize;
    let mut i = start;
    while i < buf.len() {
        match buf[i] {
            b'"' => {
                // To the closing quote; a raw line end first means the string never closed.
                let mut j = i + 1;
                loop {
                    match memchr::memchr3(b'"', b'\\', b'\n', &buf[j.min(buf.len())..]) {
                        None => return Scanned::Open,
                        Some(o) => {
                            let k = j + o;
                            match buf[k] {
                                b'"' => {
                                    i = k + 1;
                                    break;
                                }
                                b'\n' => return Scanned::NewlineInString(k),
                                _ => j = k + 2,
                            }
                        }
                    }
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Scanned::Complete(i + 1);
                }
            }
            _ => {}
        }
        i += 1;
    }
    Scanned::Open
}

/// Where the last whole line of `buf` ends (just past its line end), when more input may
/// follow: a `\r` as the last byte may be half of a `\r\n`, so it does not count.
pub(crate) fn last_line_end(buf: &[u8]) -> Option<usize> {
    let body = buf.strip_suffix(b"\r").unwrap_or(buf);
    memchr::memrchr2(b'\n', b'\r', body).map(|i| after_line_end(body, i))
}

/// The line ends in `s`: `\n`, `\r\n` and a lone `\r` each end one physical line.
pub(crate) fn count_lines(s: &[u8]) -> u64 {
    memchr::memchr2_iter(b'\n', b'\r', s)
        .filter(|&i| s[i] == b'\n' || s.get(i + 1) != Some(&b'\n'))
        .count() as u64
}

/// Where the next line starts after the line end at `i` (`\n`, `\r\n` or a lone `\r`).
fn after_line_end(buf: &[u8], i: usize) -> usize {
    if buf[i] == b'\r' && buf.get(i + 1) == Some(&b'\n') {
        i + 2
    } else {
        i + 1
    }
}

/// Whether the line starting at `p` opens the next value after a broken one that started at
/// column `col`: its first non-blank byte is `{` or `[` (or, inside an array, `]`) at a column no
/// further right than `col`. Pretty printers indent everything inside a value, so such a line
/// cannot belong to it. None when the buffer ends before the line's first non-blank byte.
fn resync_line(buf: &[u8], p: usize, col: usize, in_array: bool) -> Option<bool> {
    let mut i = p;
    while i < buf.len() && matches!(buf[i], b' ' | b'\t') {
        i += 1;
    }
    let c = *buf.get(i)?;
    Some(i - p <= col && (matches!(c, b'{' | b'[') || (in_array && c == b']')))
}

/// How a search for the next value after a broken one ended.
enum Resync {
    /// The next value starts here.
    At(usize),
    /// The buffer ended first (with `eof`, the broken value runs to the end).
    Out,
}

/// The start of the first line after `from` that opens the next value (see [`resync_line`]).
fn next_resync(buf: &[u8], from: usize, col: usize, in_array: bool) -> Resync {
    let mut pos = from;
    while let Some(o) = memchr::memchr2(b'\n', b'\r', &buf[pos.min(buf.len())..]) {
        let next = after_line_end(buf, pos + o);
        match resync_line(buf, next, col, in_array) {
            Some(true) => return Resync::At(next),
            Some(false) => pos = next,
            None => return Resync::Out,
        }
    }
    Resync::Out
}

/// Where a value being skipped stands, between windows.
#[derive(Debug, Clone, Copy)]
struct Skip {
    /// Nesting depth and string state while the value looks well formed; None once it is known
    /// to be broken (then only a line that opens the next value ends it).
    structure: Option<(usize, StringState)>,
    /// The column the skipped value started at (see [`resync_line`]).
    col: usize,
    in_array: bool,
    /// The scan stands at the start of a line.
    line_start: bool,
}

enum SkipEnd {
    /// The skipped value ends (or the next value starts) here.
    At(usize),
    /// The buffer ended first; bytes up to here are done with.
    Out(usize),
}

impl Skip {
    fn run(&mut self, buf: &[u8], mut i: usize, eof: bool) -> SkipEnd {
        loop {
            if self.line_start {
                match resync_line(buf, i, self.col, self.in_array) {
                    None if eof => return SkipEnd::Out(buf.len()),
                    None => return SkipEnd::Out(i),
                    Some(true) => return SkipEnd::At(i),
                    Some(false) => self.line_start = false,
                }
            }
            let Some(&c) = buf.get(i) else {
                return SkipEnd::Out(i);
            };
            if c == b'\n' || c == b'\r' {
                if c == b'\r' && i + 1 == buf.len() && !eof {
                    // Its `\n` may open the next window.
                    return SkipEnd::Out(i);
                }
                if self.structure.is_some_and(|(_, st)| st.in_str()) {
                    self.structure = None;
                }
                i = after_line_end(buf, i);
                self.line_start = true;
                continue;
            }
            if let Some((depth, st)) = &mut self.structure {
                if !st.feed(c) {
                    match c {
                        b'{' | b'[' => *depth += 1,
                        b'}' | b']' => {
                            *depth = depth.saturating_sub(1);
                            if *depth == 0 {
                                return SkipEnd::At(i + 1);
                            }
                        }
                        _ => {}
                    }
                }
            }
            i += 1;
        }
    }
}

/// What the stream scanner is inside of, between windows.
#[derive(Debug, Clone, Copy, Default)]
enum Within {
    #[default]
    Top,
    /// A top-level array, or (`data`) a crossbar envelope's `data` array: the next element's
    /// index and the line the array opened on.
    Array { next: u64, data: bool, opened: u64 },
    /// The members of a crossbar envelope after its `data` array, up to its closing brace.
    Tail { depth: usize, st: StringState },
}

/// What a scan of one window found.
#[derive(Debug, Default)]
pub(crate) struct WindowScan {
    pub units: Vec<Unit>,
    /// Bytes of the window done with: the rest (an unfinished value) is scanned again with the
    /// next window.
    pub consumed: usize,
    /// The line the first byte not consumed is on.
    pub line: u64,
}

/// Splits a stream of JSON values into units, a window at a time, in bounded memory: the
/// elements of a top-level array and of a crossbar envelope's `data` array (`{"data":[`,
/// as crossbar's chunked responses start, or after scalar members only, as its other responses
/// write it) are units of their own, so an array or a page of any size is read element by
/// element. A value longer than the record size limit is skipped without being held; a broken
/// value costs only itself (the next value starts on the first line that opens a value no
/// further right than the broken one did).
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamScan {
    within: Within,
    skip: Option<Skip>,
    /// The column of the window's first byte.
    col0: usize,
}

/// How far into a top-level object the scan looks for an envelope's `data` array.
const ENVELOPE_PEEK: usize = 64 << 10;

enum Peek {
    /// A crossbar envelope: its `data` array opens at this offset.
    Data(usize),
    NotEnvelope,
    NeedMore,
}

/// Whether the object opening at `pos` is a crossbar envelope whose `data` is an array: every
/// member before `data` a scalar, none of them `call_id` (a CDR is not an envelope) or
/// `account_id`.
fn peek_envelope(buf: &[u8], pos: usize) -> Peek {
    let end = buf.len().min(pos + ENVELOPE_PEEK);
    let b = &buf[..end];
    let need = if end < buf.len() {
        Peek::NotEnvelope
    } else {
        Peek::NeedMore
    };
    let ws = |mut i: usize| {
        while i < b.len() && is_ws(b[i]) {
            i += 1;
        }
        i
    };
    let string_end = |i: usize| -> Option<usize> {
        let mut j = i + 1;
        loop {
            let o = memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
            if b[j + o] == b'"' {
                return Some(j + o + 1);
            }
            j += o + 2;
        }
    };
    let mut i = pos + 1;
    loop {
        i = ws(i);
        match b.get(i) {
            None => return need,
            Some(b'"') => {}
            Some(_) => return Peek::NotEnvelope,
        }
        let Some(k_end) = string_end(i) else {
            return need;
        };
        let key = &b[i + 1..k_end - 1];
        i = ws(k_end);
        match b.get(i) {
            None => return need,
            Some(b':') => {}
            Some(_) => return Peek::NotEnvelope,
        }
        i = ws(i + 1);
        let Some(&c) = b.get(i) else {
            return need;
        };
        // A CDR is not an envelope; an envelope with its own `account_id` (not one crossbar
        // writes) is read whole, so that its listing rows get that account.
        if key == b"call_id" || key == b"account_id" {
            return Peek::NotEnvelope;
        }
        // A crossbar envelope's `data`, or a CouchDB body's rows (`_all_docs`), documents
        // (`_bulk_docs`) or changes (`_changes`): see [`super::couch`].
        if matches!(key, b"data" | b"rows" | b"docs" | b"results") {
            return if c == b'[' {
                Peek::Data(i)
            } else {
                Peek::NotEnvelope
            };
        }
        // A scalar member.
        i = match c {
            b'"' => match string_end(i) {
                Some(e) => e,
                None => return need,
            },
            b'{' | b'[' => return Peek::NotEnvelope,
            _ => {
                let mut e = i;
                while e < b.len() && !matches!(b[e], b',' | b'}') && !is_ws(b[e]) {
                    e += 1;
                }
                e
            }
        };
        i = ws(i);
        match b.get(i) {
            None => return need,
            Some(b',') => i += 1,
            Some(_) => return Peek::NotEnvelope,
        }
    }
}

/// The end of a scalar (or stray text) starting at `pos`: a string literal to its closing
/// quote; anything else up to a separator. At the top, stray text runs to the end of its line or
/// a value opening on it. None when the buffer ends first.
fn scalar_end(buf: &[u8], pos: usize, in_array: bool) -> Option<usize> {
    if in_array && buf[pos] == b'"' {
        let mut j = pos + 1;
        loop {
            let o = memchr::memchr3(b'"', b'\\', b'\n', buf.get(j..)?)?;
            match buf[j + o] {
                b'"' => return Some(j + o + 1),
                b'\n' => return Some(j + o),
                _ => j += o + 2,
            }
        }
    }
    let stop = |c: u8| {
        if in_array {
            matches!(c, b',' | b']' | b'}' | b'{' | b'[') || is_ws(c)
        } else {
            matches!(c, b'\n' | b'\r' | b'{' | b'[')
        }
    };
    let mut end = pos + 1;
    while end < buf.len() && !stop(buf[end]) {
        end += 1;
    }
    if end == buf.len() {
        return None;
    }
    while end > pos + 1 && is_ws(buf[end - 1]) {
        end -= 1;
    }
    Some(end)
}

impl StreamScan {
    /// Scans `buf` (the window, starting on line `line`); `eof` when no more input follows.
    pub(crate) fn scan(
        &mut self,
        buf: &[u8],
        line: u64,
        eof: bool,
        max_record: usize,
    ) -> WindowScan {
        let mut w = Walk {
            buf,
            pos: 0,
            line,
            line_start: -(self.col0 as isize),
        };
        let mut units = Vec::new();
        // A `\r` ending the window may be half of a `\r\n`: leave it to the next one.
        let len = if !eof && buf.last() == Some(&b'\r') {
            buf.len() - 1
        } else {
            buf.len()
        };
        let b = &buf[..len];
        'scan: loop {
            if let Some(mut skip) = self.skip.take() {
                match skip.run(b, w.pos, eof) {
                    SkipEnd::At(p) => w.advance(p),
                    SkipEnd::Out(p) => {
                        w.advance(p);
                        self.skip = Some(skip);
                        break 'scan;
                    }
                }
            }
            if let Within::Tail { depth, st } = &mut self.within {
                let mut i = w.pos;
                let mut closed = false;
                while i < len {
                    let c = b[i];
                    i += 1;
                    if !st.feed(c) {
                        match c {
                            b'{' | b'[' => *depth += 1,
                            b'}' | b']' => {
                                *depth = depth.saturating_sub(1);
                                if *depth == 0 {
                                    closed = true;
                                    break;
                                }
                            }
                            _ => {}
                        }
                    }
                }
                w.advance(i);
                if !closed {
                    break 'scan;
                }
                self.within = Within::Top;
            }
            let in_array = matches!(self.within, Within::Array { .. });
            // White space; commas separate array elements, and values saved one after another
            // with commas between them.
            let mut i = w.pos;
            while i < len && (is_ws(b[i]) || b[i] == b',') {
                i += 1;
            }
            w.advance(i);
            if w.pos >= len {
                break 'scan;
            }
            let c = b[w.pos];
            let col = w.col();
            let (record, nest) = match &mut self.within {
                Within::Top => match c {
                    b'[' => {
                        self.within = Within::Array {
                            next: 0,
                            data: false,
                            opened: w.line,
                        };
                        w.advance(w.pos + 1);
                        continue;
                    }
                    b'{' => match peek_envelope(b, w.pos) {
                        Peek::Data(open) => {
                            w.advance(open);
                            self.within = Within::Array {
                                next: 0,
                                data: true,
                                opened: w.line,
                            };
                            w.advance(open + 1);
                            continue;
                        }
                        Peek::NeedMore if !eof && len - w.pos <= max_record => break 'scan,
                        _ => (None, Nest::Top),
                    },
                    _ => (None, Nest::Top),
                },
                Within::Array { next, data, .. } => {
                    if c == b']' {
                        self.within = if *data {
                            Within::Tail {
                                depth: 1,
                                st: StringState::default(),
                            }
                        } else {
                            Within::Top
                        };
                        w.advance(w.pos + 1);
                        continue;
                    }
                    let r = *next;
                    (Some(r), if *data { Nest::Data } else { Nest::Array })
                }
                // Read above: not met here.
                Within::Tail { .. } => continue,
            };
            let start = w.pos;
            let unit = |end: usize, broken: Option<Broken>, line: u64| Unit {
                start,
                end,
                line,
                broken,
                record,
                nest,
            };
            // A broken value's next value starts at a line opening one no further right:
            // column 0 at the top, the element's own column in an array.
            let rcol = if in_array { col } else { 0 };
            let found = if matches!(c, b'{' | b'[') {
                match scan_value(b, start) {
                    Scanned::Complete(end) if end - start > max_record => {
                        Some((end, Some(Broken::TooLarge)))
                    }
                    Scanned::Complete(end) => Some((end, None)),
                    Scanned::NewlineInString(nl) => match next_resync(b, nl, rcol, in_array) {
                        Resync::At(p) => Some((p, Some(Broken::NewlineInString))),
                        Resync::Out if eof => Some((len, Some(Broken::NewlineInString))),
                        Resync::Out if len - start > max_record => {
                            // Broken and long: keep its head, skip the rest line by line.
                            units.push(unit(
                                start + max_record.min(len - start),
                                Some(Broken::TooLarge),
                                w.line,
                            ));
                            self.skip = Some(Skip {
                                structure: None,
                                col: rcol,
                                in_array,
                                line_start: false,
                            });
                            w.advance(nl);
                            self.bump();
                            continue;
                        }
                        Resync::Out => None,
                    },
                    Scanned::Open => {
                        let first_nl =
                            memchr::memchr2(b'\n', b'\r', &b[start..]).map(|o| start + o);
                        let resync = first_nl.map(|nl| next_resync(b, nl, rcol, in_array));
                        match resync {
                            Some(Resync::At(p)) if eof || len - start > max_record => {
                                Some((p, Some(Broken::Unclosed)))
                            }
                            _ if eof => Some((len, Some(Broken::Truncated))),
                            _ if len - start > max_record => {
                                // Well formed so far but too long: keep its head, skip the rest
                                // by its structure.
                                units.push(unit(
                                    start + max_record,
                                    Some(Broken::TooLarge),
                                    w.line,
                                ));
                                self.skip = Some(Skip {
                                    structure: Some((0, StringState::default())),
                                    col: rcol,
                                    in_array,
                                    line_start: false,
                                });
                                self.bump();
                                continue;
                            }
                            _ => None,
                        }
                    }
                }
            } else {
                match scalar_end(b, start, in_array) {
                    Some(end) if end - start > max_record => Some((end, Some(Broken::TooLarge))),
                    Some(end) => Some((end, None)),
                    None if eof && len - start > max_record => Some((len, Some(Broken::TooLarge))),
                    None if eof => Some((len, None)),
                    None if len - start > max_record => {
                        // Stray text that goes on: keep its head, skip to a line that opens
                        // the next value.
                        units.push(unit(start + max_record, Some(Broken::TooLarge), w.line));
                        self.skip = Some(Skip {
                            structure: None,
                            col: rcol,
                            in_array,
                            line_start: false,
                        });
                        self.bump();
                        continue;
                    }
                    None => None,
                }
            };
            let Some((end, broken)) = found else {
                // The value goes on in the next window.
                break 'scan;
            };
            units.push(unit(end, broken, w.line));
            w.advance(end);
            self.bump();
        }
        if eof {
            if let Within::Array { opened, .. } = self.within {
                units.push(Unit {
                    start: len,
                    end: len,
                    line: opened,
                    broken: Some(Broken::ArrayNotClosed),
                    record: None,
                    nest: Nest::Top,
                });
            }
            self.within = Within::Top;
            self.skip = None;
        }
        self.col0 = w.col();
        WindowScan {
            units,
            consumed: w.pos,
            line: w.line,
        }
    }

    /// One more element of the open array.
    fn bump(&mut self) {
        if let Within::Array { next, .. } = &mut self.within {
            *next += 1;
        }
    }
}

/// A position in a window, with its line and where that line starts (negative: before the
/// window).
struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
    line: u64,
    line_start: isize,
}

impl Walk<'_> {
    fn advance(&mut self, to: usize) {
        let part = &self.buf[self.pos..to];
        let n = count_lines(part);
        if n > 0 {
            self.line += n;
            if let Some(o) = memchr::memrchr2(b'\n', b'\r', part) {
                self.line_start = (self.pos + o + 1) as isize;
            }
        }
        self.pos = to;
    }

    fn col(&self) -> usize {
        (self.pos as isize - self.line_start).max(0) as usize
    }
}

/// The units of a whole stream-layout buffer, in order.
pub(crate) fn stream_units(buf: &[u8], max_record: usize) -> Vec<Unit> {
    StreamScan::default().scan(buf, 1, true, max_record).units
}

/// Splits a line-layout buffer into chunks of about `target` bytes, each ending on a line
/// boundary, with the line number each starts on.
pub(crate) fn line_chunks(buf: &[u8], target: usize) -> Vec<(usize, usize, u64)> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut line = 1u64;
    while start < buf.len() {
        let want = (start + target.max(1)).min(buf.len());
        let end = if want == buf.len() {
            buf.len()
        } else {
            match memchr::memchr2(b'\n', b'\r', &buf[want..]) {
                Some(i) => after_line_end(buf, want + i),
                None => buf.len(),
            }
        };
        chunks.push((start, end, line));
        line += count_lines(&buf[start..end]);
        start = end;
    }
    chunks
}

/// The non-blank lines of a chunk as units, with absolute offsets and line numbers. A line
/// ends at `\n`, `\r\n` or a lone `\r` (see [`count_lines`]).
pub(crate) fn line_units(buf: &[u8], start: usize, end: usize, first_line: u64) -> Vec<Unit> {
    let mut units = Vec::new();
    let mut pos = start;
    let mut line = first_line;
    while pos < end {
        let (eol, next) = match memchr::memchr2(b'\n', b'\r', &buf[pos..end]) {
            Some(i) => (pos + i, after_line_end(buf, pos + i).min(end)),
            None => (end, end),
        };
        let mut s = pos;
        let mut e = eol;
        while s < e && is_ws(buf[s]) {
            s += 1;
        }
        while e > s && is_ws(buf[e - 1]) {
            e -= 1;
        }
        if s < e {
            units.push(Unit::top(s, e, line));
        }
        line += 1;
        pos = next;
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

    const MAX: usize = 1 << 20;

    /// (text, line, record) of each unit.
    fn recs<'a>(buf: &'a [u8], units: &[Unit]) -> Vec<(&'a str, u64, Option<u64>)> {
        units
            .iter()
            .map(|u| {
                let t = std::str::from_utf8(&buf[u.start..u.end]).unwrap_or("?");
                (t, u.line, u.record)
            })
            .collect()
    }

    /// The units of `buf` scanned in windows of `window` bytes, as a file is read: (absolute
    /// start, absolute end, line, record, nest, broken).
    #[allow(clippy::type_complexity)]
    fn in_windows(
        buf: &[u8],
        window: usize,
        max: usize,
    ) -> Vec<(usize, usize, u64, Option<u64>, Nest, Option<Broken>)> {
        let mut scan = StreamScan::default();
        let (mut base, mut line, mut win, mut rest) = (0, 1, Vec::new(), buf);
        let mut out = Vec::new();
        loop {
            let take = (window - win.len()).min(rest.len());
            win.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            let eof = rest.is_empty();
            let found = scan.scan(&win, line, eof, max);
            out.extend(found.units.iter().map(|u| {
                let end = if u.broken == Some(Broken::TooLarge) {
                    u.start
                } else {
                    u.end
                };
                (
                    base + u.start,
                    base + end,
                    u.line,
                    u.record,
                    u.nest,
                    u.broken,
                )
            }));
            line = found.line;
            base += found.consumed;
            win.drain(..found.consumed);
            if eof {
                return out;
            }
        }
    }

    #[test]
    fn stream_units_find_each_value_and_array_element_and_its_line() {
        let buf = b"{\n \"a\": \"}{\"\n}\n\n[1,\n2]  7\n{\"b\":{\"c\":[]}}";
        let u = stream_units(buf, MAX);
        assert_eq!(
            recs(buf, &u),
            vec![
                ("{\n \"a\": \"}{\"\n}", 1, None),
                ("1", 5, Some(0)),
                ("2", 6, Some(1)),
                ("7", 6, None),
                ("{\"b\":{\"c\":[]}}", 7, None)
            ]
        );
        assert!(u.iter().all(|x| x.broken.is_none()));
    }

    /// The shape a 1.48 GB export had (issue 16): `[`, then one `{...},` element a line, then
    /// `]`. Every element is a unit of its own, on its own physical line, whatever the line ends.
    #[test]
    fn an_array_one_element_a_line_is_split_into_its_elements() {
        for eol in ["\n", "\r\n", "\r"] {
            let text = [
                "[",
                r#"{"call_id":"a","x":"},{"},"#,
                r#"{"call_id":"b"},"#,
                r#"{"call_id":"c"}"#,
                "]",
                "",
            ]
            .join(eol);
            let buf = text.as_bytes();
            let u = stream_units(buf, MAX);
            assert_eq!(
                recs(buf, &u),
                vec![
                    (r#"{"call_id":"a","x":"},{"}"#, 2, Some(0)),
                    (r#"{"call_id":"b"}"#, 3, Some(1)),
                    (r#"{"call_id":"c"}"#, 4, Some(2)),
                ],
                "line ends {eol:?}"
            );
            assert!(u
                .iter()
                .all(|x| x.broken.is_none() && x.nest == Nest::Array));
            // Read in windows of every size, the units are the same.
            let whole = in_windows(buf, buf.len(), 64);
            for w in [2, 3, 7, 16, 40] {
                assert_eq!(in_windows(buf, w.max(65), 64), whole);
                assert_eq!(in_windows(buf, w, 1), in_windows(buf, w + 1, 1), "{w}");
            }
        }
    }

    #[test]
    fn crossbar_envelopes_stream_their_data_array() {
        // As crossbar's chunked writer starts it, and as its other responses order the members.
        for buf in [
            &br#"{"data":[{"call_id":"a"},{"call_id":"b"}], "page_size":"2","status":"success"}"#[..],
            br#"{"status":"success","request_id":"r","revision":"v","data":[{"call_id":"a"},
{"call_id":"b"}],"page_size":2}"#,
        ] {
            let u = stream_units(buf, MAX);
            let got: Vec<_> = u.iter().map(|x| (x.record, x.nest, x.broken)).collect();
            assert_eq!(
                got,
                vec![(Some(0), Nest::Data, None), (Some(1), Nest::Data, None)]
            );
        }
        // Not envelopes: a CDR, and data that is not an array (read whole).
        for buf in [
            &br#"{"call_id":"x","data":[1]}"#[..],
            br#"{"data":{"call_id":"a"},"status":"success"}"#,
            br#"{"meta":{"a":1},"data":[1]}"#,
        ] {
            let u = stream_units(buf, MAX);
            assert_eq!(
                recs(buf, &u),
                vec![(std::str::from_utf8(buf).unwrap_or(""), 1, None)]
            );
        }
    }

    #[test]
    fn an_element_over_the_limit_is_skipped_and_the_next_ones_read() {
        let big = format!(r#"{{"call_id":"big","pad":"{}"}}"#, "x".repeat(300));
        let text = format!("[\n{{\"call_id\":\"a\"}},\n{big},\n{{\"call_id\":\"c\"}}\n]\n");
        let buf = text.as_bytes();
        let whole = in_windows(buf, buf.len(), 100);
        let kinds: Vec<_> = whole.iter().map(|u| (u.2, u.3, u.5)).collect();
        assert_eq!(
            kinds,
            vec![
                (2, Some(0), None),
                (3, Some(1), Some(Broken::TooLarge)),
                (4, Some(2), None)
            ]
        );
        assert_eq!(in_windows(buf, 101, 100), whole);
        assert_eq!(in_windows(buf, 150, 100), whole);
    }

    #[test]
    fn an_unclosed_value_and_stray_text_cost_only_themselves() {
        let buf = b"{\"a\":1\n{\"a\":1}\nnot json\n{\"b\":2}\n";
        let units = stream_units(buf, MAX);
        let t = recs(buf, &units);
        assert_eq!(
            t,
            vec![
                ("{\"a\":1\n", 1, None),
                ("{\"a\":1}", 2, None),
                ("not json", 3, None),
                ("{\"b\":2}", 4, None)
            ]
        );
        assert_eq!(units[0].broken, Some(Broken::Unclosed));
        assert_eq!(units[2].broken, None);
        // An array left open: its elements are read, and the end says so.
        let u = stream_units(b"[{\"a\":1},\n{\"a\":2}", MAX);
        assert_eq!(u.len(), 3);
        assert_eq!((u[2].line, u[2].broken), (1, Some(Broken::ArrayNotClosed)));
    }

    #[test]
    fn a_broken_string_costs_only_its_value() {
        let buf = b"{\"a\": \"oops\n{\"a\": 2}\n";
        let u = stream_units(buf, MAX);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].broken, Some(Broken::NewlineInString));
        assert_eq!(recs(buf, &u)[1], ("{\"a\": 2}", 2, None));
        // The rest of a broken pretty value goes with it, up to the next value in column 0.
        let buf = b"{\n  \"a\": \"oops\n  \"b\": {\n  }\n}\n[1]\n";
        let u = stream_units(buf, MAX);
        assert_eq!(u.len(), 2);
        assert_eq!(recs(buf, &u)[1], ("1", 6, Some(0)));
        // In an array one element a line, a broken element costs only itself.
        let buf = b"[\n{\"a\": \"oops},\n{\"a\": 2}\n]";
        let u = stream_units(buf, MAX);
        assert_eq!(u.len(), 2);
        assert_eq!(u[0].broken, Some(Broken::NewlineInString));
        assert_eq!(recs(buf, &u)[1], ("{\"a\": 2}", 3, Some(1)));
        let t = stream_units(b"{\"a\": [1, 2", MAX);
        assert_eq!(t[0].broken, Some(Broken::Truncated));
    }

    #[test]
    fn physical_lines_end_at_lf_crlf_or_a_lone_cr() {
        assert_eq!(count_lines(b"a\nb\r\nc\rd"), 3);
        assert_eq!(count_lines(b"\r\n\r\n"), 2);
        assert_eq!(count_lines(b"\r\r\n"), 2);
        let buf = b"{\"a\":1}\r{\"a\":2}\r\n\r{\"a\":3}";
        let u = line_units(buf, 0, buf.len(), 1);
        let lines: Vec<_> = u.iter().map(|x| x.line).collect();
        assert_eq!(lines, vec![1, 2, 4]);
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
