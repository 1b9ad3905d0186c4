//! The stages between reading and writing, run a bucket at a time so that memory stays bounded
//! whatever the input's size (see [`crate::spill`]).
//!
//! 1. Parsed legs are routed by partition (account_id, date), so that a bucket holds whole
//!    partitions. Copies of one call_id share the partition unless they conflict on it; those
//!    rare call_ids, found in more than one bucket by an index of (call_id hash, bucket), are
//!    deduplicated together first.
//! 2. Each bucket is deduplicated, priced and reconciled, and its legs are written, one file per
//!    partition: the wide leg rows go through the disk once. The few columns that interactions
//!    need are routed by interaction key (`interaction_id`, else `bridge_id`, else `call_id`),
//!    and the reconciliation rows by partition.
//! 3. Each interaction bucket is grouped into calls, routed by partition; the interactions and
//!    reconciliation buckets are written. Reports read the written legs and the other two
//!    tables' buckets through lazy scans.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use polars::prelude::*;

use crate::dedup::{dedup, DedupStats, LINEAGE};
use crate::ingest::{concat_frames, IngestError};
use crate::interactions;
use crate::merge::{Seen, Tracker, FROM_DATASET};
use crate::progress::Progress;
use crate::rate::{apply_deck, rate_frame, DeckSet, Rounding};
use crate::reconcile::{self, Summary};
use crate::schema::{CALL_ID, INTERACTIONS_TABLE, LEGS_TABLE, RECONCILIATION_TABLE};
use crate::spill::{by_first_key, hash_str, partition_ids, Buckets, Partitions, SpillFormat};
use crate::write::{
    fill_unassigned, scan_partitioned, write_partitioned, Output, PartitionStats, Table,
};

/// Stage timings in milliseconds, summed over buckets.
pub(crate) type Stages = BTreeMap<&'static str, u64>;

/// Adds the time since `since` to stage `name`.
pub(crate) fn add(stages: &mut Stages, name: &'static str, since: Instant) {
    *stages.entry(name).or_insert(0) += since.elapsed().as_millis() as u64;
}

/// Decoded bytes a compressed input is assumed to hold per byte, to size the buckets.
const COMPRESSION_RATIO: u64 = 8;

/// The process's peak resident memory so far, in bytes (`VmHWM` of `/proc/self/status`);
/// `None` where the kernel does not say (not Linux). The manifest records it, so that the memory
/// bound (`--memory`) is a figure every run reports and a test can check.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// How many buckets a run of `input_bytes` (decoded) uses under `budget`: one, held in memory,
/// when the input fits in a quarter of it; else enough that one bucket's legs take about a
/// quarter of it.
pub(crate) fn bucket_count(input_bytes: u64, budget: usize) -> usize {
    let quarter = (budget as u64 / 4).max(1);
    input_bytes.div_ceil(quarter).clamp(1, MAX_BUCKETS) as usize
}

/// How many bytes of parsed legs the buckets hold before they spill, for a run of
/// `input_bytes` (decoded) under `budget`: the whole budget when the input is no larger than
/// it, else half (the other half is for the next stage's buckets, see [`group`]).
///
/// An input of up to the budget is held whole, in [`bucket_count`]'s compacted buckets: spilling
/// it buys no memory. At the default 1 GiB, 200,000 legs (692 MB of NDJSON, 3 buckets) spilled
/// at half the budget: the parse stage wrote and re-read every leg through zstd (1.5 s of its
/// 2.6 s, and 0.6 s of deduplication reading them back), and the peak was 1.46-1.55 GB, above
/// the 1.17 GB of the same run held in memory (`--memory 2G`: 2 buckets, no spill). An input
/// over the budget keeps spilling at half of it, which bounds the peak whatever the input's
/// size (1M and 5M legs: see BENCHMARKS.md).
pub(crate) fn parsed_budget(input_bytes: u64, budget: usize) -> usize {
    if input_bytes <= budget as u64 {
        budget
    } else {
        budget / 2
    }
}

/// The default size of a parse task for a run of `buckets` buckets: 512 KiB a bucket, between
/// 8 and 32 MiB. A task's legs are split into a piece per bucket, and every piece is a frame of
/// its own until its bucket is read back. At 5M legs (65 buckets), 8 MiB tasks made pieces of
/// about 37 legs; 32 MiB tasks took the run from 151.6-154.0 s to 133.7-134.8 s, and its peak
/// from 1,277-1,280 to 1,180-1,237 MB (reading the buckets back and deduplicating them, from
/// 28.4-28.6 s to 15.4-16.9 s). At 1M legs (13 buckets) tasks stay at 8 MiB: 32 MiB there was
/// within the noise in time and 30-90 MB higher at the peak.
pub(crate) fn chunk_bytes(buckets: usize) -> usize {
    (buckets << 19).clamp(8 << 20, 32 << 20)
}

/// The decoded size of the inputs, estimated.
pub(crate) fn estimated_input_bytes(files: &[crate::ingest::discover::InputFile]) -> u64 {
    files
        .iter()
        .map(|f| match f.compression {
            crate::ingest::decompress::Compression::None => f.bytes,
            _ => f.bytes.saturating_mul(COMPRESSION_RATIO),
        })
        .sum()
}

/// At most this many buckets, so that a bucket number fits the low bits of an index entry.
const MAX_BUCKETS: u64 = 1 << BUCKET_BITS;
const BUCKET_BITS: u32 = 12;

/// An index entry: a call_id's hash with its low 12 bits replaced by the bucket, 8 bytes a leg
/// (a `(u64, u32)` pair took 16). Two call_ids whose hashes agree on the other 52 bits only
/// look like copies of one call, which costs them the careful path, not a wrong answer: the
/// copies are then deduplicated by their real call_id.
fn index_entry(call_id: &str, bucket: u32) -> u64 {
    (hash_str(call_id) & !(MAX_BUCKETS - 1)) | u64::from(bucket)
}

/// Parsed legs by partition, and which call_id went where.
pub(crate) struct Parsed {
    buckets: Buckets,
    /// Which bucket each partition goes to, and the legs each bucket has had so far.
    partitions: Arc<Partitions>,
    index: Mutex<Vec<u64>>,
    /// What a merge needs to know of the input's legs, when the run merges.
    tracker: Option<Tracker>,
}

impl Parsed {
    /// `partitions`' buckets, holding up to `held` bytes before they spill (see
    /// [`parsed_budget`]). `track`: note the partitions, call_ids and interaction keys of the
    /// input's legs for a merge ([`Parsed::seen`]).
    pub(crate) fn new(spill: &Path, partitions: Arc<Partitions>, held: usize, track: bool) -> Self {
        Parsed {
            buckets: Buckets::new(
                spill,
                "parsed",
                partitions.count(),
                held,
                SpillFormat::Stream,
            ),
            partitions,
            index: Mutex::new(Vec::new()),
            tracker: track.then(Tracker::default),
        }
    }

    /// The ingest sink: routes a frame of parsed legs (all of bucket `known`, if given).
    pub(crate) fn sink(&self, known: Option<u32>, mut df: DataFrame) -> Result<(), IngestError> {
        let n = df.height();
        df.with_column(BooleanChunked::full(FROM_DATASET.into(), false, n).into_column())?;
        if let Some(t) = &self.tracker {
            t.observe(&df)?;
        }
        self.route(known, df)
    }

    /// Routes legs read back from the dataset ([`crate::merge::read_back`]).
    pub(crate) fn sink_dataset(&self, df: DataFrame) -> Result<(), IngestError> {
        self.route(None, df)
    }

    /// What the input held, for a merge (`None` unless tracked).
    pub(crate) fn seen(&mut self) -> Option<Seen> {
        self.tracker.take().map(Tracker::into_inner)
    }

    fn route(&self, known: Option<u32>, df: DataFrame) -> Result<(), IngestError> {
        let n = self.buckets.count();
        if n == 1 {
            // One bucket, held in memory: no routing, and no call_id can be in two buckets.
            return Ok(self.buckets.push(0, df)?);
        }
        let route = match known {
            Some(b) => vec![b; df.height()],
            None => self.partitions.of_rows(&df)?,
        };
        let mut legs = vec![0; n];
        for &b in &route {
            legs[b as usize] += 1;
        }
        for (b, legs) in legs.into_iter().enumerate().filter(|(_, l)| *l > 0) {
            self.partitions.add_legs(b as u32, legs);
        }
        let ids = df.column(CALL_ID)?.str()?;
        let mut keys: Vec<u64> = ids
            .iter()
            .zip(&route)
            .filter_map(|(id, &b)| id.map(|id| index_entry(id, b)))
            .collect();
        self.index
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .append(&mut keys);
        match known {
            Some(b) => self.buckets.push(b as usize, df)?,
            None => self.buckets.push_split(&df, &route)?,
        }
        Ok(())
    }

    /// Whether parsed legs went to disk.
    pub(crate) fn spilled(&self) -> bool {
        self.buckets.spilled()
    }
}

/// The call_id hashes (high bits, see [`index_entry`]) found in more than one bucket, and those
/// buckets.
fn split_call_ids(mut index: Vec<u64>) -> (HashSet<u64>, Vec<u32>) {
    index.sort_unstable();
    index.dedup();
    let mut ids = HashSet::new();
    let mut buckets = Vec::new();
    for group in index.chunk_by(|a, b| a >> BUCKET_BITS == b >> BUCKET_BITS) {
        if group.len() > 1 {
            ids.insert(group[0] >> BUCKET_BITS);
            buckets.extend(group.iter().map(|&e| (e & (MAX_BUCKETS - 1)) as u32));
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
        .map(|v| v.is_some_and(|s| ids.contains(&(hash_str(s) >> BUCKET_BITS))))
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

/// How a run prices legs.
pub(crate) struct Settings<'a> {
    pub decks: Option<&'a DeckSet>,
    pub rounding: Rounding,
}

/// Where a run writes its legs.
pub(crate) struct LegsOut<'a> {
    pub dir: &'a Path,
    pub table: &'a Table<'a>,
    pub output: &'a Output,
    /// The leg columns the built-in reports name (`account_id` and `date` among them), kept
    /// as the legs are written, for [`Grouped::report_legs`].
    pub report_columns: &'a [&'a str],
}

/// Step 2's results: the legs as written, the other two tables by partition bucket, and what
/// was counted on the way.
pub(crate) struct Grouped {
    pub legs: Vec<PartitionStats>,
    /// The written legs' rows of the legs index ([`crate::dataset::index::rows_of`]).
    pub key_rows: Vec<DataFrame>,
    /// The legs again, for the reports, when no Parquet was written to scan instead.
    legs_copy: Option<Buckets>,
    /// The legs' [`LegsOut::report_columns`], for the built-in reports.
    report_legs: Buckets,
    /// The legs' columns, when there was no leg to write.
    no_legs: Option<DataFrame>,
    pub calls: Buckets,
    pub recon: Buckets,
    pub dedup: DedupStats,
    pub recon_summary: Summary,
    /// call_ids whose copies were in more than one bucket (hashes, so collisions count too).
    pub cross_bucket_call_ids: usize,
    /// Buckets larger than the mean by a quarter, processed in groups of partitions.
    pub buckets_split: usize,
    /// The legs (copies included) of the largest bucket, which is read and deduplicated whole.
    pub largest_bucket_legs: usize,
}

/// The buckets step 2 fills besides the written legs.
struct Routed {
    /// The columns interactions are built from, by interaction key.
    keyed: Buckets,
    calls: Buckets,
    recon: Buckets,
    legs_copy: Option<Buckets>,
    report_legs: Buckets,
}

/// Steps 2 and 3, a bucket at a time.
pub(crate) fn group(
    parsed: Parsed,
    spill: &Path,
    budget: usize,
    set: &Settings,
    out: &LegsOut,
    stages: &mut Stages,
    quiet: bool,
) -> anyhow::Result<Grouped> {
    let n = parsed.buckets.count();
    let routed = Routed {
        // The interactions' columns are about a tenth of a leg's.
        keyed: Buckets::new(
            spill,
            "keyed",
            n.div_ceil(8),
            budget / 8,
            SpillFormat::Stream,
        ),
        // Filled after the legs' buckets are done with. At an eighth, 1M legs' interactions
        // (146 MB) spilled just over it, which took 1.5-1.8 s; at half, 5M legs' peak rose from
        // 1.2 to 1.8 GB. A quarter holds 1M's and keeps 5M's end of the run under 1.1 GB.
        calls: Buckets::new(spill, INTERACTIONS_TABLE, n, budget / 4, SpillFormat::File),
        recon: Buckets::new(
            spill,
            RECONCILIATION_TABLE,
            n,
            budget / 8,
            SpillFormat::File,
        ),
        legs_copy: (!out.output.format.parquet())
            .then(|| Buckets::new(spill, LEGS_TABLE, 1, budget / 4, SpillFormat::File)),
        // About 0.25 KB a leg: held up to about 500k legs at the default budget.
        report_legs: Buckets::new(spill, "report_legs", 1, budget / 8, SpillFormat::File),
    };
    let mut legs_written = Vec::new();
    let mut key_rows = Vec::new();
    let mut dedup_stats = DedupStats::default();
    let mut recon_summary = Summary::default();
    let t = Instant::now();
    if parsed.buckets.spilled() {
        // What is still held goes to disk too: else every bucket's last frames stay in memory
        // while the first buckets are processed (at 5M legs, the run's peak).
        parsed.buckets.flush()?;
    }
    let index = std::mem::take(&mut *parsed.index.lock().unwrap_or_else(|p| p.into_inner()));
    // A bucket of more than this many legs is processed in parts (see `partition_groups`). With
    // one bucket there is no index to count legs by, and nothing to balance.
    let part_rows = (n > 1).then(|| (index.len() / n).saturating_mul(5) / 4);
    let (cross, cross_buckets) = split_call_ids(index);
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
        dedup_stats.merge(stats);
        winners.extend(lineage(&kept)?);
    }
    add(stages, "3_dedup", t);
    let mut any = false;
    let mut buckets_split = 0;
    let mut largest_bucket_legs = 0;
    let progress = Progress::steps(n as u64, "pricing and writing bucket", quiet || n == 1);
    for b in 0..n {
        progress.inc(1);
        let t = Instant::now();
        let Some(df) = parsed.buckets.take(b)? else {
            continue;
        };
        largest_bucket_legs = largest_bucket_legs.max(df.height());
        let mut legs = if cross.is_empty() {
            let (legs, stats) = dedup(df).map_err(why("deduplicating legs"))?;
            dedup_stats.merge(stats);
            legs
        } else {
            let mask = in_ids(&df, &cross)?;
            let (mut legs, stats) =
                dedup(df.filter(&!&mask)?).map_err(why("deduplicating legs"))?;
            dedup_stats.merge(stats);
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
        // The bucket whole (None), or a part per group of partitions.
        let masks: Vec<Option<BooleanChunked>> = match part_rows {
            Some(target) => partition_groups(&legs, target)?
                .into_iter()
                .map(Some)
                .collect(),
            None => Vec::new(),
        };
        buckets_split += usize::from(!masks.is_empty());
        for mask in if masks.is_empty() { vec![None] } else { masks } {
            let mut part = match mask {
                Some(m) => legs.filter(&m)?,
                None => std::mem::take(&mut legs),
            };
            let (written, summary, keys) = process(&mut part, b, &routed, set, out, stages)?;
            legs_written.extend(written);
            recon_summary.merge(summary);
            key_rows.push(keys);
        }
    }
    progress.finish();
    let mut no_legs = None;
    if !any {
        // No legs at all: the tables still get their columns.
        let mut legs = concat_frames(vec![])?;
        let (_, summary, _) = process(&mut legs, 0, &routed, set, out, stages)?;
        recon_summary.merge(summary);
        no_legs = Some(legs);
    }
    let Routed {
        keyed,
        calls,
        recon,
        legs_copy,
        report_legs,
    } = routed;
    for k in 0..keyed.count() {
        let t = Instant::now();
        let Some(df) = keyed.take(k)? else { continue };
        let mut built = interactions::build(&df).map_err(why("grouping legs into interactions"))?;
        drop(df);
        fill_unassigned(&mut built)?;
        add(stages, "5_interactions", t);
        let t = Instant::now();
        route(built, &calls)?;
        add(stages, "5b_route", t);
    }
    Ok(Grouped {
        legs: legs_written,
        key_rows,
        legs_copy,
        report_legs,
        no_legs,
        calls,
        recon,
        dedup: dedup_stats,
        recon_summary,
        cross_bucket_call_ids: cross.len(),
        buckets_split,
        largest_bucket_legs,
    })
}

/// A bucket's legs in groups of whole partitions of about `target` rows each, as row masks; none
/// when the bucket is not larger than `target`. Partitions go to the least loaded bucket when
/// first met (see [`Partitions`]), but a busy account-day met late, or one met early that
/// grows, can still leave a bucket well over the mean, and the run's peak memory follows the
/// largest. Processing such a bucket in parts keeps the peak near the mean bucket's.
/// Partitions go largest first to the least loaded group (ties by hash and group number), so
/// the grouping does not depend on row order.
fn partition_groups(df: &DataFrame, target: usize) -> PolarsResult<Vec<BooleanChunked>> {
    let k = df.height().div_ceil(target.max(1));
    if k <= 1 {
        return Ok(Vec::new());
    }
    // One id per partition; two partitions sharing a 32-bit hash just stay in one group.
    let ids = partition_ids(df)?;
    let mut sizes: HashMap<u32, usize> = HashMap::new();
    for &p in &ids {
        *sizes.entry(p).or_default() += 1;
    }
    let mut parts: Vec<(usize, u32)> = sizes.into_iter().map(|(p, c)| (c, p)).collect();
    parts.sort_unstable_by(|a, b| b.cmp(a));
    let mut load = vec![0usize; k];
    let mut group_of: HashMap<u32, usize> = HashMap::with_capacity(parts.len());
    for (rows, p) in parts {
        let g = (0..k).min_by_key(|&g| (load[g], g)).unwrap_or(0);
        load[g] += rows;
        group_of.insert(p, g);
    }
    let row_group: Vec<usize> = ids.iter().map(|p| group_of[p]).collect();
    let used: Vec<usize> = (0..k).filter(|&g| load[g] > 0).collect();
    if used.len() <= 1 {
        return Ok(Vec::new());
    }
    Ok(used
        .into_iter()
        .map(|g| row_group.iter().map(|&r| r == g).collect())
        .collect())
}

/// Adds `df`'s rows to `to`, by a hash of their partition (these rows are a small fraction of
/// the legs, so uneven buckets cost little here).
fn route(df: DataFrame, to: &Buckets) -> PolarsResult<()> {
    let n = to.count() as u32;
    let route: Vec<u32> = partition_ids(&df)?.into_iter().map(|p| p % n).collect();
    to.push_split(&df, &route)
}

/// Prices and reconciles one bucket's deduplicated legs, writes them, and routes the columns
/// interactions need and the reconciliation rows.
fn process(
    legs: &mut DataFrame,
    bucket: usize,
    to: &Routed,
    set: &Settings,
    out: &LegsOut,
    stages: &mut Stages,
) -> anyhow::Result<(Vec<PartitionStats>, Summary, DataFrame)> {
    let t = Instant::now();
    apply_deck(legs, set.decks, set.rounding).map_err(why("looking up the rate deck"))?;
    rate_frame(legs, set.rounding).map_err(why("rating legs"))?;
    add(stages, "4_rate", t);
    let t = Instant::now();
    let (mut recon, summary) =
        reconcile::reconcile(legs, set.rounding).map_err(why("reconciling legs"))?;
    fill_unassigned(&mut recon)?;
    add(stages, "4b_reconcile", t);
    let t = Instant::now();
    // The reconciliation rows stay in the legs' bucket, which holds their partitions whole.
    to.recon.push_own(bucket, recon)?;
    let keyed = legs.select(interactions::input_columns())?;
    to.keyed.push_split(
        &keyed,
        &by_first_key(&keyed, &interactions::KEY, to.keyed.count())?,
    )?;
    add(stages, "5b_route", t);
    let t = Instant::now();
    fill_unassigned(legs)?;
    let written = write_partitioned(legs, out.dir, out.table, out.output)?;
    let keys = crate::dataset::index::rows_of(legs).map_err(why("indexing legs"))?;
    if let Some(copy) = &to.legs_copy {
        copy.push(0, legs.clone())?;
    }
    to.report_legs
        .push_own(0, legs.select(out.report_columns.iter().copied())?)?;
    add(stages, "7_write", t);
    Ok((written, summary, keys))
}

impl Grouped {
    /// The legs for a user's reports: a scan of the Parquet files written under `dir`, or of
    /// the copy kept when only CSV was written.
    pub(crate) fn legs_scan(&self, dir: &Path, table: &str) -> PolarsResult<LazyFrame> {
        match (&self.legs_copy, &self.no_legs) {
            (Some(copy), _) => copy.scan(),
            (None, Some(empty)) => Ok(empty.clone().lazy()),
            (None, None) => scan_partitioned(&dir.join(table)),
        }
    }

    /// The legs for the built-in reports: the columns their SQL names, kept as the legs were
    /// written (in memory, or spilled beside them), with the values the files hold. A scan of
    /// the written files read them back from 2,100 partition files on 300 accounts x 7 days,
    /// once per report. (Call [`Buckets::flush`] on a spilled copy first: [`Grouped::flush`].)
    pub(crate) fn report_legs(&self) -> PolarsResult<LazyFrame> {
        match &self.no_legs {
            Some(empty) => Ok(empty.clone().lazy()),
            None => self.report_legs.scan(),
        }
    }

    /// The legs' columns, when there was no leg (the table is then written empty).
    pub(crate) fn legs_shape(&self) -> Option<&DataFrame> {
        self.no_legs.as_ref()
    }

    /// Whether anything went to disk on the way.
    pub(crate) fn spilled(&self) -> bool {
        self.calls.spilled()
            || self.recon.spilled()
            || self.report_legs.spilled()
            || self.legs_copy.as_ref().is_some_and(Buckets::spilled)
    }
}

/// The two tables' partitions as written.
pub(crate) struct Written {
    pub calls: Vec<PartitionStats>,
    pub recon: Vec<PartitionStats>,
}

/// The interactions and reconciliation buckets, written; they stay for the reports' scans.
pub(crate) fn write(
    g: &Grouped,
    out: &Path,
    tables: [&Table; 2],
    output: &Output,
    quiet: bool,
) -> anyhow::Result<Written> {
    let mut w = Written {
        calls: vec![],
        recon: vec![],
    };
    for b in [&g.calls, &g.recon, &g.report_legs] {
        if b.spilled() {
            b.flush()?;
        }
    }
    let n = g.calls.count();
    let progress = Progress::steps(n as u64, "writing bucket", quiet || n == 1);
    for k in 0..n {
        progress.inc(1);
        for (from, table, to) in [
            (&g.calls, tables[0], &mut w.calls),
            (&g.recon, tables[1], &mut w.recon),
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
    fn an_input_up_to_the_budget_is_held_whole_and_a_larger_one_spills_at_half() {
        let gib = 1 << 30;
        // 200,000 legs of NDJSON: three buckets, held in memory.
        assert_eq!(bucket_count(692_600_000, gib), 3);
        assert_eq!(parsed_budget(692_600_000, gib), gib);
        assert_eq!(parsed_budget(gib as u64, gib), gib);
        // A byte over the budget, and 1M legs: spilled past half of it.
        assert_eq!(parsed_budget(gib as u64 + 1, gib), gib / 2);
        assert_eq!(parsed_budget(3_460_000_000, gib), gib / 2);
    }

    #[test]
    fn parse_tasks_grow_with_the_buckets_between_8_and_32_mib() {
        assert_eq!(chunk_bytes(1), 8 << 20);
        assert_eq!(chunk_bytes(13), 8 << 20);
        assert_eq!(chunk_bytes(24), 12 << 20);
        assert_eq!(chunk_bytes(65), 32 << 20);
        assert_eq!(chunk_bytes(4096), 32 << 20);
    }

    #[test]
    fn a_large_bucket_is_split_into_whole_partitions_of_about_the_target() {
        use crate::schema::{ACCOUNT_ID, DATE};
        let acct = ["a", "b", "a", "c", "a", "b", "a", "a", "b", "c"];
        let date = [1, 1, 1, 2, 1, 1, 1, 1, 1, 2];
        let df = df!(ACCOUNT_ID => acct, DATE => date)
            .and_then(|df| {
                df.lazy()
                    .with_column(col(DATE).cast(DataType::Date))
                    .collect()
            })
            .expect("frame");
        // 10 rows, target 4: three groups, largest partition first: a(5), b(3), c(2).
        let groups = partition_groups(&df, 4).expect("groups");
        let rows: Vec<Vec<usize>> = groups
            .iter()
            .map(|m| {
                m.iter()
                    .enumerate()
                    .filter(|(_, v)| *v == Some(true))
                    .map(|(i, _)| i)
                    .collect()
            })
            .collect();
        assert_eq!(rows, [vec![0, 2, 4, 6, 7], vec![1, 5, 8], vec![3, 9]]);
        // Not larger than the target, or one partition only: no split.
        assert!(partition_groups(&df, 10).expect("groups").is_empty());
        let one = df.head(Some(1)).vstack(&df.head(Some(1))).expect("frame");
        assert!(partition_groups(&one, 1).expect("groups").is_empty());
    }

    #[test]
    fn call_ids_in_two_buckets_are_found() {
        let index =
            [("a", 1), ("a", 1), ("b", 0), ("b", 4095), ("c", 2)].map(|(id, b)| index_entry(id, b));
        let (ids, buckets) = split_call_ids(index.to_vec());
        assert_eq!(ids, HashSet::from([hash_str("b") >> BUCKET_BITS]));
        assert_eq!(buckets, vec![0, 4095]);
        let df = df!(CALL_ID => ["a", "b", "c", "b"]).expect("frame");
        let rows: Vec<_> = in_ids(&df, &ids)
            .expect("mask")
            .iter()
            .map(|v| v == Some(true))
            .collect();
        assert_eq!(rows, [false, true, false, true]);
    }
}
