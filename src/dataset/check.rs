//! `rerate check DIR`: a dataset verified against its catalog.
//!
//! What is checked, each finding named by file or call_id:
//! - every partition the catalog lists has its folder and a readable data file, whose rows and
//!   (for legs) `billing_seconds` and `cost_units` sums equal the catalog's;
//! - no partition folder holds data the catalog does not list (the files of a partition a merge
//!   should have removed);
//! - every call_id is in the legs table once;
//! - `daily` equals its legs: per account and day, `legs` and `cost_units` equal the count and
//!   the sum of the legs partition (and each legs partition has its daily row);
//! - `interactions` equal theirs: every leg is in exactly one interaction's `leg_call_ids`, and
//!   each interaction's `legs` is the length of its list.
//!
//! Content is read from a partition's Parquet file, else its CSV file (`--format csv`); the
//! interactions' call_id lists are checked on Parquet only (CSV flattens lists).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::index::KEYS_DIR;
use super::{partition_key, Catalog, CatalogError, ShardSummary};
use crate::schema::{
    ACCOUNT_ID, BILLING_SECONDS, CALL_ID, COST_UNITS, DAILY_REPORT, INTERACTIONS_TABLE, LEGS,
    LEGS_TABLE, LEG_CALL_IDS,
};
use crate::write::{Grain, PartitionStats};

/// What a check found.
#[derive(Debug, Default)]
pub(crate) struct CheckReport {
    /// Partitions the catalog lists (of every table; of the legs table), and data files read.
    pub partitions: u64,
    pub legs_partitions: u64,
    pub files: u64,
    /// Legs in the legs table.
    pub legs: u64,
    /// Rows of the ledgers table.
    pub ledgers: u64,
    /// Each problem, one line naming the file, partition or call_id.
    pub problems: Vec<String>,
}

/// Why a folder cannot be checked at all.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckError {
    #[error("{0}: no manifest.json, so not a rerate dataset (or not one yet)")]
    NoCatalog(PathBuf),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Other(anyhow::Error),
}

/// Per legs partition: (legs, cost_units sum).
type Sums = HashMap<(String, Option<String>), (u64, i64)>;

/// Checks the dataset in `dir`. Errors: no catalog, or one that cannot be read.
pub(crate) fn check(dir: &Path) -> Result<CheckReport, CheckError> {
    let catalog = Catalog::read(dir)?.ok_or_else(|| CheckError::NoCatalog(dir.to_owned()))?;
    let partitions = catalog.all_partitions(dir).map_err(CheckError::Other)?;
    let mut r = CheckReport {
        partitions: partitions.len() as u64,
        legs_partitions: partitions.iter().filter(|p| p.table == LEGS_TABLE).count() as u64,
        ..Default::default()
    };
    check_shards(&catalog, &partitions, &mut r);
    check_index(dir, &catalog, &partitions, &mut r);
    let mut first_seen: HashMap<String, String> = HashMap::new();
    let mut ledgers_seen: std::collections::HashSet<(String, Option<String>, String)> =
        Default::default();
    let mut leg_sums: Sums = HashMap::new();
    let mut daily: Sums = HashMap::new();
    let mut in_interactions: HashMap<String, u32> = HashMap::new();
    let mut interactions_listed = true;
    let mut days = DayFiles::default();
    for p in &partitions {
        // A report's day file, or (before format 4) its folder per account and day.
        let day_file = Grain::Day.folder(&p.table, "", p.date.as_deref()) == p.path;
        let read = match Grain::of(&p.table) {
            Grain::Day if day_file => days.rows_of(dir, p, &mut r),
            _ => {
                let read = read_partition(dir, p, &mut r);
                r.files += u64::from(read.is_some());
                read
            }
        };
        let Some((file, df)) = read else {
            continue;
        };
        let name = file.display().to_string();
        if df.height() as u64 != p.rows {
            r.problems.push(format!(
                "{name}: {} rows, the catalog says {}",
                df.height(),
                p.rows
            ));
        }
        let key = (p.account_id.clone(), p.date.clone());
        match p.table.as_str() {
            LEGS_TABLE => {
                r.legs += df.height() as u64;
                let billing = sum(&df, BILLING_SECONDS);
                let cost = sum(&df, COST_UNITS);
                if billing != Some(p.billing_seconds) || cost != Some(p.cost_units) {
                    r.problems.push(format!(
                        "{name}: billing_seconds {billing:?} and cost_units {cost:?}, the catalog says {} and {}",
                        p.billing_seconds, p.cost_units
                    ));
                }
                leg_sums.insert(key, (df.height() as u64, cost.unwrap_or(0)));
                for id in strings(&df, CALL_ID) {
                    match first_seen.get(&id) {
                        Some(other) => r
                            .problems
                            .push(format!("call_id {id} is in {other} and in {name}")),
                        None => {
                            first_seen.insert(id, name.clone());
                        }
                    }
                }
            }
            crate::ingest::ledger::LEDGERS_TABLE => {
                r.ledgers += df.height() as u64;
                let keys = df
                    .clone()
                    .lazy()
                    .with_column(lit(p.account_id.clone()).alias(crate::schema::ACCOUNT_ID))
                    .select([crate::ledgers::key().alias("key")])
                    .collect();
                match keys {
                    Ok(k) => {
                        for id in strings(&k, "key") {
                            let (a, d) = (p.account_id.clone(), p.date.clone());
                            if !ledgers_seen.insert((a, d, id.clone())) {
                                r.problems.push(format!(
                                    "{name}: ledger {id} of account {} is there twice",
                                    p.account_id
                                ));
                            }
                        }
                    }
                    Err(e) => r.problems.push(format!("{name}: {e}")),
                }
            }
            DAILY_REPORT => {
                let legs = sum(&df, LEGS).unwrap_or(0);
                daily.insert(key, (legs as u64, sum(&df, COST_UNITS).unwrap_or(0)));
            }
            INTERACTIONS_TABLE => match df.column(LEG_CALL_IDS).and_then(|c| c.list()) {
                Ok(lists) => {
                    let counts = df.column(LEGS).and_then(|c| c.cast(&DataType::Int64));
                    for i in 0..lists.len() {
                        let ids: Vec<String> = lists
                            .get_as_series(i)
                            .and_then(|s| s.str().ok().cloned())
                            .map(|s| s.iter().flatten().map(str::to_owned).collect())
                            .unwrap_or_default();
                        let n = counts.as_ref().ok().and_then(|c| c.i64().ok()?.get(i));
                        if n != Some(ids.len() as i64) {
                            r.problems.push(format!(
                                "{name}: row {i} counts {n:?} legs and lists {}",
                                ids.len()
                            ));
                        }
                        for id in ids {
                            *in_interactions.entry(id).or_default() += 1;
                        }
                    }
                }
                Err(_) => interactions_listed = false,
            },
            _ => {}
        }
    }
    r.files += days.files.values().flatten().count() as u64;
    days.unlisted_rows(&partitions, &mut r);
    stray_partitions(dir, &partitions, &mut r);
    if partitions.iter().any(|p| p.table == DAILY_REPORT) {
        compare_daily(&leg_sums, &daily, &mut r);
    }
    let has_interactions = partitions.iter().any(|p| p.table == INTERACTIONS_TABLE);
    if has_interactions && interactions_listed {
        for (id, file) in &first_seen {
            match in_interactions.get(id).copied().unwrap_or(0) {
                1 => {}
                n => r.problems.push(format!(
                    "call_id {id} ({file}) is in {n} interactions, not 1"
                )),
            }
        }
        for id in in_interactions
            .keys()
            .filter(|id| !first_seen.contains_key(*id))
        {
            r.problems
                .push(format!("call_id {id} is in an interaction but in no leg"));
        }
    }
    Ok(r)
}

/// The manifest's summary of each shard (day; month before format 3) equals the shard's
/// partition list.
fn check_shards(catalog: &Catalog, parts: &[PartitionStats], r: &mut CheckReport) {
    let cut = catalog.cut();
    let mut by_key: BTreeMap<String, Vec<PartitionStats>> = BTreeMap::new();
    for p in parts {
        by_key
            .entry(cut.key(p.date.as_deref()))
            .or_default()
            .push(p.clone());
    }
    for (k, summary) in catalog.shards() {
        let listed = match ShardSummary::of(by_key.get(&k).map_or(&[][..], Vec::as_slice)) {
            Ok(l) => l,
            Err(e) => {
                r.problems.push(format!("{k}: {e}"));
                continue;
            }
        };
        let empty = |s: &ShardSummary| s.tables.values().all(|n| *n == 0);
        if listed != summary && !(empty(&listed) && empty(&summary)) {
            r.problems.push(format!(
                "manifest.json: the summary of {k} says {summary:?}, its partition list {listed:?}"
            ));
        }
    }
}

/// The legs index holds each legs partition's legs, and no other partition.
fn check_index(dir: &Path, catalog: &Catalog, parts: &[PartitionStats], r: &mut CheckReport) {
    let counts = match catalog.key_index(dir).map(|ix| ix.counts()) {
        Ok(c) => c,
        Err(e) => {
            r.problems
                .push(format!("{}: {e}", dir.join(KEYS_DIR).display()));
            return;
        }
    };
    let legs: HashMap<_, u64> = parts
        .iter()
        .filter(|p| p.table == LEGS_TABLE)
        .map(|p| (partition_key(p), p.rows))
        .collect();
    for (k, n) in &counts {
        if legs.get(k) != Some(n) {
            r.problems.push(format!(
                "{}: indexes {n} legs of account {} on {:?}, the partition list {:?}",
                dir.join(KEYS_DIR).display(),
                k.0,
                k.1.map(crate::time::format_date),
                legs.get(k)
            ));
        }
    }
    for (k, n) in legs
        .iter()
        .filter(|(k, n)| **n > 0 && !counts.contains_key(*k))
    {
        r.problems.push(format!(
            "{}: misses the {n} legs of account {} on {:?}",
            dir.join(KEYS_DIR).display(),
            k.0,
            k.1.map(crate::time::format_date)
        ));
    }
}

/// The partition's data file (Parquet, else CSV) and its rows; a problem when there is none or
/// it cannot be read.
fn read_partition(
    dir: &Path,
    p: &PartitionStats,
    r: &mut CheckReport,
) -> Option<(PathBuf, DataFrame)> {
    let folder = dir.join(&p.path);
    let files = data_files(&folder);
    let file = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "parquet"))
        .or_else(|| files.first());
    let Some(file) = file else {
        r.problems.push(format!(
            "{}: the catalog lists this {} partition, but it holds no data file",
            folder.display(),
            p.table
        ));
        return None;
    };
    let read = || -> PolarsResult<DataFrame> {
        if file.extension().is_some_and(|e| e == "parquet") {
            ParquetReader::new(File::open(file)?).finish()
        } else {
            CsvReadOptions::default()
                .with_has_header(true)
                .try_into_reader_with_file_path(Some(file.clone()))?
                .finish()
        }
    };
    match read() {
        Ok(df) => Some((file.clone(), df)),
        Err(e) => {
            r.problems
                .push(format!("{}: unreadable: {e}", file.display()));
            None
        }
    }
}

/// The day files of the [`Grain::Day`] tables read so far, each read once.
#[derive(Default)]
struct DayFiles {
    /// By folder: the file, and its rows (`None`: missing or unreadable, already reported).
    files: HashMap<PathBuf, Option<(PathBuf, DataFrame)>>,
}

impl DayFiles {
    /// `p`'s rows of its day's file: those whose `account_id` is `p`'s, without the column.
    fn rows_of(
        &mut self,
        dir: &Path,
        p: &PartitionStats,
        r: &mut CheckReport,
    ) -> Option<(PathBuf, DataFrame)> {
        let folder = dir.join(&p.path);
        if !self.files.contains_key(&folder) {
            let read = read_partition(dir, p, r);
            if read
                .as_ref()
                .is_some_and(|(_, df)| df.column(ACCOUNT_ID).is_err())
            {
                r.problems
                    .push(format!("{}: no account_id column", folder.display()));
            }
            self.files.insert(folder.clone(), read);
        }
        let (file, df) = self.files.get(&folder)?.as_ref()?;
        let ids = df.column(ACCOUNT_ID).ok()?.str().ok()?;
        let mask: BooleanChunked = ids
            .iter()
            .map(|a| a == Some(p.account_id.as_str()))
            .collect();
        let rows = df.filter(&mask).ok()?.drop(ACCOUNT_ID).ok()?;
        Some((file.clone(), rows))
    }

    /// Rows of a day file whose account the catalog does not list on that day (rows a merge
    /// should have removed).
    fn unlisted_rows(&self, parts: &[PartitionStats], r: &mut CheckReport) {
        let mut listed: HashMap<&Path, BTreeSet<&str>> = HashMap::new();
        for p in parts.iter().filter(|p| Grain::of(&p.table) == Grain::Day) {
            listed
                .entry(Path::new(&p.path))
                .or_default()
                .insert(&p.account_id);
        }
        for (file, df) in self.files.values().flatten() {
            let Some(accounts) = listed
                .iter()
                .find(|(p, _)| file.parent().is_some_and(|f| f.ends_with(p)))
                .map(|(_, a)| a)
            else {
                continue;
            };
            let Ok(ids) = df.column(ACCOUNT_ID).and_then(|c| c.str().cloned()) else {
                continue;
            };
            let stray: BTreeSet<&str> = ids
                .iter()
                .map(|a| a.unwrap_or("(null)"))
                .filter(|a| !accounts.contains(a))
                .collect();
            if let Some(a) = stray.first() {
                r.problems.push(format!(
                    "{}: holds rows of {} account(s) the catalog does not list on that day, {a} the first",
                    file.display(),
                    stray.len()
                ));
            }
        }
    }
}

/// The data files (`*.parquet`, `*.csv`) right in `folder`, sorted.
fn data_files(folder: &Path) -> Vec<PathBuf> {
    entries(folder, |p| {
        p.is_file() && p.extension().is_some_and(|e| e == "parquet" || e == "csv")
    })
}

/// The entries of `dir` that `keep` keeps, sorted; none when it cannot be read.
fn entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| keep(p))
        .collect();
    v.sort();
    v
}

/// Partition folders holding data that the catalog does not list.
fn stray_partitions(dir: &Path, parts: &[PartitionStats], r: &mut CheckReport) {
    let listed: BTreeSet<PathBuf> = parts.iter().map(|p| dir.join(&p.path)).collect();
    let tables: BTreeSet<&str> = parts.iter().map(|p| p.table.as_str()).collect();
    for table in tables {
        if Grain::of(table) == Grain::Day {
            for day in subfolders(&dir.join(table)) {
                if !listed.contains(&day) && !data_files(&day).is_empty() {
                    r.problems.push(format!(
                        "{}: holds data the catalog does not list",
                        day.display()
                    ));
                }
            }
            continue;
        }
        for account in subfolders(&dir.join(table)) {
            for day in subfolders(&account) {
                if !listed.contains(&day) && !data_files(&day).is_empty() {
                    r.problems.push(format!(
                        "{}: holds data the catalog does not list",
                        day.display()
                    ));
                }
            }
        }
    }
}

fn subfolders(dir: &Path) -> Vec<PathBuf> {
    entries(dir, Path::is_dir)
}

fn compare_daily(legs: &Sums, daily: &Sums, r: &mut CheckReport) {
    let keys: BTreeSet<&(String, Option<String>)> = legs.keys().chain(daily.keys()).collect();
    for k in keys {
        let (l, d) = (legs.get(k), daily.get(k));
        if l != d {
            r.problems.push(format!(
                "daily of account {} on {}: (legs, cost_units) {:?}, its legs {:?}",
                k.0,
                k.1.as_deref().unwrap_or("(no date)"),
                d,
                l
            ));
        }
    }
}

/// The sum of an integer column (0 when every value is null); `None` when the column is missing
/// or not an integer.
fn sum(df: &DataFrame, name: &str) -> Option<i64> {
    let c = df.column(name).ok()?.cast(&DataType::Int64).ok()?;
    Some(c.i64().ok()?.sum().unwrap_or(0))
}

fn strings(df: &DataFrame, name: &str) -> Vec<String> {
    df.column(name)
        .and_then(|c| c.str().cloned())
        .map(|c| c.iter().flatten().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// The findings as text, at most `limit` problems listed.
pub(crate) fn describe(dir: &Path, r: &CheckReport, limit: usize) -> String {
    let mut lines: Vec<String> = r.problems.iter().take(limit).cloned().collect();
    if r.problems.len() > limit {
        lines.push(format!("... and {} more", r.problems.len() - limit));
    }
    let head = match r.problems.len() {
        0 => format!(
            "{}: ok: {} partitions of every table ({} of legs), {} files read, {} legs, {} ledgers; every call_id and every ledger once, daily and interactions agree with the legs",
            dir.display(),
            r.partitions,
            r.legs_partitions,
            r.files,
            r.legs,
            r.ledgers
        ),
        n => format!(
            "{}: {n} problem(s) in {} partitions ({} files read, {} legs):",
            dir.display(),
            r.partitions,
            r.files,
            r.legs
        ),
    };
    std::iter::once(head)
        .chain(lines)
        .collect::<Vec<_>>()
        .join("\n")
}
