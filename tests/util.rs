//! Test harness: run the built binary in a temp dir and read back what it wrote.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use polars::prelude::*;

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The repository root (where `fixtures/` is).
/// A test's path as a command-line argument (test paths are UTF-8).
pub(crate) fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `rerate` with `args` from the repository root.
pub(crate) fn rerate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rerate"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the rerate binary runs")
}

/// Runs `rerate run` and insists it succeeded.
pub(crate) fn run_ok(args: &[&str]) -> Output {
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let out = rerate(&all);
    assert!(
        out.status.success(),
        "rerate {all:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs `rerate run ARGS` through the library (`cli::run::config`, `Job::prepare`, `Job::run`)
/// instead of the binary: for a `--memory` below the command line's floor of 128M, which the
/// library takes, so that a few KB of legs spill into many buckets.
pub(crate) fn run_in_library(args: &[&str]) {
    let mut all = vec!["rerate", "run"];
    all.extend_from_slice(args);
    let cli = <rerate::cli::Cli as clap::Parser>::try_parse_from(&all).expect("a command line");
    let rerate::cli::Command::Run(run) = cli.command else {
        panic!("{all:?}: not a run");
    };
    let cfg = rerate::cli::run::config(*run).expect("a configuration");
    let job = rerate::internals::job::Job::prepare(cfg).expect("a job");
    job.run().unwrap_or_else(|e| panic!("{all:?}: {e:#}"));
}

/// Runs `rerate run fixtures` into a fresh temp dir (kept alive by the returned guard).
pub(crate) fn run_fixtures(
    extra: &[&str],
) -> Result<(tempfile::TempDir, PathBuf), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("reports");
    let mut args = vec!["fixtures", "--out", out.to_str().ok_or("path")?, "--quiet"];
    args.extend_from_slice(extra);
    run_ok(&args);
    Ok((dir, out))
}

/// All rows of a dataset folder (every partition file, with account_id and date from the path).
/// Each partition of the table in `dir`: (account_id, date, its rows). A report's day file
/// (`<table>/date=<D>/part-0.parquet`, `account_id` a column) gives one partition per account,
/// in the file's order, without the column.
pub(crate) fn read_dataset(dir: &Path) -> Vec<(String, String, DataFrame)> {
    let mut out = Vec::new();
    for f in parquet_files(dir) {
        let (a, d) = partition_of(&f);
        let df = read_parquet(&f);
        if !a.is_empty() || df.column("account_id").is_err() {
            out.push((a, d, df));
            continue;
        }
        let ids: Vec<String> = df
            .column("account_id")
            .and_then(|c| c.str().cloned())
            .expect("a day file's account_id is text")
            .iter()
            .map(|a| a.unwrap_or_default().to_owned())
            .collect();
        let mut start = 0;
        for i in 1..=ids.len() {
            if i == ids.len() || ids[i] != ids[start] {
                let part = df
                    .slice(start as i64, i - start)
                    .drop("account_id")
                    .expect("the column is there");
                out.push((ids[start].clone(), d.clone(), part));
                start = i;
            }
        }
    }
    out
}

/// One row of the legs dataset, with the partition values from its path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LegRow {
    pub account: String,
    pub date: String,
    pub billed: Option<i64>,
    pub rated: Option<i64>,
    pub cost: Option<i64>,
    pub reseller: Option<i64>,
    pub carrier: Option<i64>,
    pub flags: Option<String>,
}

/// Every Parquet file under `dir`, sorted.
pub(crate) fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort();
    files
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Asserts that two output folders hold the same Parquet files (same paths, equal frames);
/// returns how many.
pub(crate) fn assert_same_parquet(a: &Path, b: &Path) -> usize {
    let (fa, fb) = (parquet_files(a), parquet_files(b));
    assert_eq!(fa.len(), fb.len());
    for (x, y) in fa.iter().zip(&fb) {
        let under = |p: &Path, d: &Path| p.strip_prefix(d).expect("under its folder").to_owned();
        assert_eq!(under(x, a), under(y, b));
        assert!(
            read_parquet(x).equals_missing(&read_parquet(y)),
            "{}",
            x.display()
        );
    }
    fa.len()
}

pub(crate) fn read_parquet(path: &Path) -> DataFrame {
    ParquetReader::new(File::open(path).expect("open parquet"))
        .finish()
        .expect("read parquet")
}

/// `account_id=X/date=Y/part-0.parquet` -> (X, Y).
pub(crate) fn partition_of(path: &Path) -> (String, String) {
    let date = path
        .parent()
        .and_then(|p| p.file_name())
        .unwrap_or_default();
    let acct = path
        .parent()
        .and_then(|p| p.parent())
        .and_then(|p| p.file_name())
        .unwrap_or_default();
    let strip = |s: &std::ffi::OsStr, k: &str| {
        s.to_string_lossy()
            .strip_prefix(k)
            .unwrap_or_default()
            .to_owned()
    };
    (strip(acct, "account_id="), strip(date, "date="))
}

/// All legs of a run, keyed by call_id.
pub(crate) fn legs(out: &Path) -> BTreeMap<String, LegRow> {
    let mut m = BTreeMap::new();
    for f in parquet_files(&out.join("legs")) {
        let (account, date) = partition_of(&f);
        let df = read_parquet(&f);
        let col = |n: &str| df.column(n).expect(n).i64().expect(n).clone();
        let (b, r, c, s, carrier) = (
            col("billed_seconds"),
            col("rated_cost_units"),
            col("cost_units"),
            col("reseller_cost_units"),
            col("carrier_cost_units"),
        );
        let ids = df
            .column("call_id")
            .expect("call_id")
            .str()
            .expect("str")
            .clone();
        let flags = df
            .column("rating_flags")
            .expect("flags")
            .str()
            .expect("str")
            .clone();
        for i in 0..df.height() {
            let id = ids.get(i).expect("call_id").to_owned();
            let row = LegRow {
                account: account.clone(),
                date: date.clone(),
                billed: b.get(i),
                rated: r.get(i),
                cost: c.get(i),
                reseller: s.get(i),
                carrier: carrier.get(i),
                flags: flags.get(i).map(str::to_owned),
            };
            assert!(m.insert(id.clone(), row).is_none(), "{id} written twice");
        }
    }
    m
}

pub(crate) fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read json")).expect("parse json")
}

/// The (line, code) of each reject of the run that wrote `out`, in file order.
pub(crate) fn reject_codes(out: &Path) -> Vec<(u64, String)> {
    ndjson_file(&out.join("rejects.ndjson"))
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap_or(0),
                r["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

pub(crate) fn ndjson_file(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .expect("read ndjson")
        .lines()
        .map(|l| serde_json::from_str(l).expect("ndjson line"))
        .collect()
}

/// The folder's data files (everything but the manifest, the summary page and rerate's own
/// lock and staging), by relative path, with their bytes.
pub(crate) fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(d) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let rel = p
                .strip_prefix(base)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default();
            if [
                ".rerate.lock",
                ".rerate-staging",
                "manifest.json",
                "summary.html",
            ]
            .contains(&rel.as_str())
            {
                continue;
            }
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap_or_default());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}
