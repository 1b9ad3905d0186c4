//! `rerate query` runs ad hoc SQL over a finished run's dataset; `rerate reports` lists the
//! built-in reports.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use polars::prelude::*;

use crate::reports;
use crate::write::{write_csv, write_parquet};

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

    /// Write the result to FILE instead of printing it: `.csv` or `.parquet`.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// With a .csv --output: write text cells as they are (see `rerate run --help`).
    #[arg(long)]
    pub csv_raw: bool,

    /// At most this many rows are printed in the terminal table (use --output for all).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub max_rows: usize,
}

/// The tables a run's output folder offers, by name.
pub fn dataset_tables(data: &Path) -> anyhow::Result<Vec<(String, LazyFrame)>> {
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
        let lf = lf.map_err(|e| anyhow::anyhow!("opening {}: {e}", p.display()))?;
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

pub fn run(args: QueryArgs) -> anyhow::Result<ExitCode> {
    let tables = dataset_tables(&args.data)?;
    let refs: Vec<(&str, LazyFrame)> = tables
        .iter()
        .map(|(n, l)| (n.as_str(), l.clone()))
        .collect();
    let mut ctx = reports::context(&refs);
    let names: Vec<&str> = refs.iter().map(|(n, _)| *n).collect();
    let mut df = ctx
        .execute(&args.sql)
        .and_then(|lf| lf.collect())
        .map_err(|e| anyhow::anyhow!("running the query (tables: {}): {e}", names.join(", ")))?;
    match &args.output {
        Some(path) => {
            match path.extension().and_then(|e| e.to_str()) {
                Some("csv") => write_csv(&mut df, path, args.csv_raw)?,
                Some("parquet") => write_parquet(&mut df, path)?,
                _ => bail!(
                    "--output {}: use a .csv or .parquet file name",
                    path.display()
                ),
            }
            eprintln!(
                "rerate query: {} rows written to {}",
                df.height(),
                path.display()
            );
        }
        None => {
            std::env::set_var("POLARS_FMT_MAX_ROWS", args.max_rows.to_string());
            std::env::set_var("POLARS_FMT_MAX_COLS", "64");
            std::env::set_var("POLARS_FMT_STR_LEN", "48");
            if !std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                // Piped or captured: no terminal width to fit, so do not squeeze the columns.
                std::env::set_var("POLARS_TABLE_WIDTH", "65535");
            }
            println!("{df}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `rerate reports`: the built-in reports, one line each.
pub fn list() -> anyhow::Result<ExitCode> {
    for r in reports::builtin() {
        println!("{:<18} {}", r.name, r.description);
    }
    Ok(ExitCode::SUCCESS)
}
