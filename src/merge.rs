//! `--mode merge`: the partitions a run touches become the union of what they held and the
//! run's legs.
//!
//! Which partitions a run rewrites is closed under two relations, so that every leg and every
//! interaction of a rewritten partition is recomputed from everything it depends on:
//! - a partition holding a leg of one of the run's call_ids (a copy that now belongs elsewhere,
//!   or the leg the run's copy is deduplicated against);
//! - a partition holding a leg of an interaction that has a leg in a rewritten partition (a call
//!   whose legs arrived on different nights, or whose earliest leg lies in another day).
//!
//! Starting from the partitions of the run's own legs, the dataset's legs index
//! ([`crate::dataset::index`]: every leg's call_id and interaction key hashes and partition)
//! gives every partition that shares a call_id or an interaction key with the rewritten set,
//! until no more join ([`KeyIndex::closure`](crate::dataset::index::KeyIndex::closure)). The
//! hashes can only make a partition join that did not need to (more work, the same output),
//! never keep one out. The legs of the rewritten partitions are then read back in full and go
//! through the run's stages beside the new ones, marked [`FROM_DATASET`] so that deduplication
//! can prefer the dataset's copy of an identical leg and the new run's copy in a tie between
//! conflicting ones (see [`crate::dedup`]).

use std::collections::HashSet;
use std::path::Path;
use std::sync::Mutex;

use polars::prelude::*;

use crate::dataset::index::{hashes, Ids, Partition};
use crate::interactions::KEY;
use crate::rate::RATING_STAGE_FLAGS;
use crate::schema::{
    is_column_shaped, ACCOUNT_ID, CALL_ID, DATE, EXPORTED_COLS, PARSE_FLAGS, RATING_FLAGS,
    RECORDED_COLS, SOURCE_FORMAT, UNASSIGNED_ACCOUNT,
};
use crate::spill::{partition_keys, PartitionMap};
use crate::time::parse_date;
use crate::write::PartitionStats;

/// Internal column: true on a leg read back from the dataset, false on one read from the input.
pub(crate) const FROM_DATASET: &str = "__from_dataset";

/// What the run's input holds, as far as the merge needs it: its partitions, and hashes of its
/// call_ids and interaction keys.
#[derive(Default)]
pub(crate) struct Seen {
    partitions: PartitionMap,
    calls: Ids,
    keys: Ids,
}

/// [`Seen`], filled by the parse workers.
#[derive(Default)]
pub(crate) struct Tracker(Mutex<Seen>);

impl Tracker {
    /// Notes a frame of parsed legs.
    pub(crate) fn observe(&self, df: &DataFrame) -> PolarsResult<()> {
        let mut local = Seen::default();
        local.add(df)?;
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        for (account, date, _) in local.partitions.iter() {
            if s.partitions.get(account, date).is_none() {
                s.partitions.insert(account, date, 0);
            }
        }
        s.calls.extend(local.calls);
        s.keys.extend(local.keys);
        Ok(())
    }

    pub(crate) fn into_inner(self) -> Seen {
        self.0.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

impl Seen {
    fn add(&mut self, df: &DataFrame) -> PolarsResult<()> {
        for (account, date) in partition_keys(df)? {
            let account = account.unwrap_or(UNASSIGNED_ACCOUNT);
            if self.partitions.get(account, date).is_none() {
                self.partitions.insert(account, date, 0);
            }
        }
        self.add_ids(df)
    }

    /// Adds the call_id and interaction key hashes of `df`'s legs.
    fn add_ids(&mut self, df: &DataFrame) -> PolarsResult<()> {
        for (call, key) in hashes(df)? {
            self.calls.insert(call);
            self.keys.insert(key);
        }
        Ok(())
    }

    /// The earliest day of the legs seen (`None`: none has a day).
    pub(crate) fn first_day(&self) -> Option<i32> {
        self.partitions.iter().filter_map(|(_, d, _)| d).min()
    }

    /// The partitions seen (`_unassigned` for no account), and the call_id and interaction
    /// key hashes.
    pub(crate) fn into_parts(self) -> (HashSet<Partition>, Ids, Ids) {
        let parts = self
            .partitions
            .iter()
            .map(|(a, d, _)| (a.to_owned(), d))
            .collect();
        (parts, self.calls, self.keys)
    }
}

/// The Parquet file of a legs partition.
pub(crate) fn file(out: &Path, p: &PartitionStats) -> std::path::PathBuf {
    out.join(&p.path).join("part-0.parquet")
}

fn open(out: &Path, p: &PartitionStats) -> anyhow::Result<ParquetReader<std::fs::File>> {
    let path = file(out, p);
    let f = std::fs::File::open(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; --mode merge reads each partition it rewrites back from its Parquet file (the dataset's manifest lists it). Rebuild the dataset with --mode replace-all",
            path.display()
        )
    })?;
    Ok(ParquetReader::new(f))
}

/// A legs partition's `call_id` and interaction key columns, with `account_id` (as its folder
/// says it) and `date` from the partition: what [`crate::dataset::index::rows_of`] reads.
pub(crate) fn read_ids(out: &Path, p: &PartitionStats) -> anyhow::Result<DataFrame> {
    let mut cols = vec![CALL_ID.to_owned()];
    cols.extend(
        KEY.iter()
            .filter(|k| **k != CALL_ID)
            .map(|k| (*k).to_owned()),
    );
    let why = |e: PolarsError| anyhow::anyhow!("{}: {e}", file(out, p).display());
    let mut df = open(out, p)?
        .with_columns(Some(cols))
        .finish()
        .map_err(why)?;
    let n = df.height();
    let date = match p.date.as_deref().and_then(parse_date) {
        None => Column::full_null(DATE.into(), n, &DataType::Date),
        Some(d) => Int32Chunked::full(DATE.into(), d, n)
            .into_date()
            .into_column(),
    };
    df.with_column(StringChunked::full(ACCOUNT_ID.into(), &p.account_id, n).into_column())
        .map_err(why)?;
    df.with_column(date).map_err(why)?;
    Ok(df)
}

/// A legs partition's rows as the parser produces them (`schema`: an empty parsed frame's), and
/// [`FROM_DATASET`] true: a projection of the written columns, since the parser's own are kept
/// apart from what later stages derive (`parse_flags` beside `rating_flags`,
/// `exported_cost_units` beside `recorded_cost_units`), with `account_id` (null for the
/// unassigned account) and `date` from the partition. A file written before those columns
/// (catalog format 3 and earlier) has them rebuilt by [`parsed_columns_of_format_3`].
pub(crate) fn read_back(
    out: &Path,
    p: &PartitionStats,
    schema: &Schema,
) -> anyhow::Result<DataFrame> {
    let path = file(out, p);
    let why = |e: PolarsError| anyhow::anyhow!("{}: {e}", path.display());
    let mut df = open(out, p)?.finish().map_err(why)?;
    if df.column(PARSE_FLAGS).is_err() {
        parsed_columns_of_format_3(&mut df).map_err(why)?;
    }
    if df.column(crate::schema::PVT_COST).is_err() {
        column_from_ccvs(&mut df, crate::schema::PVT_COST).map_err(why)?;
    }
    let n = df.height();
    let mut cols = Vec::with_capacity(schema.len() + 1);
    for (name, dtype) in schema.iter() {
        let c = match name.as_str() {
            ACCOUNT_ID => match p.account_id.as_str() {
                UNASSIGNED_ACCOUNT => Column::full_null(name.clone(), n, dtype),
                a => StringChunked::full(name.clone(), a, n).into_column(),
            },
            DATE => match p.date.as_deref().and_then(parse_date) {
                None => Column::full_null(name.clone(), n, dtype),
                Some(d) => Int32Chunked::full(name.clone(), d, n)
                    .into_date()
                    .into_column(),
            },
            _ => match df.column(name) {
                Ok(c) => c.cast(dtype).map_err(why)?,
                Err(_) => Column::full_null(name.clone(), n, dtype),
            },
        };
        cols.push(c);
    }
    cols.push(BooleanChunked::full(FROM_DATASET.into(), true, n).into_column());
    DataFrame::new(n, cols).map_err(why)
}

/// A legs file written before the parser's columns were kept apart (catalog format 3 and
/// earlier) gets them from the derived ones: `parse_flags`, its `rating_flags` without those
/// the rating stage adds; `exported_cost_units` and `exported_reseller_cost_units`, the
/// recorded money of the column-shaped legs (on the others reconciliation derived it).
pub(crate) fn parsed_columns_of_format_3(df: &mut DataFrame) -> PolarsResult<()> {
    let flags = df.column(RATING_FLAGS)?.str()?;
    let mut b = StringChunkedBuilder::new(PARSE_FLAGS.into(), flags.len());
    for v in flags.iter() {
        b.append_option(v.and_then(strip_rating_flags));
    }
    let parse_flags = b.finish().into_column();
    let formats = df.column(SOURCE_FORMAT)?.str()?;
    let exported: Vec<bool> = formats.iter().map(is_column_shaped).collect();
    let mut cols = vec![parse_flags];
    for (from, to) in RECORDED_COLS.iter().zip(EXPORTED_COLS) {
        let v = df.column(from)?.i64()?;
        let kept = v.iter().zip(&exported).map(|(v, &e)| v.filter(|_| e));
        cols.push(Int64Chunked::from_iter_options((*to).into(), kept).into_column());
    }
    for c in cols {
        df.with_column(c)?;
    }
    Ok(())
}

/// A custom_channel_vars integer column a legs file was written without (`pvt_cost` before it
/// had one), read again from the leg's `custom_channel_vars` text, which keeps the whole object:
/// the value a run over the leg's input gives.
fn column_from_ccvs(df: &mut DataFrame, name: &str) -> PolarsResult<()> {
    let ccvs = df.column(crate::schema::CUSTOM_CHANNEL_VARS)?.str()?;
    let values = ccvs
        .iter()
        .map(|c| c.and_then(|c| crate::ingest::record::ccv_int(c, name)));
    let column = Int64Chunked::from_iter_options(name.into(), values).into_column();
    df.with_column(column)?;
    Ok(())
}

/// A written leg's `rating_flags` without the ones the rating stage adds (it adds them again).
fn strip_rating_flags(flags: &str) -> Option<String> {
    let kept: Vec<&str> = flags
        .split(',')
        .filter(|f| !RATING_STAGE_FLAGS.contains(f))
        .collect();
    (!kept.is_empty()).then(|| kept.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_rating_stage_flags_are_removed() {
        assert_eq!(strip_rating_flags("unrated"), None);
        assert_eq!(strip_rating_flags("unrated,no_deck_rate"), None);
        assert_eq!(
            strip_rating_flags("decimal:rate,unrated").as_deref(),
            Some("decimal:rate")
        );
        assert_eq!(strip_rating_flags("deck_priced"), None);
        assert_eq!(
            strip_rating_flags("decimal:rate,deck_priced").as_deref(),
            Some("decimal:rate")
        );
        assert_eq!(
            strip_rating_flags("time_from_pvt_created").as_deref(),
            Some("time_from_pvt_created")
        );
    }
}
