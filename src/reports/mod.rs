//! Stage 6: reports defined as SQL files in `queries/`, compiled into the binary, and run by
//! polars SQL against the `legs` and `interactions` tables. A user's own `.sql` files
//! (`--queries DIR`) run the same way, each a report named after its file.
//!
//! Money stays in integer units in the SQL (portable across polars, DuckDB and Spark); each
//! result column named `<x>_units` then gets an exact DECIMAL(18,4) twin named `<x>` in currency
//! (units / 10,000), for finance.

use std::path::Path;

use polars::prelude::*;
use polars::sql::SQLContext;

/// One report: a name (its output folder or file), a one-line description, and its SQL.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: String,
    pub description: String,
    pub sql: String,
    /// Whether each of its rows is about one account and day and comes from that account and
    /// day's rows alone (the built-ins): it can then run a group of accounts at a time. A
    /// user's query runs over the whole dataset at once.
    pub per_account_day: bool,
}

/// The built-in reports, in the order they run.
const BUILTIN: &[(&str, &str)] = &[
    ("daily", include_str!("../../queries/daily.sql")),
    (
        "hangup_causes",
        include_str!("../../queries/hangup_causes.sql"),
    ),
    (
        "top_destinations",
        include_str!("../../queries/top_destinations.sql"),
    ),
    (
        RECONCILIATION_DAILY,
        include_str!("../../queries/reconciliation_daily.sql"),
    ),
    (
        "revenue_leak",
        include_str!("../../queries/revenue_leak.sql"),
    ),
    ("margin", include_str!("../../queries/margin.sql")),
];

/// Report names the pipeline writes itself; a user's query may not take them.
pub(crate) const RESERVED: &[&str] = &[
    crate::schema::LEGS_TABLE,
    crate::schema::INTERACTIONS_TABLE,
    crate::schema::RECONCILIATION_TABLE,
    "rejects",
    "manifest",
    "summary",
];

impl Report {
    fn new(name: &str, sql: &str, per_account_day: bool) -> Self {
        Report {
            name: name.to_owned(),
            description: describe(sql),
            sql: sql.to_owned(),
            per_account_day,
        }
    }
}

/// The first sentence of a query's leading `--` comment, which may run over several lines.
fn describe(sql: &str) -> String {
    let mut words: Vec<&str> = Vec::new();
    let comment = sql
        .lines()
        .map(str::trim)
        .skip_while(|l| !l.starts_with("--"))
        .map_while(|l| l.strip_prefix("--"));
    for line in comment {
        let line = line.trim();
        words.push(line);
        if line.ends_with('.') {
            break;
        }
    }
    let text = words.join(" ");
    match text.find(". ") {
        Some(end) => text[..=end].to_owned(),
        None => text,
    }
}

pub fn builtin() -> Vec<Report> {
    BUILTIN
        .iter()
        .map(|(n, s)| Report::new(n, s, true))
        .collect()
}

/// The report that compares recorded and derived money per account and day.
pub(crate) const RECONCILIATION_DAILY: &str = "reconciliation_daily";

/// A report's rows when the run has no rate deck. Without a deck every derived cost is the
/// leg's own rate, so `reconciliation_daily` would be a row of zeros for every account and day
/// (2,100 partition files on 300 accounts x 7 days): it keeps only the account-days with a
/// reported row, the customer's (`reported_legs`) or the reseller's (`reseller_reported_legs`),
/// and is one empty table on a clean night. Other reports are unchanged.
pub(crate) fn without_deck(name: &str, df: &DataFrame) -> PolarsResult<DataFrame> {
    if name != RECONCILIATION_DAILY || df.column("reported_legs").is_err() {
        return Ok(df.clone());
    }
    let count = |c: &str| -> PolarsResult<Int64Chunked> {
        match df.column(c) {
            Ok(col) => Ok(col.cast(&DataType::Int64)?.i64()?.clone()),
            Err(_) => Ok(Int64Chunked::full(c.into(), 0, df.height())),
        }
    };
    let keep = count("reported_legs")?.gt(0) | count("reseller_reported_legs")?.gt(0);
    df.filter(&keep)
}

/// Problems with a report; each names it.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report {name}: {source}")]
    Query { name: String, source: PolarsError },
    #[error("reading queries from {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("query file {path}: {message}")]
    BadName { path: String, message: String },
}

/// The `.sql` files of a folder, sorted by name, as reports named after their files.
pub(crate) fn load_dir(dir: &Path) -> Result<Vec<Report>, ReportError> {
    let io = |source| ReportError::Io {
        path: dir.display().to_string(),
        source,
    };
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    paths.sort();
    let taken: Vec<String> = builtin().into_iter().map(|r| r.name).collect();
    let mut out = Vec::new();
    for p in paths {
        let name = p
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_owned();
        let bad = |message: String| ReportError::BadName {
            path: p.display().to_string(),
            message,
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad(
                "a report name may use only letters, digits, _ and -".into()
            ));
        }
        if RESERVED.contains(&name.as_str()) || taken.contains(&name) {
            return Err(bad(format!(
                "{name} is already the name of a rerate output"
            )));
        }
        let sql = std::fs::read_to_string(&p).map_err(|source| ReportError::Io {
            path: p.display().to_string(),
            source,
        })?;
        out.push(Report::new(&name, &sql, false));
    }
    Ok(out)
}

/// The columns of `columns` that `reports`' SQL names (compared without case), and `account_id`
/// and `date`, in `columns`' order. A report that reads only named columns gives the same rows
/// over a frame of these as over the whole table; `SELECT *` would need every column, and is
/// not among the built-in reports, which this is for.
pub(crate) fn columns_named<'a>(reports: &[Report], columns: &[&'a str]) -> Vec<&'a str> {
    let mut named: std::collections::HashSet<String> =
        [crate::schema::ACCOUNT_ID, crate::schema::DATE]
            .map(str::to_owned)
            .into();
    for r in reports {
        named.extend(
            r.sql
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .map(str::to_ascii_lowercase),
        );
    }
    let mut out: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| named.contains(&c.to_ascii_lowercase()))
        .collect();
    for key in [crate::schema::ACCOUNT_ID, crate::schema::DATE] {
        if !out.contains(&key) {
            out.push(key);
        }
    }
    out
}

/// A SQL context holding the given tables.
pub fn context(tables: &[(&str, LazyFrame)]) -> SQLContext {
    let ctx = SQLContext::new();
    for (name, lf) in tables {
        ctx.register(name, lf.clone());
    }
    ctx
}

/// Runs one report, adding currency twins of its `*_units` columns.
pub fn run(ctx: &mut SQLContext, report: &Report) -> Result<DataFrame, ReportError> {
    let err = |source| ReportError::Query {
        name: report.name.clone(),
        source,
    };
    let df = ctx
        .execute(&report.sql)
        .and_then(|lf| lf.collect())
        .map_err(err)?;
    with_currency(df).map_err(err)
}

/// Accounts in groups of about `rows` legs each, in name order; an account is never split.
/// `legs` gives legs per account and day, in any order.
pub(crate) fn account_groups<'a>(
    legs: impl IntoIterator<Item = (&'a str, u64)>,
    rows: u64,
) -> Vec<Vec<String>> {
    let mut per_account: std::collections::BTreeMap<&str, u64> = Default::default();
    for (account, n) in legs {
        *per_account.entry(account).or_default() += n;
    }
    // Each group with the legs it holds so far.
    let mut groups: Vec<(u64, Vec<String>)> = Vec::new();
    for (account, n) in per_account {
        match groups.last_mut() {
            Some((filled, g)) if *filled == 0 || *filled + n <= rows.max(1) => {
                *filled += n;
                g.push(account.to_owned());
            }
            _ => groups.push((n, vec![account.to_owned()])),
        }
    }
    groups.into_iter().map(|(_, g)| g).collect()
}

/// Runs `report` on `tables`, which have an `account_id` column. A report that is per account
/// and day runs a group of `groups` at a time, each table filtered to the group's accounts,
/// and its rows are put back in (account_id, date) order: the result is the same as one run
/// over everything, but the query holds one group's rows, not the whole dataset's (at 5M
/// legs the reports had been the run's peak). Any other report, or one group, runs at once.
pub(crate) fn run_by_accounts(
    tables: &[(&str, LazyFrame)],
    report: &Report,
    groups: &[Vec<String>],
) -> Result<DataFrame, ReportError> {
    if !report.per_account_day || groups.len() <= 1 {
        return run(&mut context(tables), report);
    }
    let err = |source| ReportError::Query {
        name: report.name.clone(),
        source,
    };
    let mut parts = Vec::with_capacity(groups.len());
    for group in groups {
        let accounts = Series::new("accounts".into(), group)
            .implode()
            .map_err(err)?
            .into_series();
        let filtered: Vec<(&str, LazyFrame)> = tables
            .iter()
            .map(|(name, lf)| {
                let keep = col(crate::schema::ACCOUNT_ID).is_in(lit(accounts.clone()), false);
                (*name, lf.clone().filter(keep))
            })
            .collect();
        parts.push(run(&mut context(&filtered), report)?.lazy());
    }
    concat(
        parts,
        UnionArgs {
            to_supertypes: true,
            ..Default::default()
        },
    )
    .and_then(|lf| {
        lf.sort(
            [crate::schema::ACCOUNT_ID, crate::schema::DATE],
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .collect()
    })
    .map_err(err)
}

/// Integer columns become Int64; then for each integer column `<x>_units`, a DECIMAL(18,4) column `<x>` right after it whose value
/// is exactly units / 10,000 (units are the decimal's unscaled value).
pub(crate) fn with_currency(df: DataFrame) -> PolarsResult<DataFrame> {
    let mut cols: Vec<Column> = Vec::with_capacity(df.width() + 4);
    for c in df.columns() {
        // Counts come out of polars SQL unsigned; Int64 reads the same in every engine.
        let c = match c.dtype() {
            DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::UInt64
            | DataType::Int8
            | DataType::Int16
            | DataType::Int32 => c.cast(&DataType::Int64)?,
            _ => c.clone(),
        };
        cols.push(c.clone());
        let Some(stem) = c.name().strip_suffix("_units") else {
            continue;
        };
        if df.column(stem).is_ok() || !c.dtype().is_integer() {
            continue;
        }
        let units = c.cast(&DataType::Int64)?;
        let wide: Int128Chunked = units.i64()?.iter().map(|v| v.map(i128::from)).collect();
        let dec = wide
            .into_series()
            .into_decimal(18, 4)?
            .with_name(stem.into());
        cols.push(dec.into_column());
    }
    DataFrame::new(df.height(), cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_reports_have_unique_names_and_descriptions() {
        let r = builtin();
        let mut names: Vec<_> = r.iter().map(|r| r.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), r.len());
        for rep in &r {
            assert!(
                rep.description.len() > 20,
                "{} has no description",
                rep.name
            );
            assert!(!RESERVED.contains(&rep.name.as_str()));
        }
    }

    #[test]
    fn currency_twins_are_exact() -> PolarsResult<()> {
        let df = DataFrame::new(
            3,
            vec![Column::new("cost_units".into(), [4524i64, -5, 123_456_789])],
        )?;
        let out = with_currency(df)?;
        assert_eq!(out.get_column_names(), ["cost_units", "cost"]);
        let cost = out.column("cost")?;
        assert_eq!(cost.dtype(), &DataType::Decimal(18, 4));
        let text: Vec<String> = (0..3)
            .map(|i| cost.get(i).map(|v| v.to_string()))
            .collect::<PolarsResult<_>>()?;
        assert_eq!(text, ["0.4524", "-0.0005", "12345.6789"]);
        Ok(())
    }

    #[test]
    fn accounts_are_grouped_whole_in_name_order_up_to_the_rows() {
        let legs = [
            ("b", 30),
            ("a", 40),
            ("c", 50),
            ("a", 20),
            ("d", 200),
            ("e", 10),
        ];
        // a: 60, b: 30, c: 50, d: 200 (over the target alone), e: 10.
        let groups = account_groups(legs.iter().map(|&(a, n)| (a, n)), 100);
        assert_eq!(groups, [vec!["a", "b"], vec!["c"], vec!["d"], vec!["e"]]);
        assert_eq!(
            account_groups(legs.iter().map(|&(a, n)| (a, n)), 1000).len(),
            1
        );
        assert!(account_groups(std::iter::empty(), 100).is_empty());
    }

    #[test]
    fn a_report_run_by_groups_of_accounts_equals_one_run() -> PolarsResult<()> {
        let legs = df!(
            "account_id" => ["b", "a", "c", "a", "b", "c", "a"],
            "date" => [1, 1, 2, 1, 2, 2, 1],
            "cost_units" => [5i64, 7, 11, 13, 17, 19, 23],
        )?
        .lazy()
        .with_column(col("date").cast(DataType::Date));
        let report = Report::new(
            "per_day",
            "SELECT account_id, date, COUNT(*) AS legs, SUM(cost_units) AS cost_units \
             FROM legs GROUP BY account_id, date ORDER BY account_id, date",
            true,
        );
        let tables = [("legs", legs)];
        let whole =
            run(&mut context(&tables), &report).map_err(|e| polars_err!(ComputeError: "{e}"))?;
        let groups = vec![vec!["c".to_owned()], vec!["a".to_owned(), "b".to_owned()]];
        let by_groups = run_by_accounts(&tables, &report, &groups)
            .map_err(|e| polars_err!(ComputeError: "{e}"))?;
        assert!(by_groups.equals_missing(&whole), "{by_groups}\n{whole}");
        assert_eq!(whole.height(), 4);
        assert_eq!(
            whole.column("cost_units")?.i64()?.to_vec(),
            [Some(43), Some(5), Some(17), Some(30)]
        );
        Ok(())
    }

    #[test]
    fn a_description_is_the_first_sentence_of_the_leading_comment() {
        let sql =
            "-- Per account and day: money, their\n-- differences. More words\n-- here.\nSELECT 1";
        assert_eq!(
            describe(sql),
            "Per account and day: money, their differences."
        );
        assert_eq!(describe("-- One line.\n-- Two.\nSELECT 1"), "One line.");
        assert_eq!(describe("\n-- No full stop\nSELECT 1"), "No full stop");
        assert_eq!(describe("SELECT 1"), "");
    }
}
