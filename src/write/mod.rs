//! Stage 4: the output folder.
//!
//! `legs/account_id=<ID>/date=<YYYY-MM-DD>/part-0.parquet` (and `.csv`), written with polars'
//! own Parquet encoder (zstd, column statistics; see [`parquet`]) and CSV writer;
//! `rejects.ndjson`; `manifest.json`.
//! Partition columns live in the paths, not in the files (the Hive convention).

pub(crate) mod commit;
pub(crate) mod manifest;
pub(crate) mod parquet;
pub(crate) mod partition;
pub(crate) mod summary;

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;

use polars::prelude::*;
use rayon::prelude::*;

use crate::schema::{
    ACCOUNT_ID, BILLED_SECONDS, BILLING_SECONDS, COST_UNITS, DATE, INTERACTIONS_TABLE, LEGS_TABLE,
    MANIFEST_FILE, RATED_COST_UNITS, RECONCILIATION_TABLE, REJECTS_FILE, RESELLER_COST_UNITS,
    SUMMARY_HTML, UNASSIGNED_ACCOUNT,
};
use crate::time::format_date;
pub use partition::Grain;

/// Output file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Parquet,
    Csv,
    Both,
}

/// How the datasets are written.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub format: Format,
    /// Write CSV text cells as they are, without neutralizing formula-like ones.
    pub csv_raw: bool,
}

impl Format {
    pub fn parquet(self) -> bool {
        matches!(self, Format::Parquet | Format::Both)
    }
    pub fn csv(self) -> bool {
        matches!(self, Format::Csv | Format::Both)
    }
}

/// Output problems; each names the path.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Polars { path: String, source: PolarsError },
    #[error(
        "{0} is not empty and holds no rerate manifest.json; refusing to write into it (choose an empty or new folder)"
    )]
    NotAnOutputFolder(String),
    #[error("{0} is being written by another rerate run (it holds {0}/.rerate.lock); wait for it to finish")]
    Busy(String),
    /// A path a commit would write or delete that is not plainly inside the output folder: one
    /// with `..`, absolute, or through a symbolic link (rerate never writes or deletes through
    /// one, and a journal naming such a path was not written by rerate).
    #[error("{path}: {why}; rerate writes and deletes only plain paths inside the output folder, never through a symbolic link: nothing was changed")]
    UnsafePath { path: String, why: String },
    /// A folder the commit must write in that this run may not write: found before the commit
    /// point, so nothing was changed.
    #[error("{0}: the commit would write in this folder, and this run may not ({1}); nothing was committed and the output folder is as it was")]
    NotWritable(String, String),
    /// The commit point was passed (the journal is written) but carrying it out failed: the
    /// output is committed, and the next run (of any mode) finishes moving it into place
    /// before anything else. Exit status 6.
    #[error("committed; finishing the commit failed: {0}; the next run on this folder completes it before anything else")]
    AfterCommit(Box<WriteError>),
}

pub(crate) fn io_err(path: &Path) -> impl Fn(std::io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn pl_err(path: &Path) -> impl Fn(PolarsError) -> WriteError + '_ {
    move |source| WriteError::Polars {
        path: path.display().to_string(),
        source,
    }
}

/// One written partition and its totals.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PartitionStats {
    pub table: String,
    pub account_id: String,
    pub date: Option<String>,
    /// The partition's folder, relative to the output folder.
    pub path: String,
    pub rows: u64,
    pub billing_seconds: i64,
    pub billed_seconds: i64,
    pub rated_cost_units: i64,
    pub cost_units: i64,
    pub reseller_cost_units: i64,
    /// Legs with no price (a null `cost_units`: a CSV leg with no deck rate); 0 for the other
    /// tables.
    #[serde(default)]
    pub unpriced_legs: u64,
    /// The unpriced legs' `billing_seconds` (seconds of use that no billed seconds or cost
    /// cover); 0 for the other tables.
    #[serde(default)]
    pub unpriced_billing_seconds: i64,
}

/// The things a run replaces in its output folder, besides what the previous manifest lists.
pub(crate) const OUTPUTS: &[&str] = &[
    crate::dataset::CATALOG_DIR,
    LEGS_TABLE,
    INTERACTIONS_TABLE,
    RECONCILIATION_TABLE,
    REJECTS_FILE,
    MANIFEST_FILE,
    SUMMARY_HTML,
];

/// The top-level names a previous run's manifest says it wrote; only plain names are
/// trusted, so a doctored manifest cannot point outside the folder.
pub(crate) fn previous_outputs(outputs: &[String]) -> Vec<String> {
    outputs
        .iter()
        .map(String::as_str)
        .filter(|n| !n.is_empty() && *n != "." && *n != ".." && !n.contains(['/', '\\', '\0']))
        .map(str::to_owned)
        .collect()
}

/// A table written as a Hive-partitioned dataset.
#[derive(Debug, Clone)]
pub struct Table<'a> {
    /// Folder name under the output folder, and the manifest's `table`.
    pub name: &'a str,
    /// The files' columns, in order (the partition columns are not among them).
    pub columns: Vec<&'a str>,
    /// The row order inside each partition: these columns, ascending, nulls last.
    pub order: Vec<&'a str>,
}

/// The one file of a partitioned table that holds no partition: `<table>/part-0.parquet`
/// (and `.csv`), right in the table's folder.
pub(crate) const EMPTY_PART: &str = "part-0";

/// Writes each of `tables` that has no partition in the folder (`present`: the tables that
/// have one, earlier runs' partitions included) as ONE empty file `out/<table>/part-0.parquet` (and `.csv`): zero rows, the
/// table's columns with `account_id` and `date` last, as a Hive-partitioned reader shows them.
/// DuckDB's `read_parquet('<table>/**/*.parquet', hive_partitioning=true)`, polars, Spark and
/// `rerate query` then read zero rows with the right schema instead of failing on a missing
/// folder, on exactly the clean nights. `tables`: (name, a frame with the table's columns;
/// its rows are not used). Returns the names of the tables written empty.
pub(crate) fn write_empty_tables(
    out: &Path,
    tables: &[(String, DataFrame)],
    present: &std::collections::BTreeSet<String>,
    output: &Output,
) -> Result<Vec<String>, WriteError> {
    let mut written = Vec::new();
    for (name, shape) in tables {
        if present.contains(name) {
            continue;
        }
        let dir = out.join(name);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let mut cols: Vec<Column> = shape
            .clear()
            .columns()
            .iter()
            .filter(|c| c.name() != ACCOUNT_ID && c.name() != DATE)
            .cloned()
            .collect();
        cols.push(Column::new_empty(ACCOUNT_ID.into(), &DataType::String));
        cols.push(Column::new_empty(DATE.into(), &DataType::Date));
        let mut empty = DataFrame::new(0, cols).map_err(pl_err(&dir))?;
        write_files(&mut empty, &dir, EMPTY_PART, output)?;
        written.push(name.clone());
    }
    Ok(written)
}

/// Writes `df` under `out/<table>/account_id=<ID>/date=<YYYY-MM-DD>/`, one folder per
/// partition, in parallel. `df` has `account_id` (null: `_unassigned`) and `date` columns.
pub fn write_partitioned(
    df: &DataFrame,
    out: &Path,
    table: &Table,
    output: &Output,
) -> Result<Vec<PartitionStats>, WriteError> {
    let dir = out.join(table.name);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let df = sorted(df, [ACCOUNT_ID, DATE], table).map_err(pl_err(&dir))?;
    let runs = partition_runs(&df).map_err(pl_err(&dir))?;
    runs.into_par_iter()
        .map(|(offset, len)| write_partition(df.slice(offset as i64, len), &dir, table, output))
        .collect()
}

/// `df` with `_unassigned` for a null `account_id`, sorted by `keys` and then by `table.order`
/// (ascending, nulls last, ties in `df`'s order).
fn sorted(df: &DataFrame, keys: [&str; 2], table: &Table) -> PolarsResult<DataFrame> {
    let mut df = df.clone();
    fill_unassigned(&mut df)?;
    let mut by = keys.to_vec();
    by.extend(table.order.iter().copied());
    df.sort(
        by,
        SortMultipleOptions::default()
            .with_maintain_order(true)
            .with_nulls_last(true),
    )
}

/// The (offset, length) of each run of equal (`account_id`, `date`) in `df`, which is sorted
/// by them: each partition is a slice of the sorted frame, not another copy of its rows.
fn partition_runs(df: &DataFrame) -> PolarsResult<Vec<(usize, usize)>> {
    Ok(runs(crate::spill::partition_keys(df)?))
}

/// A partitioned table's Parquet files under `dir` as one lazy frame, `account_id` and `date`
/// last, read from the folder names (`account_id` from the files of a [`Grain::Day`] table,
/// which `dir`'s name says), as analysts' tools read them.
pub(crate) fn scan_partitioned(dir: &Path) -> PolarsResult<LazyFrame> {
    let table = dir.file_name().map(|n| n.to_string_lossy());
    let mut keys = vec![Field::new(DATE.into(), DataType::Date)];
    if Grain::of(table.as_deref().unwrap_or_default()) == Grain::AccountDay {
        keys.insert(0, Field::new(ACCOUNT_ID.into(), DataType::String));
    }
    let hive_schema = Arc::new(Schema::from_iter(keys));
    let args = ScanArgsParquet {
        hive_options: HiveOptions {
            enabled: Some(true),
            hive_start_idx: 0,
            schema: Some(hive_schema),
            try_parse_dates: true,
        },
        ..Default::default()
    };
    LazyFrame::scan_parquet(
        format!("{}/**/*.parquet", dir.display()).as_str().into(),
        args,
    )
}

/// Gives legs without an account the `_unassigned` account, as their partition says.
pub fn fill_unassigned(df: &mut DataFrame) -> PolarsResult<()> {
    let acct = df.column(ACCOUNT_ID)?.str()?;
    if acct.null_count() == 0 {
        return Ok(());
    }
    let mut filled = StringChunkedBuilder::new(ACCOUNT_ID.into(), acct.len());
    for v in acct.iter() {
        filled.append_value(v.unwrap_or(UNASSIGNED_ACCOUNT));
    }
    df.with_column(filled.finish().into_column())?;
    Ok(())
}

fn write_partition(
    part: DataFrame,
    table_dir: &Path,
    table: &Table,
    output: &Output,
) -> Result<PartitionStats, WriteError> {
    let (account, date) = partition_of(&part).map_err(pl_err(table_dir))?;
    let rel = Grain::AccountDay.folder(table.name, &account, date.as_deref());
    let dir = table_dir
        .join(partition::dir_name(ACCOUNT_ID, Some(&account)))
        .join(partition::dir_name(DATE, date.as_deref()));
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let mut file_df = part
        .select(table.columns.iter().copied())
        .map_err(pl_err(&dir))?;
    let stats = partition_stats(&part, table.name, account, date, rel);
    write_files(&mut file_df, &dir, "part-0", output)?;
    Ok(stats)
}

/// The (`account_id`, `date`) of `part`'s first row: `_unassigned` for no account, the date as
/// `YYYY-MM-DD`.
fn partition_of(part: &DataFrame) -> PolarsResult<(String, Option<String>)> {
    let account = part
        .column(ACCOUNT_ID)?
        .str()?
        .get(0)
        .map_or_else(|| UNASSIGNED_ACCOUNT.to_owned(), str::to_owned);
    let date = part
        .column(DATE)?
        .date()?
        .physical()
        .get(0)
        .map(format_date);
    Ok((account, date))
}

/// The catalog's entry for `part`, one account's rows of one day of `table`, in the folder
/// `path`: its rows and sums (the legs' unpriced legs and seconds; 0 for the other tables).
fn partition_stats(
    part: &DataFrame,
    table: &str,
    account_id: String,
    date: Option<String>,
    path: String,
) -> PartitionStats {
    let legs = table == LEGS_TABLE;
    PartitionStats {
        table: table.to_owned(),
        account_id,
        date,
        path,
        rows: part.height() as u64,
        billing_seconds: sum_i64(part, BILLING_SECONDS),
        billed_seconds: sum_i64(part, BILLED_SECONDS),
        rated_cost_units: sum_i64(part, RATED_COST_UNITS),
        cost_units: sum_i64(part, COST_UNITS),
        reseller_cost_units: sum_i64(part, RESELLER_COST_UNITS),
        unpriced_legs: match legs {
            true => part.column(COST_UNITS).map_or(0, |c| c.null_count() as u64),
            false => 0,
        },
        unpriced_billing_seconds: match legs {
            true => unpriced_billing_seconds(part),
            false => 0,
        },
    }
}

/// The rows of a [`Grain::Day`] table's days that a run keeps from the committed dataset.
pub(crate) struct Carry<'a> {
    /// The committed dataset's folder, which the files are read from.
    pub from: &'a Path,
    /// The catalog's entries of this table on the days the run rewrites.
    pub old: Vec<&'a PartitionStats>,
    /// The (`account_id`, `date`) partitions the run rewrites or empties: their old rows go.
    pub replaced: &'a HashSet<(String, Option<String>)>,
}

/// A [`Grain::Day`] table written: the catalog's entries of the rows this run wrote (one per
/// account and day), and the folders whose earlier files the commit removes unless this run
/// staged them again (each day written, each old account-and-day folder of a dataset written
/// before format 4).
pub(crate) struct DaysWritten {
    pub partitions: Vec<PartitionStats>,
    pub superseded: Vec<String>,
}

/// Writes `df` (with `account_id`, null for `_unassigned`, and `date` columns) as one file a
/// day, `out/<table>/date=<YYYY-MM-DD>/part-0.parquet` (and `.csv`), `account_id` its last
/// column, rows sorted by `account_id` and then as `df` has them. Each day of `df` or of
/// `carry.old` is written whole: this run's rows, and the committed file's rows of every other
/// account (read from Parquet, else CSV). A day left with no row has no file. Errors: an
/// earlier file that cannot be read or does not hold the table's columns, and the write's own.
pub(crate) fn write_by_day(
    df: Option<&DataFrame>,
    out: &Path,
    table: &Table,
    output: &Output,
    carry: &Carry,
) -> Result<DaysWritten, WriteError> {
    let dir = out.join(table.name);
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    type Rows<'a> = (Option<DataFrame>, Vec<&'a PartitionStats>);
    let mut days: BTreeMap<Option<String>, Rows> = BTreeMap::new();
    let mut columns = None;
    if let Some(df) = df {
        let df = sorted(df, [DATE, ACCOUNT_ID], table).map_err(pl_err(&dir))?;
        let dates = df.column(DATE).map_err(pl_err(&dir))?;
        let dates = dates.date().map_err(pl_err(&dir))?.physical();
        for (offset, len) in runs(dates.iter()) {
            let day = dates.get(offset).map(format_date);
            days.entry(day).or_default().0 = Some(df.slice(offset as i64, len));
        }
        let mut c: Vec<String> = table.columns.iter().map(|c| (*c).to_owned()).collect();
        c.push(ACCOUNT_ID.to_owned());
        columns = Some(c);
    }
    for p in &carry.old {
        days.entry(p.date.clone()).or_default().1.push(p);
    }
    let written: Vec<DaysWritten> = days
        .into_par_iter()
        .map(|(date, (new, old))| {
            let day = Day {
                date,
                new,
                old: &old,
                columns: columns.as_deref(),
            };
            write_day(day, &dir, table.name, output, carry)
        })
        .collect::<Result<_, _>>()?;
    Ok(DaysWritten {
        partitions: written.iter().flat_map(|w| w.partitions.clone()).collect(),
        superseded: written.into_iter().flat_map(|w| w.superseded).collect(),
    })
}

/// One day of [`write_by_day`].
struct Day<'a> {
    date: Option<String>,
    /// This run's rows, sorted by account.
    new: Option<DataFrame>,
    /// The catalog's entries of the day.
    old: &'a [&'a PartitionStats],
    /// The file's columns, `account_id` last; `None`: the committed files' own (a report this
    /// run did not compute, whose rewritten partitions' rows go).
    columns: Option<&'a [String]>,
}

fn write_day(
    day: Day,
    table_dir: &Path,
    table: &str,
    output: &Output,
    carry: &Carry,
) -> Result<DaysWritten, WriteError> {
    let Day {
        date,
        new,
        old,
        columns,
    } = day;
    let folder = Grain::Day.folder(table, "", date.as_deref());
    let mut superseded = vec![folder.clone()];
    let mut partitions = Vec::new();
    let mut frames = Vec::new();
    if let (Some(new), Some(columns)) = (new, columns) {
        let accounts = new.column(ACCOUNT_ID).map_err(pl_err(table_dir))?;
        let accounts = accounts.str().map_err(pl_err(table_dir))?;
        for (offset, len) in runs(accounts.iter()) {
            let part = new.slice(offset as i64, len);
            let account = accounts
                .get(offset)
                .unwrap_or(UNASSIGNED_ACCOUNT)
                .to_owned();
            partitions.push(partition_stats(
                &part,
                table,
                account,
                date.clone(),
                folder.clone(),
            ));
        }
        let select = new.select(columns.iter().map(String::as_str));
        frames.push(select.map_err(pl_err(table_dir))?);
    }
    // The accounts this run wrote rows for: their committed rows go, whatever `replaced` says
    // (a report may give rows to an account and day without legs).
    let written: HashSet<&str> = partitions.iter().map(|p| p.account_id.as_str()).collect();
    // The committed rows of the accounts this run leaves alone, file by file.
    let mut kept: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in old {
        if p.path != folder {
            superseded.push(p.path.clone());
        }
        let key = (p.account_id.clone(), p.date.clone());
        if !carry.replaced.contains(&key) && !written.contains(p.account_id.as_str()) {
            kept.entry(p.path.as_str()).or_default().push(&p.account_id);
        }
    }
    for (path, accounts) in kept {
        let (file, mut rows) = read_rows(&carry.from.join(path))?;
        if path == folder {
            let keep: HashSet<&str> = accounts.into_iter().collect();
            let ids = rows.column(ACCOUNT_ID).and_then(|c| c.str().cloned());
            let ids = ids.map_err(pl_err(&file))?;
            let mask: BooleanChunked = ids
                .iter()
                .map(|a| a.is_some_and(|a| keep.contains(a)))
                .collect();
            rows = rows.filter(&mask).map_err(pl_err(&file))?;
        } else {
            // An account-and-day folder of a dataset written before format 4.
            let n = rows.height();
            let id = StringChunked::full(ACCOUNT_ID.into(), accounts[0], n);
            rows.with_column(id.into_column()).map_err(pl_err(&file))?;
        }
        let own: Vec<String>;
        let columns = match columns {
            Some(c) => c,
            None => {
                own = frames
                    .first()
                    .unwrap_or(&rows)
                    .get_column_names_owned()
                    .into_iter()
                    .map(|c| c.to_string())
                    .collect();
                &own
            }
        };
        frames.push(aligned(rows, columns, frames.first(), &file)?);
    }
    let Some(first) = frames.first() else {
        return Ok(DaysWritten {
            partitions,
            superseded,
        });
    };
    let mut rows = first.clone();
    for f in &frames[1..] {
        rows.vstack_mut(f).map_err(pl_err(table_dir))?;
    }
    let mut rows = rows
        .sort(
            [ACCOUNT_ID],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .map_err(pl_err(table_dir))?;
    rows.rechunk_mut();
    let dir = table_dir.join(partition::dir_name(DATE, date.as_deref()));
    fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    write_files(&mut rows, &dir, "part-0", output)?;
    Ok(DaysWritten {
        partitions,
        superseded,
    })
}

/// The (offset, length) of each run of equal values in `values`.
fn runs<T: PartialEq>(values: impl Iterator<Item = T>) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut last = None;
    for (i, v) in values.enumerate() {
        match &last {
            Some(l) if *l == v => out.last_mut().expect("a run is open").1 += 1,
            _ => {
                out.push((i, 1));
                last = Some(v);
            }
        }
    }
    out
}

/// The rows of the data file in `folder`: its Parquet file, else its CSV file; read on the
/// calling thread, for callers that read many small files from a parallel iterator.
pub(crate) fn read_rows(folder: &Path) -> Result<(std::path::PathBuf, DataFrame), WriteError> {
    let parquet = folder.join("part-0.parquet");
    if parquet.exists() {
        let f = File::open(&parquet).map_err(io_err(&parquet))?;
        // Read on this thread: polars' own parallel column decoding inside a parallel
        // iterator over many small files nests work-stealing waits on its pool until the
        // stack overflows (seen at 90 days x 300 accounts).
        let df = ParquetReader::new(f)
            .read_parallel(ParallelStrategy::None)
            .finish()
            .map_err(pl_err(&parquet))?;
        return Ok((parquet, df));
    }
    let csv = folder.join("part-0.csv");
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(csv.clone()))
        .and_then(|r| r.finish())
        .map_err(pl_err(&csv))?;
    Ok((csv, df))
}

/// `rows` with exactly `columns`, in order, each of `like`'s type when there is one (a column
/// an earlier release did not write is null). Error: a value that does not fit.
fn aligned(
    rows: DataFrame,
    columns: &[String],
    like: Option<&DataFrame>,
    file: &Path,
) -> Result<DataFrame, WriteError> {
    let n = rows.height();
    let mut out = Vec::with_capacity(columns.len());
    for name in columns {
        let name = name.as_str();
        let dtype = like
            .and_then(|l| l.column(name).ok())
            .map(|c| c.dtype().clone());
        let c = match (rows.column(name), dtype) {
            (Ok(c), Some(t)) if c.dtype() != &t => c.strict_cast(&t).map_err(pl_err(file))?,
            (Ok(c), _) => c.clone(),
            (Err(_), Some(t)) => Column::full_null(name.into(), n, &t),
            (Err(e), None) => return Err(pl_err(file)(e)),
        };
        out.push(c);
    }
    DataFrame::new(n, out).map_err(pl_err(file))
}

/// Writes `<dir>/<stem>.parquet` and/or `<dir>/<stem>.csv`.
pub(crate) fn write_files(
    df: &mut DataFrame,
    dir: &Path,
    stem: &str,
    output: &Output,
) -> Result<(), WriteError> {
    if output.format.parquet() {
        write_parquet(df, &dir.join(format!("{stem}.parquet")))?;
    }
    if output.format.csv() {
        write_csv(
            df,
            &dir.join(format!("{stem}.csv")),
            output.csv_raw,
            CsvFlavor::Dataset,
        )?;
    }
    Ok(())
}

/// The `billing_seconds` of the legs whose `cost_units` is null.
fn unpriced_billing_seconds(df: &DataFrame) -> i64 {
    let (Ok(cost), Ok(secs)) = (df.column(COST_UNITS), df.column(BILLING_SECONDS)) else {
        return 0;
    };
    let (Ok(cost), Ok(secs)) = (cost.i64(), secs.i64()) else {
        return 0;
    };
    cost.iter()
        .zip(secs.iter())
        .filter(|(c, _)| c.is_none())
        .filter_map(|(_, s)| s)
        .sum()
}

fn sum_i64(df: &DataFrame, col: &str) -> i64 {
    df.column(col)
        .ok()
        .and_then(|c| c.i64().ok())
        .map_or(0, |c| c.iter().flatten().sum())
}

/// `path` as written by [`parquet::write`]; a failed write is reported in the file system's words.
pub(crate) fn write_parquet(df: &mut DataFrame, path: &Path) -> Result<(), WriteError> {
    let file = File::create(path).map_err(io_err(path))?;
    let mut w = FirstIoError {
        inner: BufWriter::new(file),
        error: None,
    };
    let written = parquet::write(df, &mut w).and_then(|_| Ok(w.flush()?));
    match (written, w.error) {
        (Ok(()), _) => Ok(()),
        // The encoder reports a failed write as a thrift transport error; the file system's
        // own words (a full disk, say) are what the user needs.
        (Err(_), Some(source)) => Err(io_err(path)(source)),
        (Err(e), None) => Err(pl_err(path)(e)),
    }
}

/// A writer that keeps the first I/O error it meets.
struct FirstIoError<W> {
    inner: W,
    error: Option<std::io::Error>,
}

impl<W: Write> FirstIoError<W> {
    fn keep<T>(&mut self, r: std::io::Result<T>) -> std::io::Result<T> {
        r.inspect_err(|e| {
            if self.error.is_none() {
                self.error = Some(std::io::Error::new(e.kind(), e.to_string()));
            }
        })
    }
}

impl<W: Write> Write for FirstIoError<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let r = self.inner.write(buf);
        self.keep(r)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let r = self.inner.flush();
        self.keep(r)
    }
}

/// Which readers a CSV file is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CsvFlavor {
    /// The dataset's own files (`legs/account_id=.../date=.../part-0.csv`, report files): read
    /// by DuckDB, Spark, polars and scripts. No byte order mark (Spark's and Python's readers
    /// would keep it in the first column's name); timestamps in ISO 8601 UTC with microseconds
    /// (`2026-11-04T15:00:00.000000Z`), as the Parquet files hold them.
    Dataset,
    /// A file for a person's spreadsheet (`rerate query ... --output FILE.csv`, the one-CSV-of-a-
    /// period recipe): a UTF-8 byte order mark first, which is how Excel tells UTF-8 from the
    /// local code page (LibreOffice, DuckDB and polars skip it); timestamps as
    /// `2026-11-04 15:00:00` in UTC (a fraction only when there is one), which Excel and
    /// LibreOffice read as date-times, where ISO 8601's `T` and `Z` keep them text.
    Spreadsheet,
}

impl CsvFlavor {
    fn datetime_format(self) -> &'static str {
        match self {
            CsvFlavor::Dataset => "%Y-%m-%dT%H:%M:%S%.6fZ",
            CsvFlavor::Spreadsheet => "%Y-%m-%d %H:%M:%S%.f",
        }
    }
}

/// Writes `df` as one CSV file at `path`; see [`csv_to`].
pub(crate) fn write_csv(
    df: &mut DataFrame,
    path: &Path,
    raw: bool,
    flavor: CsvFlavor,
) -> Result<(), WriteError> {
    let file = File::create(path).map_err(io_err(path))?;
    let mut w = BufWriter::new(file);
    csv_to(df, &mut w, raw, flavor, flavor == CsvFlavor::Spreadsheet).map_err(pl_err(path))?;
    w.flush().map_err(io_err(path))
}

/// The UTF-8 byte order mark.
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// CSV: a header row, RFC 4180 quoting (only where needed), lists as JSON arrays, and:
/// - every integer money column `<x>_units` followed by its currency twin `<x>` (units /
///   10,000, four decimals: `cost_units` 2262, `cost` 0.2262), as the reports have;
/// - timestamps as the [`CsvFlavor`] says, in UTC; dates as `2026-11-02`;
/// - unless `raw`, a leading `'` on a text cell a spreadsheet would run as a formula (it starts
///   with `=`, `+`, `-`, `@`, a tab or a carriage return: a caller id `+15551234567` is a formula
///   to Excel, and a crafted caller name could be `=HYPERLINK(...)`); numbers are never touched.
///
/// `bom`: start with a UTF-8 byte order mark (a spreadsheet file, not standard output).
pub(crate) fn csv_to(
    df: &DataFrame,
    w: &mut dyn Write,
    raw: bool,
    flavor: CsvFlavor,
    bom: bool,
) -> PolarsResult<()> {
    let mut df = crate::reports::with_currency(df.clone())?;
    if df
        .columns()
        .iter()
        .any(|c| matches!(c.dtype(), DataType::List(_)))
    {
        df = lists_as_json(&df)?;
    }
    if !raw {
        df = neutralize_formulas(&df)?;
    }
    if bom {
        w.write_all(BOM)?;
    }
    CsvWriter::new(w)
        .include_header(true)
        .with_quote_style(QuoteStyle::Necessary)
        .with_datetime_format(Some(flavor.datetime_format().into()))
        .with_date_format(Some("%Y-%m-%d".into()))
        .finish(&mut df)
}

/// One JSON object per row and line (NDJSON): numbers as numbers, decimals as exact strings
/// of their digits, dates as `YYYY-MM-DD`, timestamps as ISO 8601 UTC, lists as arrays.
pub(crate) fn json_lines(df: &DataFrame, w: &mut dyn Write) -> PolarsResult<()> {
    let keys: Vec<String> = df
        .get_column_names()
        .into_iter()
        .map(|n| serde_json::to_string(n.as_str()).unwrap_or_default())
        .collect();
    for i in 0..df.height() {
        // Written key by key: the columns keep their order (a JSON map would sort them).
        w.write_all(b"{")?;
        for (k, (key, c)) in keys.iter().zip(df.columns()).enumerate() {
            if k > 0 {
                w.write_all(b",")?;
            }
            w.write_all(key.as_bytes())?;
            w.write_all(b":")?;
            serde_json::to_writer(&mut *w, &json_value(c.get(i)?)).map_err(std::io::Error::from)?;
        }
        w.write_all(b"}\n")?;
    }
    Ok(())
}

fn json_value(v: AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        AnyValue::Null => J::Null,
        AnyValue::Boolean(b) => J::Bool(b),
        AnyValue::String(s) => J::String(s.to_owned()),
        AnyValue::StringOwned(s) => J::String(s.to_string()),
        AnyValue::Int8(x) => x.into(),
        AnyValue::Int16(x) => x.into(),
        AnyValue::Int32(x) => x.into(),
        AnyValue::Int64(x) => x.into(),
        AnyValue::UInt8(x) => x.into(),
        AnyValue::UInt16(x) => x.into(),
        AnyValue::UInt32(x) => x.into(),
        AnyValue::UInt64(x) => x.into(),
        AnyValue::Float32(x) => {
            serde_json::Number::from_f64(f64::from(x)).map_or(J::Null, J::Number)
        }
        AnyValue::Float64(x) => serde_json::Number::from_f64(x).map_or(J::Null, J::Number),
        AnyValue::Date(d) => J::String(format_date(d)),
        AnyValue::Datetime(v, unit, _) => {
            let micros = match unit {
                TimeUnit::Nanoseconds => v.div_euclid(1000),
                TimeUnit::Microseconds => v,
                TimeUnit::Milliseconds => v.saturating_mul(1000),
            };
            J::String(crate::time::format_micros(micros))
        }
        AnyValue::List(s) => J::Array(
            (0..s.len())
                .map(|i| s.get(i).map_or(J::Null, json_value))
                .collect(),
        ),
        // Decimals print their exact digits; anything else as polars shows it.
        other => J::String(other.to_string().trim_matches('"').to_owned()),
    }
}

/// The first characters with which a spreadsheet treats a cell as a formula.
fn formula_like(s: &str) -> bool {
    s.starts_with(['=', '+', '-', '@', '\t', '\r'])
}

/// A copy of `df` whose formula-like text cells start with `'`.
fn neutralize_formulas(df: &DataFrame) -> PolarsResult<DataFrame> {
    let mut out = df.clone();
    for c in df.columns() {
        if c.dtype() != &DataType::String {
            continue;
        }
        let s = c.str()?;
        if !s.iter().flatten().any(formula_like) {
            continue;
        }
        let mut b = StringChunkedBuilder::new(c.name().clone(), s.len());
        for v in s.iter() {
            match v {
                Some(v) if formula_like(v) => b.append_value(format!("'{v}")),
                v => b.append_option(v),
            }
        }
        out.with_column(b.finish().into_column())?;
    }
    Ok(out)
}

/// A copy of `df` whose list-of-string columns are JSON array text (CSV has no lists).
fn lists_as_json(df: &DataFrame) -> PolarsResult<DataFrame> {
    let mut out = df.clone();
    for c in df.columns() {
        if !matches!(c.dtype(), DataType::List(_)) {
            continue;
        }
        let list = c.list()?;
        let mut b = StringChunkedBuilder::new(c.name().clone(), list.len());
        for i in 0..list.len() {
            match list.get_as_series(i) {
                None => b.append_null(),
                Some(s) => {
                    let items: Vec<Option<String>> =
                        s.str()?.iter().map(|x| x.map(str::to_owned)).collect();
                    b.append_value(serde_json::to_string(&items).unwrap_or_default());
                }
            }
        }
        out.with_column(b.finish().into_column())?;
    }
    Ok(out)
}
