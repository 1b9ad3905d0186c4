//! `rerate run`: the whole pipeline, discover -> read -> dedup -> rate -> write.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;

use crate::ingest::discover::{discover, InputFile, Skipped};
use crate::ingest::{ingest, IngestOptions};
use crate::interactions;
use crate::pipeline;
use crate::progress::Progress;
use crate::rate::{DeckSet, E164Converters, Filter, Hotornot, RateSort, Rounding};
use crate::reconcile;
use crate::reports::{self, Report};
use crate::schema::{leg_columns, ACCOUNT_ID, CALL_ID, DATE, INTERACTION_ID, START_TIME};
use crate::spill::Partitions;
use crate::time::ReportTz;
use crate::write::commit::{self, Mode, Staging};
use crate::write::manifest::{Counts, Dataset, Manifest, RunRecord, Totals, RUNS_KEPT};
use crate::write::partition::dir_name;
use crate::write::summary::{self, Headline};
use crate::write::{
    previous_outputs, write_files, write_partitioned, write_rejects, Format, Output,
    PartitionStats, Table, OUTPUTS,
};
use polars::prelude::{DataFrame, DataType};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  rerate run fixtures --out reports\n  rerate run 'exports/2026-11-*.json.gz' --out reports --tz America/New_York --format both"
)]
pub struct RunArgs {
    /// CDR exports to read: files, directories (walked recursively; *.json, *.ndjson, *.jsonl,
    /// optionally .gz or .zst) or quoted glob patterns. Each file may hold NDJSON, one document,
    /// an array, or crossbar API pages saved one after another; gzip and zstd are detected from
    /// the content.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,

    /// Output folder. Created if missing. A non-empty folder that is not a rerate output is
    /// refused. Everything is written to DIR/.rerate-staging first and moved into place when
    /// complete, manifest.json last: a run that fails or is killed leaves the previous output as
    /// it was.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: PathBuf,

    /// What this run replaces in DIR: `overwrite-partitions` replaces only the (account, day)
    /// partitions present in this input, in every table, and keeps all others (so tonight's
    /// export updates tonight's days and rerunning it never double-counts); `replace-all`
    /// replaces the whole dataset. Whole-run files (rejects.ndjson, summary.html, unpartitioned
    /// reports) always describe this run.
    #[arg(long, value_enum, default_value_t = Mode::OverwritePartitions)]
    pub mode: Mode,

    /// File format of the legs dataset.
    #[arg(long, value_enum, default_value_t = Format::Parquet)]
    pub format: Format,

    /// IANA time zone that decides each leg's report day (the `date` partition), e.g. UTC,
    /// America/New_York. Timestamps themselves are always stored in UTC.
    #[arg(long, value_name = "ZONE", default_value = "UTC")]
    pub tz: String,

    /// Arithmetic for the cost formula: `kazoo` reproduces KAZOO's double arithmetic bit for
    /// bit (what KAZOO billed); `exact` uses exact integers, rounded down once.
    #[arg(long, value_enum, default_value_t = Rounding::Kazoo)]
    pub rounding: Rounding,

    /// Worker threads [default: all cores]. Results never depend on it.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Size of one parallel parse task, in decoded bytes (K, M, G suffixes allowed). By default
    /// 512K per bucket of the run (see --memory), at least 8M and at most 32M: a task's legs are
    /// split by bucket, and larger tasks keep the pieces from getting small when an input needs
    /// many buckets. Results never depend on it.
    #[arg(long, value_name = "BYTES", value_parser = parse_bytes)]
    pub chunk_size: Option<usize>,

    /// Largest record accepted, in bytes (K, M, G suffixes allowed): a line, or one top-level
    /// value or array element. A larger one is rejected (record_too_large) and skipped without
    /// being held in memory. Pretty-printed JSON and CSV files, which are read whole, may be at
    /// most 64 times this size; the rest of a larger one is rejected (file_too_large).
    #[arg(long, value_name = "BYTES", default_value = "16M", value_parser = parse_bytes)]
    pub max_record_size: usize,

    /// Memory for legs held between stages (K, M, G suffixes allowed). An input larger than a
    /// quarter of it is processed in buckets (by account and day; the columns interactions
    /// need, by call) that are spilled to DIR/.rerate-staging/spill and read back one at a
    /// time, so peak memory stays under twice this figure whatever the input's size. Results
    /// never depend on it.
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = parse_bytes)]
    pub memory: usize,

    /// A KAZOO rate deck CSV (the hotornot tasks format: prefix, rate_cost in dollars,
    /// rate_increment, rate_minimum, rate_surcharge, direction, weight, rate_name, ratedeck_id,
    /// routes, ...). Each leg gets the rate KAZOO would pick (deck_* columns); crossbar CSV legs
    /// are priced from it; reconciliation compares against it.
    #[arg(long, value_name = "FILE")]
    pub rates: Option<PathBuf>,

    /// `account_id,ratedeck_id` lines: accounts priced from their own ratedeck (the deck rows
    /// with that ratedeck_id); other accounts use the rows without a ratedeck_id.
    #[arg(long, value_name = "FILE", requires = "rates")]
    pub ratedeck_map: Option<PathBuf>,

    /// Among rates of the same prefix length: `weight` (lower first; KAZOO's hotornot
    /// `sort_by_weight: true`, the default) or `cost` (higher rate_cost first; `sort_by_weight:
    /// false`). Equal ones: the last in KAZOO's document-id order wins, as in hon_util.
    #[arg(long, value_enum, default_value_t = RateSort::Weight)]
    pub rate_sort: RateSort,

    /// KAZOO's E.164 converters, from a JSON file: the `system_config/number_manager`
    /// document (its `default.e164_converters`), an object holding `e164_converters`, or the
    /// converters object itself. They replace the built-in defaults (KAZOO's: NANP to +1,
    /// 011/00 to +, any other number of 8 digits or more starting 2-9 to +).
    #[arg(long, value_name = "FILE", requires = "rates")]
    pub e164_converters: Option<PathBuf>,

    /// hotornot's `filter_list`, comma-separated, applied in order [default:
    /// direction,route_options,routes]. Also: caller_id_numbers, ratedeck_id, reseller,
    /// version.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        value_name = "FILTERS",
        requires = "rates"
    )]
    pub hotornot_filter_list: Option<Vec<Filter>>,

    /// hotornot's `default_rate_minimum`: seconds for a deck rate without rate_minimum.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub default_rate_minimum: i64,

    /// hotornot's `default_rate_increment`: seconds for a deck rate without rate_increment.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub default_rate_increment: i64,

    /// hotornot's `default_rate_nocharge_time`: seconds for a deck rate without one.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub default_rate_nocharge_time: i64,

    /// hotornot's `rate_version`, compared by the `version` filter (rates without a
    /// rate_version match when it is not given).
    #[arg(long, value_name = "VERSION")]
    pub rate_version: Option<String>,

    /// A folder of your own `.sql` reports, run like the built-in ones against the `legs` and
    /// `interactions` tables; each is written as a report named after its file (partitioned
    /// when the result has account_id and date columns, else DIR/<name>.parquet).
    #[arg(long, value_name = "DIR")]
    pub queries: Option<PathBuf>,

    /// Write CSV text cells exactly as they are. By default a cell that a spreadsheet would run
    /// as a formula (starting with =, +, -, @, tab or carriage return, e.g. a caller id
    /// "+15551234567") is prefixed with ' so that opening the file runs nothing; numeric columns
    /// and Parquet files are never changed.
    #[arg(long)]
    pub csv_raw: bool,

    /// No progress bar and no summary on stderr (errors are still printed).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let mult = match t[i..].to_ascii_uppercase().as_str() {
                "K" | "KB" | "KIB" => 1 << 10,
                "M" | "MB" | "MIB" => 1 << 20,
                "G" | "GB" | "GIB" => 1 << 30,
                other => return Err(format!("unknown size suffix {other:?}: use K, M or G")),
            };
            (&t[..i], mult)
        }
        None => (t, 1),
    };
    let n: usize = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a size such as 8M or 65536"))?;
    match n.checked_mul(mult) {
        Some(0) | None => Err(format!("{s:?} must be a positive size")),
        Some(v) => Ok(v),
    }
}

/// The checked configuration: everything that can be wrong with the arguments is found here,
/// before any output is written.
struct RunConfig {
    files: Vec<InputFile>,
    skipped: Vec<Skipped>,
    out: PathBuf,
    mode: Mode,
    output: Output,
    tz: ReportTz,
    rounding: Rounding,
    threads: usize,
    chunk_size: Option<usize>,
    max_record: usize,
    memory: usize,
    quiet: bool,
    reports: Vec<Report>,
    decks: Option<DeckSet>,
    options: serde_json::Value,
}

impl RunConfig {
    fn from_args(args: RunArgs) -> anyhow::Result<Self> {
        let tz = ReportTz::parse(&args.tz).map_err(anyhow::Error::msg)?;
        let threads = match args.threads {
            Some(0) => bail!("--threads must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let (files, skipped) = discover(&args.inputs)?;
        let decks = match &args.rates {
            None => None,
            Some(path) => {
                let config = Hotornot {
                    sort: args.rate_sort,
                    filters: args
                        .hotornot_filter_list
                        .clone()
                        .unwrap_or_else(|| crate::rate::deck::DEFAULT_FILTERS.to_vec()),
                    default_minimum: args.default_rate_minimum,
                    default_increment: args.default_rate_increment,
                    default_nocharge: args.default_rate_nocharge_time,
                    rate_version: args.rate_version.clone(),
                };
                let mut d = DeckSet::load(path, config)?;
                if let Some(map) = &args.ratedeck_map {
                    d.load_account_map(map)?;
                }
                if let Some(conv) = &args.e164_converters {
                    d.set_converters(
                        E164Converters::load(conv)
                            .map_err(|e| anyhow::anyhow!("--e164-converters {e}"))?,
                    );
                }
                for i in d.issues.iter().take(20) {
                    eprintln!(
                        "rerate: rate deck {}, line {}: {}",
                        path.display(),
                        i.line,
                        i.reason
                    );
                }
                if d.issues.len() > 20 {
                    eprintln!(
                        "rerate: rate deck {}: {} more bad rows (see manifest.json)",
                        path.display(),
                        d.issues.len() - 20
                    );
                }
                Some(d)
            }
        };
        let mut reports = reports::builtin();
        if let Some(dir) = &args.queries {
            reports.extend(reports::load_dir(dir)?);
        }
        let options = serde_json::json!({
            "inputs": args.inputs,
            "out": args.out.display().to_string(),
            "mode": args.mode,
            "format": args.format,
            "csv_raw": args.csv_raw,
            "tz": tz.name(),
            "rounding": args.rounding,
            "threads": threads,
            "chunk_size": args.chunk_size,
            "max_record_size": args.max_record_size,
            "memory": args.memory,
            "queries": args.queries.as_ref().map(|q| q.display().to_string()),
            "rates": args.rates.as_ref().map(|q| q.display().to_string()),
            "ratedeck_map": args.ratedeck_map.as_ref().map(|q| q.display().to_string()),
            "rate_sort": args.rate_sort,
            "hotornot": decks.as_ref().map(|d| d.config()),
            "e164_converters": decks.as_ref().map(|d| serde_json::json!({
                "source": d.converters().source,
                "identity": d.converters().identity(),
            })),
            "rate_deck_identity": decks.as_ref().map(|d| d.identity()),
        });
        Ok(RunConfig {
            files,
            skipped,
            out: args.out,
            mode: args.mode,
            output: Output {
                format: args.format,
                csv_raw: args.csv_raw,
            },
            tz,
            rounding: args.rounding,
            threads,
            chunk_size: args.chunk_size,
            max_record: args.max_record_size,
            memory: args.memory,
            quiet: args.quiet,
            reports,
            decks,
            options,
        })
    }
}

/// Runs the pipeline; exit status 0 when the manifest balances.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    // Both pools are sized before either starts: polars reads this once, on first use.
    if let Some(n) = args.threads {
        std::env::set_var("POLARS_MAX_THREADS", n.to_string());
    }
    let cfg = RunConfig::from_args(args)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.threads)
        // A worker waiting on one file's parse tasks runs other files' reads on its own stack;
        // debug builds' large frames need more than the default 2 MiB for that nesting.
        .stack_size(32 << 20)
        .build()
        .context("starting the worker threads")?
        .install(|| execute(&cfg, t0))
}

fn execute(cfg: &RunConfig, t0: Instant) -> anyhow::Result<ExitCode> {
    let mut stages = BTreeMap::new();
    let mut lap = Instant::now();
    let stage =
        |name: &'static str, stages: &mut BTreeMap<&'static str, u64>, lap: &mut Instant| {
            pipeline::add(stages, name, *lap);
            *lap = Instant::now();
        };
    stages.insert("1_discover", t0.elapsed().as_millis() as u64);
    for s in &cfg.skipped {
        if !cfg.quiet {
            eprintln!("rerate: skipping {}: {}", s.path, s.reason);
        }
    }
    let staging = Staging::open(&cfg.out)?;
    if staging.recovered && !cfg.quiet {
        eprintln!(
            "rerate: finished moving into place the output of an earlier run of {} that was killed while doing it",
            cfg.out.display()
        );
    }

    let total_bytes: u64 = cfg.files.iter().map(|f| f.bytes).sum();
    let progress = Progress::new(total_bytes, cfg.quiet);
    let spill = staging.spill();
    let buckets = pipeline::bucket_count(pipeline::estimated_input_bytes(&cfg.files), cfg.memory);
    let chunk_bytes = cfg
        .chunk_size
        .unwrap_or_else(|| pipeline::chunk_bytes(buckets));
    let partitions = Arc::new(Partitions::new(buckets));
    let opts = IngestOptions {
        tz: cfg.tz,
        chunk_bytes,
        max_record: cfg.max_record,
        partitions: partitions.clone(),
    };
    let parsed = pipeline::Parsed::new(&spill, partitions, cfg.memory);
    let ingested = ingest(&cfg.files, &opts, &progress, &|b, df| parsed.sink(b, df))?;
    progress.finish();
    let spilled = parsed.spilled();
    stage("2_read_parse", &mut stages, &mut lap);

    let settings = pipeline::Settings {
        decks: cfg.decks.as_ref(),
        rounding: cfg.rounding,
    };
    let out = staging.data();
    let leg_table = Table {
        name: "legs",
        columns: leg_columns(),
        order: vec![START_TIME, CALL_ID],
    };
    let call_table = Table {
        name: "interactions",
        columns: interactions::columns(),
        order: vec![START_TIME, INTERACTION_ID],
    };
    let recon_table = Table {
        name: "reconciliation",
        columns: reconcile::columns(),
        order: vec![START_TIME, CALL_ID, reconcile::PARTY],
    };
    let grouped = pipeline::group(
        parsed,
        &spill,
        cfg.memory,
        &settings,
        &pipeline::LegsOut {
            dir: out,
            table: &leg_table,
            output: &cfg.output,
        },
        &mut stages,
        cfg.quiet,
    )?;
    lap = Instant::now();
    let written = pipeline::write(
        &grouped,
        out,
        [&call_table, &recon_table],
        &cfg.output,
        cfg.quiet,
    )?;
    stage("7a_write_tables", &mut stages, &mut lap);

    let tables = [
        ("legs", grouped.legs_scan(out, leg_table.name)?),
        ("interactions", grouped.calls.scan()?),
        ("reconciliation", grouped.recon.scan()?),
    ];
    // A per-account-day report holds about 0.1 KB a leg: groups of accounts of up to a leg per
    // KiB of the budget keep it under a tenth of the budget whatever the input's size.
    let groups = reports::account_groups(
        grouped.legs.iter().map(|p| (p.account_id.as_str(), p.rows)),
        (cfg.memory / 1024) as u64,
    );
    let mut results = Vec::with_capacity(cfg.reports.len());
    for r in &cfg.reports {
        results.push((r, reports::run_by_accounts(&tables, r, &groups)?));
    }
    drop(tables);
    let spilled = spilled || grouped.spilled();
    let cross = grouped.cross_bucket_call_ids;
    let (dedup_stats, recon_summary) = (grouped.dedup, grouped.recon_summary);
    if spill.exists() {
        std::fs::remove_dir_all(&spill).with_context(|| format!("removing {}", spill.display()))?;
    }
    stage("6_reports", &mut stages, &mut lap);

    let interactions_count: u64 = written.calls.iter().map(|p| p.rows).sum();
    let mut parts = grouped.legs;
    let legs_parts = parts.len();
    parts.extend(written.calls);
    parts.extend(written.recon);
    let mut outputs = vec![
        "legs".to_owned(),
        "interactions".to_owned(),
        "reconciliation".to_owned(),
    ];
    for (r, df) in &mut results {
        parts.extend(write_report(df, out, &r.name, &cfg.output, &mut outputs)?);
    }
    let mut rejects = ingested.rejects;
    write_rejects(&mut rejects, out)?;
    let rejects_path = cfg.out.join("rejects.ndjson");
    stage("7b_write_reports", &mut stages, &mut lap);

    let mut by_reason = BTreeMap::new();
    for r in &rejects {
        *by_reason.entry(r.code).or_insert(0u64) += 1;
    }
    let counts = Counts::new(
        ingested.records_read,
        &parts[..legs_parts],
        by_reason,
        dedup_stats,
    );
    let totals = Totals::of(&parts[..legs_parts]);
    let written: Vec<(String, Option<String>)> = parts[..legs_parts]
        .iter()
        .map(|p| (p.account_id.clone(), p.date.clone()))
        .collect();
    let headline = Headline {
        records_read: counts.records_read,
        legs: counts.legs_written,
        interactions: interactions_count,
        rejected: counts.rejected,
        duplicates: counts.dedup.duplicates_dropped,
        billed_seconds: totals.billed_seconds,
        rated_cost_units: totals.rated_cost_units,
        cost_units: totals.cost_units,
        reseller_cost_units: totals.reseller_cost_units,
        tz: cfg.tz.name().to_owned(),
        rounding: format!("{:?}", cfg.rounding).to_lowercase(),
    };
    if let Some((_, daily)) = results.iter().find(|(r, _)| r.name == "daily") {
        let html = summary::render(&headline, daily).context("rendering summary.html")?;
        let path = out.join("summary.html");
        std::fs::write(&path, html).with_context(|| format!("writing {}", path.display()))?;
        outputs.push("summary.html".to_owned());
    }
    outputs.extend(["rejects.ndjson".to_owned(), "manifest.json".to_owned()]);
    let keys: std::collections::BTreeSet<(String, String)> =
        parts.iter().map(partition_dirs).collect();
    let history = History::read(&cfg.out, cfg.mode, &keys);
    parts.extend(history.kept);
    parts.sort_by(|a, b| {
        (&a.table, &a.account_id, &a.date).cmp(&(&b.table, &b.account_id, &b.date))
    });
    let mut entries: std::collections::BTreeSet<String> =
        OUTPUTS.iter().map(|s| (*s).to_owned()).collect();
    entries.extend(history.outputs.iter().cloned());
    entries.extend(outputs.iter().cloned());
    for name in history.outputs {
        if cfg.mode == Mode::OverwritePartitions
            && !outputs.contains(&name)
            && cfg.out.join(&name).is_dir()
        {
            outputs.push(name);
        }
    }
    let mut runs = history.runs;
    runs.push(RunRecord {
        run: runs.last().map_or(1, |r| r.run + 1),
        mode: cfg.mode,
        records_read: counts.records_read,
        legs_written: counts.legs_written,
        partitions: written,
    });
    if runs.len() > RUNS_KEPT {
        runs.drain(..runs.len() - RUNS_KEPT);
    }
    let manifest = Manifest {
        rerate_version: env!("CARGO_PKG_VERSION"),
        options: cfg.options.clone(),
        inputs: ingested.files,
        skipped_files: cfg.skipped.clone(),
        counts,
        totals,
        interactions: headline.interactions,
        reconciliation: recon_summary,
        rate_deck_issues: cfg
            .decks
            .as_ref()
            .map(|d| d.issues.clone())
            .unwrap_or_default(),
        mode: cfg.mode,
        finished_interrupted_commit: staging.recovered,
        outputs,
        dataset: Dataset::of(&parts),
        partitions: parts,
        runs,
        memory: serde_json::json!({
            "budget_bytes": cfg.memory,
            "buckets": buckets,
            "parse_task_bytes": chunk_bytes,
            "spilled": spilled,
            "cross_bucket_call_ids": cross,
            "buckets_split": grouped.buckets_split,
            "largest_bucket_legs": grouped.largest_bucket_legs,
        }),
        stages_ms: stages,
        elapsed_ms: t0.elapsed().as_millis() as u64,
    };
    manifest.write(out)?;
    let journal = commit::plan(
        &cfg.out,
        &staging.staged_files()?,
        cfg.mode,
        &entries,
        &keys,
    )?;
    staging.commit(journal)?;

    if !cfg.quiet {
        eprintln!(
            "{}",
            summary(&manifest, &rejects_path.display().to_string())
        );
    }
    if !manifest.counts.balanced {
        bail!(
            "internal error: the counts do not balance (read {}, written {}, rejected {}, duplicates {}); see {}",
            manifest.counts.records_read,
            manifest.counts.legs_written,
            manifest.counts.rejected,
            manifest.counts.dedup.duplicates_dropped,
            cfg.out.join("manifest.json").display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes one report: partitioned like the legs when it has account_id and date (a day)
/// columns, else as `DIR/<name>.parquet` / `.csv`.
fn write_report(
    df: &mut DataFrame,
    out: &std::path::Path,
    name: &str,
    output: &Output,
    outputs: &mut Vec<String>,
) -> anyhow::Result<Vec<PartitionStats>> {
    let partitioned = df
        .column(ACCOUNT_ID)
        .is_ok_and(|c| c.dtype() == &DataType::String)
        && df.column(DATE).is_ok_and(|c| c.dtype() == &DataType::Date);
    if partitioned {
        let columns: Vec<&str> = df
            .get_column_names()
            .into_iter()
            .map(|c| c.as_str())
            .filter(|c| *c != ACCOUNT_ID && *c != DATE)
            .collect();
        outputs.push(name.to_owned());
        let table = Table {
            name,
            columns,
            order: vec![],
        };
        return Ok(write_partitioned(df, out, &table, output)?);
    }
    write_files(df, out, name, output)?;
    for (on, ext) in [
        (output.format != Format::Csv, "parquet"),
        (output.format != Format::Parquet, "csv"),
    ] {
        if on {
            outputs.push(format!("{name}.{ext}"));
        }
    }
    Ok(vec![])
}

/// The partition's folder names: `account_id=..`, `date=..`.
fn partition_dirs(p: &PartitionStats) -> (String, String) {
    (
        dir_name(ACCOUNT_ID, Some(&p.account_id)),
        dir_name(DATE, p.date.as_deref()),
    )
}

/// What the previous manifest in the output folder says, as this run keeps it.
struct History {
    /// Partitions of earlier runs this run does not replace.
    kept: Vec<PartitionStats>,
    /// The earlier runs.
    runs: Vec<RunRecord>,
    /// The top-level names earlier runs wrote.
    outputs: Vec<String>,
}

impl History {
    /// `keys`: the partition folders this run writes, which replace earlier ones.
    fn read(
        out: &std::path::Path,
        mode: Mode,
        keys: &std::collections::BTreeSet<(String, String)>,
    ) -> Self {
        let prev: serde_json::Value = std::fs::read(out.join("manifest.json"))
            .ok()
            .and_then(|t| serde_json::from_slice(&t).ok())
            .unwrap_or_default();
        let kept = match mode {
            Mode::ReplaceAll => vec![],
            Mode::OverwritePartitions => {
                serde_json::from_value::<Vec<PartitionStats>>(prev["partitions"].clone())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|p| !keys.contains(&partition_dirs(p)))
                    .collect()
            }
        };
        History {
            kept,
            runs: serde_json::from_value(prev["runs"].clone()).unwrap_or_default(),
            outputs: previous_outputs(&prev),
        }
    }
}

/// Units (1/10,000) as a currency amount with four decimals.
pub fn units_to_decimal(units: i64) -> String {
    let sign = if units < 0 { "-" } else { "" };
    let u = units.unsigned_abs();
    format!("{sign}{}.{:04}", u / 10_000, u % 10_000)
}

fn summary(m: &Manifest, rejects_path: &str) -> String {
    let c = &m.counts;
    let t = &m.totals;
    let mb = m.inputs.iter().map(|f| f.input.bytes).sum::<u64>() as f64 / 1e6;
    let mut s = format!(
        "rerate: read {} records from {} files ({mb:.1} MB) in {:.2} s: {} legs ({} interactions) written to {} partitions",
        c.records_read,
        m.inputs.len(),
        m.elapsed_ms as f64 / 1000.0,
        c.legs_written,
        m.interactions,
        m.partitions.iter().filter(|p| p.table == "legs").count(),
    );
    if c.rejected > 0 {
        s += &format!(", {} rejected (see {rejects_path})", c.rejected);
    } else {
        s += ", none rejected";
    }
    s += &format!(
        ", {} duplicates dropped ({} conflicting call_ids). Billed {} s; rated {} units, customer cost {} ({} units), reseller cost {} ({} units).",
        c.dedup.duplicates_dropped,
        c.conflicts,
        t.billed_seconds,
        t.rated_cost_units,
        units_to_decimal(t.cost_units),
        t.cost_units,
        units_to_decimal(t.reseller_cost_units),
        t.reseller_cost_units,
    );
    let r = &m.reconciliation;
    let classes: Vec<String> = r.by_class.iter().map(|(k, v)| format!("{v} {k}")).collect();
    s += &format!(
        "\nReconciliation: {} rows reported{}; total delta {} units ({}, derived minus recorded), reseller {} units ({}){}.",
        r.rows,
        if classes.is_empty() { String::new() } else { format!(" ({})", classes.join(", ")) },
        r.total_delta_units,
        units_to_decimal(r.total_delta_units),
        r.total_reseller_delta_units,
        units_to_decimal(r.total_reseller_delta_units),
        if r.not_derived > 0 { format!("; {} legs without rating inputs not derived (no deck rate)", r.not_derived) } else { String::new() },
    );
    if !r.worst_accounts.is_empty() {
        let worst: Vec<String> = r
            .worst_accounts
            .iter()
            .map(|(a, n, d)| format!("{a} ({n} rows, {d} units)"))
            .collect();
        s += &format!(" Worst accounts: {}.", worst.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_bytes("8M"), Ok(8 << 20));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("8X").is_err());
    }

    #[test]
    fn units_print_as_four_decimals() {
        assert_eq!(units_to_decimal(4524), "0.4524");
        assert_eq!(units_to_decimal(123_456_789), "12345.6789");
        assert_eq!(units_to_decimal(-5), "-0.0005");
    }
}
