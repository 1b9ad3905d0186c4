//! The partition list, by day: every partition of every table, in one Parquet file per day of
//! its `date` (`_catalog/partitions/day=2026-11-02.parquet`; partitions without a date in
//! `day=none`). A run reads and rewrites only the days it touches, so a night's catalog work
//! does not grow with the dataset's history, nor along a month; `manifest.json` keeps a summary
//! per day ([`ShardSummary`]) for the dataset's totals. DuckDB reads the list as is:
//! `read_parquet('DIR/_catalog/partitions/*.parquet')`. Format 2 cut the same files by month
//! (`month=2026-11.parquet`): a night at a month's end rewrote the month's 47,000 rows and
//! held them in memory (a saw-tooth within each month), so format 3 cuts by day, and the
//! first run on a format 2 dataset rewrites its files by day ([`Cut`]).
//!
//! Columns: `table`, `account_id`, `date` (text, `YYYY-MM-DD`, null for none), `path` (the
//! partition's folder relative to the dataset), `rows`, `billing_seconds`, `billed_seconds`,
//! `rated_cost_units`, `cost_units`, `reseller_cost_units` (units of 1/10,000),
//! `unpriced_legs`, `unpriced_billing_seconds` (seconds); one row per partition.

use std::collections::BTreeMap;
use std::path::Path;

use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::LEGS_TABLE;
use crate::write::manifest::{SumOverflow, Totals};
use crate::write::PartitionStats;

/// The folder of the partition list's files, relative to the output folder.
pub(crate) const PARTITIONS_DIR: &str = "_catalog/partitions";

/// How the catalog's files (the partition list and the legs index) are cut: by the month of
/// the partitions' dates (format 2) or by their day (format 3, what this rerate writes). A
/// shard's key is `2026-11` or `2026-11-02`, `none` for the partitions without a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Month,
    Day,
}

impl Cut {
    /// The key of the shard a partition's date (`YYYY-MM-DD`) falls in.
    pub fn key(self, date: Option<&str>) -> String {
        match self {
            Cut::Month => month_of(date),
            Cut::Day => date.unwrap_or("none").to_owned(),
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Cut::Month => "month",
            Cut::Day => "day",
        }
    }

    /// A shard's file under `dir` (`_catalog/partitions` or `_catalog/keys`).
    pub fn file(self, dir: &str, key: &str) -> String {
        format!("{dir}/{}={key}.parquet", self.prefix())
    }

    /// The key of a shard's file name (`day=2026-11-02.parquet`), if it is one of this cut's.
    pub fn key_of_file(self, name: &str) -> Option<&str> {
        name.strip_prefix(self.prefix())?
            .strip_prefix('=')?
            .strip_suffix(".parquet")
    }
}

/// The month a partition's date falls in (`2026-11`), `none` without a date.
pub(crate) fn month_of(date: Option<&str>) -> String {
    // `YYYY-MM-DD` less its day (years past 9999 are written `+10000-02-09`).
    date.and_then(|d| d.rsplit_once('-'))
        .map_or("none", |(month, _)| month)
        .to_owned()
}

/// What `manifest.json` keeps of a shard (a day; a month in format 2): its partitions per
/// table, and its legs' totals.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    /// Partitions per table.
    pub tables: BTreeMap<String, u64>,
    pub legs: u64,
    #[serde(flatten)]
    pub totals: Totals,
}

impl ShardSummary {
    /// Errors name the partition at which a sum overflowed.
    pub fn of(parts: &[PartitionStats]) -> Result<Self, SumOverflow> {
        let mut tables = BTreeMap::new();
        for p in parts {
            *tables.entry(p.table.clone()).or_insert(0) += 1;
        }
        let legs: Vec<PartitionStats> = parts
            .iter()
            .filter(|p| p.table == LEGS_TABLE)
            .cloned()
            .collect();
        Ok(ShardSummary {
            tables,
            legs: legs.iter().map(|p| p.rows).sum(),
            totals: Totals::of(&legs)?,
        })
    }
}

/// Reads a shard's partitions from `out`. Errors name the file.
pub(crate) fn read(out: &Path, cut: Cut, key: &str) -> anyhow::Result<Vec<PartitionStats>> {
    let rel = cut.file(PARTITIONS_DIR, key);
    let what = format!("the dataset's partition list for {key}");
    let df = super::read_parquet(out, &rel, &what)?;
    from_frame(&df).map_err(|e| {
        anyhow::anyhow!(
            "{}: {what} cannot be read: {e}; rebuild the dataset with --mode replace-all",
            out.join(&rel).display()
        )
    })
}

/// Writes a day's partitions under `dir` (the file of `key` cut by day), sorted by table,
/// account and date.
pub(crate) fn write(dir: &Path, key: &str, parts: &[PartitionStats]) -> anyhow::Result<()> {
    let mut sorted: Vec<&PartitionStats> = parts.iter().collect();
    sorted.sort_by(|a, b| {
        (&a.table, &a.account_id, &a.date).cmp(&(&b.table, &b.account_id, &b.date))
    });
    super::write_parquet(
        dir,
        &Cut::Day.file(PARTITIONS_DIR, key),
        &mut to_frame(&sorted)?,
    )
}

fn to_frame(parts: &[&PartitionStats]) -> PolarsResult<DataFrame> {
    let s = |name: &str, f: &dyn Fn(&PartitionStats) -> Option<&str>| {
        StringChunked::from_iter_options(name.into(), parts.iter().map(|p| f(p))).into_column()
    };
    let u = |name: &str, f: &dyn Fn(&PartitionStats) -> u64| {
        UInt64Chunked::from_iter_values(name.into(), parts.iter().map(|p| f(p))).into_column()
    };
    let i = |name: &str, f: &dyn Fn(&PartitionStats) -> i64| {
        Int64Chunked::from_iter_values(name.into(), parts.iter().map(|p| f(p))).into_column()
    };
    DataFrame::new(
        parts.len(),
        vec![
            s("table", &|p| Some(&p.table)),
            s("account_id", &|p| Some(&p.account_id)),
            s("date", &|p| p.date.as_deref()),
            s("path", &|p| Some(&p.path)),
            u("rows", &|p| p.rows),
            i("billing_seconds", &|p| p.billing_seconds),
            i("billed_seconds", &|p| p.billed_seconds),
            i("rated_cost_units", &|p| p.rated_cost_units),
            i("cost_units", &|p| p.cost_units),
            i("reseller_cost_units", &|p| p.reseller_cost_units),
            u("unpriced_legs", &|p| p.unpriced_legs),
            i("unpriced_billing_seconds", &|p| p.unpriced_billing_seconds),
        ],
    )
}

fn from_frame(df: &DataFrame) -> PolarsResult<Vec<PartitionStats>> {
    let s = |name: &str| df.column(name)?.str().cloned();
    let u = |name: &str| df.column(name)?.u64().cloned();
    let i = |name: &str| df.column(name)?.i64().cloned();
    let (table, account, date, path) = (s("table")?, s("account_id")?, s("date")?, s("path")?);
    let (rows, unpriced) = (u("rows")?, u("unpriced_legs")?);
    let (billing, billed, rated, cost, reseller, unpriced_s) = (
        i("billing_seconds")?,
        i("billed_seconds")?,
        i("rated_cost_units")?,
        i("cost_units")?,
        i("reseller_cost_units")?,
        i("unpriced_billing_seconds")?,
    );
    let text = |c: &StringChunked, k: usize| -> PolarsResult<String> {
        c.get(k)
            .map(str::to_owned)
            .ok_or_else(|| polars_err!(ComputeError: "row {k}: {} is null", c.name()))
    };
    (0..df.height())
        .map(|k| {
            Ok(PartitionStats {
                table: text(&table, k)?,
                account_id: text(&account, k)?,
                date: date.get(k).map(str::to_owned),
                path: text(&path, k)?,
                rows: rows.get(k).unwrap_or(0),
                billing_seconds: billing.get(k).unwrap_or(0),
                billed_seconds: billed.get(k).unwrap_or(0),
                rated_cost_units: rated.get(k).unwrap_or(0),
                cost_units: cost.get(k).unwrap_or(0),
                reseller_cost_units: reseller.get(k).unwrap_or(0),
                unpriced_legs: unpriced.get(k).unwrap_or(0),
                unpriced_billing_seconds: unpriced_s.get(k).unwrap_or(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_written_reads_back_the_same() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = |table: &str, date: Option<&str>, rows: u64| PartitionStats {
            table: table.to_owned(),
            account_id: "a".to_owned(),
            date: date.map(str::to_owned),
            path: format!(
                "{table}/account_id=a/date={}",
                date.unwrap_or("__HIVE_DEFAULT_PARTITION__")
            ),
            rows,
            billing_seconds: 60,
            billed_seconds: 120,
            rated_cost_units: 200,
            cost_units: -3,
            reseller_cost_units: 0,
            unpriced_legs: 1,
            unpriced_billing_seconds: 7,
        };
        let parts = vec![
            p("legs", Some("2026-11-02"), 2),
            p("daily", Some("2026-11-02"), 1),
        ];
        write(dir.path(), "2026-11-02", &parts)?;
        let back = read(dir.path(), Cut::Day, "2026-11-02")?;
        let json = |v: &[PartitionStats]| serde_json::to_value(v).unwrap_or_default();
        // Written sorted by table: daily first.
        assert_eq!(json(&back), json(&[parts[1].clone(), parts[0].clone()]));
        let m = ShardSummary::of(&back)?;
        assert_eq!((m.legs, m.tables["legs"], m.tables["daily"]), (2, 1, 1));
        assert_eq!(month_of(Some("2026-11-02")), "2026-11");
        assert_eq!(month_of(None), "none");
        assert_eq!(Cut::Day.key(Some("2026-11-02")), "2026-11-02");
        assert_eq!(Cut::Day.key(None), "none");
        assert_eq!(
            Cut::Day.file(PARTITIONS_DIR, "none"),
            "_catalog/partitions/day=none.parquet"
        );
        assert_eq!(
            Cut::Month.key_of_file("month=2026-11.parquet"),
            Some("2026-11")
        );
        assert_eq!(Cut::Day.key_of_file("month=2026-11.parquet"), None);
        Ok(())
    }
}
