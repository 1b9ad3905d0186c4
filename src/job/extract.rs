//! `rerate extract`: the per-record half of a run, for engines that do the cross-record half
//! themselves (`spark/rerate_spark.py` calls it once per input file inside Spark's executors).
//!
//! It reads its inputs with the run's own reader (every shape, gzip/zstd, CSV exports, the
//! record size limit), prices each leg (rate deck, KAZOO's formula under `--rounding`) and
//! reconciles it, exactly as [`Job::run`] does before deduplication, and writes to a folder:
//!
//! - `legs.arrows`: an Arrow IPC stream of the legs, one per record read, copies included:
//!   [`leg_columns`], then `account_id` (null when the leg has none; a run writes it to
//!   `_unassigned`) and `date` (the start's day in `--tz`, null without a start), then
//!   [`CUSTOMER_CLASS`] and [`RESELLER_CLASS`]: the `class` of the leg's reconciliation row of
//!   each party, null when it has none (every other column of a reconciliation row is the
//!   leg's: see [`reconcile::columns`]);
//! - `ledgers.arrows`: an Arrow IPC stream of the ledgers read (the `ledgers` table's columns,
//!   then `account_id` and `date`), copies included, in the order read; see
//!   [`crate::ledgers`] for the rule that makes them one row each;
//! - `rejects.ndjson`: the rejects, as a run writes them, in file, line and record order;
//! - `stats.json`: `records_read`, `legs`, `ledgers`, per-file `inputs` (the manifest's entries),
//!   `rejected_by_reason` and `partial_inputs`.
//!
//! Every leg's columns depend on that leg alone, so deduplicating these legs by the rules of
//! [`crate::dedup`] and grouping them by [`crate::interactions`]' rules gives what a run writes.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use polars::prelude::*;
use polars_arrow::io::ipc::write::{StreamWriter, WriteOptions};

use super::{partial_inputs, Job};
use crate::ingest::rejects::RejectLog;
use crate::ingest::{concat_frames, ingest, IngestError, IngestOptions};
use crate::pipeline;
use crate::progress::Progress;
use crate::rate::{apply_deck, rate_frame};
use crate::reconcile;
use crate::schema::{leg_columns, ACCOUNT_ID, CLASS, DATE, PARTY, SOURCE_OFFSET};
use crate::spill::Partitions;

/// The files `rerate extract` writes into its folder.
pub(crate) const LEGS_STREAM: &str = "legs.arrows";
pub(crate) const LEDGERS_STREAM: &str = "ledgers.arrows";

/// The leg's customer reconciliation `class`, null when the leg has no such row.
pub(crate) const CUSTOMER_CLASS: &str = "reconciliation_class";
/// The same for the reseller's row.
pub(crate) const RESELLER_CLASS: &str = "reconciliation_reseller_class";
pub(crate) const STATS_FILE: &str = "stats.json";

/// What an extract read, as `stats.json` says it.
#[derive(Debug, serde::Serialize)]
pub struct ExtractStats {
    pub records_read: u64,
    pub legs: u64,
    /// Ledgers read (`ledgers.arrows`), copies included.
    pub ledgers: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    pub inputs: Vec<crate::ingest::FileStats>,
    pub partial_inputs: Vec<crate::write::manifest::PartialInput>,
}

/// An Arrow IPC stream being written.
struct Stream {
    w: StreamWriter<BufWriter<File>>,
    columns: Vec<&'static str>,
}

impl Stream {
    fn create(path: &Path, shape: &DataFrame, columns: Vec<&'static str>) -> anyhow::Result<Self> {
        let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = StreamWriter::new(
            BufWriter::with_capacity(1 << 20, file),
            WriteOptions { compression: None },
        );
        let schema = shape.select(columns.iter().copied())?.schema().clone();
        w.start(&schema.to_arrow(CompatLevel::oldest()), None)?;
        Ok(Stream { w, columns })
    }

    fn write(&mut self, df: &DataFrame) -> PolarsResult<()> {
        let mut df = df.select(self.columns.iter().copied())?;
        df.align_chunks();
        for batch in df.iter_chunks(CompatLevel::oldest(), false) {
            self.w.write(&batch, None)?;
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        self.w.finish()?;
        self.w.into_inner().flush()?;
        Ok(())
    }
}

/// Adds [`CUSTOMER_CLASS`] and [`RESELLER_CLASS`] to `legs` from their reconciliation rows
/// `recon` (one parse task's: `source_offset` names the leg, as they share one file).
fn add_classes(legs: &mut DataFrame, recon: &DataFrame) -> PolarsResult<()> {
    let mut by_offset: HashMap<i64, [Option<&str>; 2]> = HashMap::new();
    let offsets = recon.column(SOURCE_OFFSET)?.i64()?;
    let parties = recon.column(PARTY)?.str()?;
    let classes = recon.column(CLASS)?.str()?;
    for ((o, p), c) in offsets.iter().zip(parties.iter()).zip(classes.iter()) {
        let e = by_offset.entry(o.unwrap_or(-1)).or_default();
        e[usize::from(p == Some("reseller"))] = c;
    }
    let legs_offsets = legs.column(SOURCE_OFFSET)?.i64()?.clone();
    for (k, name) in [CUSTOMER_CLASS, RESELLER_CLASS].into_iter().enumerate() {
        let v: StringChunked = legs_offsets
            .iter()
            .map(|o| o.and_then(|o| by_offset.get(&o)).and_then(|e| e[k]))
            .collect();
        legs.with_column(v.with_name(name.into()).into_column())?;
    }
    Ok(())
}

impl Job {
    /// Reads every input, prices and reconciles each leg, and writes the folder described in
    /// the module's doc. Errors: an input that cannot be opened, a failed write.
    pub fn extract(&self, dir: &Path) -> anyhow::Result<ExtractStats> {
        self.pool()?.install(|| self.extract_files(dir))
    }

    fn extract_files(&self, dir: &Path) -> anyhow::Result<ExtractStats> {
        let cfg = &self.cfg;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let settings = pipeline::Settings {
            decks: self.decks.as_ref(),
            rounding: cfg.rounding,
        };
        // Each parsed frame, priced and reconciled as the run's stages do.
        let price = |df: &mut DataFrame| -> PolarsResult<()> {
            apply_deck(df, settings.decks, settings.rounding)?;
            rate_frame(df, settings.rounding)?;
            let recon = reconcile::reconcile(df, settings.rounding)?.0;
            add_classes(df, &recon)
        };
        let mut shape = concat_frames(vec![])?;
        price(&mut shape)?;
        let mut legs_cols = leg_columns();
        legs_cols.extend([ACCOUNT_ID, DATE, CUSTOMER_CLASS, RESELLER_CLASS]);
        let stream = Mutex::new(Stream::create(&dir.join(LEGS_STREAM), &shape, legs_cols)?);
        let legs = std::sync::atomic::AtomicU64::new(0);
        let reject_log = Arc::new(RejectLog::create(dir.join("rejects.log"))?);
        let opts = IngestOptions {
            tz: cfg.tz,
            chunk_bytes: cfg.chunk_size.unwrap_or_else(|| pipeline::chunk_bytes(1)),
            max_record: cfg.max_record_size,
            partitions: Arc::new(Partitions::new(1)),
            rejects: Some(reject_log.clone()),
        };
        let progress = Progress::new(0, true);
        let sink = |_: Option<u32>, mut df: DataFrame| -> Result<(), IngestError> {
            price(&mut df)?;
            legs.fetch_add(df.height() as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(stream
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .write(&df)?)
        };
        let ingested = ingest(&self.files, &opts, &progress, &sink)?;
        stream
            .into_inner()
            .unwrap_or_else(|p| p.into_inner())
            .finish()?;
        drop(opts);
        let ledgers = &ingested.ledgers;
        let mut columns = crate::ingest::ledger::LEDGER_COLS.to_vec();
        columns.extend([ACCOUNT_ID, DATE]);
        let mut stream = Stream::create(&dir.join(LEDGERS_STREAM), ledgers, columns)?;
        stream.write(ledgers)?;
        stream.finish()?;
        let reject_log = Arc::into_inner(reject_log).context("the rejects log is in use")?;
        reject_log.push(&mut { ingested.rejects })?;
        let rejects = reject_log.finish(&dir.join(crate::schema::REJECTS_FILE))?;
        let stats = ExtractStats {
            records_read: ingested.records_read,
            legs: legs.into_inner(),
            ledgers: ingested.ledgers.height() as u64,
            rejected: rejects.by_code.values().sum(),
            rejected_by_reason: rejects.by_code,
            inputs: ingested.files,
            partial_inputs: partial_inputs(&rejects.partial),
        };
        let path = dir.join(STATS_FILE);
        std::fs::write(&path, serde_json::to_vec_pretty(&stats)?)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(stats)
    }
}

impl Job {
    /// Names the one input file `name` in the legs' `source_file` and the rejects (the path or
    /// URI where the engine found it, when the file read is a local copy). For a CSV export the
    /// account still comes from the path of the file read, so a copy keeps its folders.
    /// Errors: not exactly one input file.
    pub fn name_input(&mut self, name: String) -> anyhow::Result<()> {
        match self.files.as_mut_slice() {
            [f] => {
                f.display = name;
                Ok(())
            }
            files => anyhow::bail!("--name needs exactly one input file, not {}", files.len()),
        }
    }

    /// The input files a run would read and those it would skip, as JSON: `files` (each with
    /// `path`, the name a run gives it, `local`, the path opened, `bytes`, `compression`,
    /// `format`) and `skipped` (`path`, `reason`).
    pub fn listing(&self) -> serde_json::Value {
        let files: Vec<serde_json::Value> = self
            .files
            .iter()
            .map(|f| {
                let mut v = serde_json::json!(f);
                v["local"] = serde_json::json!(f.path.display().to_string());
                v
            })
            .collect();
        serde_json::json!({ "files": files, "skipped": self.skipped })
    }
}
