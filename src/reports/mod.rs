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
        "reconciliation_daily",
        include_str!("../../queries/reconciliation_daily.sql"),
    ),
];

/// Report names the pipeline writes itself; a user's query may not take them.
pub const RESERVED: &[&str] = &[
    "legs",
    "interactions",
    "reconciliation",
    "rejects",
    "manifest",
    "summary",
];

impl Report {
    fn new(name: &str, sql: &str) -> Self {
        Report {
            name: name.to_owned(),
            description: describe(sql),
            sql: sql.to_owned(),
        }
    }
}

/// The first `--` comment line of a query.
fn describe(sql: &str) -> String {
    sql.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("--"))
        .map(|d| d.trim().to_owned())
        .unwrap_or_default()
}

pub fn builtin() -> Vec<Report> {
    BUILTIN.iter().map(|(n, s)| Report::new(n, s)).collect()
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
pub fn load_dir(dir: &Path) -> Result<Vec<Report>, ReportError> {
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
        out.push(Report::new(&name, &sql));
    }
    Ok(out)
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

/// Integer columns become Int64; then for each integer column `<x>_units`, a DECIMAL(18,4) column `<x>` right after it whose value
/// is exactly units / 10,000 (units are the decimal's unscaled value).
pub fn with_currency(df: DataFrame) -> PolarsResult<DataFrame> {
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
}
