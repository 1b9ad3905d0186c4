//! `rerate run`: the flags, turned into a [`RunConfig`]; the job's outcome, printed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::job::{Job, RunConfig, EXIT_PARTIAL};
use crate::rate::{Filter, Hotornot, RateSort, Rounding};
use crate::time::ReportTz;
use crate::write::commit::Mode;
use crate::write::manifest::{Manifest, NOTHING_CHANGED};
use crate::write::{Format, Output};

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  rerate run fixtures --out reports\n  rerate run 'exports/2026-11-*.json.gz' --out reports --tz America/New_York --format both\n\nExit status:\n  0  committed; every input read to its end\n  2  nothing committed: a bad argument, an unreadable input, a damaged catalog\n     (manifest.json) or one the Spark job wrote, an option the dataset keeps changed (--tz, --rounding, --rates, ...; see --mode), counts that do not\n     balance, a failed write, or --strict with a partial input\n  3  committed, but some input was read only in part (a truncated gzip or zstd stream, an\n     I/O error mid-file, a file over the size limit, a file that changed while read); each is named on stderr and in\n     manifest.json under partial_inputs\n  4  the inputs hold no CDR file at all; nothing is written\n  5  nothing committed: every record read was rejected, or more than --max-rejects\n  6  committed, but finishing the commit failed (a folder turned unwritable mid-commit);\n     the next run on the folder completes it before anything else"
)]
pub struct RunArgs {
    /// CDR exports to read: files, directories (walked recursively; *.json, *.ndjson, *.jsonl,
    /// *.csv, optionally .gz or .zst) or quoted glob patterns. A JSON file may hold NDJSON, one
    /// document, an array, or crossbar API pages saved one after another; a .csv is a crossbar
    /// CSV export (a header naming call_id); gzip and zstd are detected from the content.
    /// Walks never read hidden files and folders, the --out folder, or a folder holding a rerate
    /// manifest.json (each is listed as skipped); no CDR file at all exits with status 4.
    #[arg(required = true, value_name = "INPUT")]
    pub inputs: Vec<String>,

    /// Output folder. Created if missing. A non-empty folder that is not a rerate output is
    /// refused. Everything is written to DIR/.rerate-staging first and moved into place when
    /// complete, manifest.json last: a run that fails or is killed leaves the previous output as
    /// it was.
    #[arg(long, short = 'o', value_name = "DIR")]
    pub out: PathBuf,

    /// What this run does to the dataset in DIR. `merge`: each (account, day) partition the
    /// run touches becomes the union of what it held and this input's legs, one leg per call_id
    /// (an identical copy dropped; of copies that differ the latest timestamp wins, this run's
    /// in a tie), and its interactions and reports are recomputed; every other partition
    /// stays. Rerunning an export, or overlapping ones, changes nothing.
    /// `overwrite-partitions`: the partitions in this input are replaced by its legs alone,
    /// losing the legs of those days this input does not hold (a nightly export cut by end
    /// time holds a few of yesterday's). `replace-all`: the whole dataset becomes this input's,
    /// losing everything else; the only mode that may change the options the dataset keeps
    /// (--tz, --rounding, --rates, --ratedeck-map and, with a deck, --e164-converters and the
    /// rate choice's settings). Whole-run files
    /// (rejects.ndjson, summary.html, unpartitioned reports) always describe this run.
    #[arg(long, value_enum, default_value_t = Mode::Merge)]
    pub mode: Mode,

    /// File format of every table (legs, interactions, reconciliation and the reports):
    /// `parquet`, `csv` (for programs: ISO 8601 UTC timestamps, no BOM, currency twins of the
    /// *_units columns; a spreadsheet file comes from `rerate query ... --output FILE.csv`) or
    /// `both`.
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
    #[arg(long, value_name = "BYTES", value_parser = super::parse_bytes)]
    pub chunk_size: Option<usize>,

    /// Largest record accepted, in bytes (K, M, G suffixes allowed): a line, or one top-level
    /// value or array element. A larger one is rejected (record_too_large) and skipped without
    /// being held in memory. Files of any size are read in bounded memory (JSON in windows, CSV
    /// exports a line at a time).
    #[arg(long, value_name = "BYTES", default_value = "16M", value_parser = super::parse_bytes)]
    pub max_record_size: usize,

    /// Memory for legs held between stages (K, M, G suffixes allowed; at least 128M). An input
    /// larger than a quarter of it is processed in buckets (by account and day; the columns
    /// interactions need, by call), held in memory while the input is no larger than this
    /// figure, else spilled to DIR/.rerate-staging/spill and read back one at a time, so peak
    /// memory stays under twice this figure plus 400 MB (polars, the parse windows, the
    /// writers) whatever the input's size. Below 128M the run is refused. Results never depend
    /// on it.
    #[arg(long, value_name = "BYTES", default_value = "1G", value_parser = super::parse_bytes)]
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

    /// Commit nothing (exit status 2) when any input could not be read to its end (a
    /// truncated gzip or zstd stream, an I/O error, a file over the size limit). Without it
    /// such a run commits what it read and exits with status 3.
    #[arg(long)]
    pub strict: bool,

    /// Commit nothing (exit status 5) when more records than this are rejected: a count
    /// (`100`) or a share of the records read (`0.5%`). Without it a run commits whatever it
    /// could read, unless every record read was rejected (also exit 5: a wrong file, or an
    /// export whose format changed). Recorded in manifest.json's options.
    #[arg(long, value_name = "N|P%")]
    pub max_rejects: Option<crate::job::MaxRejects>,

    /// The currency summary.html names its money in (e.g. USD, EUR). KAZOO's rate documents
    /// carry no currency, so there is no default: without it the page says "currency units".
    #[arg(long, value_name = "NAME")]
    pub currency: Option<String>,

    /// A CSV of `account_id,name` rows (a header row is allowed): summary.html shows each
    /// account's name beside its id.
    #[arg(long, value_name = "FILE")]
    pub account_names: Option<PathBuf>,

    /// No progress bar and no summary on stderr (errors and partial inputs are still printed).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Runs the job the flags describe and prints what it did; exit status 0 when it committed.
/// The least `--memory` a run accepts, 128 MiB: from it up, peak memory stays under twice the
/// budget plus 400 MB (BENCHMARKS.md, Memory against input size); below it the fixed part
/// dominates and no bound is promised. The library ([`crate::job::RunConfig`]) takes any budget.
pub const MEMORY_FLOOR: usize = 128 << 20;

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let quiet = args.quiet;
    // A run that commits nothing leaves no folder it created behind.
    let out = args.out.clone();
    let new_folder = !out.exists();
    let result = run_job(args, quiet);
    if result.is_err() && new_folder {
        remove_if_only_the_lock(&out);
    }
    result
}

/// Removes `out` when all it holds is the lock of a run that committed nothing, and no other
/// run holds that lock.
fn remove_if_only_the_lock(out: &std::path::Path) {
    use crate::write::commit::LOCK;
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    let names: Vec<std::ffi::OsString> = entries.flatten().map(|e| e.file_name()).collect();
    if !names.iter().all(|n| n == LOCK) {
        return;
    }
    let lock = out.join(LOCK);
    if let Ok(f) = std::fs::File::open(&lock) {
        if f.try_lock().is_err() {
            return;
        }
        let _ = std::fs::remove_file(&lock);
    }
    let _ = std::fs::remove_dir(out);
}

fn run_job(args: RunArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    if args.memory < MEMORY_FLOOR {
        anyhow::bail!(
            "--memory {}: below 128M, the least budget rerate bounds (from 128M up its peak stays under twice --memory plus 400 MB; measured 623 MB at 128M over 200,000 legs, 615 MB over a million); give 128M or more. Nothing was read or written",
            match args.memory % (1 << 20) {
                0 => format!("{}M", args.memory >> 20),
                _ => format!("{} bytes", args.memory),
            }
        );
    }
    let job = Job::prepare(config(args)?)?;
    print_deck_issues(&job);
    if !quiet {
        // Each reason once, with up to three paths: a folder of notes is one line, not fifty.
        let mut by_reason: Vec<(&str, Vec<&str>)> = Vec::new();
        for s in job.skipped() {
            match by_reason.iter_mut().find(|(r, _)| *r == s.reason) {
                Some((_, paths)) => paths.push(&s.path),
                None => by_reason.push((&s.reason, vec![&s.path])),
            }
        }
        for (reason, paths) in by_reason {
            let more = match paths.len() {
                0..=3 => String::new(),
                n => format!(" and {} more (manifest.json lists them)", n - 3),
            };
            let shown: Vec<&str> = paths.iter().take(3).copied().collect();
            eprintln!("rerate: skipping {}{more}: {reason}", shown.join(", "));
        }
    }
    let outcome = job.run()?;
    if !quiet {
        for f in &outcome.manifest.inputs {
            for s in &f.skipped_content {
                eprintln!(
                    "rerate: skipped content in {} line {}: {}",
                    f.input.display, s.line, s.what
                );
            }
            if !f.skipped_documents.is_empty() {
                let n: u64 = f.skipped_documents.values().sum();
                let kinds: Vec<String> = f
                    .skipped_documents
                    .iter()
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect();
                eprintln!(
                    "rerate: {}: skipped {n} CouchDB documents that are not CDRs, as KAZOO's cdrs view does ({})",
                    f.input.display,
                    kinds.join(", ")
                );
            }
        }
        if outcome.manifest.finished_interrupted_commit {
            eprintln!(
                "rerate: finished moving into place the output of an earlier run of {} that stopped while doing it (killed, or exit status 6)",
                outcome.manifest.options["out"].as_str().unwrap_or_default()
            );
        }
        eprintln!(
            "{}",
            summary(
                &outcome.manifest,
                &outcome.rejects_path.display().to_string()
            )
        );
    }
    print_past_changes(&outcome.manifest.merge);
    for p in &outcome.manifest.partial_inputs {
        eprintln!(
            "rerate: warning: {} was read only in part ({}): {}",
            p.file, p.code, p.reason
        );
    }
    if outcome.partial() {
        return Ok(ExitCode::from(EXIT_PARTIAL));
    }
    Ok(ExitCode::SUCCESS)
}

/// The job the flags describe (`rerate run`'s, and `rerate extract`'s, which takes the same).
/// Errors: an unknown `--tz` zone.
pub fn config(args: RunArgs) -> anyhow::Result<RunConfig> {
    let tz = ReportTz::parse(&args.tz).map_err(anyhow::Error::msg)?;
    Ok(RunConfig {
        inputs: args.inputs,
        out: args.out,
        mode: args.mode,
        output: Output {
            format: args.format,
            csv_raw: args.csv_raw,
        },
        tz,
        rounding: args.rounding,
        threads: args.threads,
        chunk_size: args.chunk_size,
        max_record_size: args.max_record_size,
        memory: args.memory,
        rates: args.rates,
        ratedeck_map: args.ratedeck_map,
        hotornot: Hotornot {
            sort: args.rate_sort,
            filters: args
                .hotornot_filter_list
                .unwrap_or_else(|| crate::rate::deck::DEFAULT_FILTERS.to_vec()),
            default_minimum: args.default_rate_minimum,
            default_increment: args.default_rate_increment,
            default_nocharge: args.default_rate_nocharge_time,
            rate_version: args.rate_version,
        },
        e164_converters: args.e164_converters,
        queries: args.queries,
        strict: args.strict,
        max_rejects: args.max_rejects,
        quiet: args.quiet,
        currency: args.currency,
        account_names: args.account_names,
    })
}

/// The days before the run's own that a merge changed (finance may have invoiced them), the
/// first 20, and the partitions it emptied; always printed, `--quiet` or not.
fn print_past_changes(merge: &crate::write::manifest::MergeCounts) {
    let changes = &merge.past_days_changed;
    for c in changes.iter().take(20) {
        eprintln!(
            "rerate: warning: a past day changed: account {} on {}: {} legs, cost {} -> {} legs, cost {}",
            c.account_id,
            c.date.as_deref().unwrap_or("(no date)"),
            c.legs_before,
            crate::rate::units_to_decimal(c.cost_units_before),
            c.legs_after,
            crate::rate::units_to_decimal(c.cost_units_after),
        );
    }
    if changes.len() > 20 {
        eprintln!(
            "rerate: warning: {} more past days changed (manifest.json, merge.past_days_changed)",
            changes.len() - 20
        );
    }
    if !merge.partitions_emptied.is_empty() {
        eprintln!(
            "rerate: {} partition(s) left with no leg (each leg's newer copy lies on another day) were removed (manifest.json, merge.partitions_emptied)",
            merge.partitions_emptied.len()
        );
    }
}

/// The rate deck's unusable rows, the first 20 of them.
fn print_deck_issues(job: &Job) {
    let issues = job.deck_issues();
    let Some(path) = job.config().rates.as_ref() else {
        return;
    };
    for i in issues.iter().take(20) {
        eprintln!(
            "rerate: rate deck {}, line {}: {}",
            path.display(),
            i.line,
            i.reason
        );
    }
    if issues.len() > 20 {
        eprintln!(
            "rerate: rate deck {}: {} more bad rows (see manifest.json)",
            path.display(),
            issues.len() - 20
        );
    }
}

/// The terminal summary, a few lines as cargo and DuckDB print them: separators, plurals,
/// minutes, money in currency with the unpriced legs counted beside it.
fn summary(m: &Manifest, rejects_path: &str) -> String {
    use crate::words::{bytes, count, money};
    let c = &m.counts;
    let t = &m.totals;
    let input_bytes = m.inputs.iter().map(|f| f.input.bytes).sum::<u64>();
    let mut s = format!(
        "rerate: read {} from {} ({}) in {:.2} s",
        count(c.records_read, "record", "records"),
        count(m.inputs.len() as u64, "file", "files"),
        bytes(input_bytes),
        m.elapsed_ms as f64 / 1000.0,
    );
    let rewritten = m.runs.last().map_or(0, |r| r.partitions_written);
    s += &format!(
        "\n  {} written ({}) to {}",
        count(c.legs_written, "leg", "legs"),
        count(m.interactions, "interaction", "interactions"),
        count(rewritten, "partition", "partitions"),
    );
    if m.merge.legs_read_back > 0 {
        s += &format!(
            ", merged with {} they held ({} there now)",
            count(m.merge.legs_kept, "leg", "legs"),
            count(c.legs_in_written_partitions, "leg", "legs"),
        );
    }
    if c.rejected > 0 {
        s += &format!(
            "; {} (see {rejects_path})",
            count(c.rejected, "record rejected", "records rejected")
        );
    } else {
        s += "; none rejected";
    }
    if c.dedup.duplicates_dropped > 0 {
        s += &format!(
            "; {} dropped",
            count(c.dedup.duplicates_dropped, "duplicate", "duplicates")
        );
        if c.conflicts > 0 {
            s += &format!(
                " ({})",
                count(c.conflicts, "conflicting call_id", "conflicting call_ids")
            );
        }
    }
    let l = &c.ledgers;
    if l.read > 0 {
        s += &format!(
            "\n  {} read into the ledgers table: {} new",
            count(l.read, "ledger", "ledgers"),
            crate::words::thousands(l.written as i64)
        );
        if l.duplicates_dropped > 0 {
            s += &format!(
                ", {} already there or read twice",
                crate::words::thousands(l.duplicates_dropped as i64)
            );
        }
        if l.conflicts > 0 {
            s += &format!(
                " ({} whose copies differ)",
                count(l.conflicts, "ledger", "ledgers")
            );
        }
    }
    // A run that brought nothing new says so, so that the money below (over the partitions it
    // rewrote, which hold the dataset's legs) is not read as money added.
    if m.changed_nothing() {
        s += &format!("\n  {NOTHING_CHANGED}");
    }
    let deck = m.options.get("rates").is_some_and(|v| !v.is_null());
    // The totals are over the partitions written, which a merge fills with the dataset's legs.
    let legs = c.legs_in_written_partitions;
    let priced = legs.saturating_sub(t.unpriced_legs);
    s += &format!("\n  minutes: {}", crate::write::summary::minutes_words(m));
    // Money over no priced leg is unpriced, not 0.
    let priced_money = |units: i64| {
        crate::write::summary::priced_money(units, legs as i64, t.unpriced_legs as i64)
    };
    // Under a merge the partitions written hold the dataset's legs too: say whose money it is.
    let scope = if m.merge.legs_read_back > 0 {
        " in the partitions rewritten"
    } else {
        ""
    };
    if !crate::write::summary::none_priced(m) {
        s += &format!(
            "\n  customer cost{scope} {} over {}",
            money(t.cost_units),
            count(priced, "priced leg", "priced legs"),
        );
    } else {
        s += &format!("\n  customer cost{scope} — (no priced legs)");
    }
    if t.unpriced_legs > 0 {
        s += &format!(
            "; {} ({}{}; cost empty, not 0; counted in daily's unpriced_legs)",
            count(t.unpriced_legs, "leg unpriced", "legs unpriced"),
            crate::write::summary::UNPRICED_WHY,
            if deck { "" } else { "; --rates prices them" },
        );
    }
    s += &format!(
        "; rated {}, reseller {}",
        priced_money(t.rated_cost_units),
        priced_money(t.reseller_cost_units)
    );
    let r = &m.reconciliation;
    // Without a deck, legs not derived are the unpriced ones, counted above.
    if r.rows > 0 || (deck && r.not_derived > 0) {
        let classes: Vec<String> = r.by_class.iter().map(|(k, v)| format!("{v} {k}")).collect();
        s += &format!(
            "\n  reconciliation: {}{}; delta {} (derived minus recorded), reseller {}",
            count(r.rows, "row reported", "rows reported"),
            if classes.is_empty() {
                String::new()
            } else {
                format!(" ({})", classes.join(", "))
            },
            money(r.total_delta_units),
            money(r.total_reseller_delta_units),
        );
        if r.not_derived > 0 {
            s += &format!(
                "; {} not derived (no deck rate)",
                count(
                    r.not_derived,
                    "leg without rating inputs",
                    "legs without rating inputs"
                )
            );
        }
        if !r.worst_accounts.is_empty() {
            let worst: Vec<String> = r
                .worst_accounts
                .iter()
                .map(|(a, n, d)| format!("{a} ({}, {})", count(*n, "row", "rows"), money(*d)))
                .collect();
            s += &format!("; worst accounts: {}", worst.join(", "));
        }
    } else if deck && r.no_deck_rate == 0 {
        s += "\n  reconciliation: every leg agrees with the rate deck";
    } else if deck {
        let compared = m.counts.legs_written.saturating_sub(r.no_deck_rate);
        s += &format!(
            "\n  reconciliation: {} with a rate in the deck {} with it; {} no rate in the deck (not compared with it)",
            count(compared, "leg", "legs"),
            if compared == 1 { "agrees" } else { "agree" },
            count(r.no_deck_rate, "leg has", "legs have"),
        );
    }
    s += &format!("\n  {}", m.dataset_words());
    s
}
