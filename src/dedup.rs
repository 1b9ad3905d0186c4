//! Stage 2: one leg per call_id.
//!
//! Overlapping exports repeat legs. Copies identical in every column (where they were read from
//! aside, and the keys a transport adds to a document: CouchDB's `_` keys, KAZOO's `pvt_*`,
//! crossbar's `id`, see [`is_transport_key`]) are dropped and counted. Copies that differ are a conflict, decided by one rule on the
//! copies' own data, the same within a run and across the runs of a dataset ([`by_data`]):
//! 1. the latest `timestamp` wins (KAZOO's time of the CDR's writing; a missing one counts as
//!    oldest);
//! 2. then the fuller copy: the one with more columns set (a stored CDR over a crossbar CSV row
//!    or a `/cdrs` listing row of the same leg);
//! 3. then, column by column in the order of the columns' names, the copy with the greater value
//!    in the first column where they differ (a missing value counts as least; strings compare by
//!    their UTF-8 bytes). By name, not by place, so that every engine orders alike.
//!
//! So which copy is kept depends on the set of copies alone, never on the order inputs come in:
//! nights merged in any order, or a night merged again after later ones, keep what one run over
//! all of them keeps. Only identical copies tie on all three; of them the dataset's copy stays
//! under `--mode merge` ([`FROM_DATASET`]: its `source_file` and `source_line` too, so that reading
//! an export again changes nothing), and within a run the later input (by `source_file`, the
//! order a run reads its inputs, then `source_line`, `source_offset`).
//!
//! The others are dropped and counted, and the call_id of a conflict is listed in the manifest.
//! Under `--mode merge` the legs of the partitions a run rewrites are read back from the dataset
//! and deduplicated with the run's by this rule.

use polars::prelude::*;
use rayon::prelude::*;

use crate::ingest::builder::RECORD_INDEX;
use crate::merge::FROM_DATASET;
use crate::schema::{CALL_ID, EXTRA, SOURCE_FILE, SOURCE_LINE, TIMESTAMP};

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
pub(crate) const LINEAGE: [&str; 3] = [SOURCE_FILE, SOURCE_LINE, RECORD_INDEX];

/// Drops repeated call_ids, keeping one leg each.
pub fn dedup(df: DataFrame) -> PolarsResult<(DataFrame, DedupStats)> {
    let ids = df.column(CALL_ID)?.str()?;
    let mut order: Vec<(&str, u32)> = ids
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|s| (s, i as u32)))
        .collect();
    order.par_sort_unstable();

    let mut content: Vec<&Column> = df
        .columns()
        .iter()
        .filter(|c| !LINEAGE.contains(&c.name().as_str()) && c.name() != FROM_DATASET)
        .collect();
    content.sort_by(|a, b| a.name().cmp(b.name()));
    let ts = content.iter().position(|c| c.name() == TIMESTAMP);
    let old: Vec<bool> = match df.column(FROM_DATASET) {
        Ok(c) => c.bool()?.iter().map(|v| v == Some(true)).collect(),
        Err(_) => vec![false; df.height()],
    };
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
        // The copies' own data, then (identical copies) the dataset's copy, then the last read.
        let mut winner = rows[0];
        for &r in &rows[1..] {
            let order = by_data(&content, ts, r, winner)?
                .then_with(|| old[r].cmp(&old[winner]))
                .then_with(|| files.get(r).cmp(&files.get(winner)))
                .then_with(|| lines.get(r).cmp(&lines.get(winner)))
                .then_with(|| recs.get(r).cmp(&recs.get(winner)));
            if order.is_gt() {
                winner = r;
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

/// The order of two copies (rows `a`, `b`) by their own data: `timestamp` (`cols[ts]`), then
/// how many of `cols` are set, then `cols` one by one (sorted by name), null least. `Greater`:
/// `a` wins.
fn by_data(
    cols: &[&Column],
    ts: Option<usize>,
    a: usize,
    b: usize,
) -> PolarsResult<std::cmp::Ordering> {
    use std::cmp::Ordering::Equal;
    if let Some(c) = ts.map(|i| cols[i]) {
        let o = cmp_values(&c.get(a)?, &c.get(b)?);
        if o != Equal {
            return Ok(o);
        }
    }
    let (mut set_a, mut set_b) = (0usize, 0usize);
    for c in cols {
        set_a += usize::from(!c.get(a)?.is_null());
        set_b += usize::from(!c.get(b)?.is_null());
    }
    if set_a != set_b {
        return Ok(set_a.cmp(&set_b));
    }
    for c in cols {
        let o = cmp_values(&c.get(a)?, &c.get(b)?);
        if o != Equal {
            return Ok(o);
        }
    }
    Ok(Equal)
}

/// Two values of one column: null least, floats by their total order.
fn cmp_values(a: &AnyValue, b: &AnyValue) -> std::cmp::Ordering {
    a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal)
}

fn same_content(cols: &[&Column], a: usize, b: usize) -> PolarsResult<bool> {
    for c in cols {
        let (x, y) = (c.get(a)?, c.get(b)?);
        if x == y {
            continue;
        }
        if c.name() == EXTRA {
            if let (AnyValue::String(x), AnyValue::String(y)) = (&x, &y) {
                if without_transport_keys(x) == without_transport_keys(y) {
                    continue;
                }
            }
        }
        return Ok(false);
    }
    Ok(true)
}

/// Whether a key of `extra` is one a transport adds to a document rather than part of the
/// CDR: CouchDB's (`_id`, `_rev`, `_revisions`, `_attachments`, any `_` key), KAZOO's private
/// bookkeeping (`pvt_*`: `pvt_created`, `pvt_modified`, `pvt_account_db`, ...) and the `id`
/// crossbar's `kz_doc:public_fields/1` puts in their place. The same CDR from a database dump
/// and from an API page differs only in these: the copies are the same leg, not a conflict.
fn is_transport_key(k: &str) -> bool {
    k.starts_with('_') || k.starts_with("pvt_") || k == "id"
}

/// An `extra` object without its transport keys ([`is_transport_key`]); `None` when it is no
/// JSON object.
fn without_transport_keys(extra: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let mut m: serde_json::Map<String, serde_json::Value> = serde_json::from_str(extra).ok()?;
    m.retain(|k, _| !is_transport_key(k));
    Some(m)
}
