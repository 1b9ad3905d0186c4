//! A run as a library job: a [`RunConfig`] in, a committed output folder and a [`RunOutcome`]
//! out. The CLI, the tests and any other caller configure and run the same job.
//!
//! [`Job::prepare`] checks everything that can be wrong with the configuration (inputs found,
//! rate deck and report files loaded) before the output folder is touched. [`Job::run`] then runs
//! the stages in order: open the staging folder, read and parse, deduplicate/price/write the
//! legs, write the other tables, run the reports, write the whole-run files, build the
//! manifest, commit.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use polars::prelude::{DataFrame, DataType};
use sha2::{Digest, Sha256};

use crate::rate::e164::hex_digest;

use crate::dataset::index::{KeyIndex, Partition, KEYS_DIR, KEYS_HASH};
use crate::dataset::shards::{self, Cut};
use crate::dataset::{partition_key, Catalog, ShardSummary, CATALOG_DIR};
use crate::ingest::discover::{discover, Exclude, InputFile, Skipped};
use crate::ingest::ledger::LEDGERS_TABLE;
use crate::ingest::rejects::RejectLog;
use crate::ingest::{concat_frames, ingest, IngestOptions, Ingested, PARTIAL_CODES};
use crate::interactions;
use crate::ledger_reconciliation;
use crate::ledgers::{self, LedgerCounts};
use crate::merge;
use crate::pipeline::{self, Grouped, Stages, Written};
use crate::progress::Progress;
use crate::rate::deck::DeckIssue;
use crate::rate::{DeckSet, E164Converters, Hotornot, Rounding};
use crate::reconcile;
use crate::reports::{self, Report};
use crate::schema::{
    leg_columns, ACCOUNT_ID, CALL_ID, DAILY_REPORT, DATE, INTERACTIONS_TABLE, INTERACTION_ID,
    LEGS_TABLE, MANIFEST_FILE, RECONCILIATION_TABLE, REJECTS_FILE, START_TIME, SUMMARY_HTML,
};
use crate::spill::Partitions;
use crate::time::{format_date, parse_date, ReportTz};
use crate::write::commit::{self, Mode, Staging};
use crate::write::manifest::{
    definition_change, Counts, Dataset, DayChange, Definition, Manifest, MergeCounts, PartialInput,
    RunRecord, Totals, RUNS_KEPT,
};
use crate::write::partition::{dir_name, made_from_legs};
use crate::write::summary;
use crate::write::{
    previous_outputs, write_by_day, write_empty_tables, write_files, Carry, Format, Grain, Output,
    PartitionStats, Table, OUTPUTS,
};

pub(crate) mod extract;

/// What a run reads, how it prices, and where and how it writes.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Files, folders (walked) or glob patterns, as [`discover`] takes them.
    pub inputs: Vec<String>,
    /// The output folder.
    pub out: PathBuf,
    pub mode: Mode,
    pub output: Output,
    /// The zone that decides each leg's `date`.
    pub tz: ReportTz,
    pub rounding: Rounding,
    /// Worker threads; `None`: all cores.
    pub threads: Option<usize>,
    /// Decoded bytes per parse task; `None`: [`pipeline::chunk_bytes`] of the run's buckets.
    pub chunk_size: Option<usize>,
    /// Largest record, in bytes.
    pub max_record_size: usize,
    /// Memory budget for legs held between stages, in bytes.
    pub memory: usize,
    /// A KAZOO rate deck CSV, and its `account_id,ratedeck_id` map.
    pub rates: Option<PathBuf>,
    pub ratedeck_map: Option<PathBuf>,
    /// The hotornot settings that change the deck's choice (sort, filters, defaults).
    pub hotornot: Hotornot,
    /// KAZOO's `e164_converters` (a JSON file); `None`: KAZOO's defaults.
    pub e164_converters: Option<PathBuf>,
    /// A folder of the user's own `.sql` reports.
    pub queries: Option<PathBuf>,
    /// Commit nothing when any input could not be read to its end.
    pub strict: bool,
    /// Commit nothing (exit 5) when more records than this are rejected.
    pub max_rejects: Option<MaxRejects>,
    /// No progress bars.
    pub quiet: bool,
    /// summary.html's currency label.
    pub currency: Option<String>,
    /// `account_id,name` rows for summary.html.
    pub account_names: Option<PathBuf>,
}

/// A checked configuration, ready to run.
pub struct Job {
    cfg: RunConfig,
    threads: usize,
    files: Vec<InputFile>,
    skipped: Vec<Skipped>,
    decks: Option<DeckSet>,
    reports: Vec<Report>,
    /// summary.html's currency and account names.
    labels: summary::Labels,
    /// The options that decide a leg's partition or cost, as the manifest records them.
    definition: Definition,
    started: Instant,
    discovered_ms: u64,
}

/// What a committed run did: its manifest (counts, totals, partitions, history).
pub struct RunOutcome {
    pub manifest: Manifest,
    /// The run's rejects file, in the output folder.
    pub rejects_path: PathBuf,
}

impl RunOutcome {
    /// Whether some input could not be read to its end (the exit status is then
    /// [`EXIT_PARTIAL`]).
    pub fn partial(&self) -> bool {
        !self.manifest.partial_inputs.is_empty()
    }
}

/// The exit status of a run that committed, but read some input only in part.
pub(crate) const EXIT_PARTIAL: u8 = 3;

/// The exit status of a run that committed nothing because every record it read was rejected,
/// or more than `--max-rejects` were.
pub(crate) const EXIT_REJECTS: u8 = 5;

/// A run refused for its rejects ([`EXIT_REJECTS`]): what was read, why, and where.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TooManyRejects(pub String);

/// `--max-rejects`: the most rejects a run may have and still commit.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub enum MaxRejects {
    /// At most this many records rejected.
    Count(u64),
    /// At most this share of the records read, in percent.
    Percent(f64),
}

impl std::str::FromStr for MaxRejects {
    type Err = String;

    /// `100` (records) or `0.5%` (of the records read).
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(v) if (0.0..=100.0).contains(&v) => Ok(MaxRejects::Percent(v)),
                _ => Err(format!("{s:?} is not a percentage from 0% to 100%")),
            },
            None => s.parse::<u64>().map(MaxRejects::Count).map_err(|_| {
                format!("{s:?} is not a count of records (100) or a percentage (0.5%)")
            }),
        }
    }
}

/// Why a run must not commit for its rejects: every record read rejected (at least one read,
/// and no CouchDB document skipped as not a CDR), or more than `max`. `None`: it may commit.
pub(crate) fn too_many_rejects(
    counts: &Counts,
    skipped_documents: u64,
    max: Option<MaxRejects>,
) -> Option<String> {
    let (rejected, read) = (counts.rejected, counts.records_read);
    if read > 0 && rejected == read && skipped_documents == 0 {
        return Some(format!(
            "every one of the {read} records read was rejected: no leg (is this a KAZOO CDR export?)"
        ));
    }
    let over = match max? {
        MaxRejects::Count(n) => rejected > n,
        MaxRejects::Percent(p) => read > 0 && rejected as f64 * 100.0 > p * read as f64,
    };
    over.then(|| {
        format!(
            "{rejected} of the {read} records read were rejected, more than --max-rejects {}",
            match max {
                Some(MaxRejects::Percent(p)) => format!("{p}%"),
                Some(MaxRejects::Count(n)) => n.to_string(),
                None => String::new(),
            }
        )
    })
}

/// The first `n` rejects of a rejects file, as `file line N: reason`.
fn first_rejects(path: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .take(n)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|r| {
            format!(
                "{} {}: {}",
                r["source"].as_str().unwrap_or("?"),
                r["location"].as_str().unwrap_or("?"),
                r["reason"].as_str().unwrap_or("")
            )
        })
        .collect()
}

impl Job {
    /// Finds the inputs, loads the rate deck and the reports, and sizes the worker pools.
    /// Errors: `--threads 0`, an input that cannot be found or read, a bad deck, map or report.
    /// Nothing is written.
    pub fn prepare(cfg: RunConfig) -> anyhow::Result<Self> {
        let started = Instant::now();
        // `threads` sizes rerate's own pool; polars' is the process's (`POLARS_MAX_THREADS`,
        // which the binary sets from --threads before any thread starts: cli::polars_env).
        let threads = match cfg.threads {
            Some(0) => bail!("--threads must be at least 1"),
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let exclude = Exclude {
            out: Some(cfg.out.clone()),
        };
        let (files, skipped) = discover(&cfg.inputs, &exclude)?;
        let decks = match &cfg.rates {
            None => None,
            Some(path) => {
                let mut d = DeckSet::load(path, cfg.hotornot.clone())?;
                if let Some(map) = &cfg.ratedeck_map {
                    d.load_account_map(map)?;
                }
                if let Some(conv) = &cfg.e164_converters {
                    d.set_converters(
                        E164Converters::load(conv)
                            .map_err(|e| anyhow::anyhow!("--e164-converters {e}"))?,
                    );
                }
                Some(d)
            }
        };
        let mut reports = reports::builtin();
        if let Some(dir) = &cfg.queries {
            reports.extend(reports::load_dir(dir)?);
        }
        let definition = definition(&cfg, decks.as_ref())?;
        let labels = summary::Labels {
            currency: cfg.currency.clone(),
            account_names: match &cfg.account_names {
                Some(path) => summary::read_account_names(path)?,
                None => Default::default(),
            },
        };
        Ok(Job {
            definition,
            labels,
            cfg,
            threads,
            files,
            skipped,
            decks,
            reports,
            discovered_ms: started.elapsed().as_millis() as u64,
            started,
        })
    }

    /// The configuration it runs.
    pub fn config(&self) -> &RunConfig {
        &self.cfg
    }

    /// Files named by the inputs' folders and globs that are not read, with why.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// Rate deck rows that could not be used.
    /// The rate deck, when one is given: its [`DeckSet::identity`] and
    /// [`DeckSet::converters`]' identity pin what priced the run.
    pub fn decks(&self) -> Option<&DeckSet> {
        self.decks.as_ref()
    }

    pub fn deck_issues(&self) -> &[DeckIssue] {
        self.decks.as_ref().map_or(&[], |d| &d.issues)
    }

    /// Runs the stages on a pool of the configured threads and commits the output.
    /// Errors (nothing committed): the output folder refused or busy, an unreadable input, a
    /// failed write, counts that do not balance.
    pub fn run(&self) -> anyhow::Result<RunOutcome> {
        self.pool()?.install(|| self.execute())
    }

    /// A pool of the configured threads.
    fn pool(&self) -> anyhow::Result<rayon::ThreadPool> {
        rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            // A worker waiting on one file's parse tasks runs other files' reads on its own
            // stack; debug builds' large frames need more than the default 2 MiB for that.
            .stack_size(32 << 20)
            .build()
            .context("starting the worker threads")
    }

    /// The input files found, in the order a run reads and reports them.
    pub fn files(&self) -> &[InputFile] {
        &self.files
    }

    /// The stages, in order.
    fn execute(&self) -> anyhow::Result<RunOutcome> {
        let cfg = &self.cfg;
        let mut clock = Clock::new(self.discovered_ms);
        let staging = Staging::open(&cfg.out)?;
        let previous = Catalog::read(&cfg.out)?.unwrap_or_default();
        let definition = self.check_definition(&previous)?;
        let out = staging.data();
        let tables = Tables::new();
        // A merge reads partitions back from their Parquet files: with --format csv the legs
        // get one too.
        let legs_output = match (cfg.mode, cfg.output.format) {
            (Mode::Merge, Format::Csv) => Output {
                format: Format::Both,
                ..cfg.output
            },
            _ => cfg.output,
        };
        let merging = cfg.mode == Mode::Merge && !previous.is_empty();
        // The legs index, which a merge plans from and a run that keeps other partitions
        // carries over.
        let index = match cfg.mode.keeps_other_partitions() && !previous.is_empty() {
            true => previous.key_index(&cfg.out)?,
            false => KeyIndex::empty(),
        };

        // Read and parse, legs routed into buckets by partition.
        let spill = staging.spill();
        let input_bytes = pipeline::estimated_input_bytes(&self.files);
        let buckets = pipeline::bucket_count(input_bytes, cfg.memory);
        let chunk_bytes = cfg
            .chunk_size
            .unwrap_or_else(|| pipeline::chunk_bytes(buckets));
        let partitions = Arc::new(Partitions::new(buckets));
        let held = pipeline::parsed_budget(input_bytes, cfg.memory);
        let mut parsed = pipeline::Parsed::new(&spill, partitions.clone(), held, merging);
        let reject_log = Arc::new(RejectLog::create(staging.scratch("rejects.log"))?);
        let ingested = self.read(&parsed, partitions, chunk_bytes, reject_log.clone())?;
        clock.lap("2_read_parse");

        // Merge: the partitions the run rewrites, read back beside its legs.
        let mut merged = MergeCounts::default();
        let mut read_back = ReadBack::default();
        if let Some(seen) = parsed.seen() {
            read_back = self.read_back(&parsed, seen, &previous, &index)?;
            merged.partitions_read_back = read_back.partitions.len() as u64;
            merged.legs_read_back = read_back.legs;
        }
        let spilled = parsed.spilled();
        clock.lap("2b_read_back");

        // Deduplicate, price, reconcile and write the legs a bucket at a time; group calls.
        let settings = pipeline::Settings {
            decks: self.decks.as_ref(),
            rounding: cfg.rounding,
        };
        let builtin: Vec<Report> = self
            .reports
            .iter()
            .filter(|r| r.per_account_day)
            .cloned()
            .collect();
        let report_columns = reports::columns_named(&builtin, &tables.legs.columns);
        let grouped = pipeline::group(
            parsed,
            &spill,
            cfg.memory,
            &settings,
            &pipeline::LegsOut {
                dir: out,
                table: &tables.legs,
                output: &legs_output,
                report_columns: &report_columns,
            },
            &mut clock.stages,
            cfg.quiet,
        )?;
        clock.restart();

        // Interactions and reconciliation rows.
        let written = pipeline::write(
            &grouped,
            out,
            [&tables.calls, &tables.recon],
            &cfg.output,
            cfg.quiet,
        )?;
        clock.lap("7a_write_tables");

        // Reports, over the written legs and the other tables' buckets.
        let (mut results, mut shapes) = self.run_reports(&grouped, out)?;
        for (name, shape) in &mut shapes {
            // The files' columns, as the pipeline writes them.
            let t = [&tables.legs, &tables.calls, &tables.recon];
            if let Some(t) = t.iter().find(|t| t.name == name) {
                let present = t.columns.iter().filter(|c| shape.column(c).is_ok());
                *shape = shape.select(present.copied())?;
            }
        }
        if spill.exists() {
            std::fs::remove_dir_all(&spill)
                .with_context(|| format!("removing {}", spill.display()))?;
        }
        clock.lap("6_reports");

        // Reports' files and the rejects.
        let mut outputs: Vec<String> = [
            CATALOG_DIR,
            LEGS_TABLE,
            INTERACTIONS_TABLE,
            RECONCILIATION_TABLE,
        ]
        .map(str::to_owned)
        .to_vec();
        let Written { calls, recon } = written;
        let interactions_count: u64 = calls.iter().map(|p| p.rows).sum();
        let mut parts = grouped.legs.clone();
        let legs_parts = parts.len();
        parts.extend(calls);
        parts.extend(recon);
        // summary.html's accounts table compares recorded and derived money on every account,
        // deck or not: it reads reconciliation_daily before the rows of zeros are dropped.
        let mut recon_daily_all = None;
        // The reports are written a day at a time: each day the run rewrites keeps the
        // committed rows of the accounts it leaves alone.
        let replaced: HashSet<(String, Option<String>)> = grouped
            .legs
            .iter()
            .chain(&read_back.partitions)
            .map(|p| (p.account_id.clone(), p.date.clone()))
            .collect();
        // The days whose report files this run rewrites: those of the partitions it rewrites,
        // and any other a report gives rows to.
        let mut report_days: BTreeSet<Option<String>> =
            replaced.iter().map(|(_, d)| d.clone()).collect();
        for (_, df) in &results {
            if by_account_and_day(df) {
                let dates: BTreeSet<Option<i32>> =
                    df.column(DATE)?.date()?.physical().iter().collect();
                report_days.extend(dates.into_iter().map(|d| d.map(format_date)));
            }
        }
        // A dataset before format 4 has its reports and legs files rewritten: every partition.
        let migrating = cfg.mode.keeps_other_partitions() && previous.reports_by_account_day();
        let every = match migrating {
            true => previous.all_partitions(&cfg.out)?,
            false => Vec::new(),
        };
        let old_reports = self.report_partitions(&previous, &report_days, migrating, &every)?;
        self.upgrade_legs_files(&every, &replaced, out, &tables.legs, &legs_output)?;
        let mut report_superseded = Vec::new();
        let mut by_day = |table: &str, df: Option<&DataFrame>, columns: Vec<&str>| {
            let carry = Carry {
                from: &cfg.out,
                old: old_reports.iter().filter(|p| p.table == table).collect(),
                replaced: &replaced,
            };
            let table = Table {
                name: table,
                columns,
                order: vec![],
            };
            let w = write_by_day(df, out, &table, &legs_output, &carry)?;
            report_superseded.extend(w.superseded);
            anyhow::Ok(w.partitions)
        };
        for (r, df) in &mut results {
            if self.decks.is_none() {
                if r.name == reports::RECONCILIATION_DAILY {
                    recon_daily_all = Some(df.clone());
                }
                *df = reports::without_deck(&r.name, df)?;
            }
            if by_account_and_day(df) {
                let columns = df
                    .get_column_names()
                    .into_iter()
                    .map(|c| c.as_str())
                    .filter(|c| *c != ACCOUNT_ID && *c != DATE)
                    .collect();
                parts.extend(by_day(&r.name, Some(df), columns)?);
                outputs.push(r.name.clone());
                shapes.push((r.name.clone(), df.clear()));
            } else {
                write_report(df, out, &r.name, &cfg.output, &mut outputs)?;
            }
        }
        // A report of earlier runs that this one did not compute: its rewritten accounts'
        // rows go, the others' stay.
        let computed: BTreeSet<&str> = results.iter().map(|(r, _)| r.name.as_str()).collect();
        let others: BTreeSet<&str> = old_reports
            .iter()
            .map(|p| p.table.as_str())
            .filter(|t| !computed.contains(t))
            .collect();
        for table in others {
            parts.extend(by_day(table, None, vec![])?);
        }
        let Ingested {
            rejects: unlogged,
            records_read,
            files: input_stats,
            ledgers,
        } = ingested;
        // The ledgers, a file a day, merged with the dataset's as the mode says; a dataset
        // without any has the table's empty file.
        outputs.push(LEDGERS_TABLE.to_owned());
        shapes.push((LEDGERS_TABLE.to_owned(), ledgers.clear()));
        let ledgers_written = match ledgers.height() {
            0 => LedgersWritten::default(),
            _ => self.write_ledgers(ledgers, &previous, out, &legs_output)?,
        };
        let ledger_counts = ledgers_written.counts.clone();
        // What KAZOO debited against the legs, for the account-days the run's legs and
        // ledgers reach.
        let keeps = cfg.mode.keeps_other_partitions() && !previous.is_empty();
        let empty = Catalog::default();
        let scope = ledger_reconciliation::Scope {
            committed: &cfg.out,
            staged: out,
            previous: if keeps { &previous } else { &empty },
            rebuild: keeps
                && !previous
                    .outputs
                    .iter()
                    .any(|o| o == ledger_reconciliation::LEDGER_RECONCILIATION),
            legs: &grouped.legs,
            legs_replaced: &replaced,
            ledgers: &ledgers_written.partitions,
            ledgers_changed: &ledgers_written.changed,
        };
        clock.lap("7b_write_reports");
        let checked = ledger_reconciliation::write(&scope, &tables.legs.columns, &legs_output)?;
        clock.lap("7b_ledger_reconciliation");
        parts.extend(ledgers_written.partitions);
        report_superseded.extend(ledgers_written.superseded);
        parts.extend(checked.partitions);
        report_superseded.extend(checked.superseded);
        for (name, shape) in checked.shapes {
            outputs.push(name.clone());
            shapes.push((name, shape));
        }
        let recomputed: HashSet<(String, String, Option<String>)> = checked
            .recomputed
            .iter()
            .flat_map(|(a, d)| {
                ledger_reconciliation::TABLES
                    .iter()
                    .map(move |(t, _)| ((*t).to_owned(), a.clone(), d.clone()))
            })
            .collect();
        let reject_log = Arc::into_inner(reject_log).context("the rejects log is in use")?;
        reject_log.push(&mut { unlogged })?;
        let rejects = reject_log.finish(&out.join(REJECTS_FILE))?;
        clock.lap("7b_write_reports");

        // The counts, summary.html, and the manifest with the folder's history.
        let by_reason = rejects.by_code.clone();
        merged.legs_kept = merged
            .legs_read_back
            .saturating_sub(grouped.dedup.dataset_legs_replaced);
        let mut counts = Counts::new(
            records_read,
            &parts[..legs_parts],
            merged.legs_kept,
            by_reason,
            grouped.dedup.clone(),
            ledger_counts,
        );
        unbalance_for_tests(&mut counts);
        // Nothing is committed unless every record is accounted for.
        if !counts.balanced {
            bail!(
                "internal error: the counts do not balance (read {}, written {}, rejected {}, duplicates {}); nothing was committed and {} is as it was",
                counts.records_read,
                counts.legs_written,
                counts.rejected,
                counts.dedup.duplicates_dropped,
                cfg.out.display()
            );
        }
        let partial_inputs = partial_inputs(&rejects.partial);
        if cfg.strict && !partial_inputs.is_empty() {
            let files: Vec<String> = partial_inputs
                .iter()
                .map(|p| format!("{} ({})", p.file, p.reason))
                .collect();
            bail!(
                "--strict: {} input file(s) could not be read to their end, so nothing was committed and {} is as it was: {}",
                files.len(),
                cfg.out.display(),
                files.join("; ")
            );
        }
        let skipped_documents: u64 = input_stats
            .iter()
            .flat_map(|f| f.skipped_documents.values())
            .sum();
        if let Some(why) = too_many_rejects(&counts, skipped_documents, cfg.max_rejects) {
            let samples = first_rejects(&out.join(REJECTS_FILE), 3);
            let mut reasons: Vec<(&&str, &u64)> = counts.rejected_by_reason.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let reasons: Vec<String> = reasons
                .iter()
                .take(3)
                .map(|(code, n)| format!("{code} {n}"))
                .collect();
            let mut files: Vec<&crate::ingest::FileStats> =
                input_stats.iter().filter(|f| f.rejected > 0).collect();
            files.sort_by_key(|f| std::cmp::Reverse(f.rejected));
            let files: Vec<String> = files
                .iter()
                .take(3)
                .map(|f| format!("{} ({} of {})", f.input.display, f.rejected, f.records))
                .collect();
            return Err(TooManyRejects(format!(
                "{why}; nothing was committed and {} is as it was. Top reasons: {}. Files: {}. First rejects:\n  {}",
                cfg.out.display(),
                reasons.join(", "),
                files.join(", "),
                samples.join("\n  ")
            ))
            .into());
        }
        let totals = Totals::of(&parts[..legs_parts])?;
        let has_summary = results.iter().any(|(r, _)| r.name == DAILY_REPORT);
        if has_summary {
            outputs.push(SUMMARY_HTML.to_owned());
        }
        outputs.extend([REJECTS_FILE.to_owned(), MANIFEST_FILE.to_owned()]);
        // Every partition read back is rewritten, in every table, even where none of its legs
        // is left (a leg whose newer copy lies on another day): its old files go. Only the
        // legs' partitions and those of the tables made from them name account-and-day folders
        // to replace: a report's or a ledger's rows may fall on an account and day whose legs
        // the run leaves alone (their day files are replaced through `superseded`).
        let keys: BTreeSet<(String, String)> = parts
            .iter()
            .filter(|p| Grain::of(&p.table) == Grain::AccountDay)
            .chain(&read_back.partitions)
            .map(partition_dirs)
            .collect();
        let changes = read_back.changes(&parts[..legs_parts]);
        merged.partitions_emptied = changes.emptied;
        merged.past_days_changed = changes.past_days;
        let run_partitions: Vec<(String, Option<String>)> = parts[..legs_parts]
            .iter()
            .map(|p| (p.account_id.clone(), p.date.clone()))
            .collect();
        // The catalog after this run: the day files and the legs index it touches.
        let (days, emptied_days) = self.update_catalog(
            out,
            &previous,
            &index,
            &parts,
            &read_back.partitions,
            &keys,
            &recomputed,
            &grouped.key_rows,
        )?;
        clock.lap("7c_catalog");
        // A table with no partition in the folder is one empty file with its schema.
        let present: BTreeSet<String> = days
            .values()
            .flat_map(|m| {
                m.tables
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(|(t, _)| t.clone())
            })
            .collect();
        write_empty_tables(out, &shapes, &present, &cfg.output)?;
        parts.sort_by(|a, b| {
            (&a.table, &a.account_id, &a.date).cmp(&(&b.table, &b.account_id, &b.date))
        });
        // Format 2's month files, when this run wrote every day's instead.
        let mut previous_superseded = match cfg.mode.keeps_other_partitions() {
            true => previous.superseded_files(&cfg.out),
            false => Vec::new(),
        };
        previous_superseded.extend(emptied_days);
        previous_superseded.extend(report_superseded);
        let earlier_outputs = previous_outputs(&previous.outputs);
        let mut entries: BTreeSet<String> = OUTPUTS.iter().map(|s| (*s).to_owned()).collect();
        entries.extend(earlier_outputs.iter().cloned());
        entries.extend(outputs.iter().cloned());
        for name in earlier_outputs {
            if cfg.mode.keeps_other_partitions()
                && !outputs.contains(&name)
                && cfg.out.join(&name).is_dir()
            {
                outputs.push(name);
            }
        }
        let mut runs = previous.runs;
        runs.push(RunRecord::new(
            runs.last().map_or(1, |r| r.run + 1),
            cfg.mode,
            &counts,
            run_partitions.into_iter(),
        ));
        if runs.len() > RUNS_KEPT {
            runs.drain(..runs.len() - RUNS_KEPT);
        }
        let manifest = Manifest {
            format_version: crate::dataset::FORMAT_VERSION,
            rerate_version: env!("CARGO_PKG_VERSION"),
            options: self.options(),
            inputs: input_stats,
            skipped_files: self.skipped.clone(),
            counts,
            totals,
            interactions: interactions_count,
            reconciliation: grouped.recon_summary.clone(),
            rate_deck_issues: self.deck_issues().to_vec(),
            mode: cfg.mode,
            definition,
            partial_inputs,
            merge: merged,
            finished_interrupted_commit: staging.recovered,
            outputs,
            dataset: Dataset::of_shards(&days)?,
            keys_hash: KEYS_HASH,
            days,
            partitions_written: parts,
            runs,
            memory: serde_json::json!({
                "budget_bytes": cfg.memory,
                "buckets": buckets,
                "parse_task_bytes": chunk_bytes,
                "spilled": spilled || grouped.spilled(),
                "legs_spilled": spilled,
                "cross_bucket_call_ids": grouped.cross_bucket_call_ids,
                "buckets_split": grouped.buckets_split,
                "largest_bucket_legs": grouped.largest_bucket_legs,
                "peak_rss_bytes": pipeline::peak_rss_bytes(),
            }),
            elapsed_ms: self.started.elapsed().as_millis() as u64,
            stages_ms: clock.stages,
        };
        // summary.html, from the manifest and the daily and reconciliation_daily reports.
        let report = |name: &str| {
            results
                .iter()
                .find(|(r, _)| r.name == name)
                .map(|(_, df)| df)
        };
        if let Some(daily) = report(DAILY_REPORT).filter(|_| has_summary) {
            let recon_daily = recon_daily_all
                .as_ref()
                .or_else(|| report(reports::RECONCILIATION_DAILY));
            let html = summary::render(&manifest, daily, recon_daily, &self.labels)
                .context("rendering summary.html")?;
            let path = out.join(SUMMARY_HTML);
            std::fs::write(&path, html).with_context(|| format!("writing {}", path.display()))?;
        }
        manifest.write(out)?;

        // Commit.
        let journal = commit::plan(
            &cfg.out,
            &staging.staged_files()?,
            cfg.mode,
            &entries,
            &keys,
            &previous_superseded,
        )?;
        staging.commit(journal)?;
        Ok(RunOutcome {
            manifest,
            rejects_path: cfg.out.join(REJECTS_FILE),
        })
    }

    /// Reads every input into `parsed`'s buckets.
    fn read(
        &self,
        parsed: &pipeline::Parsed,
        partitions: Arc<Partitions>,
        chunk_bytes: usize,
        rejects: Arc<RejectLog>,
    ) -> anyhow::Result<Ingested> {
        let total_bytes: u64 = self.files.iter().map(|f| f.bytes).sum();
        let progress = Progress::new(total_bytes, self.cfg.quiet);
        let opts = IngestOptions {
            tz: self.cfg.tz,
            chunk_bytes,
            max_record: self.cfg.max_record_size,
            partitions,
            rejects: Some(rejects),
        };
        let ingested = ingest(&self.files, &opts, &progress, &|b, df| parsed.sink(b, df))?;
        progress.finish();
        Ok(ingested)
    }

    /// Reads back the dataset's partitions the run must rewrite (see [`crate::merge`]) into
    /// `parsed`'s buckets.
    fn read_back(
        &self,
        parsed: &pipeline::Parsed,
        seen: merge::Seen,
        previous: &Catalog,
        index: &KeyIndex,
    ) -> anyhow::Result<ReadBack> {
        let first_day = seen.first_day();
        let (start, calls, keys) = seen.into_parts();
        let joined = index.closure(&start, calls, keys);
        let cut = previous.cut();
        let shards: BTreeSet<String> = joined
            .iter()
            .map(|(_, d)| cut.key(d.map(format_date).as_deref()))
            .collect();
        let wanted: HashSet<&Partition> = joined.iter().collect();
        // A dataset written before one of the built-in reports (or a column of the legs) existed
        // is rewritten whole, once: every partition read back, so it then holds what one run
        // over every night gives, the new report on every day.
        let rebuild = self.missing_reports(previous);
        let touched: Vec<PartitionStats> = match rebuild.is_empty() {
            true => previous.partitions_in(&self.cfg.out, &shards)?,
            false => previous.all_partitions(&self.cfg.out)?,
        }
        .into_iter()
        .filter(|p| {
            p.table == LEGS_TABLE && (!rebuild.is_empty() || wanted.contains(&partition_key(p)))
        })
        .collect();
        if !rebuild.is_empty() && !self.cfg.quiet {
            eprintln!(
                "rerate: {} has no {} (written by an older rerate): every partition is rewritten once ({} of them)",
                self.cfg.out.display(),
                rebuild.join(", "),
                touched.len()
            );
        }
        if rebuild.is_empty() && touched.len() != joined.len() {
            bail!(
                "{}: the legs index lists {} partitions this run must rewrite, the partition list {}; the catalog is inconsistent (rerate check {} says more); rebuild the dataset with --mode replace-all",
                self.cfg.out.join(KEYS_DIR).display(),
                joined.len(),
                touched.len(),
                self.cfg.out.display()
            );
        }
        let schema = concat_frames(vec![])?.schema().as_ref().clone();
        let mut legs = 0;
        for p in &touched {
            let df = merge::read_back(&self.cfg.out, p, &schema)?;
            if df.height() as u64 != p.rows {
                bail!(
                    "{}: holds {} legs, the catalog says {}: the file or the catalog was changed outside rerate (rerate check {} says more); nothing was changed. Restore the folder from a backup, or rebuild it with --mode replace-all",
                    merge::file(&self.cfg.out, p).display(),
                    df.height(),
                    p.rows,
                    self.cfg.out.display()
                );
            }
            legs += df.height() as u64;
            parsed.sink_dataset(df)?;
        }
        Ok(ReadBack {
            partitions: touched,
            legs,
            first_day,
        })
    }

    /// The built-in reports `previous` (a dataset) has never had: an older rerate wrote it.
    fn missing_reports(&self, previous: &Catalog) -> Vec<String> {
        self.reports
            .iter()
            .filter(|r| r.per_account_day && !previous.outputs.contains(&r.name))
            .map(|r| r.name.clone())
            .collect()
    }

    /// Writes this run's ledgers (`run`, [`crate::ingest::ledger::frame`]'s columns) under
    /// `out` as the `ledgers` table's day files: under `--mode merge` each day they fall on
    /// becomes the union of its committed rows and theirs, one row per ledger
    /// ([`ledgers::dedup`]; the other accounts' rows, already one per ledger, go through
    /// unchanged); under `overwrite-partitions` their rows alone, the other accounts' rows of
    /// those days carried; under `replace-all` theirs alone. Returns the catalog's entries
    /// written, the folders superseded, the counts and the account-days whose rows changed.
    fn write_ledgers(
        &self,
        run: DataFrame,
        previous: &Catalog,
        out: &Path,
        output: &Output,
    ) -> anyhow::Result<LedgersWritten> {
        let cfg = &self.cfg;
        let mut replaced = ledgers::partitions(&run)?;
        let run_partitions = replaced.clone();
        let keep = cfg.mode.keeps_other_partitions() && !previous.is_empty();
        let old: Vec<PartitionStats> = match keep {
            false => vec![],
            true => {
                let cut = previous.cut();
                let days: BTreeSet<Option<String>> =
                    replaced.iter().map(|(_, d)| d.clone()).collect();
                let keys = days.iter().map(|d| cut.key(d.as_deref())).collect();
                previous
                    .partitions_in(&cfg.out, &keys)?
                    .into_iter()
                    .filter(|p| p.table == LEDGERS_TABLE && days.contains(&p.date))
                    .collect()
            }
        };
        let old: Vec<&PartitionStats> = old.iter().collect();
        let committed = match cfg.mode {
            Mode::Merge => {
                // The days are read once, whole, and written whole: nothing left to carry.
                let (rows, held) = ledgers::read_committed(&cfg.out, &old)?;
                replaced.extend(held);
                rows
            }
            _ => crate::ingest::ledger::frame(vec![])?,
        };
        let (rows, counts, changed) = ledgers::dedup(committed, run)?;
        let carry = Carry {
            from: &cfg.out,
            old,
            replaced: &replaced,
        };
        let w = write_by_day(Some(&rows), out, &ledgers::table(), output, &carry)?;
        Ok(LedgersWritten {
            partitions: w.partitions,
            superseded: w.superseded,
            counts,
            // Outside a merge the run's account-days hold its rows alone.
            changed: match cfg.mode {
                Mode::Merge => changed,
                _ => run_partitions,
            },
        })
    }

    /// The previous catalog's entries of the [`Grain::Day`] tables (the reports) on `days`, the
    /// days whose report files this run rewrites: when `migrating` (the reports still in
    /// account-and-day folders, before format 4), all of them, from `every`. None when the run
    /// replaces all.
    fn report_partitions(
        &self,
        previous: &Catalog,
        days: &BTreeSet<Option<String>>,
        migrating: bool,
        every: &[PartitionStats],
    ) -> anyhow::Result<Vec<PartitionStats>> {
        if !self.cfg.mode.keeps_other_partitions() || previous.is_empty() {
            return Ok(vec![]);
        }
        let all = match migrating {
            true => every.to_vec(),
            false => {
                let cut = previous.cut();
                let keys = days.iter().map(|d| cut.key(d.as_deref()));
                previous
                    .partitions_in(&self.cfg.out, &keys.collect())?
                    .into_iter()
                    .filter(|p| days.contains(&p.date))
                    .collect()
            }
        };
        // The ledgers are a file a day too, but read, not made from the legs (see
        // `write_ledgers`).
        Ok(all
            .into_iter()
            .filter(|p| Grain::of(&p.table) == Grain::Day && made_from_legs(&p.table))
            .collect())
    }

    /// Before format 4 a legs file held no parser's columns (`parse_flags`, `exported_*`): a
    /// run keeping such a dataset (`every`: its partitions; empty otherwise) writes every legs
    /// file it does not rewrite again under `out` (the staged output) with them added
    /// ([`merge::parsed_columns_of_format_3`]), so every legs file has the same columns.
    /// Values, rows and the catalog's sums are unchanged.
    fn upgrade_legs_files(
        &self,
        every: &[PartitionStats],
        replaced: &HashSet<(String, Option<String>)>,
        out: &Path,
        legs: &Table,
        output: &Output,
    ) -> anyhow::Result<()> {
        use rayon::prelude::*;
        let parsed = concat_frames(vec![])?.schema().as_ref().clone();
        let kept: Vec<&PartitionStats> = every
            .iter()
            .filter(|p| {
                p.table == LEGS_TABLE && !replaced.contains(&(p.account_id.clone(), p.date.clone()))
            })
            .collect();
        kept.par_iter().try_for_each(|p| -> anyhow::Result<()> {
            let (file, mut df) = crate::write::read_rows(&self.cfg.out.join(&p.path))?;
            if df.column(crate::schema::PARSE_FLAGS).is_ok() {
                return Ok(());
            }
            let why = |e: polars::prelude::PolarsError| anyhow::anyhow!("{}: {e}", file.display());
            merge::parsed_columns_of_format_3(&mut df).map_err(why)?;
            // A column an older release did not write (`source_offset`) is null.
            let n = df.height();
            let cols = legs.columns.iter().map(|c| match df.column(c) {
                Ok(c) => c.clone(),
                Err(_) => {
                    let dtype = parsed.get(c).cloned().unwrap_or(DataType::String);
                    polars::prelude::Column::full_null((*c).into(), n, &dtype)
                }
            });
            let mut df = DataFrame::new(n, cols.collect()).map_err(why)?;
            let dir = out.join(&p.path);
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            write_files(&mut df, &dir, "part-0", output)?;
            Ok(())
        })
    }

    /// Writes the catalog's files this run changes under `out` (the staged output): the day
    /// files of the partition list that hold a partition it wrote or rewrote (`parts`, all
    /// tables; `read_back`, the legs partitions a merge read back; `keys`, their folders), and
    /// the legs index: the previous one without the rewritten partitions, with this run's legs
    /// (`key_rows`); `recomputed`: the (table, account, day) entries a stage recomputed, which
    /// go whether or not it wrote rows there. A catalog not cut by day (formats 0 to 2) has
    /// every day's files written.
    /// Returns the summary of every day now in the folder, and the catalog files of the days
    /// left without partitions, which the commit removes.
    #[allow(clippy::too_many_arguments)]
    fn update_catalog(
        &self,
        out: &Path,
        previous: &Catalog,
        index: &KeyIndex,
        parts: &[PartitionStats],
        read_back: &[PartitionStats],
        keys: &BTreeSet<(String, String)>,
        recomputed: &HashSet<(String, String, Option<String>)>,
        key_rows: &[DataFrame],
    ) -> anyhow::Result<(BTreeMap<String, ShardSummary>, Vec<String>)> {
        let keeps = self.cfg.mode.keeps_other_partitions();
        let day = |p: &PartitionStats| Cut::Day.key(p.date.as_deref());
        let mut touched: BTreeSet<String> = parts.iter().chain(read_back).map(day).collect();
        let every_day = previous.is_legacy() || previous.reports_by_account_day();
        let (mut summary, old) = match (keeps, every_day) {
            (true, false) => (
                previous.shards(),
                previous.partitions_in(&self.cfg.out, &touched)?,
            ),
            // Every partition, and so every day, is written anew.
            (true, true) => (BTreeMap::new(), previous.all_partitions(&self.cfg.out)?),
            (false, _) => (BTreeMap::new(), vec![]),
        };
        touched.extend(old.iter().map(day));
        let mut by_day: BTreeMap<String, Vec<PartitionStats>> =
            touched.iter().map(|k| (k.clone(), vec![])).collect();
        // A report's entries name its day's file (a dataset before format 4 named the
        // account's folder).
        // An entry this run wrote again (a report's rows for an account and day without legs
        // too) replaces the old one.
        let written: HashSet<(&str, &str, Option<&str>)> = parts
            .iter()
            .map(|p| (p.table.as_str(), p.account_id.as_str(), p.date.as_deref()))
            .collect();
        // A ledgers entry goes only when this run wrote the account's ledgers of that day
        // again (`written`).
        let kept = old
            .into_iter()
            .filter(|p| !made_from_legs(&p.table) || !keys.contains(&partition_dirs(p)))
            .filter(|p| {
                !written.contains(&(p.table.as_str(), p.account_id.as_str(), p.date.as_deref()))
            })
            // The ledger reconciliation's recomputed account-days go, rows or not.
            .filter(|p| {
                !recomputed.contains(&(p.table.clone(), p.account_id.clone(), p.date.clone()))
            })
            .map(|mut p| {
                p.path = Grain::of(&p.table).folder(&p.table, &p.account_id, p.date.as_deref());
                p
            });
        for p in kept.chain(parts.iter().cloned()) {
            by_day.entry(day(&p)).or_default().push(p);
        }
        // A day left without partitions (its legs moved to other days) has no files: those it
        // had go at the commit.
        let mut emptied = Vec::new();
        for (k, ps) in &by_day {
            if ps.is_empty() {
                summary.remove(k);
                touched.remove(k);
                if !previous.is_legacy() {
                    emptied.extend([
                        Cut::Day.file(shards::PARTITIONS_DIR, k),
                        crate::dataset::index::keys_file(Cut::Day, k),
                    ]);
                }
                continue;
            }
            shards::write(out, k, ps)?;
            summary.insert(k.clone(), ShardSummary::of(ps)?);
        }
        // The index lists legs: the legs partitions written replace theirs (a report's or a
        // ledger's rows on an account and day say nothing about its legs).
        let rewritten: HashSet<Partition> = parts
            .iter()
            .filter(|p| p.table == LEGS_TABLE)
            .chain(read_back)
            .map(partition_key)
            .collect();
        index.write(&self.cfg.out, out, &touched, keeps, &rewritten, key_rows)?;
        Ok((summary, emptied))
    }

    /// The dataset's definition after this run: this run's, which must agree with the one the
    /// dataset was built with unless the run replaces it all.
    fn check_definition(&self, previous: &Catalog) -> anyhow::Result<Definition> {
        let mut kept = previous.definition.clone();
        if self.cfg.mode == Mode::ReplaceAll || previous.is_empty() {
            return Ok(self.definition.clone());
        }
        if let Some((flag, old, new)) = definition_change(&kept, &self.definition) {
            let v = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_owned());
            let fix = match &old {
                Some(o) => format!("Run with {flag} {o}"),
                None => format!("Run without {flag}"),
            };
            bail!(
                "{} was built with {flag} {}, and this run asks for {flag} {}; a dataset keeps the options that decide a leg's partition or cost. {fix} to add to it, or rebuild it whole from all its exports with --mode replace-all",
                self.cfg.out.display(),
                v(&old),
                v(&new),
            );
        }
        for (flag, value) in &self.definition {
            kept.entry(flag.clone()).or_insert_with(|| value.clone());
        }
        Ok(kept)
    }

    /// Every report, over the written legs and the other tables' buckets.
    fn run_reports<'r>(
        &'r self,
        grouped: &Grouped,
        out: &Path,
    ) -> anyhow::Result<(Vec<(&'r Report, DataFrame)>, TableShapes)> {
        // The built-in reports read the columns they name, kept in memory as the legs were
        // written; a user's report may read any column, from the written files.
        let mut tables = [
            (LEGS_TABLE, grouped.report_legs()?),
            (INTERACTIONS_TABLE, grouped.calls.scan()?),
            (RECONCILIATION_TABLE, grouped.recon.scan()?),
        ];
        // A per-account-day report holds about 0.1 KB a leg: groups of accounts of up to a leg
        // per KiB of the budget keep it under a tenth of the budget whatever the input's size.
        let groups = reports::account_groups(
            grouped.legs.iter().map(|p| (p.account_id.as_str(), p.rows)),
            (self.cfg.memory / 1024) as u64,
        );
        let mut results = Vec::with_capacity(self.reports.len());
        for r in self.reports.iter().filter(|r| r.per_account_day) {
            results.push((r, reports::run_by_accounts(&tables, r, &groups)?));
        }
        tables[0].1 = grouped.legs_scan(out, LEGS_TABLE)?;
        for r in self.reports.iter().filter(|r| !r.per_account_day) {
            results.push((r, reports::run_by_accounts(&tables, r, &groups)?));
        }
        // The tables' columns, for a table written empty (the legs only when there is none).
        let mut shapes = Vec::with_capacity(tables.len());
        for (name, lf) in tables {
            let schema = match (name, grouped.legs_shape()) {
                (LEGS_TABLE, Some(empty)) => empty.schema().clone(),
                (LEGS_TABLE, None) => continue,
                _ => lf.clone().collect_schema()?,
            };
            shapes.push((name.to_owned(), DataFrame::empty_with_schema(&schema)));
        }
        Ok((results, shapes))
    }

    /// The options as the manifest records them.
    fn options(&self) -> serde_json::Value {
        let c = &self.cfg;
        let path = |p: &Option<PathBuf>| p.as_ref().map(|q| q.display().to_string());
        serde_json::json!({
            "inputs": c.inputs,
            "out": c.out.display().to_string(),
            "mode": c.mode,
            "format": c.output.format,
            "csv_raw": c.output.csv_raw,
            "tz": c.tz.name(),
            "rounding": c.rounding,
            "threads": self.threads,
            "chunk_size": c.chunk_size,
            "max_record_size": c.max_record_size,
            "memory": c.memory,
            "queries": path(&c.queries),
            "rates": path(&c.rates),
            "ratedeck_map": path(&c.ratedeck_map),
            "rate_sort": c.hotornot.sort,
            "hotornot": c.hotornot,
            "e164_converters": self.decks.as_ref().map(|d| serde_json::json!({
                "source": d.converters().source,
                "identity": d.converters().identity(),
            })),
            "rate_deck_identity": self.decks.as_ref().map(|d| d.identity()),
            "strict": c.strict,
            "max_rejects": c.max_rejects,
        })
    }
}

/// Tables by name, each as a frame with its columns (its rows are not used).
type TableShapes = Vec<(String, DataFrame)>;

/// The three tables the pipeline writes itself.
struct Tables {
    legs: Table<'static>,
    calls: Table<'static>,
    recon: Table<'static>,
}

impl Tables {
    fn new() -> Self {
        Tables {
            legs: Table {
                name: LEGS_TABLE,
                columns: leg_columns(),
                order: vec![START_TIME, CALL_ID],
            },
            calls: Table {
                name: INTERACTIONS_TABLE,
                columns: interactions::columns(),
                order: vec![START_TIME, INTERACTION_ID],
            },
            recon: Table {
                name: RECONCILIATION_TABLE,
                columns: reconcile::columns(),
                order: vec![START_TIME, CALL_ID, reconcile::PARTY],
            },
        }
    }
}

/// Stage timings: each lap adds the time since the previous one to a stage.
struct Clock {
    stages: Stages,
    lap: Instant,
}

impl Clock {
    fn new(discover_ms: u64) -> Self {
        Clock {
            stages: BTreeMap::from([("1_discover", discover_ms)]),
            lap: Instant::now(),
        }
    }

    fn lap(&mut self, name: &'static str) {
        pipeline::add(&mut self.stages, name, self.lap);
        self.restart();
    }

    /// Starts the next lap now (after a stage that timed itself).
    fn restart(&mut self) {
        self.lap = Instant::now();
    }
}

/// Whether a report's rows are per account and day: it has `account_id` (text) and `date` (a
/// DATE) columns, and is then written a file a day ([`Grain::Day`]).
fn by_account_and_day(df: &DataFrame) -> bool {
    df.column(ACCOUNT_ID)
        .is_ok_and(|c| c.dtype() == &DataType::String)
        && df.column(DATE).is_ok_and(|c| c.dtype() == &DataType::Date)
}

/// Writes a report that is not per account and day as `DIR/<name>.parquet` / `.csv`.
fn write_report(
    df: &mut DataFrame,
    out: &Path,
    name: &str,
    output: &Output,
    outputs: &mut Vec<String>,
) -> anyhow::Result<()> {
    write_files(df, out, name, output)?;
    for (on, ext) in [
        (output.format != Format::Csv, "parquet"),
        (output.format != Format::Parquet, "csv"),
    ] {
        if on {
            outputs.push(format!("{name}.{ext}"));
        }
    }
    Ok(())
}

/// The partition's folder names: `account_id=..`, `date=..`.
fn partition_dirs(p: &PartitionStats) -> (String, String) {
    (
        dir_name(ACCOUNT_ID, Some(&p.account_id)),
        dir_name(DATE, p.date.as_deref()),
    )
}

/// The ledgers a run wrote ([`Job::write_ledgers`]).
#[derive(Default)]
struct LedgersWritten {
    partitions: Vec<PartitionStats>,
    superseded: Vec<String>,
    counts: LedgerCounts,
    /// The account-days whose rows changed.
    changed: HashSet<(String, Option<String>)>,
}

/// The legs partitions a merge read back, as the dataset's catalog listed them.
#[derive(Default)]
struct ReadBack {
    partitions: Vec<PartitionStats>,
    /// Their legs, as read.
    legs: u64,
    /// The earliest day of the run's own legs.
    first_day: Option<i32>,
}

/// What a merge changed in partitions it did not bring legs for.
struct Changes {
    emptied: Vec<(String, Option<String>)>,
    past_days: Vec<DayChange>,
}

impl ReadBack {
    /// `written`: the legs partitions the run wrote. Emptied: the partitions read back that are
    /// no longer written (each of their legs lost to a copy elsewhere). Past days: the
    /// partitions before the run's first day whose legs or money changed.
    fn changes(&self, written: &[PartitionStats]) -> Changes {
        let key = |p: &PartitionStats| (p.account_id.clone(), p.date.clone());
        let now: std::collections::HashMap<_, &PartitionStats> =
            written.iter().map(|p| (key(p), p)).collect();
        let mut emptied = Vec::new();
        let mut past_days = Vec::new();
        for before in &self.partitions {
            let after = now.get(&key(before)).copied();
            if after.is_none() {
                emptied.push(key(before));
            }
            let day = before.date.as_deref().and_then(parse_date);
            let past = matches!((day, self.first_day), (Some(d), Some(f)) if d < f);
            let change = DayChange::of(before, after);
            if past && change.changed() {
                past_days.push(change);
            }
        }
        emptied.sort();
        past_days.sort_by(|a, b| (&a.account_id, &a.date).cmp(&(&b.account_id, &b.date)));
        Changes { emptied, past_days }
    }
}

/// The options of `cfg` that decide a leg's partition or cost (see [`Definition`]); the rate
/// deck and account map by the SHA-256 of their bytes, the E.164 converters by their
/// [`E164Converters::identity`]. The rate choice's settings count only with a deck.
fn definition(cfg: &RunConfig, decks: Option<&DeckSet>) -> anyhow::Result<Definition> {
    let digest = |p: &Option<PathBuf>| -> anyhow::Result<Option<String>> {
        let Some(p) = p else { return Ok(None) };
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        Ok(Some(hex_digest(Sha256::new_with_prefix(&bytes))))
    };
    let name = |v: serde_json::Value| v.as_str().map(str::to_owned);
    Ok(Definition::from([
        ("--tz".to_owned(), Some(cfg.tz.name().to_owned())),
        (
            "--rounding".to_owned(),
            name(serde_json::json!(cfg.rounding)),
        ),
        ("--rates".to_owned(), digest(&cfg.rates)?),
        ("--ratedeck-map".to_owned(), digest(&cfg.ratedeck_map)?),
    ])
    .into_iter()
    .chain(deck_settings(cfg, decks))
    .collect())
}

/// The settings that choose a deck rate and fill in what it lacks, by flag; none without a deck.
fn deck_settings(
    cfg: &RunConfig,
    decks: Option<&DeckSet>,
) -> impl Iterator<Item = (String, Option<String>)> {
    let h = &cfg.hotornot;
    let text = |v: serde_json::Value| Some(v.as_str().map_or_else(|| v.to_string(), str::to_owned));
    let with_deck = decks.is_some();
    [
        ("--rate-sort", text(serde_json::json!(h.sort))),
        ("--hotornot-filter-list", text(serde_json::json!(h.filters))),
        (
            "--default-rate-minimum",
            Some(h.default_minimum.to_string()),
        ),
        (
            "--default-rate-increment",
            Some(h.default_increment.to_string()),
        ),
        (
            "--default-rate-nocharge-time",
            Some(h.default_nocharge.to_string()),
        ),
        ("--rate-version", h.rate_version.clone()),
        (
            "--e164-converters",
            decks.map(|d| d.converters().identity()),
        ),
    ]
    .into_iter()
    .map(move |(flag, v)| (flag.to_owned(), v.filter(|_| with_deck)))
}

/// The input files that could not be read to their end, from their rejects.
fn partial_inputs(rejects: &[crate::ingest::Reject]) -> Vec<PartialInput> {
    let mut v: Vec<PartialInput> = rejects
        .iter()
        .filter(|r| PARTIAL_CODES.contains(&r.code))
        .map(|r| PartialInput {
            file: r.source.to_string(),
            code: r.code,
            reason: r.reason.clone(),
        })
        .collect();
    v.sort_by(|a, b| a.file.cmp(&b.file));
    v
}

/// Test hook, honoured only in debug builds: `RERATE_TEST_UNBALANCE=1` makes the counts not
/// balance, to test that such a run commits nothing.
fn unbalance_for_tests(counts: &mut Counts) {
    if cfg!(debug_assertions) && std::env::var_os("RERATE_TEST_UNBALANCE").is_some() {
        counts.records_read += 1;
        counts.balanced = false;
    }
}
