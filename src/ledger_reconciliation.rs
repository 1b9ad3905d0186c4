//! Stage 8: what KAZOO debited against what it recorded and what the deck derives, leg by leg
//! (`queries/ledgers/`): the `ledger_reconciliation` table (the legs and ledgers that disagree,
//! with their class) and `ledger_daily` (per account, day and party: legs, checked legs, money
//! recorded, derived and debited, rows per class), each a file a day like the reports.
//!
//! Both are SQL over the `legs` and `ledgers` tables (`ledger_rows.sql`, then each table's
//! file), and a dataset built night by night must hold what that SQL gives over the whole
//! dataset. A row depends on more than its own partition, so a run recomputes every account and
//! day a change can reach ([`recomputed`]):
//! - a leg's ledgers fall on its day or the next (jonny5 dates them at the call's end), so a
//!   rewritten legs partition (A, D) changes the rows of (A, D) and (A, D + 1), and a changed
//!   ledgers partition (A, E) those of (A, E - 1) and (A, E);
//! - a party's legs are checked (have a row) only in a month for which the dataset holds
//!   ledgers of that party's database for the account, and a ledger only in a month with legs of
//!   its account, so the first ledgers of a database (or the first legs) in a month make every
//!   day of that account's month change; legs of an account without ledgers in their month (or
//!   the next) change nothing, and cost nothing.
//!
//! The SQL then runs over those accounts' legs of the days before and ledgers of the days after
//! (read from the run's staged files, else the committed ones), with the months' legs and
//! ledgers for coverage, and only the recomputed partitions' rows are kept.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::dataset::Catalog;
use crate::ingest::ledger::{LEDGERS_TABLE, PVT_ACCOUNT_ID};
use crate::schema::{ACCOUNT_ID, DATE, LEGS_TABLE};
use crate::time::{format_date, parse_date};
use crate::write::{write_by_day, Carry, Output, PartitionStats, Table};

/// The table of legs and ledgers that disagree.
pub(crate) const LEDGER_RECONCILIATION: &str = "ledger_reconciliation";
/// The table of per account, day and party totals.
pub(crate) const LEDGER_DAILY: &str = "ledger_daily";

/// The view both tables read: every billable leg and per-minute ledger with its class.
const ROWS_SQL: &str = include_str!("../queries/ledgers/ledger_rows.sql");
const ROWS_VIEW: &str = "ledger_rows";

/// The tables this stage writes, in order, with their SQL.
pub(crate) const TABLES: [(&str, &str); 2] = [
    (
        LEDGER_RECONCILIATION,
        include_str!("../queries/ledgers/ledger_reconciliation.sql"),
    ),
    (
        LEDGER_DAILY,
        include_str!("../queries/ledgers/ledger_daily.sql"),
    ),
];

/// Whether `table` is one of this stage's.
pub(crate) fn is_ledger_table(table: &str) -> bool {
    TABLES.iter().any(|(t, _)| *t == table)
}

/// An (`account_id`, `date`) partition as the catalog names it.
type Partition = (String, Option<String>);

/// An account and a day (days since 1970-01-01).
type DayOf = (String, i32);

/// What a run changed, and where the dataset's files are.
pub(crate) struct Scope<'a> {
    /// The committed dataset (`--out`).
    pub committed: &'a Path,
    /// The run's staged output.
    pub staged: &'a Path,
    /// The committed dataset's catalog (empty for a new dataset or `--mode replace-all`).
    pub previous: &'a Catalog,
    /// Every partition recomputed: the dataset has never had these tables.
    pub rebuild: bool,
    /// The legs partitions the run staged.
    pub legs: &'a [PartitionStats],
    /// The legs partitions the run rewrote or emptied.
    pub legs_replaced: &'a HashSet<Partition>,
    /// The ledgers table's entries the run staged (whole days).
    pub ledgers: &'a [PartitionStats],
    /// The account-days whose ledger rows the run changed.
    pub ledgers_changed: &'a HashSet<Partition>,
}

/// The tables written: the catalog's entries, the folders the commit replaces, and the
/// (`account_id`, `date`) partitions recomputed (their old entries go, rows or not).
#[derive(Default)]
pub(crate) struct Written {
    pub partitions: Vec<PartitionStats>,
    pub superseded: Vec<String>,
    pub recomputed: HashSet<Partition>,
    /// Each table's columns (an empty frame), for its empty file when it has no row.
    pub shapes: Vec<(String, DataFrame)>,
}

/// Where one partition's rows are: the folder of its files.
#[derive(Default)]
struct Files {
    /// (account, day) -> the legs partition's folder.
    legs: HashMap<DayOf, PathBuf>,
    /// day -> the ledgers day file's folder, and the accounts it holds.
    ledgers: BTreeMap<i32, (PathBuf, BTreeSet<String>)>,
}

impl Files {
    /// The legs and ledgers partitions of the dataset after the run: the committed entries
    /// (`old`) with the run's staged ones in place of those it rewrote.
    fn of(scope: &Scope, old: &[PartitionStats]) -> Files {
        let mut f = Files::default();
        let staged_days: HashSet<Option<&str>> =
            scope.ledgers.iter().map(|p| p.date.as_deref()).collect();
        let committed = old.iter().map(|p| (p, scope.committed));
        let staged = scope
            .legs
            .iter()
            .chain(scope.ledgers)
            .map(|p| (p, scope.staged));
        for (p, root) in committed.chain(staged) {
            let Some(day) = p.date.as_deref().and_then(parse_date) else {
                continue;
            };
            let from_run = root == scope.staged;
            if p.table == LEGS_TABLE {
                let key = (p.account_id.clone(), p.date.clone());
                if !from_run && scope.legs_replaced.contains(&key) {
                    continue;
                }
                f.legs
                    .insert((p.account_id.clone(), day), root.join(&p.path));
            } else if p.table == LEDGERS_TABLE {
                if !from_run && staged_days.contains(&p.date.as_deref()) {
                    continue;
                }
                let e = f
                    .ledgers
                    .entry(day)
                    .or_insert_with(|| (root.join(&p.path), BTreeSet::new()));
                e.1.insert(p.account_id.clone());
            }
        }
        f
    }
}

/// The month of a day (days since 1970-01-01) as `YYYY-MM`.
fn month(day: i32) -> String {
    format_date(day)[..7].to_owned()
}

/// The partitions whose rows a run changes (the module's rules), and where the legs and
/// ledgers of the months they reach are.
fn recomputed(scope: &Scope) -> anyhow::Result<(BTreeSet<DayOf>, Files)> {
    let dated = |p: &Partition| -> Option<DayOf> {
        Some((p.0.clone(), p.1.as_deref().and_then(parse_date)?))
    };
    let touched_legs: Vec<DayOf> = scope.legs_replaced.iter().filter_map(dated).collect();
    let touched_ledgers: Vec<DayOf> = scope.ledgers_changed.iter().filter_map(dated).collect();
    // The months the changes reach, a day either way.
    let mut months: BTreeSet<String> = BTreeSet::new();
    for (_, d) in touched_legs.iter().chain(&touched_ledgers) {
        months.extend([month(d - 1), month(*d), month(d + 1)]);
    }
    let old = committed_in(scope, &months)?;
    let files = Files::of(scope, &old);

    let mut r: BTreeSet<DayOf> = BTreeSet::new();
    // A leg's rows exist only where its account has ledgers in its month (the next month for
    // the ledgers of a leg's next day): legs elsewhere change nothing.
    let ledger_months: HashSet<(&str, String)> = files
        .ledgers
        .iter()
        .flat_map(|(d, (_, held))| held.iter().map(move |a| (a.as_str(), month(*d))))
        .collect();
    let reaches = |a: &str, d: i32| {
        ledger_months.contains(&(a, month(d))) || ledger_months.contains(&(a, month(d + 1)))
    };
    if scope.rebuild {
        r.extend(
            files
                .legs
                .keys()
                .filter(|(a, d)| reaches(a, *d))
                .flat_map(|(a, d)| [(a.clone(), *d), (a.clone(), d + 1)]),
        );
        for (d, (_, accounts)) in &files.ledgers {
            r.extend(
                accounts
                    .iter()
                    .flat_map(|a| [(a.clone(), d - 1), (a.clone(), *d)]),
            );
        }
    }
    for (a, d) in touched_legs.iter().filter(|(a, d)| reaches(a, *d)) {
        r.extend([(a.clone(), *d), (a.clone(), d + 1)]);
    }
    for (a, e) in &touched_ledgers {
        r.extend([(a.clone(), e - 1), (a.clone(), *e)]);
    }
    // Coverage: an account's first legs of a month make its ledger days of that month change;
    // a database's first ledgers of a month (for an account) make its legs days change.
    let committed_leg_months: HashSet<(&str, String)> = old
        .iter()
        .filter(|p| p.table == LEGS_TABLE)
        .filter_map(|p| {
            Some((
                p.account_id.as_str(),
                month(parse_date(p.date.as_deref()?)?),
            ))
        })
        .collect();
    let mut new_leg_months: HashSet<(String, String)> = HashSet::new();
    for p in scope.legs {
        let Some(d) = p.date.as_deref().and_then(parse_date) else {
            continue;
        };
        if !committed_leg_months.contains(&(p.account_id.as_str(), month(d))) {
            new_leg_months.insert((p.account_id.clone(), month(d)));
        }
    }
    for (d, (_, accounts)) in &files.ledgers {
        for a in accounts {
            if new_leg_months.contains(&(a.clone(), month(*d))) {
                r.insert((a.clone(), *d));
            }
        }
    }
    let new_holders = new_ledger_months(scope, &files, &old, &touched_ledgers)?;
    for (a, d) in files.legs.keys() {
        if new_holders.contains(&(a.clone(), month(*d))) {
            r.insert((a.clone(), *d));
        }
    }
    // The rows of `r` read the day before and after, and their whole months: a month's first
    // or last day reaches into the next or the last.
    let reach: BTreeSet<String> = r
        .iter()
        .flat_map(|(_, d)| [month(d - 1), month(*d), month(d + 1)])
        .collect();
    if !reach.is_subset(&months) {
        let old = committed_in(scope, &(&months | &reach))?;
        return Ok((r, Files::of(scope, &old)));
    }
    Ok((r, files))
}

/// The committed dataset's legs and ledgers entries on the days of `months` (`YYYY-MM`); every
/// one when the tables are rebuilt; none without a dataset to keep.
fn committed_in(scope: &Scope, months: &BTreeSet<String>) -> anyhow::Result<Vec<PartitionStats>> {
    let all = match (scope.previous.is_empty(), scope.rebuild) {
        (true, _) => vec![],
        (false, true) => scope.previous.all_partitions(scope.committed)?,
        (false, false) => {
            let keys: BTreeSet<String> = scope
                .previous
                .shards()
                .into_keys()
                .filter(|k| k.len() >= 7 && months.contains(&k[..7]))
                .collect();
            scope.previous.partitions_in(scope.committed, &keys)?
        }
    };
    Ok(all
        .into_iter()
        .filter(|p| p.table == LEGS_TABLE || p.table == LEDGERS_TABLE)
        .collect())
}

/// The (account, month)s for which the run brings the ledgers of a database the dataset did
/// not hold for that account in that month.
fn new_ledger_months(
    scope: &Scope,
    files: &Files,
    old: &[PartitionStats],
    touched: &[DayOf],
) -> anyhow::Result<HashSet<(String, String)>> {
    let mut out = HashSet::new();
    let accounts: BTreeSet<&str> = touched.iter().map(|(a, _)| a.as_str()).collect();
    let months: BTreeSet<String> = touched.iter().map(|(_, d)| month(*d)).collect();
    if accounts.is_empty() {
        return Ok(out);
    }
    // Before: the committed day files of those months; after: those, with the days the run
    // staged in their place. A day the run left alone holds the same holders before and after,
    // so only the staged days are read again.
    let committed: BTreeMap<i32, PathBuf> = old
        .iter()
        .filter(|p| p.table == LEDGERS_TABLE)
        .filter_map(|p| {
            let d = parse_date(p.date.as_deref()?)?;
            Some((d, scope.committed.join(&p.path)))
        })
        .collect();
    let staged: BTreeMap<i32, PathBuf> = files
        .ledgers
        .iter()
        .filter(|(_, (f, _))| f.starts_with(scope.staged))
        .map(|(d, (f, _))| (*d, f.clone()))
        .collect();
    let holders =
        |days: &BTreeMap<i32, PathBuf>| -> anyhow::Result<HashSet<(String, String, String)>> {
            let mut h = HashSet::new();
            for (d, folder) in days.iter().filter(|(d, _)| months.contains(&month(**d))) {
                let df = holder_rows(folder, *d, &accounts)?;
                let a = df.column(ACCOUNT_ID)?.str()?.clone();
                let p = df.column(PVT_ACCOUNT_ID)?.str()?.clone();
                for (a, p) in a.iter().zip(p.iter()) {
                    let a = a.unwrap_or_default().to_owned();
                    let p = p.map_or_else(|| a.clone(), str::to_owned);
                    h.insert((a, p, month(*d)));
                }
            }
            Ok(h)
        };
    let before = holders(&committed)?;
    for (a, _, m) in holders(&staged)?.difference(&before) {
        out.insert((a.clone(), m.clone()));
    }
    Ok(out)
}

/// A ledgers day file's `account_id` and `pvt_account_id` (the account's own when the file
/// predates the column) for `accounts`, with `date`.
fn holder_rows(folder: &Path, day: i32, accounts: &BTreeSet<&str>) -> anyhow::Result<DataFrame> {
    let (file, mut df) = crate::write::read_rows(folder)?;
    let why = |e: PolarsError| anyhow::anyhow!("{}: {e}", file.display());
    if df.column(PVT_ACCOUNT_ID).is_err() {
        let a = df.column(ACCOUNT_ID).map_err(why)?.clone();
        df.with_column(a.with_name(PVT_ACCOUNT_ID.into()))
            .map_err(why)?;
    }
    let df = df.select([ACCOUNT_ID, PVT_ACCOUNT_ID]).map_err(why)?;
    in_accounts(df, day, accounts).map_err(why)
}

/// `df`'s rows of `accounts` (an `account_id` null is `_unassigned`), with `date` = `day`.
fn in_accounts(df: DataFrame, day: i32, accounts: &BTreeSet<&str>) -> PolarsResult<DataFrame> {
    let list = Series::new(
        "accounts".into(),
        accounts.iter().copied().collect::<Vec<&str>>(),
    )
    .implode()?
    .into_series();
    df.lazy()
        .with_column(col(ACCOUNT_ID).fill_null(lit(crate::schema::UNASSIGNED_ACCOUNT)))
        .filter(col(ACCOUNT_ID).is_in(lit(list), false))
        .with_column(lit(day).cast(DataType::Date).alias(DATE))
        .collect()
}

/// Writes both tables for the partitions the run changes ([`recomputed`]) under `scope.staged`.
/// `legs_columns`: the legs table's columns. Errors name the file that cannot be read.
pub(crate) fn write(
    scope: &Scope,
    legs_columns: &[&str],
    output: &Output,
) -> anyhow::Result<Written> {
    let (r, files) = recomputed(scope)?;
    let accounts: BTreeSet<&str> = r.iter().map(|(a, _)| a.as_str()).collect();
    // Legs of the days before, ledgers of the days after, months for coverage.
    let mut leg_parts: BTreeSet<DayOf> = BTreeSet::new();
    let mut ledger_days: BTreeSet<i32> = BTreeSet::new();
    let mut months: BTreeSet<String> = BTreeSet::new();
    for (a, d) in &r {
        leg_parts.insert((a.clone(), *d));
        // The day before only matters to the ledgers of this day: a leg's ledger falls on its
        // day or the next.
        if files
            .ledgers
            .get(d)
            .is_some_and(|(_, held)| held.contains(a))
        {
            leg_parts.insert((a.clone(), d - 1));
        }
        ledger_days.extend([*d, d + 1]);
        months.insert(month(*d));
    }
    let sql_words: Vec<crate::reports::Report> = [("rows", ROWS_SQL)]
        .iter()
        .map(|(n, s)| crate::reports::Report {
            name: (*n).to_owned(),
            description: String::new(),
            sql: (*s).to_owned(),
            per_account_day: true,
        })
        .collect();
    let leg_cols = crate::reports::columns_named(&sql_words, legs_columns);
    let wanted: Vec<(&DayOf, &PathBuf)> = files
        .legs
        .iter()
        .filter(|(k, _)| leg_parts.contains(*k))
        .collect();
    let legs: Vec<LazyFrame> = {
        use rayon::prelude::*;
        wanted
            .par_iter()
            .map(|((a, d), folder)| -> anyhow::Result<LazyFrame> {
                Ok(legs_columns_of(folder, a, *d, &leg_cols)?.lazy())
            })
            .collect::<anyhow::Result<_>>()?
    };
    let mut ledgers = Vec::new();
    let mut month_ledgers = Vec::new();
    for (d, (folder, held)) in &files.ledgers {
        let near = ledger_days.contains(d);
        let in_month = months.contains(&month(*d));
        if !(near || in_month) || !held.iter().any(|a| accounts.contains(a.as_str())) {
            continue;
        }
        if near {
            let (file, df) = crate::write::read_rows(folder)?;
            let why = |e: PolarsError| anyhow::anyhow!("{}: {e}", file.display());
            let mut df = in_accounts(df, *d, &accounts).map_err(why)?;
            if df.column(PVT_ACCOUNT_ID).is_err() {
                let null = Column::full_null(PVT_ACCOUNT_ID.into(), df.height(), &DataType::String);
                df.with_column(null).map_err(why)?;
            }
            if in_month {
                // The day's holders, from the rows just read (the SQL reads a null
                // `pvt_account_id` as the account's own, as `holder_rows` fills it).
                month_ledgers.push(df.select([ACCOUNT_ID, PVT_ACCOUNT_ID, DATE])?.lazy());
            }
            ledgers.push(df.lazy());
        } else if in_month {
            month_ledgers.push(holder_rows(folder, *d, &accounts)?.lazy());
        }
    }
    let month_legs: Vec<(&str, i32)> = files
        .legs
        .keys()
        .filter(|(a, d)| accounts.contains(a.as_str()) && months.contains(&month(*d)))
        .map(|(a, d)| (a.as_str(), *d))
        .collect();
    let month_legs = DataFrame::new(
        month_legs.len(),
        vec![
            Column::new(
                ACCOUNT_ID.into(),
                month_legs.iter().map(|p| p.0).collect::<Vec<_>>(),
            ),
            Int32Chunked::from_vec(DATE.into(), month_legs.iter().map(|p| p.1).collect())
                .into_date()
                .into_column(),
        ],
    )?;
    let union = |frames: Vec<LazyFrame>, empty: LazyFrame| -> PolarsResult<LazyFrame> {
        match frames.is_empty() {
            true => Ok(empty),
            false => concat(
                frames,
                UnionArgs {
                    to_supertypes: true,
                    ..Default::default()
                },
            ),
        }
    };
    let legs_empty = empty_legs(&leg_cols)?;
    let ledgers_empty = crate::ingest::ledger::frame(vec![])?.lazy();
    let holders_empty =
        ledgers_empty
            .clone()
            .select([col(ACCOUNT_ID), col(PVT_ACCOUNT_ID), col(DATE)]);
    let tables = [
        ("legs", union(legs, legs_empty)?),
        ("ledgers", union(ledgers, ledgers_empty)?),
        ("month_legs", month_legs.lazy()),
        ("month_ledgers", union(month_ledgers, holders_empty)?),
    ];
    let mut ctx = crate::reports::context(&tables);
    let rows = ctx.execute(ROWS_SQL)?;
    ctx.register(ROWS_VIEW, rows);

    let keep: HashSet<Partition> = r
        .iter()
        .map(|(a, d)| (a.clone(), Some(format_date(*d))))
        .collect();
    let mut written = Written::default();
    for (name, sql) in TABLES {
        let df = ctx
            .execute(sql)
            .and_then(|lf| lf.collect())
            .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let df = crate::reports::with_currency(df)?;
        let df = only(&df, &keep)?;
        written.shapes.push((name.to_owned(), df.clear()));
        let columns: Vec<&str> = df
            .get_column_names()
            .into_iter()
            .map(|c| c.as_str())
            .filter(|c| *c != ACCOUNT_ID && *c != DATE)
            .collect();
        let table = Table {
            name,
            columns,
            order: vec![],
        };
        let old_entries = committed_entries(scope, name, &keep)?;
        let carry = Carry {
            from: scope.committed,
            old: old_entries.iter().collect(),
            replaced: &keep,
        };
        let w = write_by_day(Some(&df), scope.staged, &table, output, &carry)?;
        written.partitions.extend(w.partitions);
        written.superseded.extend(w.superseded);
    }
    written.recomputed = keep;
    Ok(written)
}

/// `columns` of a legs partition's file (`folder`), with `account_id` and `date` from its
/// partition: only those columns are read from Parquet.
fn legs_columns_of(
    folder: &Path,
    account: &str,
    day: i32,
    columns: &[&str],
) -> anyhow::Result<DataFrame> {
    let parquet = folder.join("part-0.parquet");
    let read: Vec<String> = columns
        .iter()
        .filter(|c| **c != ACCOUNT_ID && **c != DATE)
        .map(|c| (*c).to_owned())
        .collect();
    let (file, df) = match parquet.exists() {
        true => {
            let f = std::fs::File::open(&parquet)?;
            let df = ParquetReader::new(f)
                .with_columns(Some(read))
                .read_parallel(ParallelStrategy::None)
                .finish()
                .map_err(|e| anyhow::anyhow!("{}: {e}", parquet.display()))?;
            (parquet, df)
        }
        false => crate::write::read_rows(folder)?,
    };
    let why = |e: PolarsError| anyhow::anyhow!("{}: {e}", file.display());
    let n = df.height();
    let mut cols = Vec::with_capacity(columns.len());
    for c in columns {
        cols.push(match *c {
            ACCOUNT_ID => Column::new(ACCOUNT_ID.into(), vec![account; n]),
            DATE => Int32Chunked::full(DATE.into(), day, n)
                .into_date()
                .into_column(),
            c => df.column(c).map_err(why)?.clone(),
        });
    }
    DataFrame::new(n, cols).map_err(why)
}

/// The committed entries of `table` on the days of `keep`.
fn committed_entries(
    scope: &Scope,
    table: &str,
    keep: &HashSet<Partition>,
) -> anyhow::Result<Vec<PartitionStats>> {
    if scope.previous.is_empty() {
        return Ok(vec![]);
    }
    let days: BTreeSet<Option<String>> = keep.iter().map(|(_, d)| d.clone()).collect();
    let cut = scope.previous.cut();
    let keys = days.iter().map(|d| cut.key(d.as_deref())).collect();
    Ok(scope
        .previous
        .partitions_in(scope.committed, &keys)?
        .into_iter()
        .filter(|p| p.table == table && days.contains(&p.date))
        .collect())
}

/// `df`'s rows whose (`account_id`, `date`) is in `keep`.
fn only(df: &DataFrame, keep: &HashSet<Partition>) -> PolarsResult<DataFrame> {
    let mask: BooleanChunked = crate::spill::partition_keys(df)?
        .map(|(a, d)| {
            let a = a.unwrap_or(crate::schema::UNASSIGNED_ACCOUNT).to_owned();
            keep.contains(&(a, d.map(format_date)))
        })
        .collect();
    df.filter(&mask)
}

/// An empty legs frame of `columns` with the legs table's types.
fn empty_legs(columns: &[&str]) -> PolarsResult<LazyFrame> {
    let parsed = crate::ingest::concat_frames(vec![])?;
    let schema = parsed.schema();
    let cols: Vec<Column> = columns
        .iter()
        .map(|c| {
            let dtype = match *c {
                DATE => DataType::Date,
                c => schema.get(c).cloned().unwrap_or(DataType::Int64),
            };
            Column::full_null((*c).into(), 0, &dtype)
        })
        .collect();
    Ok(DataFrame::new(0, cols)?.lazy())
}
