//! Invariants that must hold for any input bytes, checked by the fuzz targets (`fuzz/`) and,
//! over the fuzz corpus kept in the repository, by `cargo test`. Each panics on a violation.

use super::{csv_export, event, parse_buffer, parse_stream_in_windows, scan, IngestOptions};
use crate::time::ReportTz;

fn opts(chunk_bytes: usize) -> IngestOptions {
    IngestOptions {
        tz: ReportTz::parse("America/New_York").unwrap_or_else(|e| panic!("{e}")),
        chunk_bytes,
        // Small, so that the record size limit is reached often.
        max_record: 2048,
        partitions: std::sync::Arc::new(crate::spill::Partitions::new(1)),
        rejects: None,
    }
}

/// A JSON input: every record is a leg or a reject, and how the input is cut into parallel
/// tasks changes nothing.
pub fn json_stream(data: &[u8]) {
    let small = parse_buffer(data, "fuzz", &opts(64), &|_| {})
        .unwrap_or_else(|e| panic!("a frame could not be built: {e}"));
    let big = parse_buffer(data, "fuzz", &opts(1 << 20), &|_| {})
        .unwrap_or_else(|e| panic!("a frame could not be built: {e}"));
    let count = |p: &super::Parsed| (p.records, p.legs.height() as u64, p.rejects.len() as u64);
    let (records, legs, rejects) = count(&small);
    assert_eq!(records, legs + rejects, "a record was lost");
    assert_eq!(
        count(&small),
        count(&big),
        "the task size changed the result"
    );
    assert!(
        small.legs.equals_missing(&big.legs),
        "the task size changed a leg"
    );
    // A stream read in small windows (as a large file is) reads the same.
    let body = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
    if scan::detect_layout(body) == scan::Layout::Stream {
        let windowed = parse_stream_in_windows(data, "fuzz", &opts(64), 2049)
            .unwrap_or_else(|e| panic!("a frame could not be built: {e}"));
        assert_eq!(
            count(&windowed),
            count(&big),
            "the window size changed the result"
        );
        assert!(
            windowed.legs.equals_missing(&big.legs),
            "the window size changed a leg"
        );
    }
}

/// A crossbar CSV export: refused as a whole (no call_id column) or every row is a leg or a
/// reject.
pub fn csv_export(data: &[u8]) {
    let tz = opts(0).tz;
    if let Ok(p) = csv_export::parse(data, "fuzz.csv", Some("acct"), &tz) {
        assert_eq!(
            p.records,
            p.legs.height() as u64 + p.rejects.len() as u64,
            "a row was lost"
        );
    }
}

/// A message-bus event (`Call-ID`, ...), below the frames: as the reader does, an event nested
/// deeper than [`event::MAX_EVENT_DEPTH`] is not normalized; any other text normalizes to a JSON
/// object or is an error, never a panic, and the output stays linear in the input (the
/// normalizer once copied the rest of the text at every level: 2.45 GB for a 120 KB event).
pub fn bus_event(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if event::nests_deeper_than(text, event::MAX_EVENT_DEPTH) {
        return;
    }
    if let Ok(cdr) = event::to_cdr(text) {
        // Values are kept as the event wrote them (a number beyond f64 too, for the reader to
        // judge), so the object is read with its values raw.
        let doc: std::collections::HashMap<String, Box<serde_json::value::RawValue>> =
            serde_json::from_str(&cdr).unwrap_or_else(|e| {
                panic!("the normalized event is not a JSON object: {e}: {cdr}")
            });
        // Keys normalized: no '-' and no upper case, at the top level.
        assert!(
            doc.keys()
                .all(|k| !k.contains('-') && !k.chars().any(|c| c.is_ascii_uppercase())),
            "a key is not normalized: {cdr}"
        );
        // Each byte of the input becomes at most a few (a key's escapes written again).
        assert!(
            cdr.len() <= 6 * text.len() + 64,
            "{} bytes of output for {} of input",
            cdr.len(),
            text.len()
        );
    }
}

/// The crossbar CSV aligner, below the frames: a row of KAZOO 5.0's columns (with the reseller's)
/// whose extra commas the aligner places. A row it aligns gives one cell per column, and its
/// cells joined by commas are the row itself (the aligner only decides which commas are inside a
/// cell); a row it cannot align is a reject. Never a panic, and within libFuzzer's time limit
/// (placing commas is a search).
pub fn csv_align(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let line = text.split(['\r', '\n']).next().unwrap_or_default();
    csv_export::fuzz_align(line);
}
