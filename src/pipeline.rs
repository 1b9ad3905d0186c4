//! The stages between reading and writing, run a bucket at a time so that memory stays bounded
//! whatever the input's size (see [`crate::spill`]).
//!
//! 1. Parsed legs are routed by interaction key (`interaction_id`, else `bridge_id`, else
//!    `call_id`). Copies of one call_id share that key unless they conflict on it; those rare
//!    call_ids, found in more than one bucket by an index of (call_id hash, bucket), are
//!    deduplicated together first.
//! 2. Each bucket is deduplicated, priced, reconciled and grouped into interactions, and its
//!    legs, interactions and reconciliation rows are routed by partition (account_id, date).
//! 3. Each partition bucket is written; reports read every bucket through a lazy scan.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use polars::prelude::*;

use crate::dedup::{dedup, DedupStats, LINEAGE};
use crate::ingest::{concat_frames, IngestError};
use crate::interactions;
use crate::progress::Progress;
use crate::rate::{apply_deck, rate_frame, DeckSet, Rounding};
use crate::reconcile::{self, Summary};
use crate::schema::{CALL_ID, INTERACTION_ID};
use crate::spill::{by_first_key, by_partition, hash_str, Buckets};
use crate::write::{fill_unassigned, write_partitioned, Output, PartitionStats, Table};

/// Stage timings in milliseconds, summed over buckets.
pub type Stages = BTreeMap<&'static str, u64>;

/// Adds the time since `since` to stage `name`.
pub fn add(stages: &mut Stages, name: &'static str, since: Instant) {
    *stages.entry(name).or_insert(0) += since.elapsed().as_millis() as u64;
}

/// Decoded bytes a compressed input is assumed to hold per byte, to size the buckets.
const COMPRESSION_RATIO: u64 = 8;

/// How many buckets a run of `input_bytes` (decoded) uses under `budget`: one, held in memory,
/// when the input fits in a quarter of it; else enough that one bucket's legs take about a
/// quarter of it.
pub fn bucket_count(input_bytes: u64, budget: usize) -> usize {
    let quarter = (budget as u64 / 4).max(1);
    input_bytes.div_ceil(quarter).clamp(1, 4096) as usize
}

/// The decoded size of the inputs, estimated.
pub fn estimated_input_bytes(files: &[crate::ingest::discover::InputFile]) -> u64 {
    files
        .iter()
        .map(|f| match f.compression {
            crate::ingest::decompress::Compression::None => f.bytes,
            _ => f.bytes.saturating_mul(COMPRESSION_RATIO),
        })
        .sum()
}

/// Parsed legs by interaction key, and which call_id went where.
pub struct Parsed {
    buckets: Buckets,
    index: Mutex<Vec<(u64, u32)>>,
}

/// The interaction key's columns, first not null wins.
const ROUTE: [&str; 3] = [INTERACTION_ID, "bridge_id", CALL_ID];

impl Parsed {
    /// `n` buckets holding up to half the run's `budget` (the other half is for the next
    /// stage's buckets, see [`group`]).
    pub fn new(spill: &Path, n: usize, budget: usize) -> Self {
        Parsed {
            buckets: Buckets::new(spill, "parsed", n, budget / 2),
            index: Mutex::new(Vec::new()),
        }
    }

    /// The ingest sink: routes a frame of parsed legs.
    pub fn sink(&self, df: DataFrame) -> Result<(), IngestError> {
        let n = self.buckets.count();
        let route = by_first_key(&df, &ROUTE, n)?;
        if n > 1 {
            let ids = df.column(CALL_ID)?.str()?;
            let mut keys: Vec<(u64, u32)> = ids
                .iter()
                .zip(&route)
                .filter_map(|(id, &b)| id.map(|id| (hash_str(id), b)))
                .collect();
            self.index
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .append(&mut keys);
        }
        self.buckets.push_split(&df, &route)?;
        Ok(())
    }

    /// Whether parsed legs went to disk.
    pub fn spilled(&self) -> bool {
        self.buckets.spilled()
    }
}

/// The call_id hashes found in more than one bucket, and those buckets.
fn split_call_ids(mut index: Vec<(u64, u32)>) -> (HashSet<u64>, Vec<u32>) {
    index.sort_unstable();
    index.dedup();
    let mut ids = HashSet::new();
    let mut buckets = Vec::new();
    for group in index.chunk_by(|a, b| a.0 == b.0) {
        if group.len() > 1 {
            ids.insert(group[0].0);
            buckets.extend(group.iter().map(|&(_, b)| b));
        }
    }
    buckets.sort_unstable();
    buckets.dedup();
    (ids, buckets)
}

/// Per row, whether its call_id's hash is in `ids`.
fn in_ids(df: &DataFrame, ids: &HashSet<u64>) -> PolarsResult<BooleanChunked> {
    Ok(df
        .column(CALL_ID)?
        .str()?
        .iter()
        .map(|v| v.is_some_and(|s| ids.contains(&hash_str(s))))
        .collect())
}

type Lineage = (Option<String>, Option<i64>, Option<i64>);

fn lineage(df: &DataFrame) -> PolarsResult<Vec<Lineage>> {
    let [file, line, record] = LINEAGE;
    let f = df.column(file)?.str()?;
    let l = df.column(line)?.i64()?;
    let r = df.column(record)?.i64()?;
    Ok((0..df.height())
        .map(|i| (f.get(i).map(str::to_owned), l.get(i), r.get(i)))
        .collect())
}

/// A polars error, said in the pipeline's words.
fn why(what: &'static str) -> impl FnOnce(PolarsError) -> anyhow::Error {
    move |e| anyhow::Error::new(e).context(what)
}

/// How a run prices and writes.
pub struct Settings<'a> {
    pub decks: Option<&'a DeckSet>,
    pub rounding: Rounding,
}

/// Step 2's results: the tables by partition bucket, and what was counted on the way.
pub struct Grouped {
    pub legs: Buckets,
    pub calls: Buckets,
    pub recon: Buckets,
    pub dedup: DedupStats,
    pub recon_summary: Summary,
    /// call_ids whose copies were in more than one bucket (hashes, so collisions count too).
    pub cross_bucket_call_ids: usize,
}

/// Step 2, a bucket at a time.
pub fn group(
    parsed: Parsed,
    spill: &Path,
    budget: usize,
    set: &Settings,
    stages: &mut Stages,
    quiet: bool,
) -> anyhow::Result<Grouped> {
    let n = parsed.buckets.count();
    let mut g = Grouped {
        legs: Buckets::new(spill, "legs", n, budget / 2),
        calls: Buckets::new(spill, "interactions", n, budget / 8),
        recon: Buckets::new(spill, "reconciliation", n, budget / 8),
        dedup: DedupStats::default(),
        recon_summary: Summary::default(),
        cross_bucket_call_ids: 0,
    };
    let t = Instant::now();
    let index = std::mem::take(&mut *parsed.index.lock().unwrap_or_else(|p| p.into_inner()));
    let (cross, cross_buckets) = split_call_ids(index);
    g.cross_bucket_call_ids = cross.len();
    // Copies of a call_id in different buckets: decided together, before the buckets.
    let mut winners: HashSet<Lineage> = HashSet::new();
    if !cross.is_empty() {
        let mut copies = Vec::new();
        for &b in &cross_buckets {
            if let Some(df) = parsed.buckets.get(b as usize)? {
                copies.push(df.filter(&in_ids(&df, &cross)?)?);
            }
        }
        let (kept, stats) = dedup(concat_frames(copies)?).map_err(why("deduplicating legs"))?;
        g.dedup.merge(stats);
        winners.extend(lineage(&kept)?);
    }
    add(stages, "3_dedup", t);
    let mut any = false;
    let progress = Progress::steps(n as u64, "pricing and grouping bucket", quiet || n == 1);
    for b in 0..n {
        progress.inc(1);
        let t = Instant::now();
        let Some(df) = parsed.buckets.take(b)? else {
            continue;
        };
        let legs = if cross.is_empty() {
            let (legs, stats) = dedup(df).map_err(why("deduplicating legs"))?;
            g.dedup.merge(stats);
            legs
        } else {
            let mask = in_ids(&df, &cross)?;
            let (mut legs, stats) =
                dedup(df.filter(&!&mask)?).map_err(why("deduplicating legs"))?;
            g.dedup.merge(stats);
            let copies = df.filter(&mask)?;
            let won: BooleanChunked = lineage(&copies)?
                .iter()
                .map(|l| winners.contains(l))
                .collect();
            legs.vstack_mut_owned(copies.filter(&won)?)?;
            legs
        };
        add(stages, "3_dedup", t);
        any = true;
        process(legs, &mut g, set, stages)?;
    }
    progress.finish();
    if !any {
        // No legs at all: the tables still get their columns.
        process(concat_frames(vec![])?, &mut g, set, stages)?;
    }
    Ok(g)
}

/// Prices, reconciles and groups one bucket's deduplicated legs, and routes the results.
fn process(
    mut legs: DataFrame,
    g: &mut Grouped,
    set: &Settings,
    stages: &mut Stages,
) -> anyhow::Result<()> {
    let t = Instant::now();
    apply_deck(&mut legs, set.decks, set.rounding).map_err(why("looking up the rate deck"))?;
    rate_frame(&mut legs, set.rounding).map_err(why("rating legs"))?;
    add(stages, "4_rate", t);
    let t = Instant::now();
    let (mut recon, summary) =
        reconcile::reconcile(&mut legs, set.rounding).map_err(why("reconciling legs"))?;
    fill_unassigned(&mut recon)?;
    g.recon_summary.merge(summary);
    add(stages, "4b_reconcile", t);
    let t = Instant::now();
    let mut calls = interactions::build(&legs).map_err(why("grouping legs into interactions"))?;
    fill_unassigned(&mut legs)?;
    fill_unassigned(&mut calls)?;
    add(stages, "5_interactions", t);
    let t = Instant::now();
    for (df, to) in [(legs, &g.legs), (calls, &g.calls), (recon, &g.recon)] {
        if df.height() == 0 {
            to.push(0, df)?;
        } else {
            to.push_split(&df, &by_partition(&df, to.count())?)?;
        }
    }
    add(stages, "5b_route", t);
    Ok(())
}

/// The three tables' partitions as written.
pub struct Written {
    pub legs: Vec<PartitionStats>,
    pub calls: Vec<PartitionStats>,
    pub recon: Vec<PartitionStats>,
}

/// Step 3: each partition bucket's tables, written; the buckets stay for the reports' scans.
pub fn write(
    g: &Grouped,
    out: &Path,
    tables: [&Table; 3],
    output: &Output,
    quiet: bool,
) -> anyhow::Result<Written> {
    let mut w = Written {
        legs: vec![],
        calls: vec![],
        recon: vec![],
    };
    for b in &[&g.legs, &g.calls, &g.recon] {
        if b.spilled() {
            b.flush()?;
        }
    }
    let n = g.legs.count();
    let progress = Progress::steps(n as u64, "writing bucket", quiet || n == 1);
    for k in 0..n {
        progress.inc(1);
        for (from, table, to) in [
            (&g.legs, tables[0], &mut w.legs),
            (&g.calls, tables[1], &mut w.calls),
            (&g.recon, tables[2], &mut w.recon),
        ] {
            if let Some(df) = from.get(k)? {
                to.extend(write_partitioned(&df, out, table, output)?);
            }
        }
    }
    progress.finish();
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_count_follows_the_budget() {
        assert_eq!(bucket_count(0, 1 << 30), 1);
        assert_eq!(bucket_count(200 << 20, 1 << 30), 1);
        assert_eq!(bucket_count(3_460_000_000, 1 << 30), 13);
        assert_eq!(bucket_count(u64::MAX, 1), 4096);
    }

    #[test]
    fn call_ids_in_two_buckets_are_found() {
        let (ids, buckets) = split_call_ids(vec![(7, 1), (7, 1), (9, 0), (9, 3), (5, 2)]);
        assert_eq!(ids, HashSet::from([9]));
        assert_eq!(buckets, vec![0, 3]);
    }
}
