//! Stage 2: one leg per call_id.
//!
//! Overlapping exports repeat legs. Copies identical in every column (where they were read from
//! aside) are dropped and counted. Copies that differ are a conflict, decided by one rule, the
//! same within a run and across the runs of a dataset:
//! 1. the copies' own data: the latest `timestamp` wins (KAZOO's time of the CDR's writing; a
//!    missing one counts as oldest);
//! 2. in a tie, the later input: a later run's copy over the dataset's ([`FROM_DATASET`]), and
//!    within a run the later file (by `source_file`, the order a run reads its inputs), then the
//!    later record in it (`source_line`, `source_offset`). So nights merged one after the other
//!    keep what one run over all their files, named in night order, keeps; and the choice never
//!    depends on thread count or argument order.
//!
//! The others are dropped and counted, and the call_id is listed in the manifest. Under `--mode
//! merge` the legs of the partitions a run rewrites are read back from the dataset and
//! deduplicated with the run's by this rule, one thing added: when the dataset already holds a
//! copy identical to the kept one, the dataset's copy stays (its `source_file` and `source_line`
//! too), so that reading an export again changes nothing.

use polars::prelude::*;
use rayon::prelude::*;

use crate::ingest::builder::RECORD_INDEX;
use crate::merge::FROM_DATASET;
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
    /// Of `duplicates_dropped`: copies of a leg the dataset already held (merge).
    pub already_in_dataset: u64,
    /// Legs read back from the dataset and dropped for a newer conflicting copy (merge; not in
    /// `duplicates_dropped`, which counts this run's input).
    pub dataset_legs_replaced: u64,
}

impl DedupStats {
    /// Adds what another part of the input dropped (call_ids never appear in two parts).
    pub fn merge(&mut self, o: DedupStats) {
        self.duplicates_dropped += o.duplicates_dropped;
        self.identical_dropped += o.identical_dropped;
        self.conflicting_dropped += o.conflicting_dropped;
        self.conflict_call_ids.extend(o.conflict_call_ids);
        self.conflict_call_ids.sort_unstable();
        self.already_in_dataset += o.already_in_dataset;
        self.dataset_legs_replaced += o.dataset_legs_replaced;
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
        .filter(|c| !LINEAGE.contains(&c.name().as_str()) && c.name() != FROM_DATASET)
        .collect();
    let old: Vec<bool> = match df.column(FROM_DATASET) {
        Ok(c) => c.bool()?.iter().map(|v| v == Some(true)).collect(),
        Err(_) => vec![false; df.height()],
    };
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
        // Latest timestamp (a missing one counts as oldest), then the later input: this run's
        // copy over the dataset's, then the last read.
        let mut winner = rows
            .iter()
            .copied()
            .max_by(|&a, &b| {
                ts.get(a)
                    .cmp(&ts.get(b))
                    .then_with(|| old[b].cmp(&old[a]))
                    .then_with(|| files.get(a).cmp(&files.get(b)))
                    .then_with(|| lines.get(a).cmp(&lines.get(b)))
                    .then_with(|| recs.get(a).cmp(&recs.get(b)))
            })
            .unwrap_or(rows[0]);
        // The dataset's copy of the kept leg stays, where it was read from included.
        if !old[winner] {
            for &r in rows.iter().filter(|&&r| old[r]) {
                if same_content(&content, r, winner)? {
                    winner = r;
                    break;
                }
            }
        }
        let in_dataset = rows.iter().any(|&r| old[r]);
        let mut conflict = false;
        for &r in rows.iter().filter(|&&r| r != winner) {
            keep[r] = false;
            let same = same_content(&content, r, winner)?;
            conflict |= !same;
            if old[r] {
                stats.dataset_legs_replaced += 1;
                continue;
            }
            stats.duplicates_dropped += 1;
            stats.already_in_dataset += u64::from(in_dataset);
            if same {
                stats.identical_dropped += 1;
            } else {
                stats.conflicting_dropped += 1;
            }
        }
        if conflict {
            stats.conflict_call_ids.push(group[0].0.to_owned());
        }
    }
    if stats.duplicates_dropped + stats.dataset_legs_replaced == 0 {
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
