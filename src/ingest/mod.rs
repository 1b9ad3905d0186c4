//! Stage 1: from input paths to one frame of legs plus the rejects.
//!
//! discover (paths, globs, directories; sniff each file) -> decompress (gzip/zstd) -> scan
//! (split into units: lines, or top-level values) -> parse units in parallel (record) -> push
//! checked legs into per-worker column builders (builder) -> concatenate the batches.

pub(crate) mod builder;
pub(crate) mod couch;
pub(crate) mod crossbar;
pub(crate) mod csv_export;
pub(crate) mod decompress;
pub(crate) mod discover;
pub(crate) mod event;
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod json_text;
pub(crate) mod ledger;
pub(crate) mod record;
pub(crate) mod rejects;
pub(crate) mod scan;
pub(crate) mod value;

use std::collections::BTreeMap;
use std::sync::Arc;

use polars::prelude::*;
use rayon::prelude::*;
use serde_json::value::RawValue;

use crate::progress::Progress;
use crate::time::ReportTz;
use builder::LegBuilder;
use discover::InputFile;
use json_text::{compact, truncate};
use record::{RawCdr, RejectReason};
use scan::{count_lines, Broken, Layout, Nest, Unit};

/// Input problems that stop the run before anything is written.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no INPUT given: name at least one file, directory or glob")]
    NoInputs,
    #[error("input not found: {0}")]
    NotFound(String),
    #[error("no CDR input found in {inputs}{}", discover::list_skipped(skipped))]
    NoCdrInput {
        inputs: String,
        skipped: Vec<discover::Skipped>,
    },
    #[error("bad glob pattern {pattern}: {message}")]
    BadGlob { pattern: String, message: String },
    #[error("{0} is a CSV file without a call_id column: not a crossbar CDR export (a rate deck goes to --rates)")]
    NotCdrCsv(String),
    #[error("cannot read input {path}: {message}")]
    Unreadable { path: String, message: String },
    #[error("building the legs frame: {0}")]
    Frame(#[from] PolarsError),
    #[error("writing the rejects: {0}")]
    Rejects(#[from] crate::write::WriteError),
}

/// How to read.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub tz: ReportTz,
    /// Target size of one parallel parse task, in decoded bytes.
    pub chunk_bytes: usize,
    /// A record (a line, or one top-level value or array element) larger than this many bytes
    /// is rejected without being parsed.
    pub max_record: usize,
    /// The buckets (of partitions) that parse tasks sort their legs into as they build the
    /// columns; one for none.
    pub partitions: Arc<crate::spill::Partitions>,
    /// Where rejects go as they are found (each read window's at once); `None`: they are
    /// returned in [`Ingested::rejects`].
    pub rejects: Option<Arc<rejects::RejectLog>>,
}

/// The default of `--max-record-size`: 16 MiB.
pub const MAX_RECORD: usize = 16 << 20;

impl IngestOptions {
    /// Decoded bytes read at a time: [`WINDOW`], or more when a record may be larger.
    fn window(&self) -> usize {
        WINDOW.max(self.max_record.saturating_add(1 << 20))
    }
}

/// A record that did not become a leg.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reject {
    pub source: Arc<str>,
    /// "line 12", or "line 3, record 5" for the sixth record of a page or array.
    pub location: String,
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// Short stable code, counted in the manifest.
    pub code: &'static str,
    pub reason: String,
    /// The record's text, cut at 4 KiB.
    pub raw: String,
}

/// Per input file: what was read from it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FileStats {
    #[serde(flatten)]
    pub input: InputFile,
    pub decoded_bytes: u64,
    pub layout: &'static str,
    pub records: u64,
    pub legs: u64,
    pub rejected: u64,
    /// Values recognized as holding no CDRs (a `/cdrs/summary` response), skipped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_content: Vec<SkippedContent>,
    /// Documents of a CouchDB dump that are not CDRs, skipped, counted by kind (their
    /// `pvt_type`, or `tombstone`, `_design`, `pvt_deleted`; see [`couch::Keys::not_a_cdr`]).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub skipped_documents: BTreeMap<String, u64>,
    /// Ledgers read (stored documents and listed items), which go to the `ledgers` table.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ledgers: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What stage 1 produced besides the legs, which went to the sink as they were parsed.
pub(crate) struct Ingested {
    pub rejects: Vec<Reject>,
    pub records_read: u64,
    pub files: Vec<FileStats>,
    /// The ledgers read, in file order ([`ledger::frame`]'s columns).
    pub ledgers: DataFrame,
}

/// Where parsed legs go, a frame at a time (about one read window each), from any worker: with
/// the bucket every row of the frame belongs to, when the parser sorted them (JSON input under
/// more than one bucket).
pub(crate) type Sink<'a> = dyn Fn(Option<u32>, DataFrame) -> Result<(), IngestError> + Sync + 'a;

pub(crate) const RAW_LIMIT: usize = 4096;

/// Reject codes that mean a file could not be read to its end: the run then read it only in
/// part (a broken gzip/zstd stream or an I/O error; the size limit of a file read whole).
pub(crate) const PARTIAL_CODES: &[&str] = &["unreadable_input", "file_too_large", "input_changed"];

/// One worker's output.
struct Batch {
    /// A builder per bucket: the columns come out already split.
    builders: Vec<LegBuilder>,
    /// The same for crossbar listing rows (`source_format` `listing`).
    listing: Vec<LegBuilder>,
    /// The `account_id` of the envelope whose `data` is being read, if it carries one.
    envelope_account: Option<String>,
    /// The buckets of the partitions this worker has met.
    partitions: crate::spill::PartitionMap,
    rejects: Vec<Reject>,
    records: u64,
    /// Content that holds no CDRs and is not an error (a `/cdrs/summary` response).
    skipped: Vec<SkippedContent>,
    /// CouchDB documents that are not CDRs, counted by kind.
    skipped_documents: BTreeMap<String, u64>,
    /// Ledgers, which go to their own table.
    ledgers: Vec<ledger::Ledger>,
}

/// A value that holds no CDRs by design, recognized by its keys and skipped (never a reject):
/// listed per file in the manifest and said on stderr.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SkippedContent {
    pub line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<u64>,
    /// What it is and why it holds no CDRs.
    pub what: &'static str,
}

/// What a worker needs to know about the file it reads.
struct Ctx<'a> {
    source: Arc<str>,
    /// The account named by the file's path (`account_id=<ID>` or a 32-hex-digit id): the
    /// account of listing rows, which carry none.
    path_account: Option<String>,
    tz: &'a ReportTz,
    max_record: usize,
    partitions: &'a crate::spill::Partitions,
}

impl<'a> Ctx<'a> {
    fn new(source: &str, opts: &'a IngestOptions) -> Self {
        Ctx {
            source: Arc::from(source),
            path_account: csv_export::account_from_path(std::path::Path::new(source)),
            tz: &opts.tz,
            max_record: opts.max_record,
            partitions: &opts.partitions,
        }
    }
}

impl Batch {
    /// Room for about `cap` legs in all.
    fn new(ctx: &Ctx, cap: usize) -> Self {
        let n = ctx.partitions.count();
        Batch {
            builders: (0..n)
                .map(|_| LegBuilder::with_capacity(cap.div_ceil(n)))
                .collect(),
            listing: (0..n).map(|_| LegBuilder::with_capacity(0)).collect(),
            envelope_account: None,
            partitions: Default::default(),
            rejects: Vec::new(),
            records: 0,
            skipped: Vec::new(),
            skipped_documents: BTreeMap::new(),
            ledgers: Vec::new(),
        }
    }

    fn reject(&mut self, ctx: &Ctx, line: u64, record: Option<u64>, why: RejectReason, raw: &str) {
        self.records += 1;
        let location = match record {
            Some(r) => format!("line {line}, record {r}"),
            None => format!("line {line}"),
        };
        self.rejects.push(Reject {
            source: ctx.source.clone(),
            location,
            line,
            record,
            code: why.code,
            reason: why.message,
            raw: truncate(raw, RAW_LIMIT).to_owned(),
        });
    }

    /// One unit: a line, a top-level value of a stream, or an element of an array read as a
    /// stream; `base` is the decoded file offset of `buf[0]`.
    fn unit(&mut self, ctx: &Ctx, buf: &[u8], unit: &Unit, base: u64) {
        let bytes = &buf[unit.start..unit.end];
        let (line, record) = (unit.line, unit.record);
        let level = match unit.nest {
            Nest::Top => Level::Top,
            Nest::Array => Level::InArray,
            Nest::Data => Level::InData,
        };
        // A big top-level array line is split into its elements, each held to the limit.
        let too_large = unit.broken == Some(Broken::TooLarge)
            || (bytes.len() > ctx.max_record
                && (bytes.first() != Some(&b'[') || unit.broken.is_some()));
        if too_large {
            let why = RejectReason::new(
                "record_too_large",
                format!(
                    "the record is larger than --max-record-size ({} bytes); it was skipped",
                    ctx.max_record
                ),
            );
            return self.reject(ctx, line, record, why, &raw_head(bytes));
        }
        if let Some(msg) = unit.broken.and_then(|b| broken_message(b, line)) {
            let raw = String::from_utf8_lossy(bytes);
            return self.reject(
                ctx,
                line,
                record,
                RejectReason::new("invalid_json", msg),
                &raw,
            );
        }
        let off = base + unit.start as u64;
        match std::str::from_utf8(bytes) {
            Ok(text) => self.value(ctx, text, line, record, level, off),
            Err(e) => {
                let bad_line = line + count_lines(&bytes[..e.valid_up_to()]);
                let why = RejectReason::new(
                    "invalid_utf8",
                    format!(
                        "invalid UTF-8 at byte {} of the record (line {bad_line})",
                        e.valid_up_to()
                    ),
                );
                self.reject(ctx, line, record, why, &String::from_utf8_lossy(bytes));
            }
        }
    }

    /// A JSON value: a CDR, an envelope, or (at the top) an array of either.
    /// `off` is the decoded file offset of `text`.
    fn value(
        &mut self,
        ctx: &Ctx,
        text: &str,
        line: u64,
        record: Option<u64>,
        level: Level,
        off: u64,
    ) {
        match (text.as_bytes().first(), level) {
            (Some(b'{'), _) => self.object(ctx, text, line, record, level, off),
            (Some(b'['), Level::Top) => self.array(ctx, text, line, Level::InArray, off),
            _ => {
                let why = match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                    Ok(_) => RejectReason::new(
                        "not_an_object",
                        format!("the value is {}, not a CDR object", kind_of(text)),
                    ),
                    Err(e) => invalid_json(&e, line),
                };
                self.reject(ctx, line, record, why, text);
            }
        }
    }

    /// The elements of an array, each located by its own line and its index.
    fn array(&mut self, ctx: &Ctx, text: &str, line: u64, level: Level, off: u64) {
        let elems: Vec<&RawValue> = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return self.reject(ctx, line, None, invalid_json(&e, line), text),
        };
        let (mut at, mut el_line) = (0, line);
        for (i, el) in elems.iter().enumerate() {
            let el = el.get();
            let el_at = offset_in(text, el);
            el_line += count_lines(&text.as_bytes()[at..el_at]);
            at = el_at;
            let record = Some(i as u64);
            if el.len() > ctx.max_record {
                let why = too_large(ctx.max_record, el.len());
                self.reject(ctx, el_line, record, why, el);
                continue;
            }
            self.value(ctx, el, el_line, record, level, off + el_at as u64);
        }
    }

    fn object(
        &mut self,
        ctx: &Ctx,
        text: &str,
        line: u64,
        record: Option<u64>,
        level: Level,
        off: u64,
    ) {
        let event_cdr: String;
        let mut cdr = match RawCdr::parse(text) {
            Ok(c) => c,
            Err(e) => return self.reject(ctx, line, record, invalid_json(&e, line), text),
        };
        let keys = couch::Keys::of(cdr.extra());
        if level != Level::Doc && !cdr.has_call_id() {
            let whole = matches!(level, Level::Top | Level::InArray);
            match keys.wrapper(whole) {
                couch::Wrapper::None => {}
                couch::Wrapper::Doc(doc) => {
                    let (d_line, d_off) = located(text, doc.get(), line, off);
                    return self.value(ctx, doc.get(), d_line, record, Level::Doc, d_off);
                }
                couch::Wrapper::Body(rows) => {
                    let (d_line, d_off) = located(text, rows.get(), line, off);
                    return self.array(ctx, rows.get(), d_line, Level::InData, d_off);
                }
                couch::Wrapper::Deleted => return self.skip_document("tombstone".into()),
                couch::Wrapper::NoDoc => {
                    let why = RejectReason::new("row_without_doc", couch::no_doc_message());
                    return self.reject(ctx, line, record, why, text);
                }
                couch::Wrapper::FeedEnd => return,
            }
        }
        if let Some(form) = keys.ledger_form(cdr.has_call_id()) {
            return self.ledger(ctx, text, (line, record), off, form);
        }
        if let Some(kind) = keys.not_a_cdr() {
            return self.skip_document(kind);
        }
        if cdr.is_bus_event() {
            if event::nests_deeper_than(text, event::MAX_EVENT_DEPTH) {
                let why = RejectReason::new(
                    "nested_too_deep",
                    format!(
                        "a message-bus event nested deeper than {} levels (KAZOO's nest 3 or 4); not read",
                        event::MAX_EVENT_DEPTH
                    ),
                );
                return self.reject(ctx, line, record, why, text);
            }
            // Read as the CDR KAZOO's cdr app saves from it.
            event_cdr = match event::to_cdr(text) {
                Ok(t) => t,
                Err(e) => return self.reject(ctx, line, record, invalid_json(&e, line), text),
            };
            cdr = match RawCdr::parse(&event_cdr) {
                Ok(c) => c,
                Err(e) => return self.reject(ctx, line, record, invalid_json(&e, line), text),
            };
        }
        if let Some(data) = cdr
            .envelope_data()
            .filter(|_| !matches!(level, Level::InData | Level::Doc))
        {
            // A crossbar envelope: its records are in `data`, an array or one object.
            let d = data.get();
            let (d_line, d_off) = located(text, d, line, off);
            let outer = self.envelope_account.take();
            self.envelope_account = envelope_account(text).or(outer.clone());
            match d.as_bytes().first() {
                Some(b'[') => self.array(ctx, d, d_line, Level::InData, d_off),
                _ if d == "null" => {}
                _ if compact(d) == "{}" => self.skip(d_line, Some(0), EMPTY_DATA),
                _ => self.value(ctx, d, d_line, Some(0), Level::InData, d_off),
            }
            self.envelope_account = outer;
            return;
        }
        if cdr.is_listing_row() {
            return self.listing_row(ctx, text, line, record, off);
        }
        if cdr.is_cdr_summary() {
            return self.skip(line, record, CDR_SUMMARY);
        }
        match cdr.into_leg(ctx.tz) {
            Ok(leg) => {
                self.records += 1;
                let b = ctx.partitions.bucket_cached(
                    &mut self.partitions,
                    leg.ccv[0].as_deref(),
                    leg.date,
                );
                self.builders[b as usize].push(&leg, line, off);
            }
            Err(why) => self.reject(ctx, line, record, why, text),
        }
    }
}

impl Batch {
    /// A ledger ([`ledger::read`]): a row of the `ledgers` table, or a reject (`invalid_ledger`).
    fn ledger(
        &mut self,
        ctx: &Ctx,
        text: &str,
        (line, record): (u64, Option<u64>),
        off: u64,
        form: ledger::Form,
    ) {
        let account = self
            .envelope_account
            .as_deref()
            .or(ctx.path_account.as_deref());
        match ledger::read(text, form, account, ctx.tz, (line, off)) {
            Ok(l) => {
                // A record read, like a leg: the ledgers' term of the balance says where it went.
                self.records += 1;
                self.ledgers.push(l);
            }
            Err(why) => self.reject(ctx, line, record, why, text),
        }
    }

    /// A crossbar listing row (`GET /cdrs` page item): the CSV columns as keys, mapped by the
    /// same column mapper as the CSV export.
    fn listing_row(&mut self, ctx: &Ctx, text: &str, line: u64, record: Option<u64>, off: u64) {
        let rules = crossbar::RowRules {
            account: self
                .envelope_account
                .as_deref()
                .or(ctx.path_account.as_deref()),
            tz: ctx.tz,
            timestamp_is_end: false,
            what: "key",
        };
        match crossbar::map_listing_row(text, &rules) {
            Ok(leg) => {
                self.records += 1;
                let b = ctx.partitions.bucket_cached(
                    &mut self.partitions,
                    leg.ccv[0].as_deref(),
                    leg.date,
                );
                self.listing[b as usize].push(&leg, line, off);
            }
            Err(Ok(why)) => self.reject(ctx, line, record, why, text),
            Err(Err(e)) => self.reject(ctx, line, record, invalid_json(&e, line), text),
        }
    }
}

/// The `account_id` member of a crossbar envelope, when it has one.
fn envelope_account(text: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        account_id: Option<String>,
    }
    serde_json::from_str::<Envelope>(text)
        .ok()?
        .account_id
        .filter(|a| !a.trim().is_empty())
}

/// Why a broken unit is rejected (None for [`Broken::TooLarge`], which has its own code).
fn broken_message(broken: Broken, line: u64) -> Option<String> {
    Some(match broken {
        Broken::Truncated => "invalid JSON: the input ends inside this value".to_owned(),
        Broken::Unclosed => {
            "invalid JSON: the value is not closed before the next value starts".to_owned()
        }
        Broken::NewlineInString => {
            "invalid JSON: a string is still open at the end of the line".to_owned()
        }
        Broken::ArrayNotClosed => format!(
            "invalid JSON: the array opened on line {line} is not closed at the end of the input; its elements were read"
        ),
        Broken::TooLarge => return None,
    })
}

const CDR_SUMMARY: &str = "a crossbar /cdrs/summary response (billable seconds per direction, domain and classifier): totals, not CDRs";
const EMPTY_DATA: &str =
    "a crossbar response whose data is an empty object (an empty /cdrs/summary): no CDRs";

impl Batch {
    fn skip(&mut self, line: u64, record: Option<u64>, what: &'static str) {
        self.skipped.push(SkippedContent { line, record, what });
    }

    /// Counts a CouchDB document that is not a CDR, under `kind` ([`couch::Keys::not_a_cdr`]).
    fn skip_document(&mut self, kind: String) {
        *self.skipped_documents.entry(kind).or_default() += 1;
    }
}

/// Where a value stands: what it may be besides a CDR.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    /// A whole unit: may be an array, or a crossbar envelope.
    Top,
    /// An element of a top-level array: may be an envelope (pages saved as an array).
    InArray,
    /// A record of an envelope's `data`, or of a CouchDB body's `rows`, `docs` or `results`: a
    /// CDR, or a CouchDB row or change holding a document.
    InData,
    /// A document out of a CouchDB row or change: a CDR or another document, no wrapper.
    Doc,
}

/// Where a slice borrowed from `text` starts in it.
/// The line and decoded file offset of `part`, a slice of `text`, which starts on `line` at
/// offset `off`.
fn located(text: &str, part: &str, line: u64, off: u64) -> (u64, u64) {
    let at = offset_in(text, part);
    (line + count_lines(&text.as_bytes()[..at]), off + at as u64)
}

fn offset_in(text: &str, part: &str) -> usize {
    (part.as_ptr() as usize)
        .saturating_sub(text.as_ptr() as usize)
        .min(text.len())
}

fn kind_of(text: &str) -> &'static str {
    match text.as_bytes().first() {
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        Some(b'[') => "an array",
        _ => "a number",
    }
}

/// serde_json's message, with its position made absolute in the file.
fn invalid_json(e: &serde_json::Error, first_line: u64) -> RejectReason {
    let msg = e.to_string();
    let msg = msg.rfind(" at line ").map_or(msg.as_str(), |i| &msg[..i]);
    RejectReason::new(
        "invalid_json",
        format!(
            "invalid JSON at line {}, column {}: {msg}",
            first_line + e.line().saturating_sub(1) as u64,
            e.column()
        ),
    )
}

/// One file's rejects and statistics.
type FileOutput = (Vec<Reject>, FileStats, Vec<ledger::Ledger>);

/// Reads every file, in parallel across files and within large ones, handing the legs to
/// `sink` as they are parsed: no more than a few read windows of legs are in memory at once.
pub(crate) fn ingest(
    files: &[InputFile],
    opts: &IngestOptions,
    progress: &Progress,
    sink: &Sink,
) -> Result<Ingested, IngestError> {
    // As many files in flight as workers, each read a window at a time and parsed in parallel:
    // memory holds a few windows, not one per file. (A parallel iterator over the files would
    // let a worker waiting inside one file start another, and another.)
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut per_file: Vec<(usize, Result<FileOutput, IngestError>)> = (0
        ..rayon::current_num_threads())
        .into_par_iter()
        .with_max_len(1)
        .flat_map_iter(|_| {
            std::iter::from_fn(|| {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                files
                    .get(i)
                    .map(|f| (i, read_file_guarded(f, opts, progress, sink)))
            })
        })
        .collect();
    per_file.sort_unstable_by_key(|(i, _)| *i);
    let mut rejects = Vec::new();
    let mut stats = Vec::with_capacity(per_file.len());
    let mut records_read = 0;
    let mut ledgers = Vec::new();
    for (_, r) in per_file {
        let (rj, st, ls) = r?;
        records_read += st.records;
        rejects.extend(rj);
        if !ls.is_empty() {
            ledgers.push((Arc::from(st.input.display.as_str()), ls));
        }
        stats.push(st);
    }
    Ok(Ingested {
        rejects,
        records_read,
        files: stats,
        ledgers: ledger::frame(ledgers)?,
    })
}

/// Stacks frames of the same schema; an empty input gives an empty frame with the schema.
pub(crate) fn concat_frames(frames: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    if frames.is_empty() {
        return LegBuilder::with_capacity(0).finish("", "json");
    }
    crate::spill::concat(frames)
}

/// Decoded bytes a line-layout file is read in: a file never holds more of its raw text than
/// this at once (or the record size limit and 1 MiB, if that is more).
pub(crate) const WINDOW: usize = 64 << 20;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// [`read_file`], with a panic while reading (a bug, never an input's fault by design) turned
/// into that file's error, naming it, so the run stops with exit status 2 and nothing
/// committed rather than a crash that names no file.
fn read_file_guarded(
    file: &InputFile,
    opts: &IngestOptions,
    progress: &Progress,
    sink: &Sink,
) -> Result<FileOutput, IngestError> {
    let read = std::panic::AssertUnwindSafe(|| read_file(file, opts, progress, sink));
    std::panic::catch_unwind(read).unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(IngestError::Unreadable {
            path: file.display.clone(),
            message: format!(
                "rerate failed while reading it (an internal error, please report it with the file): {what}"
            ),
        })
    })
}

fn read_file(
    file: &InputFile,
    opts: &IngestOptions,
    progress: &Progress,
    sink: &Sink,
) -> Result<FileOutput, IngestError> {
    let job = Job {
        file,
        opts,
        progress,
        sink,
    };
    let unreadable = |e: std::io::Error| IngestError::Unreadable {
        path: file.display.clone(),
        message: e.to_string(),
    };
    let (mut reader, consumed) =
        decompress::open_counted(&file.path, file.compression).map_err(unreadable)?;
    let window = opts.window();
    let mut buf = Vec::with_capacity(window.min(file.bytes as usize * 4 + 1024));
    let first = decompress::fill(&mut reader, &mut buf, window);
    let lines = file.format == discover::InputFormat::Json
        && scan::detect_layout(buf.strip_prefix(BOM).unwrap_or(&buf)) == Layout::Lines;
    let read = match file.format {
        discover::InputFormat::Csv => read_csv(&job, &consumed, reader, buf, first)?,
        discover::InputFormat::Json if lines => {
            read_lines(&job, &consumed, reader.as_mut(), buf, first)?
        }
        discover::InputFormat::Json => read_stream(&job, &consumed, reader.as_mut(), buf, first)?,
    };
    let Read {
        mut parsed,
        legs,
        decoded,
        tail_err,
    } = read;
    if let Some((at, why)) = tail_err {
        // The records before the break were read; the break itself is one reject.
        parsed.rejects.push(Reject {
            source: Arc::from(file.display.as_str()),
            location: format!("byte {at}"),
            line: parsed.lines,
            record: None,
            code: why.code,
            reason: why.message,
            raw: String::new(),
        });
        parsed.records += 1;
    }
    if let Some(how) = file.changed() {
        // What was read is kept; the file is named as read only in part (exit status 3).
        parsed.rejects.push(Reject {
            source: Arc::from(file.display.as_str()),
            location: "the whole file".to_owned(),
            line: parsed.lines,
            record: None,
            code: "input_changed",
            reason: format!(
                "the file changed while it was read: {how}; run again once its writer is done"
            ),
            raw: String::new(),
        });
        parsed.records += 1;
    }
    let stats = FileStats {
        input: file.clone(),
        decoded_bytes: decoded,
        layout: match (file.format, parsed.layout) {
            (discover::InputFormat::Csv, _) => "csv",
            (_, Layout::Lines) => "lines",
            (_, Layout::Stream) => "stream",
        },
        records: parsed.records,
        legs,
        rejected: parsed.logged_rejects + parsed.rejects.len() as u64,
        skipped_content: parsed.skipped,
        skipped_documents: parsed.skipped_documents,
        ledgers: parsed.ledgers.len() as u64,
    };
    let mut rejects = parsed.rejects;
    if let Some(log) = &opts.rejects {
        log.push(&mut rejects)?;
    }
    Ok((rejects, stats, parsed.ledgers))
}

/// One file being read, and where its legs go.
#[derive(Clone, Copy)]
struct Job<'a> {
    file: &'a InputFile,
    opts: &'a IngestOptions,
    progress: &'a Progress,
    sink: &'a Sink<'a>,
}

impl<'a> Job<'a> {
    fn parts(&self) -> (&'a InputFile, &'a IngestOptions, &'a Progress, &'a Sink<'a>) {
        (self.file, self.opts, self.progress, self.sink)
    }
}

/// One file read: its records, how many decoded bytes it had, and where and why reading
/// stopped early, if it did.
struct Read {
    /// What was read, its legs already handed to the sink.
    parsed: Parsed,
    legs: u64,
    decoded: u64,
    tail_err: Option<(u64, RejectReason)>,
}

fn decode_error(file: &InputFile, at: usize, e: &std::io::Error) -> RejectReason {
    RejectReason::new(
        "unreadable_input",
        format!(
            "the {:?} stream could not be decoded after {at} bytes: {e}; the records before it were read",
            file.compression
        ),
    )
}

/// A crossbar CSV export, read a line at a time (see `csv_export`): memory holds one line and
/// one frame of legs, whatever the file's size.
fn read_csv(
    job: &Job,
    consumed: &std::sync::atomic::AtomicU64,
    reader: Box<dyn std::io::Read + Send>,
    buf: Vec<u8>,
    first: std::io::Result<decompress::Filled>,
) -> Result<Read, IngestError> {
    let (file, opts, progress, sink) = job.parts();
    let account = csv_export::account_from_path(&file.path);
    let export = csv_export::ExportReader {
        source: &file.display,
        account: account.as_deref(),
        tz: &opts.tz,
        max_record: opts.max_record,
        frame_legs: CSV_FRAME_LEGS,
    };
    use std::io::Read as _;
    let first_err = first.err();
    let head = std::io::Cursor::new(buf);
    let mut input: Box<dyn std::io::BufRead> = if first_err.is_some() {
        Box::new(head)
    } else {
        Box::new(std::io::BufReader::with_capacity(
            1 << 20,
            head.chain(reader),
        ))
    };
    let mut ticked = 0u64;
    let mut on_frame = |df: DataFrame, _decoded: u64| -> Result<(), IngestError> {
        sink(None, df)?;
        let done = consumed
            .load(std::sync::atomic::Ordering::Relaxed)
            .min(file.bytes);
        progress.inc(done.saturating_sub(ticked));
        ticked = ticked.max(done);
        Ok(())
    };
    let read = export.read(&mut input, &mut on_frame)?;
    progress.inc(file.bytes.saturating_sub(ticked));
    let tail = read.tail_err.or(first_err.map(|e| (read.bytes, e)));
    let tail_err = tail.map(|(at, e)| (at, decode_error(file, at as usize, &e)));
    let mut parsed = Parsed::empty();
    parsed.rejects = read.rejects;
    parsed.records = read.records;
    parsed.layout = Layout::Lines;
    parsed.lines = read.lines;
    Ok(Read {
        parsed,
        legs: read.legs,
        decoded: read.bytes,
        tail_err,
    })
}

/// Legs of a CSV export handed on at a time.
const CSV_FRAME_LEGS: usize = 65_536;

/// A line-layout file, read in windows of whole lines, each parsed in parallel and dropped
/// before the next is read; progress follows `consumed`, the file's own bytes read so far. A line longer than the record size limit is skipped to its end
/// without being held, and rejected.
fn read_lines(
    job: &Job,
    consumed: &std::sync::atomic::AtomicU64,
    reader: &mut dyn std::io::Read,
    mut win: Vec<u8>,
    first: std::io::Result<decompress::Filled>,
) -> Result<Read, IngestError> {
    let (file, opts, _, _) = job.parts();
    let ctx = Ctx::new(&file.display, opts);
    let window = opts.window();
    let base = strip_bom(&mut win);
    let mut ended = first;
    let (mut line, mut decoded) = (1u64, 0u64);
    let mut windows = Windows::default();
    let mut tail_err = None;
    loop {
        let more = match &ended {
            Ok(decompress::Filled::More) => true,
            Ok(decompress::Filled::End) => false,
            Err(_) => false,
        };
        let cut = if more {
            scan::last_line_end(&win).unwrap_or(0)
        } else {
            win.len()
        };
        let mut batches = Vec::new();
        if cut > 0 {
            let part = &win[..cut];
            batches = parse_lines(&ctx, part, line, base + decoded, opts.chunk_bytes);
            line += count_lines(part);
            decoded += cut as u64;
            win.drain(..cut);
        } else if more {
            // A window without a line end: one line longer than the limit.
            let raw = raw_head(&win).into_owned();
            let (skipped, found) = skip_line(reader, &mut win, window, &mut ended);
            let mut b = Batch::new(&ctx, 0);
            b.reject(&ctx, line, None, too_large(opts.max_record, skipped), &raw);
            batches.push(b);
            line += u64::from(found);
            decoded += skipped as u64;
        }
        windows.take(job, consumed, batches)?;
        if !more {
            if let Err(e) = &ended {
                tail_err = Some((decoded, decode_error(file, decoded as usize, e)));
            }
            break;
        }
        ended = decompress::fill(reader, &mut win, window);
    }
    Ok(windows.finish(job, Layout::Lines, line, decoded, tail_err))
}

/// Drops a leading UTF-8 byte order mark from `win`; returns its length (0 when none), where
/// the file's decoded byte offsets start.
fn strip_bom(win: &mut Vec<u8>) -> u64 {
    if win.starts_with(BOM) {
        win.drain(..BOM.len());
        BOM.len() as u64
    } else {
        0
    }
}

/// What the window loops of [`read_lines`] and [`read_stream_windows`] gather: each window's
/// legs handed to the sink as soon as it is parsed, its rejects logged, and progress ticked up
/// to `consumed`, the file's own (compressed) bytes read so far.
#[derive(Default)]
struct Windows {
    all: Option<Parsed>,
    legs: u64,
    ticked: u64,
}

impl Windows {
    fn take(
        &mut self,
        job: &Job,
        consumed: &std::sync::atomic::AtomicU64,
        batches: Vec<Batch>,
    ) -> Result<(), IngestError> {
        let (file, opts, progress, sink) = job.parts();
        let mut window_parsed = collect(batches, &file.display)?;
        self.legs += sink_legs(&mut window_parsed, sink)?;
        let all = self.all.get_or_insert_with(Parsed::empty);
        all.absorb(&mut window_parsed);
        all.log_rejects(opts)?;
        let done = consumed
            .load(std::sync::atomic::Ordering::Relaxed)
            .min(file.bytes);
        progress.inc(done.saturating_sub(self.ticked));
        self.ticked = self.ticked.max(done);
        Ok(())
    }

    /// The whole file's [`Read`]; progress ticked to the file's end.
    fn finish(
        self,
        job: &Job,
        layout: Layout,
        lines: u64,
        decoded: u64,
        tail_err: Option<(u64, RejectReason)>,
    ) -> Read {
        let (file, _, progress, _) = job.parts();
        progress.inc(file.bytes.saturating_sub(self.ticked));
        let mut parsed = self.all.unwrap_or_else(Parsed::empty);
        parsed.layout = layout;
        parsed.lines = lines;
        Read {
            parsed,
            legs: self.legs,
            decoded,
            tail_err,
        }
    }
}

/// Drops bytes up to and including the next line end (or the end of input): returns how many
/// and whether a line end was found. `win` holds the line's start; what follows the line end
/// is left in it.
fn skip_line(
    reader: &mut dyn std::io::Read,
    win: &mut Vec<u8>,
    window: usize,
    ended: &mut std::io::Result<decompress::Filled>,
) -> (usize, bool) {
    let mut skipped = 0;
    loop {
        if let Some(i) = memchr::memchr(b'\n', win) {
            skipped += i + 1;
            win.drain(..=i);
            return (skipped, true);
        }
        skipped += win.len();
        win.clear();
        if !matches!(ended, Ok(decompress::Filled::More)) {
            return (skipped, false);
        }
        *ended = decompress::fill(reader, win, window);
    }
}

/// The start of an over-long record, as the reject's `raw` keeps it (without converting the rest).
fn raw_head(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(&bytes[..RAW_LIMIT.min(bytes.len())])
}

fn too_large(limit: usize, bytes: usize) -> RejectReason {
    RejectReason::new(
        "record_too_large",
        format!(
            "the record is {bytes} bytes, more than --max-record-size ({limit} bytes); it was skipped"
        ),
    )
}

/// Parses a run of whole lines (the first numbered `first_line`, at decoded file offset
/// `base`) in parallel tasks.
fn parse_lines(ctx: &Ctx, body: &[u8], first_line: u64, base: u64, chunk: usize) -> Vec<Batch> {
    scan::line_chunks(body, chunk)
        .into_par_iter()
        .map(|(s, e, line)| {
            let mut b = Batch::new(ctx, cap_for(e - s));
            for u in scan::line_units(body, s, e, line + first_line - 1) {
                b.unit(ctx, body, &u, base);
            }
            b
        })
        .collect()
}

/// Parses stream units of `body` (at decoded file offset `base`) in parallel tasks of about
/// `chunk` bytes; `tick` is told how many bytes each finished task covered.
fn parse_units(
    ctx: &Ctx,
    body: &[u8],
    units: Vec<Unit>,
    base: u64,
    chunk: usize,
    tick: &(dyn Fn(usize) + Sync),
) -> Vec<Batch> {
    group_units(units, chunk)
        .into_par_iter()
        .map(|units| {
            let bytes: usize = units.iter().map(|u| u.end - u.start).sum();
            let mut b = Batch::new(ctx, cap_for(bytes));
            for u in &units {
                b.unit(ctx, body, u, base);
            }
            tick(bytes);
            b
        })
        .collect()
}

fn cap_for(bytes: usize) -> usize {
    bytes / 2048 + 16
}

/// The batches' legs (as one frame, or one per bucket), their rejects and record count.
fn collect(batches: Vec<Batch>, source: &str) -> Result<Parsed, IngestError> {
    let n = batches.first().map_or(1, |b| b.builders.len());
    let mut frames: Vec<Vec<DataFrame>> = vec![Vec::new(); n];
    let mut rejects = Vec::new();
    let mut skipped = Vec::new();
    let mut skipped_documents: BTreeMap<String, u64> = BTreeMap::new();
    let mut ledgers = Vec::new();
    let mut records = 0;
    for b in batches {
        records += b.records;
        ledgers.extend(b.ledgers);
        rejects.extend(b.rejects);
        skipped.extend(b.skipped);
        add_counts(&mut skipped_documents, b.skipped_documents);
        for (k, builder) in b.builders.into_iter().enumerate() {
            if !builder.is_empty() {
                frames[k].push(builder.finish(source, "json")?);
            }
        }
        for (k, builder) in b.listing.into_iter().enumerate() {
            if !builder.is_empty() {
                frames[k].push(builder.finish(source, "listing")?);
            }
        }
    }
    let mut parsed = Parsed::empty();
    if n == 1 {
        parsed.legs = concat_frames(frames.pop().unwrap_or_default())?;
    } else {
        // Stacked, not copied into one chunk: a bucket's spill file takes its chunks as they are.
        for (k, f) in frames.into_iter().enumerate() {
            if !f.is_empty() {
                parsed.routed.push((k as u32, crate::spill::stack(f)?));
            }
        }
    }
    parsed.rejects = rejects;
    parsed.skipped = skipped;
    parsed.skipped_documents = skipped_documents;
    parsed.ledgers = ledgers;
    parsed.records = records;
    Ok(parsed)
}

/// Adds counts by name to `to`.
fn add_counts(to: &mut BTreeMap<String, u64>, from: BTreeMap<String, u64>) {
    for (k, n) in from {
        *to.entry(k).or_default() += n;
    }
}

/// Hands `parsed`'s legs to the sink (leaving none) and returns how many.
fn sink_legs(parsed: &mut Parsed, sink: &Sink) -> Result<u64, IngestError> {
    let legs = std::mem::take(&mut parsed.legs);
    let mut n = legs.height() as u64;
    if n > 0 {
        sink(None, legs)?;
    }
    for (b, df) in std::mem::take(&mut parsed.routed) {
        n += df.height() as u64;
        sink(Some(b), df)?;
    }
    Ok(n)
}

/// What one decoded buffer held.
pub struct Parsed {
    /// The legs, when they were not sorted into buckets.
    pub legs: DataFrame,
    /// The legs sorted into buckets as they were parsed: (bucket, its legs).
    pub routed: Vec<(u32, DataFrame)>,
    pub rejects: Vec<Reject>,
    /// Rejects already handed to the run's [`rejects::RejectLog`].
    pub logged_rejects: u64,
    pub records: u64,
    /// Values recognized as holding no CDRs, skipped.
    pub skipped: Vec<SkippedContent>,
    /// CouchDB documents that are not CDRs, counted by kind.
    pub skipped_documents: BTreeMap<String, u64>,
    /// Ledgers, in the order read.
    pub ledgers: Vec<ledger::Ledger>,
    pub layout: Layout,
    /// The line the input ended on.
    pub lines: u64,
}

impl Parsed {
    fn empty() -> Self {
        Parsed {
            legs: DataFrame::default(),
            routed: Vec::new(),
            rejects: Vec::new(),
            logged_rejects: 0,
            records: 0,
            skipped: Vec::new(),
            skipped_documents: BTreeMap::new(),
            ledgers: Vec::new(),
            layout: Layout::Stream,
            lines: 1,
        }
    }

    /// Hands the rejects to the run's log, if it keeps one.
    fn log_rejects(&mut self, opts: &IngestOptions) -> Result<(), IngestError> {
        if let Some(log) = &opts.rejects {
            self.logged_rejects += self.rejects.len() as u64;
            log.push(&mut self.rejects)?;
        }
        Ok(())
    }

    /// Takes one window's records, rejects and skipped content (its legs went to the sink).
    fn absorb(&mut self, window: &mut Parsed) {
        self.records += window.records;
        self.rejects.append(&mut window.rejects);
        self.skipped.append(&mut window.skipped);
        add_counts(
            &mut self.skipped_documents,
            std::mem::take(&mut window.skipped_documents),
        );
        self.ledgers.append(&mut window.ledgers);
    }
}

/// Parses one decoded file's bytes, in parallel tasks of about `opts.chunk_bytes`; `tick` is
/// told how many bytes each finished task covered. The same reading as a file's, in one window.
pub fn parse_buffer(
    buf: &[u8],
    source: &str,
    opts: &IngestOptions,
    tick: &(dyn Fn(usize) + Sync),
) -> Result<Parsed, IngestError> {
    let (body, base) = match buf.strip_prefix(BOM) {
        Some(b) => (b, BOM.len() as u64),
        None => (buf, 0),
    };
    let ctx = Ctx::new(source, opts);
    let layout = scan::detect_layout(body);
    let batches: Vec<Batch> = match layout {
        Layout::Lines => {
            let b = parse_lines(&ctx, body, 1, base, opts.chunk_bytes);
            tick(body.len());
            b
        }
        Layout::Stream => {
            let units = scan::stream_units(body, opts.max_record);
            parse_units(&ctx, body, units, base, opts.chunk_bytes, tick)
        }
    };
    let mut parsed = collect(batches, source)?;
    parsed.layout = layout;
    parsed.lines = 1 + count_lines(body);
    Ok(parsed)
}

/// Parses `buf` as a stream read in windows of `window` bytes (at least the record size limit
/// and 1 byte), as a file would be: for tests of the window edges.
#[doc(hidden)]
pub(crate) fn parse_stream_in_windows(
    buf: &[u8],
    source: &str,
    opts: &IngestOptions,
    window: usize,
) -> Result<Parsed, IngestError> {
    let file = InputFile {
        display: source.to_owned(),
        path: std::path::PathBuf::from(source),
        bytes: buf.len() as u64,
        modified: None,
        compression: decompress::Compression::None,
        format: discover::InputFormat::Json,
    };
    let frames = std::sync::Mutex::new(Vec::new());
    let sink = |_: Option<u32>, df: DataFrame| -> Result<(), IngestError> {
        frames.lock().map_err(|_| poisoned())?.push(df);
        Ok(())
    };
    let progress = Progress::new(0, true);
    let job = Job {
        file: &file,
        opts,
        progress: &progress,
        sink: &sink,
    };
    let consumed = std::sync::atomic::AtomicU64::new(0);
    let mut reader: &[u8] = buf;
    let mut first_buf = Vec::new();
    let first = decompress::fill(&mut reader, &mut first_buf, window);
    let read = read_stream_windows(&job, &consumed, &mut reader, first_buf, first, window)?;
    let mut parsed = read.parsed;
    parsed.legs = concat_frames(frames.into_inner().map_err(|_| poisoned())?)?;
    Ok(parsed)
}

fn poisoned() -> IngestError {
    IngestError::Unreadable {
        path: "memory".to_owned(),
        message: "a parse worker panicked".to_owned(),
    }
}

/// A stream-layout JSON file (pretty-printed, an array, crossbar pages), read in windows: the
/// scan splits each into units (array and `data` elements are units of their own), which are
/// parsed in parallel, handed to the sink, and dropped before the next window is read. Only an
/// unfinished value (at most the record size limit) is carried to the next window.
fn read_stream(
    job: &Job,
    consumed: &std::sync::atomic::AtomicU64,
    reader: &mut dyn std::io::Read,
    win: Vec<u8>,
    first: std::io::Result<decompress::Filled>,
) -> Result<Read, IngestError> {
    let window = job.opts.window();
    read_stream_windows(job, consumed, reader, win, first, window)
}

fn read_stream_windows(
    job: &Job,
    consumed: &std::sync::atomic::AtomicU64,
    reader: &mut dyn std::io::Read,
    mut win: Vec<u8>,
    first: std::io::Result<decompress::Filled>,
    window: usize,
) -> Result<Read, IngestError> {
    let (file, opts, _, _) = job.parts();
    let ctx = Ctx::new(&file.display, opts);
    let mut base = strip_bom(&mut win);
    let mut ended = first;
    let mut scan = scan::StreamScan::default();
    let mut line = 1u64;
    let mut windows = Windows::default();
    let mut tail_err = None;
    loop {
        let more = matches!(ended, Ok(decompress::Filled::More));
        let found = scan.scan(&win, line, !more, opts.max_record);
        let batches = parse_units(&ctx, &win, found.units, base, opts.chunk_bytes, &|_| {});
        windows.take(job, consumed, batches)?;
        line = found.line;
        base += found.consumed as u64;
        win.drain(..found.consumed);
        if !more {
            if let Err(e) = &ended {
                tail_err = Some((base, decode_error(file, base as usize, e)));
            }
            break;
        }
        ended = decompress::fill(reader, &mut win, window);
    }
    Ok(windows.finish(job, Layout::Stream, line, base, tail_err))
}

/// Groups stream units into tasks of about `target` bytes (a huge unit is a task of its own).
fn group_units(units: Vec<Unit>, target: usize) -> Vec<Vec<Unit>> {
    let mut groups = Vec::new();
    let mut cur = Vec::new();
    let mut size = 0;
    for u in units {
        size += u.end - u.start;
        cur.push(u);
        if size >= target {
            groups.push(std::mem::take(&mut cur));
            size = 0;
        }
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Options for a test read: UTC, one bucket, records up to `max_record` bytes.
    fn opts(max_record: usize) -> Result<IngestOptions, Box<dyn std::error::Error>> {
        Ok(IngestOptions {
            tz: crate::time::ReportTz::parse("UTC")?,
            chunk_bytes: 1 << 20,
            max_record,
            partitions: Arc::new(crate::spill::Partitions::new(1)),
            rejects: None,
        })
    }

    #[test]
    fn couchdb_bodies_stream_across_windows_as_read_whole() -> Result<(), Box<dyn std::error::Error>>
    {
        let opts = opts(4096)?;
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/couchdb");
        for name in [
            "all_docs.json",
            "all_docs_pretty.json",
            "modb_archive.json",
            "bulk_docs_dump.json",
            "changes_normal.json",
        ] {
            let buf = std::fs::read(dir.join(name))?;
            // Windows of 4 KiB: each 18-28 KB body spans several, rows cut anywhere.
            let small = parse_stream_in_windows(&buf, name, &opts, 4096)?;
            let whole = parse_stream_in_windows(&buf, name, &opts, buf.len() + 1)?;
            assert!(buf.len() > 4 * 4096, "{name}");
            for p in [&small, &whole] {
                assert_eq!((p.legs.height(), p.rejects.len()), (4, 0), "{name}");
                // Two of the month's documents are ledgers, read into their own rows.
                assert_eq!(
                    p.skipped_documents.values().sum::<u64>(),
                    5 + u64::from(name.starts_with("changes")),
                    "{name}"
                );
                assert_eq!(p.ledgers.len(), 2, "{name}");
            }
            assert_eq!(small.skipped_documents, whole.skipped_documents, "{name}");
            assert_eq!(small.ledgers, whole.ledgers, "{name}");
            assert!(small.legs.equals_missing(&whole.legs), "{name}");
        }
        Ok(())
    }

    #[test]
    fn a_panic_while_reading_a_file_is_that_files_error() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("night.ndjson");
        std::fs::write(&path, "{\"call_id\":\"a\",\"billing_seconds\":1}\n")?;
        let (files, _) = discover::discover(
            &[path.display().to_string()],
            &discover::Exclude { out: None },
        )?;
        let opts = opts(1 << 20)?;
        let progress = Progress::new(0, true);
        // A sink that panics stands for a bug met while reading this file.
        let sink = |_: Option<u32>, _: DataFrame| -> Result<(), IngestError> { panic!("boom") };
        match read_file_guarded(&files[0], &opts, &progress, &sink) {
            Err(IngestError::Unreadable { path: p, message }) => {
                assert_eq!(p, files[0].display);
                assert!(
                    message.contains("internal error") && message.contains("boom"),
                    "{message}"
                );
            }
            other => panic!("expected the file's error, got {:?}", other.map(|_| ())),
        }
        Ok(())
    }
}
