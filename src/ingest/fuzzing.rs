//! Invariants that must hold for any input bytes, checked by the fuzz targets (`fuzz/`) and,
//! over the fuzz corpus kept in the repository, by `cargo test`. Each panics on a violation.

use super::{csv_export, parse_buffer, parse_stream_in_windows, scan, IngestOptions};
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
