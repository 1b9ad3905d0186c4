//! `rerate query` runs ad hoc SQL over a finished run's dataset; `rerate reports` lists the
//! built-in reports.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use polars::prelude::*;

use crate::reports;
use crate::write::{write_csv, write_parquet, CsvFlavor};

#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  rerate query \"SELECT account_id, SUM(cost_units) AS cost_units FROM legs GROUP BY account_id\" --data reports"
)]
pub struct QueryArgs {
    /// The SQL (polars SQL) to run. Its tables are the datasets of --data, each named after its
    /// folder (legs, interactions, daily, hangup_causes, top_destinations, ...) with account_id
    /// and date read from the partition paths, and each top-level .parquet file by its name.
    pub sql: String,

    /// A finished `rerate run` output folder.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,

    /// Write the result to FILE instead of standard output. Its format is --format, else the
    /// file's extension (.csv, .json, .ndjson, .parquet).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Result format: `table` (readable, at most --max-rows rows; the default on standard
    /// output), `csv` (every row; a spreadsheet-ready file with --output: see the README's
    /// "CSV for spreadsheets"), `json` (every row, one JSON object a line) or `parquet`
    /// (every row; not to a terminal).
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<QueryFormat>,

    /// With CSV output: write text cells as they are (see `rerate run --help`).
    #[arg(long)]
    pub csv_raw: bool,

    /// At most this many rows are printed by `--format table` (the other formats print all).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub max_rows: usize,
}

/// How `rerate query` writes its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueryFormat {
    Table,
    Csv,
    Json,
    Parquet,
}

impl QueryFormat {
    /// The format a file name asks for.
    fn of_path(path: &Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "csv" => Some(QueryFormat::Csv),
            "json" | "ndjson" | "jsonl" => Some(QueryFormat::Json),
            "parquet" => Some(QueryFormat::Parquet),
            "txt" => Some(QueryFormat::Table),
            _ => None,
        }
    }
}

/// The tables a run's output folder offers, by name.
pub(super) fn dataset_tables(data: &Path) -> anyhow::Result<Vec<(String, LazyFrame)>> {
    if !data.join("manifest.json").is_file() {
        bail!(
            "{} is not a rerate output folder (no manifest.json)",
            data.display()
        );
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(data)
        .with_context(|| format!("reading {}", data.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut tables = Vec::new();
    for p in entries {
        let Some(name) = p.file_stem().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        // The catalog (`_catalog`) and rerate's own staging and lock are not tables.
        if name.starts_with(['_', '.']) {
            continue;
        }
        let has_parquet = |d: &Path| {
            walkdir::WalkDir::new(d)
                .into_iter()
                .filter_map(Result::ok)
                .any(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        };
        let lf = if p.is_dir() && has_parquet(&p) {
            crate::write::scan_partitioned(&p)
        } else if p.extension().is_some_and(|e| e == "parquet") {
            LazyFrame::scan_parquet(p.display().to_string().as_str().into(), Default::default())
        } else {
            continue;
        };
        let lf = lf
            .and_then(partition_columns_first)
            .map_err(|e| anyhow::anyhow!("opening {}: {e}", p.display()))?;
        tables.push((name, lf));
    }
    if tables.is_empty() {
        bail!(
            "{} holds no Parquet dataset to query (a run with --format csv writes none)",
            data.display()
        );
    }
    Ok(tables)
}

/// `account_id` and `date`, which Hive-partitioned scans append last, as the first columns:
/// `SELECT * FROM legs` then reads like a spreadsheet of the period.
fn partition_columns_first(mut lf: LazyFrame) -> PolarsResult<LazyFrame> {
    let schema = lf.collect_schema()?;
    let first = [crate::schema::ACCOUNT_ID, crate::schema::DATE];
    if !first.iter().all(|c| schema.contains(c)) {
        return Ok(lf);
    }
    let rest = schema
        .iter_names()
        .filter(|n| !first.contains(&n.as_str()))
        .map(|n| col(n.clone()));
    let order: Vec<Expr> = first.iter().map(|c| col(*c)).chain(rest).collect();
    Ok(lf.select(order))
}

/// polars' own deprecation notices (its SQL casts a `DATE '2026-11-01'` literal through a
/// string cast it has deprecated) are about polars, not about the user's query: not shown.
fn warn(message: &str, kind: polars::error::PolarsWarning) {
    if !matches!(kind, polars::error::PolarsWarning::Deprecation) {
        eprintln!("rerate query: polars warns: {message}");
    }
}

pub(super) fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    polars::error::set_warning_function(warn);
    let mut df = consistent_result(&args.data, &args.sql)?;
    let format = match (args.format, &args.output) {
        (Some(f), _) => f,
        (None, None) => QueryFormat::Table,
        (None, Some(path)) => QueryFormat::of_path(path).with_context(|| {
            format!(
                "--output {}: name a .csv, .json, .ndjson or .parquet file, or give --format",
                path.display()
            )
        })?,
    };
    match &args.output {
        Some(path) => {
            match format {
                QueryFormat::Csv => write_csv(&mut df, path, args.csv_raw, CsvFlavor::Spreadsheet)?,
                QueryFormat::Parquet => write_parquet(&mut df, path)?,
                QueryFormat::Json | QueryFormat::Table => {
                    let file = std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    let mut w = std::io::BufWriter::new(file);
                    print_to(&mut w, &mut df, format, &args)
                        .and_then(|()| Ok(w.flush()?))
                        .with_context(|| format!("writing {}", path.display()))?;
                }
            }
            let rows = df.height();
            eprintln!(
                "rerate query: {} {} written to {}",
                crate::words::thousands(rows as i64),
                crate::words::plural(rows as u64, "row", "rows"),
                path.display()
            );
        }
        None => {
            if format == QueryFormat::Parquet && std::io::stdout().is_terminal() {
                bail!("--format parquet writes binary: redirect standard output or use --output FILE.parquet");
            }
            // Errors (a closed pipe above all, as in `rerate query ... | head`) come back as
            // values, never as a panic: main ends quietly on a broken pipe.
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            print_to(&mut w, &mut df, format, &args)?;
            w.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// How long a query waits for a run's commit being carried out to end.
const COMMIT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `sql` over the dataset in `data` as one committed state: a run that is staging does
/// not disturb it (its files are under `.rerate-staging`); while a run carries out its commit
/// (its journal, `.rerate-staging/COMMIT`, is there) the query waits for it, up to
/// [`COMMIT_WAIT`]; and a result read while the dataset changed (its manifest differs after)
/// is read again, up to three times.
fn consistent_result(data: &Path, sql: &str) -> anyhow::Result<DataFrame> {
    let journal = data.join(crate::write::commit::STAGING).join("COMMIT");
    let manifest = data.join("manifest.json");
    for _ in 0..3 {
        let waited = std::time::Instant::now();
        while journal.exists() {
            if waited.elapsed() > COMMIT_WAIT {
                bail!(
                    "{}: a run's commit is being carried out (or one was interrupted: the next `rerate run` on the folder finishes it); the dataset is between two states, so nothing was read",
                    data.display()
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let before = std::fs::read(&manifest).ok();
        let result = query_once(data, sql);
        if std::fs::read(&manifest).ok() == before && !journal.exists() {
            return result;
        }
    }
    bail!(
        "{}: the dataset changed three times while it was read (runs committing); run the query again",
        data.display()
    )
}

/// Runs `sql` over the dataset's tables once.
fn query_once(data: &Path, sql: &str) -> anyhow::Result<DataFrame> {
    let tables = dataset_tables(data)?;
    let refs: Vec<(&str, LazyFrame)> = tables
        .iter()
        .map(|(n, l)| (n.as_str(), l.clone()))
        .collect();
    let mut ctx = reports::context(&refs);
    let names: Vec<&str> = refs.iter().map(|(n, _)| *n).collect();
    ctx.execute(sql)
        .and_then(|lf| lf.collect())
        .map_err(|e| anyhow::anyhow!("running the query (tables: {}): {e}", names.join(", ")))
}

/// Writes the result in `format` to `w`.
fn print_to(
    w: &mut dyn Write,
    df: &mut DataFrame,
    format: QueryFormat,
    args: &QueryArgs,
) -> anyhow::Result<()> {
    match format {
        QueryFormat::Table => {
            // Shaped by the POLARS_FMT_* variables the binary set (cli::polars_env).
            writeln!(w, "{df}")?;
        }
        QueryFormat::Csv => {
            crate::write::csv_to(df, w, args.csv_raw, CsvFlavor::Spreadsheet, false)?
        }
        QueryFormat::Json => crate::write::json_lines(df, w)?,
        QueryFormat::Parquet => {
            // Encoded whole first: the encoder reports a closed pipe as a thrift error, and the
            // plain write below keeps it an I/O error (main ends quietly on a broken pipe).
            let mut bytes = Vec::new();
            crate::write::parquet::write(df, &mut bytes)?;
            w.write_all(&bytes)?;
        }
    }
    Ok(())
}

/// `rerate reports`: the built-in reports, one line each.
pub(super) fn list() -> anyhow::Result<ExitCode> {
    let mut w = std::io::stdout().lock();
    for r in reports::builtin() {
        writeln!(w, "{:<20} {}", r.name, r.description)?;
    }
    Ok(ExitCode::SUCCESS)
}
