//! Stage 2: one leg per call_id.
//!
//! Overlapping exports repeat legs. Copies identical in every column (where they were read from
//! aside) are dropped and counted. Copies that differ are a conflict: the one with the latest
//! `timestamp` is kept (ties go to the copy read first, by file path then position, so the
//! choice never depends on thread count or argument order), the others are dropped and counted,
//! and the call_id is listed in the manifest.

use polars::prelude::*;
use rayon::prelude::*;

use crate::ingest::builder::RECORD_INDEX;
use crate::schema::{CALL_ID, SOURCE_FILE, SOURCE_LINE, TIMESTAMP};

/// What deduplication dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DedupStats {
    /// Every copy dropped, identical or not.
    pub duplicates_dropped: u64,
    /// Copies identical to the kept one.
    pub identical_dropped: u64,
    /// Copies that differed from the kept one.
    pub conflicting_dropped: u64,
    /// call_ids whose copies differed, sorted.
    pub conflict_call_ids: Vec<String>,
}

impl DedupStats {
    /// Adds what another part of the input dropped (call_ids never appear in two parts).
    pub fn merge(&mut self, o: DedupStats) {
        self.duplicates_dropped += o.duplicates_dropped;
        self.identical_dropped += o.identical_dropped;
        self.conflicting_dropped += o.conflicting_dropped;
        self.conflict_call_ids.extend(o.conflict_call_ids);
        self.conflict_call_ids.sort_unstable();
    }
}

/// Columns that say where a copy was read from, not what it says.
pub const LINEAGE: [&str; 3] = [SOURCE_FILE, SOURCE_LINE, RECORD_INDEX];

/// Drops repeated call_ids, keeping one leg each.
pub fn dedup(df: DataFrame) -> PolarsResult<(DataFrame, DedupStats)> {
    let ids = df.column(CALL_ID)?.str()?;
    let mut order: Vec<(&str, u32)> = ids
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|s| (s, i as u32)))
        .collect();
    order.par_sort_unstable();

    let content: Vec<&Column> = df
        .columns()
        .iter()
        .filter(|c| !LINEAGE.contains(&c.name().as_str()))
        .collect();
    let ts = df.column(TIMESTAMP)?.datetime()?.physical().clone();
    let files = df.column(SOURCE_FILE)?.str()?.clone();
    let lines = df.column(SOURCE_LINE)?.i64()?.clone();
    let recs = df.column(RECORD_INDEX)?.i64()?.clone();

    let mut keep = vec![true; df.height()];
    let mut stats = DedupStats::default();
    for group in order.chunk_by(|a, b| a.0 == b.0) {
        if group.len() < 2 {
            continue;
        }
        let rows: Vec<usize> = group.iter().map(|&(_, i)| i as usize).collect();
        // Latest timestamp first (a missing one counts as oldest), then first read.
        let winner = rows
            .iter()
            .copied()
            .min_by(|&a, &b| {
                ts.get(b)
                    .cmp(&ts.get(a))
                    .then_with(|| files.get(a).cmp(&files.get(b)))
                    .then_with(|| lines.get(a).cmp(&lines.get(b)))
                    .then_with(|| recs.get(a).cmp(&recs.get(b)))
            })
            .unwrap_or(rows[0]);
        let mut conflict = false;
        for &r in rows.iter().filter(|&&r| r != winner) {
            keep[r] = false;
            stats.duplicates_dropped += 1;
            if same_content(&content, r, winner)? {
                stats.identical_dropped += 1;
            } else {
                stats.conflicting_dropped += 1;
                conflict = true;
            }
        }
        if conflict {
            stats.conflict_call_ids.push(group[0].0.to_owned());
        }
    }
    if stats.duplicates_dropped == 0 {
        return Ok((df, stats));
    }
    let mask = BooleanChunked::from_slice("keep".into(), &keep);
    Ok((df.filter(&mask)?, stats))
}

fn same_content(cols: &[&Column], a: usize, b: usize) -> PolarsResult<bool> {
    for c in cols {
        if c.get(a)? != c.get(b)? {
            return Ok(false);
        }
    }
    Ok(true)
}
