//! The `ledgers` table across runs: one row per ledger, however many copies the inputs and the
//! dataset hold (a month database's dump, an API page, yesterday's export).
//!
//! A ledger is identified by its account, its day, the database that holds it
//! (`pvt_account_id`: a call's customer and reseller ledgers share their `account.id` and
//! `_id`) and its id (`_id`, or a listing's `id`); one without an id by `source.service`,
//! `source.id`, `period.start`, `period.end` and its type, the combination KAZOO's ledgers API
//! requires to be unique. KAZOO's id hashes the
//! period (`kz_ledger:create_hash/1` over source, account, usage, period and type), so every
//! copy of one ledger has the same day: a ledger's partition is a function of its own data,
//! and a merge needs only the committed rows of the account-days the run brings ledgers for.
//! Two documents with one id on different days (an edited document) are two rows, in one run
//! as across runs; the ledger reconciliation sees them as charged twice.
//!
//! Copies that differ are decided by their own data alone, as legs' are ([`crate::dedup`]):
//! the fuller copy (fewer nulls), then the column values in the table's order; identical
//! copies keep the dataset's row, else the first read. So nights merged in any order, or a
//! rerun, give what one run over every night gives.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use polars::prelude::*;

use crate::ingest::ledger::{
    LEDGERS_TABLE, LEDGER_COLS, LEDGER_FORMAT, LEDGER_ID, LEDGER_TYPE, PERIOD_END, PERIOD_START,
    PVT_ACCOUNT_ID, SOURCE_ID, SOURCE_SERVICE,
};
use crate::merge::FROM_DATASET;
use crate::schema::{ACCOUNT_ID, DATE, SOURCE_FILE, SOURCE_LINE, SOURCE_OFFSET};
use crate::write::{PartitionStats, Table};

/// The ledgers' terms in the manifest's balance: `read` = `written` + `duplicates_dropped`.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LedgerCounts {
    /// Ledgers read from the inputs.
    pub read: u64,
    /// Of those, the rows written.
    pub written: u64,
    /// Copies of a ledger already read or already in the dataset.
    pub duplicates_dropped: u64,
    /// Ledgers whose copies differed (one kept, see the module's rule).
    pub conflicts: u64,
    /// The dataset's rows replaced by a copy of this run's that won.
    pub dataset_ledgers_replaced: u64,
}

/// An (`account_id`, `date`) partition as the catalog names it (`_unassigned`, `YYYY-MM-DD`).
pub(crate) type Partition = (String, Option<String>);

/// The table as [`crate::write::write_by_day`] writes it: a file a day, rows by account, then
/// by id.
pub(crate) fn table() -> Table<'static> {
    Table {
        name: LEDGERS_TABLE,
        columns: LEDGER_COLS.to_vec(),
        order: vec![LEDGER_ID, SOURCE_SERVICE, SOURCE_ID, PERIOD_START],
    }
}

const KEY: &str = "__ledger_key";
const NULLS: &str = "__nulls";
const ORDER: &str = "__order";

/// What identifies a ledger within its account and day (the module's rule): the database that
/// holds it (`pvt_account_id`, the account's own when unknown, as a dataset written before the
/// column has it), and its id, else its source, period and type, as one string.
pub(crate) fn key() -> Expr {
    let text = |c: &str| col(c).cast(DataType::String).fill_null(lit(""));
    let id = when(col(LEDGER_ID).is_not_null())
        .then(col(LEDGER_ID))
        .otherwise(concat_str(
            [
                text(SOURCE_SERVICE),
                text(SOURCE_ID),
                text(PERIOD_START),
                text(PERIOD_END),
                text(LEDGER_TYPE),
            ],
            "\u{1f}",
            false,
        ));
    let held_by = col(PVT_ACCOUNT_ID).fill_null(col(ACCOUNT_ID));
    concat_str([held_by.fill_null(lit("")), id], "\u{1e}", false)
}

/// The columns whose values make a copy differ (not where it was read from, nor its shape).
fn value_columns() -> impl Iterator<Item = &'static str> {
    LEDGER_COLS
        .iter()
        .copied()
        .filter(|c| ![SOURCE_FILE, SOURCE_LINE, SOURCE_OFFSET, LEDGER_FORMAT].contains(c))
}

/// One row per ledger of `committed` (the dataset's rows of the account-days the run brings
/// ledgers for) and `run` (this run's, in the order read), both with the table's columns and
/// `account_id`, `date`. Returns the rows kept, the counts, and the (`account_id`, `date`)
/// partitions whose rows changed (those holding a row of the run's that was kept: a committed
/// row replaced is replaced by one of the same partition).
pub(crate) fn dedup(
    committed: DataFrame,
    run: DataFrame,
) -> PolarsResult<(DataFrame, LedgerCounts, HashSet<Partition>)> {
    let (n_committed, n_run) = (committed.height() as u64, run.height() as u64);
    let mark = |mut df: DataFrame, from: bool| -> PolarsResult<LazyFrame> {
        // A ledger with no account is `_unassigned`'s, as the committed rows read back say.
        crate::write::fill_unassigned(&mut df)?;
        let cols: Vec<Expr> = LEDGER_COLS
            .iter()
            .chain([&ACCOUNT_ID, &DATE])
            .map(|c| col(*c))
            .collect();
        Ok(df
            .lazy()
            .select(cols)
            .with_column(lit(from).alias(FROM_DATASET)))
    };
    let key = key();
    let nulls = value_columns()
        .map(|c| col(c).is_null().cast(DataType::UInt32))
        .reduce(|a, b| a + b)
        .unwrap_or(lit(0u32));
    let all = concat(
        [mark(committed, true)?, mark(run, false)?],
        UnionArgs::default(),
    )?
    .with_row_index(ORDER, None)
    .with_columns([key.alias(KEY), nulls.alias(NULLS)]);
    let mut by: Vec<PlSmallStr> = vec![ACCOUNT_ID.into(), DATE.into(), KEY.into(), NULLS.into()];
    by.extend(value_columns().map(PlSmallStr::from));
    by.push(ORDER.into());
    let sorted = all
        .sort(by, SortMultipleOptions::default().with_nulls_last(true))
        .collect()?;
    let id: Vec<String> = [ACCOUNT_ID, DATE, KEY].map(str::to_owned).to_vec();
    let kept = sorted.unique_stable(Some(&id), UniqueKeepStrategy::First, None)?;
    let mut with_values = id.clone();
    with_values.extend(value_columns().map(str::to_owned));
    let distinct = sorted
        .unique_stable(Some(&with_values), UniqueKeepStrategy::First, None)?
        .height();
    let from = kept.column(FROM_DATASET)?.bool()?;
    let kept_committed = from.sum().unwrap_or(0) as u64;
    let kept_run = kept.height() as u64 - kept_committed;
    let counts = LedgerCounts {
        read: n_run,
        written: kept_run,
        duplicates_dropped: n_run - kept_run,
        conflicts: (distinct - kept.height()) as u64,
        dataset_ledgers_replaced: n_committed - kept_committed,
    };
    let changed = partitions(&kept.filter(&!from)?)?;
    let kept = kept.drop_many([KEY, NULLS, ORDER, FROM_DATASET]);
    Ok((kept, counts, changed))
}

/// The (`account_id`, `date`) partitions of a frame of ledgers (`_unassigned` for none), as
/// the catalog names them.
pub(crate) fn partitions(df: &DataFrame) -> PolarsResult<HashSet<Partition>> {
    Ok(crate::spill::partition_keys(df)?
        .map(|(a, d)| {
            (
                a.unwrap_or(crate::schema::UNASSIGNED_ACCOUNT).to_owned(),
                d.map(crate::time::format_date),
            )
        })
        .collect())
}

/// The committed rows of the day files `entries` name (the catalog's entries of the table on
/// the days a merge rewrites), every account's, with `date` from the entry, and the
/// (`account_id`, `date`) partitions they hold. A merge rewrites those days whole from them, so
/// each file is read once. Errors name the file.
pub(crate) fn read_committed(
    from: &Path,
    entries: &[&PartitionStats],
) -> anyhow::Result<(DataFrame, HashSet<Partition>)> {
    let days: BTreeMap<&str, Option<&str>> = entries
        .iter()
        .map(|p| (p.path.as_str(), p.date.as_deref()))
        .collect();
    let held = entries
        .iter()
        .map(|p| (p.account_id.clone(), p.date.clone()))
        .collect();
    let mut all = crate::ingest::ledger::frame(vec![])?;
    for (path, date) in days {
        let (file, mut rows) = crate::write::read_rows(&from.join(path))?;
        let why = |e: PolarsError| anyhow::anyhow!("{}: {e}", file.display());
        let day = match date.and_then(crate::time::parse_date) {
            Some(d) => Int32Chunked::full(DATE.into(), d, rows.height())
                .into_date()
                .into_column(),
            None => Column::full_null(DATE.into(), rows.height(), &DataType::Date),
        };
        rows.with_column(day).map_err(why)?;
        // A day written before a column was added reads it as null.
        for c in all.columns() {
            if rows.column(c.name()).is_err() {
                let null = Column::full_null(c.name().clone(), rows.height(), c.dtype());
                rows.with_column(null).map_err(why)?;
            }
        }
        let rows = rows.select(all.get_column_names_owned()).map_err(why)?;
        all.vstack_mut_owned(rows).map_err(why)?;
    }
    Ok((all, held))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::ledger::{read, Form};
    use crate::time::ReportTz;

    type R = Result<(), Box<dyn std::error::Error>>;

    fn frame(docs: &[(&str, &str)]) -> Result<DataFrame, Box<dyn std::error::Error>> {
        let tz = ReportTz::parse("UTC")?;
        let mut rows = Vec::new();
        for (i, (file, d)) in docs.iter().enumerate() {
            let l = read(d, Form::Stored, None, &tz, (i as u64 + 1, 0)).map_err(|e| e.message)?;
            rows.push((std::sync::Arc::from(*file), vec![l]));
        }
        Ok(crate::ingest::ledger::frame(rows)?)
    }

    fn doc(id: &str, amount: i64) -> String {
        format!(
            r#"{{"_id":"{id}","account":{{"id":"a1"}},"amount":{amount},"period":{{"start":63709747200}},"source":{{"id":"c-{id}","service":"per-minute-voip"}},"usage":{{"quantity":30,"type":"voice","unit":"sec"}},"pvt_type":"ledger"}}"#
        )
    }

    #[test]
    fn copies_are_one_row_and_a_conflict_is_decided_by_the_values_in_any_order() -> R {
        let (a, b, b2) = (doc("1", 600), doc("2", 100), doc("2", 120));
        let run = frame(&[("n1", &a), ("n1", &b), ("n2", &a), ("n2", &b2)])?;
        let (kept, c, _) = dedup(frame(&[])?.clear(), run)?;
        assert_eq!(kept.height(), 2);
        assert_eq!(
            (c.read, c.written, c.duplicates_dropped, c.conflicts),
            (4, 2, 2, 1)
        );
        // The same rows the other way round keep the same values.
        let rev = frame(&[("n2", &b2), ("n2", &a), ("n1", &b), ("n1", &a)])?;
        let (kept2, _, _) = dedup(frame(&[])?.clear(), rev)?;
        let amounts = |df: &DataFrame| -> PolarsResult<Vec<Option<i64>>> {
            Ok(df.column("amount_units")?.i64()?.iter().collect())
        };
        assert_eq!(amounts(&kept)?, amounts(&kept2)?);
        // Committed first: an identical copy keeps the dataset's row, which is not replaced.
        let committed = frame(&[("old", &a)])?;
        let (kept, c, changed) = dedup(committed, frame(&[("n3", &a)])?)?;
        assert!(changed.is_empty(), "an identical copy changes nothing");
        assert_eq!((kept.height(), c.written, c.duplicates_dropped), (1, 0, 1));
        assert_eq!(c.dataset_ledgers_replaced, 0);
        let files: Vec<Option<&str>> = kept.column(SOURCE_FILE)?.str()?.iter().collect();
        assert_eq!(files, [Some("old")]);
        Ok(())
    }
}
