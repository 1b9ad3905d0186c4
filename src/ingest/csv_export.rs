//! KAZOO's crossbar CSV export (`cb_cdrs.erl`), read as KAZOO writes it, as a stream.
//!
//! `cb_cdrs:normalize_cdr/3` joins each row's cells with commas and ends it with CRLF; it never
//! quotes (4.2.0-4.2.44 wrapped `rfc_1036` and `iso_8601` in quotes of their own). So the
//! `rfc_1036` cell (`Wed, 04 Nov 2026 15:00:00 GMT`) always adds a comma, and names may add
//! more, and bare `"` too. A row is split at every comma and the pieces are put back into the
//! header's columns by what each column can hold ([`Col::accepts`]): a cell that cannot hold a
//! comma takes one piece, `rfc_1036` two, a free-text column (names, `rate_name`,
//! `recording_url`, `media_recordings`) one or more. When the pieces fit in more than one way,
//! the placement whose cells look most like their columns wins ([`Col::typical`]: numbers that
//! are digits, ids that are 32 hex digits, URIs with `@`, URLs with `://`),
//! then the one where `callee_id_number` is the `dialed_number` and `caller_id_number` the
//! `calling_from`; a row still tied, or that fits no way, is rejected with its line and why.
//!
//! A properly quoted file (a spreadsheet's re-save) reads too: a row whose quotes are all RFC
//! 4180 quoting is also read by the `csv` crate and its fields aligned the same way. When both
//! readings fit and differ (a cell wholly inside quotes), a bare `rfc_1036` cell (which only
//! KAZOO's unquoted writer leaves bare) or a quoted `iso_8601` (KAZOO 4.2's own quotes) picks
//! the unquoted reading, else the RFC 4180 one.
//!
//! Lines are physical lines (CRLF, LF or CR ends each one), numbered from 1 with the header;
//! a header line met again (4.2's chunked exports repeat it) is skipped, and another header
//! replaces it. The file is read a line at a time: memory holds one line and the legs of
//! one frame, whatever the file's size.
//!
//! The account is taken from the path (a folder or file name holding `account_id=<ID>` or a
//! 32-hex-digit KAZOO account id): the export is one account's and has no account column.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use polars::prelude::DataFrame;

use super::builder::LegBuilder;
use super::crossbar::{map_row, unquote42, Cell, Col, RowRules, Span};
use super::record::RejectReason;
use super::{IngestError, Parsed, Reject, RAW_LIMIT};
use crate::time::ReportTz;

/// The account a one-account export belongs to, from its path.
pub(crate) fn account_from_path(path: &Path) -> Option<String> {
    let parts: Vec<String> = path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    for part in parts.iter().rev() {
        if let Some(v) = part.strip_prefix("account_id=") {
            return Some(v.to_owned());
        }
    }
    for part in parts.iter().rev() {
        let mut run = 0;
        for (i, c) in part.char_indices() {
            if c.is_ascii_hexdigit() && !c.is_ascii_uppercase() {
                run += 1;
                let next_hex = part[i + 1..]
                    .chars()
                    .next()
                    .is_some_and(|n| n.is_ascii_hexdigit() && !n.is_ascii_uppercase());
                if run == 32 && !next_hex {
                    return Some(part[i + 1 - 32..=i].to_owned());
                }
            } else {
                run = 0;
            }
        }
    }
    None
}

/// What reading one export gave, besides the legs handed out.
pub(crate) struct ExportRead {
    pub rejects: Vec<Reject>,
    pub records: u64,
    pub legs: u64,
    /// The last line number met.
    pub lines: u64,
    /// Decoded bytes read.
    pub bytes: u64,
    /// Where (decoded bytes) and why the input broke off, if it did.
    pub tail_err: Option<(u64, std::io::Error)>,
}

/// One export being read.
pub(crate) struct ExportReader<'o> {
    pub source: &'o str,
    pub account: Option<&'o str>,
    pub tz: &'o ReportTz,
    /// A line longer than this is rejected (`record_too_large`) without being held.
    pub max_record: usize,
    /// Legs per frame handed to `on_frame`.
    pub frame_legs: usize,
}

/// The columns in force.
struct Header {
    cols: Vec<Col>,
    names: Vec<String>,
    /// The 4.2 column list (no `iso_8601_combined`, no `interaction_id`): its rows may be
    /// KAZOO 4.2.0-4.2.44's, whose `iso_8601` was quoted and whose time columns held the END
    /// up to 4.2.40.
    v42: bool,
    /// Rows of this header were seen to carry 4.2's quoted `iso_8601` (Some(true)) or not.
    quoted_dates: Option<bool>,
}

impl Header {
    fn new(names: Vec<String>) -> Self {
        let cols: Vec<Col> = names.iter().map(|n| Col::from_header(n)).collect();
        let v42 = !cols.contains(&Col::Iso8601Combined)
            && !cols.contains(&Col::InteractionId)
            && cols.contains(&Col::Iso8601);
        Header {
            cols,
            names,
            v42,
            quoted_dates: None,
        }
    }
}

/// Splits a line into its header names, RFC 4180 quoting allowed.
fn header_names(text: &str) -> Vec<String> {
    let fields: Vec<String> = if text.contains('"') {
        parse_rfc(text).unwrap_or_else(|| text.split(',').map(str::to_owned).collect())
    } else {
        text.split(',').map(str::to_owned).collect()
    };
    fields
        .into_iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect()
}

/// The fields of one RFC 4180 record, read by the `csv` crate.
fn parse_rfc(text: &str) -> Option<Vec<String>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rec = csv::StringRecord::new();
    match rdr.read_record(&mut rec) {
        Ok(true) => Some(rec.iter().map(str::to_owned).collect()),
        _ => None,
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Quoting {
    /// Every `"` opens or closes an RFC 4180 quoted field, or escapes one inside it.
    Strict,
    /// A quoted field is still open at the end of the line.
    Open,
    /// Some `"` is not RFC 4180 quoting (a bare quote inside an unquoted cell).
    Loose,
}

fn quoting(text: &str) -> Quoting {
    let b = text.as_bytes();
    let mut i = 0;
    loop {
        // At the start of a field.
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match memchr::memchr(b'"', &b[i..]) {
                    None => return Quoting::Open,
                    Some(k) => {
                        i += k + 1;
                        if b.get(i) == Some(&b'"') {
                            i += 1;
                            continue;
                        }
                        break;
                    }
                }
            }
            match b.get(i) {
                None => return Quoting::Strict,
                Some(b',') => i += 1,
                Some(_) => return Quoting::Loose,
            }
        } else {
            let end = memchr::memchr(b',', &b[i..]).map_or(b.len(), |k| i + k);
            if b[i..end].contains(&b'"') {
                return Quoting::Loose;
            }
            if end == b.len() {
                return Quoting::Strict;
            }
            i = end + 1;
        }
    }
}

/// Why a row's fields could not be put in the header's columns.
#[derive(Debug, Clone)]
enum AlignError {
    TooFew {
        fields: usize,
    },
    /// No placement fits; an example of a column that cannot hold its cell.
    NoFit {
        fields: usize,
        column: String,
        value: String,
    },
    /// Several placements fit equally well; the columns they disagree on.
    Ambiguous {
        fields: usize,
        columns: Vec<String>,
    },
}

impl AlignError {
    fn reason(&self, header: &Header) -> RejectReason {
        let n = header.cols.len();
        let msg = match self {
            AlignError::TooFew { fields } => {
                format!("the row has {fields} fields, fewer than the header's {n} columns")
            }
            AlignError::NoFit {
                fields,
                column,
                value,
            } if *fields == n => {
                let what = Col::from_header(column).expects();
                return RejectReason::new(
                    "bad_billing_field",
                    format!("column '{column}': {value:?} is not {what}"),
                );
            }
            AlignError::NoFit {
                fields,
                column,
                value,
            } => format!(
                "the row's {fields} comma-separated fields do not fit the header's {n} columns: wherever its extra commas are put (only the free-text columns can hold one), some column gets a value KAZOO never writes there (column '{column}': {value:?})"
            ),
            AlignError::Ambiguous { fields, columns } => format!(
                "ambiguous row: its {fields} comma-separated fields fit the header's {n} columns in more than one way, equally well (the commas could belong to any of {}); rejected rather than guessed",
                columns.join(", ")
            ),
        };
        RejectReason::new("unaligned_csv_row", msg)
    }
}

/// Cells as byte ranges of the row's text.
type Ranges = Vec<(usize, usize)>;

/// Pieces of `base` (ranges, in order, separated by single commas) put into `cols`.
fn align(base: &str, pieces: &[(usize, usize)], cols: &[Col]) -> Result<Ranges, AlignError> {
    let (n, m) = (cols.len(), pieces.len());
    let cell = |j: usize, k: usize| &base[pieces[j].0..pieces[j + k - 1].1];
    if m < n {
        return Err(AlignError::TooFew { fields: m });
    }
    let extra = m - n;
    if extra == 0 {
        for (i, c) in cols.iter().enumerate() {
            if !c.accepts(cell(i, 1)) {
                return Err(AlignError::NoFit {
                    fields: m,
                    column: c.name().to_owned(),
                    value: cell(i, 1).to_owned(),
                });
            }
        }
        return Ok(pieces.to_vec());
    }
    let spans = |c: Col| -> std::ops::RangeInclusive<usize> {
        match c.span() {
            Span::One => 1..=1,
            Span::Rfc => 1..=2,
            Span::Free => 1..=extra + 1,
        }
    };
    // best[i][j]: the best score of cols[i..] taking pieces[j..] (None: impossible).
    let w = m + 1;
    let mut best: Vec<Option<u32>> = vec![None; (n + 1) * w];
    best[n * w + m] = Some(0);
    for i in (0..n).rev() {
        let c = cols[i];
        // cols[i..] need at least n - i pieces, and leave at most `extra` spare.
        for j in i..=(i + extra).min(m) {
            let mut b: Option<u32> = None;
            for k in spans(c) {
                if j + k > m {
                    break;
                }
                let Some(rest) = best[(i + 1) * w + j + k] else {
                    continue;
                };
                let t = cell(j, k);
                if c.span() == Span::Rfc && k == 1 && !t.is_empty() {
                    continue;
                }
                if !c.accepts(t) {
                    continue;
                }
                let s = rest + u32::from(c.typical(t));
                b = Some(b.map_or(s, |x| x.max(s)));
            }
            best[i * w + j] = b;
        }
    }
    if best[0].is_none() {
        // Say where it breaks: the first column that no placement of the pieces before it
        // lets hold a value.
        let mut reach = vec![false; (n + 1) * w];
        reach[0] = true;
        let mut stuck = (n, m);
        for i in 0..n {
            let c = cols[i];
            let mut any = false;
            for j in 0..m {
                if !reach[i * w + j] {
                    continue;
                }
                any = true;
                for k in spans(c) {
                    if j + k > m {
                        break;
                    }
                    let t = cell(j, k);
                    if (c.span() == Span::Rfc && k == 1 && !t.is_empty()) || !c.accepts(t) {
                        continue;
                    }
                    reach[(i + 1) * w + j + k] = true;
                }
            }
            if !any {
                break;
            }
            if !reach[(i + 1) * w..(i + 2) * w].iter().any(|r| *r) {
                let j = (0..m).find(|j| reach[i * w + j]).unwrap_or(0);
                stuck = (i, j);
                break;
            }
        }
        let (column, value) = match stuck {
            (i, j) if i < n => (cols[i].name(), base[pieces[j].0..pieces[j].1].to_owned()),
            _ => ("(after the last column)", String::new()),
        };
        return Err(AlignError::NoFit {
            fields: m,
            column: column.to_owned(),
            value,
        });
    }
    // Every placement with the best score (a few at most), then the cross-column tie-break.
    let mut found: Vec<Ranges> = Vec::new();
    let mut path: Ranges = Vec::with_capacity(n);
    enumerate(
        base, pieces, cols, &best, w, extra, 0, 0, &mut path, &mut found,
    );
    if found.len() > 1 {
        let score = |p: &Ranges| -> u32 {
            let get = |c: Col| {
                cols.iter()
                    .position(|x| *x == c)
                    .map(|i| &base[p[i].0..p[i].1])
            };
            let same = |a: Col, b: Col| match (get(a), get(b)) {
                (Some(x), Some(y)) => u32::from(!x.is_empty() && x == y),
                _ => 0,
            };
            same(Col::CalleeIdNumber, Col::DialedNumber)
                + same(Col::CallerIdNumber, Col::CallingFrom)
        };
        let top = found.iter().map(score).max().unwrap_or(0);
        found.retain(|p| score(p) == top);
    }
    match found.len() {
        1 => Ok(found.pop().unwrap_or_default()),
        _ => {
            let mut columns = Vec::new();
            for (i, c) in cols.iter().enumerate() {
                if found.iter().any(|p| p[i] != found[0][i]) {
                    columns.push(c.name().to_owned());
                }
            }
            Err(AlignError::Ambiguous { fields: m, columns })
        }
    }
}

/// Collects (up to 8) placements of pieces[j..] into cols[i..] scoring `best[i][j]`.
#[allow(clippy::too_many_arguments)]
fn enumerate(
    base: &str,
    pieces: &[(usize, usize)],
    cols: &[Col],
    best: &[Option<u32>],
    w: usize,
    extra: usize,
    i: usize,
    j: usize,
    path: &mut Ranges,
    found: &mut Vec<Ranges>,
) {
    if found.len() >= 8 {
        return;
    }
    if i == cols.len() {
        if j == pieces.len() {
            found.push(path.clone());
        }
        return;
    }
    let Some(want) = best[i * w + j] else { return };
    let c = cols[i];
    let max_k = match c.span() {
        Span::One => 1,
        Span::Rfc => 2,
        Span::Free => extra + 1,
    };
    for k in 1..=max_k {
        if j + k > pieces.len() {
            break;
        }
        let Some(rest) = best[(i + 1) * w + j + k] else {
            continue;
        };
        let t = &base[pieces[j].0..pieces[j + k - 1].1];
        if (c.span() == Span::Rfc && k == 1 && !t.is_empty()) || !c.accepts(t) {
            continue;
        }
        if rest + u32::from(c.typical(t)) != want {
            continue;
        }
        path.push((pieces[j].0, pieces[j + k - 1].1));
        enumerate(
            base,
            pieces,
            cols,
            best,
            w,
            extra,
            i + 1,
            j + k,
            path,
            found,
        );
        path.pop();
    }
}

/// The comma-separated pieces of `s`, as ranges.
fn split_commas(s: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(48);
    let mut start = 0;
    for i in memchr::memchr_iter(b',', s.as_bytes()) {
        out.push((start, i));
        start = i + 1;
    }
    out.push((start, s.len()));
    out
}

/// A row read: its cells (one per header column) and whether it carries 4.2's quoted dates.
struct Row<'t> {
    cells: Vec<Cow<'t, str>>,
    quoted_dates: Option<bool>,
}

fn cells_of<'t>(base: &'t str, ranges: &Ranges) -> Vec<Cow<'t, str>> {
    ranges
        .iter()
        .map(|&(s, e)| Cow::Borrowed(&base[s..e]))
        .collect()
}

/// Reads one row (one line, or lines joined inside a quoted field) as the header's cells.
fn read_row<'t>(text: &'t str, header: &Header) -> Result<Row<'t>, AlignError> {
    let cols = &header.cols;
    let raw = align(text, &split_commas(text), cols);
    if !text.contains('"') {
        return raw.map(|r| Row {
            cells: cells_of(text, &r),
            quoted_dates: Some(false),
        });
    }
    // 4.2's own quotes: a quoted iso_8601 beside a bare call_id (a spreadsheet quoting every
    // cell would quote the call_id too).
    let col_text = |r: &Ranges, c: Col| {
        cols.iter()
            .position(|x| *x == c)
            .map(|i| &text[r[i].0..r[i].1])
    };
    let raw_quoted_dates = raw.as_ref().ok().map(|r| {
        col_text(r, Col::Iso8601).is_some_and(|t| t.len() > 2 && t.starts_with('"'))
            && col_text(r, Col::CallId).is_some_and(|t| !t.starts_with('"'))
    });
    let rfc = if quoting(text) == Quoting::Strict {
        parse_rfc(text).map(|fields| {
            let joined = fields.join(",");
            let mut pieces = Vec::with_capacity(fields.len());
            let mut at = 0;
            for f in &fields {
                pieces.push((at, at + f.len()));
                at += f.len() + 1;
            }
            let r = align(&joined, &pieces, cols);
            (joined, r)
        })
    } else {
        None
    };
    let quoted = match rfc {
        Some((joined, Ok(r))) => Some((joined, r)),
        _ => None,
    };
    match (raw, quoted) {
        (Ok(r), None) => Ok(Row {
            cells: cells_of(text, &r),
            quoted_dates: raw_quoted_dates,
        }),
        (Err(e), None) => Err(e),
        (Err(_), Some((joined, q))) => Ok(Row {
            cells: q
                .iter()
                .map(|&(s, e)| Cow::Owned(joined[s..e].to_owned()))
                .collect(),
            quoted_dates: None,
        }),
        (Ok(r), Some((joined, q))) => {
            let raw_cells = cells_of(text, &r);
            let same = raw_cells.iter().zip(&q).zip(cols).all(|((a, &(s, e)), c)| {
                let a = match c {
                    Col::Rfc1036 | Col::Iso8601 => unquote42(a),
                    _ => a,
                };
                a == &joined[s..e]
            });
            let bare_rfc =
                col_text(&r, Col::Rfc1036).is_some_and(|t| !t.is_empty() && !t.starts_with('"'));
            if same || bare_rfc || raw_quoted_dates == Some(true) {
                Ok(Row {
                    cells: raw_cells,
                    quoted_dates: raw_quoted_dates,
                })
            } else {
                Ok(Row {
                    cells: q
                        .iter()
                        .map(|&(s, e)| Cow::Owned(joined[s..e].to_owned()))
                        .collect(),
                    quoted_dates: None,
                })
            }
        }
    }
}

/// [`read_row`] of `line` against KAZOO 5.0's header, without and with the reseller's columns,
/// with the invariants [`super::fuzzing::csv_align`] checks.
pub(super) fn fuzz_align(line: &str) {
    for reseller in [false, true] {
        let names: Vec<String> = super::crossbar::HEADER_50
            .iter()
            .chain(super::crossbar::HEADER_RESELLER.iter().filter(|_| reseller))
            .map(|n| (*n).to_owned())
            .collect();
        let header = Header::new(names);
        if let Ok(row) = read_row(line, &header) {
            assert_eq!(row.cells.len(), header.cols.len(), "a cell per column");
            if !line.contains('"') {
                assert_eq!(row.cells.join(","), line, "the cells are the row");
            }
        }
    }
}

/// Physical lines of a reader: ended by LF, CRLF or a lone CR.
struct Lines<'r> {
    r: &'r mut dyn BufRead,
    line: u64,
    bytes: u64,
}

enum Got {
    /// A line (in the buffer): its number and the decoded byte offset of its first byte.
    Line(u64, u64),
    /// A line longer than the limit: its number, its length, its start (in the buffer).
    TooLong(u64, usize),
    Eof,
}

impl Lines<'_> {
    fn next(&mut self, buf: &mut Vec<u8>, limit: usize) -> std::io::Result<Got> {
        buf.clear();
        let at = self.bytes;
        let mut len = 0usize;
        let mut any = false;
        loop {
            let avail = self.r.fill_buf()?;
            if avail.is_empty() {
                if !any {
                    return Ok(Got::Eof);
                }
                break;
            }
            any = true;
            match memchr::memchr2(b'\n', b'\r', avail) {
                Some(i) => {
                    let cr = avail[i] == b'\r';
                    if len + i <= limit {
                        buf.extend_from_slice(&avail[..i]);
                    } else if buf.len() < RAW_LIMIT {
                        let room = RAW_LIMIT - buf.len();
                        buf.extend_from_slice(&avail[..i.min(room)]);
                    }
                    len += i;
                    self.r.consume(i + 1);
                    self.bytes += i as u64 + 1;
                    if cr {
                        let next = self.r.fill_buf()?;
                        if next.first() == Some(&b'\n') {
                            self.r.consume(1);
                            self.bytes += 1;
                        }
                    }
                    break;
                }
                None => {
                    let n = avail.len();
                    if len + n <= limit {
                        buf.extend_from_slice(avail);
                    } else if buf.len() < RAW_LIMIT {
                        let room = RAW_LIMIT - buf.len();
                        buf.extend_from_slice(&avail[..n.min(room)]);
                    }
                    len += n;
                    self.r.consume(n);
                    self.bytes += n as u64;
                }
            }
        }
        self.line += 1;
        if len > limit {
            buf.truncate(RAW_LIMIT.min(buf.len()));
            return Ok(Got::TooLong(self.line, len));
        }
        Ok(Got::Line(self.line, at))
    }
}

/// How many following lines a quoted field may span.
const MAX_JOINED_LINES: usize = 64;

impl ExportReader<'_> {
    fn reject(&self, src: &Arc<str>, line: u64, why: RejectReason, raw: &str) -> Reject {
        Reject {
            source: src.clone(),
            location: format!("line {line}"),
            line,
            record: None,
            code: why.code,
            reason: why.message,
            raw: super::json_text::truncate(raw, RAW_LIMIT).to_owned(),
        }
    }

    /// Reads the whole export from `input`, handing the legs out a frame at a time.
    pub(crate) fn read(
        &self,
        input: &mut dyn BufRead,
        on_frame: &mut dyn FnMut(DataFrame, u64) -> Result<(), IngestError>,
    ) -> Result<ExportRead, IngestError> {
        let src: Arc<str> = Arc::from(self.source);
        let mut lines = Lines {
            r: input,
            line: 0,
            bytes: 0,
        };
        let mut out = ExportRead {
            rejects: Vec::new(),
            records: 0,
            legs: 0,
            lines: 1,
            bytes: 0,
            tail_err: None,
        };
        let mut header: Option<Header> = None;
        let mut builder = LegBuilder::with_capacity(self.frame_legs.min(4096));
        let mut pending: VecDeque<(u64, u64, Vec<u8>)> = VecDeque::new();
        let mut buf = Vec::new();
        loop {
            let (no, at, bytes) = match pending.pop_front() {
                Some(p) => p,
                None => match lines.next(&mut buf, self.max_record) {
                    Ok(Got::Eof) => break,
                    Ok(Got::Line(no, at)) => (no, at, std::mem::take(&mut buf)),
                    Ok(Got::TooLong(no, len)) => {
                        out.records += 1;
                        let raw = String::from_utf8_lossy(&buf).into_owned();
                        let why = super::too_large(self.max_record, len);
                        out.rejects.push(self.reject(&src, no, why, &raw));
                        continue;
                    }
                    Err(e) => {
                        out.tail_err = Some((lines.bytes, e));
                        break;
                    }
                },
            };
            let body = if no == 1 {
                bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes)
            } else {
                &bytes[..]
            };
            let text = match std::str::from_utf8(body) {
                Ok(t) => t,
                Err(e) => {
                    if header.is_some() {
                        out.records += 1;
                        let why = RejectReason::new(
                            "invalid_utf8",
                            format!("invalid UTF-8 at byte {} of the line", e.valid_up_to()),
                        );
                        let raw = String::from_utf8_lossy(body).into_owned();
                        out.rejects.push(self.reject(&src, no, why, &raw));
                    }
                    buf = bytes;
                    continue;
                }
            };
            if text.bytes().all(|b| b == b',' || b.is_ascii_whitespace()) {
                buf = bytes;
                continue;
            }
            let Some(h) = header.as_mut() else {
                header = Some(Header::new(header_names(text)));
                buf = bytes;
                continue;
            };
            if text.contains("call_id") {
                let names = header_names(text);
                if names == h.names {
                    buf = bytes;
                    continue;
                }
                if names.iter().any(|n| n == "call_id")
                    && names.iter().all(|n| Col::from_header(n) != Col::Other)
                {
                    *h = Header::new(names);
                    buf = bytes;
                    continue;
                }
            }
            out.records += 1;
            let mut joined = String::new();
            let mut row = read_row(text, h);
            if row.is_err() && quoting(text) == Quoting::Open {
                // A quoted field going on over the next lines (a spreadsheet's multi-line cell).
                let mut taken: Vec<(u64, u64, Vec<u8>)> = Vec::new();
                joined.push_str(text);
                let mut ok = false;
                while taken.len() < MAX_JOINED_LINES && joined.len() <= self.max_record {
                    let next = match pending.pop_front() {
                        Some(p) => p,
                        None => match lines.next(&mut buf, self.max_record) {
                            Ok(Got::Line(n2, at2)) => (n2, at2, std::mem::take(&mut buf)),
                            Ok(Got::TooLong(n2, len)) => {
                                out.records += 1;
                                let raw = String::from_utf8_lossy(&buf).into_owned();
                                let why = super::too_large(self.max_record, len);
                                out.rejects.push(self.reject(&src, n2, why, &raw));
                                break;
                            }
                            Ok(Got::Eof) => break,
                            Err(e) => {
                                out.tail_err = Some((lines.bytes, e));
                                break;
                            }
                        },
                    };
                    let Ok(t2) = std::str::from_utf8(&next.2) else {
                        taken.push(next);
                        break;
                    };
                    joined.push('\n');
                    joined.push_str(t2);
                    taken.push(next);
                    if quoting(&joined) != Quoting::Open {
                        ok = true;
                        break;
                    }
                }
                if ok && read_row(&joined, h).is_ok() {
                    taken.clear();
                } else {
                    joined.clear();
                    // Not one record after all: the following lines are read on their own.
                    for t in taken.into_iter().rev() {
                        pending.push_front(t);
                    }
                }
            }
            if !joined.is_empty() {
                row = read_row(&joined, h);
            }
            let row_text = if joined.is_empty() { text } else { &joined };
            let leg = match row {
                Ok(row) => {
                    if row.quoted_dates.is_some() {
                        h.quoted_dates = row.quoted_dates;
                    }
                    let rules = RowRules {
                        account: self.account,
                        tz: self.tz,
                        timestamp_is_end: h.v42 && h.quoted_dates == Some(true),
                        what: "column",
                    };
                    let cells = h
                        .cols
                        .iter()
                        .zip(&h.names)
                        .zip(row.cells)
                        .map(|((c, n), v)| (*c, n.as_str(), Cell::Text(v)));
                    map_row(cells, &rules)
                }
                Err(e) => Err(e.reason(h)),
            };
            match leg {
                Ok(leg) => {
                    builder.push(&leg, no, at);
                    if builder.len() >= self.frame_legs {
                        let full = std::mem::replace(
                            &mut builder,
                            LegBuilder::with_capacity(self.frame_legs.min(4096)),
                        );
                        out.legs += full.len() as u64;
                        on_frame(full.finish(self.source, "csv")?, lines.bytes)?;
                    }
                }
                Err(why) => out.rejects.push(self.reject(&src, no, why, row_text)),
            }
            if out.tail_err.is_some() {
                break;
            }
            buf = bytes;
        }
        if !builder.is_empty() {
            out.legs += builder.len() as u64;
            on_frame(builder.finish(self.source, "csv")?, lines.bytes)?;
        }
        out.lines = lines.line.max(1);
        out.bytes = lines.bytes;
        Ok(out)
    }
}

/// Parses one decoded CSV export held in memory (the fuzz target's entry): every row a leg or
/// a reject.
pub(crate) fn parse(
    buf: &[u8],
    source: &str,
    account: Option<&str>,
    tz: &ReportTz,
) -> Result<Parsed, IngestError> {
    let reader = ExportReader {
        source,
        account,
        tz,
        max_record: super::MAX_RECORD,
        frame_legs: usize::MAX,
    };
    let mut frames = Vec::new();
    let mut input = buf;
    let read = reader.read(&mut input, &mut |df, _| {
        frames.push(df);
        Ok(())
    })?;
    Ok(Parsed {
        routed: Vec::new(),
        legs: super::concat_frames(frames)?,
        rejects: read.rejects,
        logged_rejects: 0,
        records: read.records,
        skipped: Vec::new(),
        skipped_documents: Default::default(),
        ledgers: Vec::new(),
        layout: super::scan::Layout::Lines,
        lines: read.lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_comes_from_the_path() {
        let p = |s: &str| account_from_path(Path::new(s));
        assert_eq!(p("x/account_id=acc1/cdrs.csv").as_deref(), Some("acc1"));
        assert_eq!(
            p("exports/7600efb3424dc4b79854521fd4563d0a-2026-11.csv").as_deref(),
            Some("7600efb3424dc4b79854521fd4563d0a")
        );
        assert_eq!(p("exports/cdrs.csv"), None);
        assert_eq!(
            p("exports/7600efb3424dc4b79854521fd4563d0aa.csv"),
            None,
            "33 hex digits"
        );
    }

    fn header(h: &str) -> Header {
        Header::new(header_names(h))
    }

    const H: &str = "call_id,caller_id_number,caller_id_name,callee_id_number,callee_id_name,duration_seconds,rfc_1036,rate_name";

    fn row(line: &str) -> Result<Vec<String>, String> {
        read_row(line, &header(H))
            .map(|r| r.cells.into_iter().map(|c| c.into_owned()).collect())
            .map_err(|e| e.reason(&header(H)).message)
    }

    #[test]
    fn commas_in_names_and_the_date_fall_into_their_columns() {
        assert_eq!(
            row("c1,+15550100777,Smith, John,+15550142001,Desk, 2nd floor,66,Wed, 04 Nov 2026 15:00:00 GMT,US, mobile").expect("aligned"),
            [
                "c1",
                "+15550100777",
                "Smith, John",
                "+15550142001",
                "Desk, 2nd floor",
                "66",
                "Wed, 04 Nov 2026 15:00:00 GMT",
                "US, mobile"
            ]
        );
        // Bare quotes are text.
        assert_eq!(
            row("c1,+1555,\"Bob, the \"boss,+1666,,66,Wed, 04 Nov 2026 15:00:00 GMT,")
                .expect("aligned")[2],
            "\"Bob, the \"boss"
        );
        // A spreadsheet's re-save.
        assert_eq!(
            row("c1,+1555,\"Smith, \"\"JJ\"\"\",+1666,,66,\"Wed, 04 Nov 2026 15:00:00 GMT\",")
                .expect("aligned")[2],
            "Smith, \"JJ\""
        );
    }

    #[test]
    fn rows_that_fit_two_ways_or_none_are_rejected_with_why() {
        let e = row("c1,+1555,Bob,5551234,+1666,Ann,66,Wed, 04 Nov 2026 15:00:00 GMT,")
            .expect_err("rejected");
        assert!(e.contains("ambiguous"), "{e}");
        assert!(e.contains("caller_id_name"), "{e}");
        let e =
            row("c1,+1555,Bob,+1666,Ann,x66,Wed, 04 Nov 2026 15:00:00 GMT,").expect_err("rejected");
        assert!(e.contains("duration_seconds"), "{e}");
        let e = row("c1,+1555").expect_err("rejected");
        assert!(e.contains("fewer"), "{e}");
    }

    #[test]
    fn quoting_is_classified() {
        assert_eq!(quoting("a,\"b,c\",d"), Quoting::Strict);
        assert_eq!(quoting("a,\"b\"\"c\""), Quoting::Strict);
        assert_eq!(quoting("a,b\"c,d"), Quoting::Loose);
        assert_eq!(quoting("a,\"b\"c,d"), Quoting::Loose);
        assert_eq!(quoting("a,\"b,c"), Quoting::Open);
    }

    #[test]
    fn physical_lines_whatever_the_ends() {
        let data = b"a\r\nb\nc\rd\r\n\r\ne";
        let mut input: &[u8] = data;
        let mut l = Lines {
            r: &mut input,
            line: 0,
            bytes: 0,
        };
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Ok(Got::Line(n, _)) = l.next(&mut buf, 100) {
            got.push((n, String::from_utf8_lossy(&buf).into_owned()));
        }
        let want: Vec<(u64, String)> = [(1, "a"), (2, "b"), (3, "c"), (4, "d"), (5, ""), (6, "e")]
            .iter()
            .map(|(n, s)| (*n, (*s).to_owned()))
            .collect();
        assert_eq!(got, want);
    }
}
