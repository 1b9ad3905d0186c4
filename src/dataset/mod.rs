//! The dataset's catalog: what the folder holds, how it was defined, and which runs wrote it.
//!
//! The catalog is `manifest.json` (small: the definition, the history, this run's counts, a
//! summary per day) and, beside it, what grows with the data, in `_catalog/`: the partition
//! list and the legs index, by day ([`shards`], [`index`]). A night reads the index and the
//! days it reads back, and rewrites the day files it touches, never the whole list nor every
//! legs file.
//!
//! Three states of an output folder, kept apart:
//! - no catalog (no `manifest.json`): a new dataset;
//! - a catalog this rerate reads: a typed [`Catalog`] (format 2, or 0 and 1, which listed every
//!   partition in the manifest and had no index: they still read, and the next run writes 2);
//! - a catalog it cannot read (cut short, not JSON, a field missing or of the wrong type, a
//!   newer format, or written by the Spark job): [`CatalogError`], and the run stops before any
//!   work, naming the file and the field. Taking such a folder for an empty one would rewrite
//!   its partitions without what they held.

pub(crate) mod check;
pub(crate) mod index;
pub(crate) mod shards;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::schema::{LEGS_TABLE, MANIFEST_FILE};
use crate::time::parse_date;
use crate::write::manifest::{Definition, RunRecord, SumOverflow};
use crate::write::PartitionStats;
use index::{KeyIndex, KEYS_HASH};
use shards::Cut;
pub(crate) use shards::ShardSummary;

/// The catalog format this rerate writes (`manifest.json`'s `format_version`). Version 1 added
/// the field; a manifest without it is of the release before (format 0). Version 2 moved the
/// partition list out of the manifest into `_catalog/partitions/` and added the legs index,
/// both cut by month. Version 3 cuts them by day (`days` in the manifest instead of `months`).
/// Version 4 writes the reports one file a day ([`crate::write::Grain::Day`]) instead of one
/// per account and day; an earlier dataset's reports are rewritten so on its next run.
pub const FORMAT_VERSION: u32 = 4;

/// The folder of the catalog's files that grow with the data, in the output folder.
pub(crate) const CATALOG_DIR: &str = "_catalog";

/// What a run needs of the folder's previous catalog.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Catalog {
    #[serde(default)]
    pub format_version: u32,
    /// The engine that wrote it; only the Spark job writes the field.
    #[serde(default)]
    pub engine: Option<String>,
    /// Formats 0 and 1: every partition of every table.
    #[serde(default)]
    partitions: Option<Vec<PartitionStats>>,
    /// Format 2: per month of the partitions' dates, what its file in `_catalog/partitions`
    /// holds.
    #[serde(default)]
    months: Option<BTreeMap<String, ShardSummary>>,
    /// Format 3: per day of the partitions' dates, what its file in `_catalog/partitions`
    /// holds.
    #[serde(default)]
    days: Option<BTreeMap<String, ShardSummary>>,
    /// Format 2: the hash of the legs index ([`KEYS_HASH`]).
    #[serde(default)]
    keys_hash: Option<String>,
    /// The options that decide a leg's partition or cost.
    pub definition: Definition,
    /// The runs that wrote the folder, oldest first.
    pub runs: Vec<RunRecord>,
    /// The top-level names earlier runs wrote.
    pub outputs: Vec<String>,
    /// The shard files of the partition list read so far (a merge reads the days it reads
    /// back from, then rewrites them with the others it touches).
    #[serde(skip)]
    shards_read: std::cell::RefCell<BTreeMap<String, Vec<PartitionStats>>>,
}

/// Why a folder's catalog cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{path}: cannot read the dataset's catalog: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the dataset's catalog is damaged at field `{field}`: {reason}. Nothing was changed. Restore manifest.json from a backup, or rebuild the dataset from all its exports into a new folder with --mode replace-all")]
    Damaged {
        path: PathBuf,
        /// The field, as a path (`partitions[3].rows`); `.` for the document itself.
        field: String,
        reason: String,
    },
    #[error("{path}: the dataset's catalog is format {found}, newer than this rerate reads ({FORMAT_VERSION}); use a newer rerate")]
    Newer { path: PathBuf, found: u32 },
    #[error("{path}: this folder was written by the Spark job ({engine}), whose catalog lacks what `rerate run` needs to merge into it (the definition, the history, the legs index); keep one engine per dataset: go on with spark/rerate_spark.py, or rebuild it with rerate run --mode replace-all into a new folder")]
    OtherEngine { path: PathBuf, engine: String },
}

impl Catalog {
    /// The catalog of the output folder `out`; `Ok(None)` when it has none (a new dataset).
    pub fn read(out: &Path) -> Result<Option<Catalog>, CatalogError> {
        let path = out.join(MANIFEST_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CatalogError::Io { path, source }),
        };
        Self::parse(&bytes, &path).map(Some)
    }

    /// Parses a catalog's bytes; `path` names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Catalog, CatalogError> {
        let damaged = |field: &str, reason: String| CatalogError::Damaged {
            path: path.to_owned(),
            field: field.to_owned(),
            reason,
        };
        // First as a document, to tell a foreign engine or a newer format from damage.
        let doc: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| damaged(".", e.to_string()))?;
        if let Some(engine) = doc.get("engine").and_then(|e| e.as_str()) {
            return Err(CatalogError::OtherEngine {
                path: path.to_owned(),
                engine: engine.to_owned(),
            });
        }
        let found = doc.get("format_version").and_then(|v| v.as_u64());
        if let Some(found) = found.filter(|v| *v > u64::from(FORMAT_VERSION)) {
            return Err(CatalogError::Newer {
                path: path.to_owned(),
                found: u32::try_from(found).unwrap_or(u32::MAX),
            });
        }
        let mut c: Catalog = serde_path_to_error::deserialize(doc).map_err(|e| {
            let field = e.path().to_string();
            damaged(&field, e.into_inner().to_string())
        })?;
        let missing = |field: &str| damaged(field, "missing field".to_owned());
        if c.format_version >= 3 && c.days.is_none() {
            return Err(missing("days"));
        }
        if c.format_version == 2 && c.months.is_none() {
            return Err(missing("months"));
        }
        if c.format_version >= 2 {
            match c.keys_hash.as_deref() {
                Some(KEYS_HASH) => {}
                Some(other) => {
                    return Err(damaged(
                        "keys_hash",
                        format!("{other}, which this rerate does not compute ({KEYS_HASH})"),
                    ))
                }
                None => return Err(missing("keys_hash")),
            }
        } else if c.partitions.is_none() {
            return Err(missing("partitions"));
        } else {
            let months = c
                .months_of_partitions()
                .map_err(|e| damaged("partitions", e.to_string()))?;
            c.months = Some(months);
        }
        Ok(c)
    }

    /// How the catalog's files are cut: by day from format 3 on, by month before (formats 0
    /// and 1 had no files: their partition list is summed by month when read).
    pub fn cut(&self) -> Cut {
        if self.format_version >= 3 {
            Cut::Day
        } else {
            Cut::Month
        }
    }

    /// Per shard of the partitions' dates (a day; a month before format 3), what it holds.
    pub fn shards(&self) -> BTreeMap<String, ShardSummary> {
        match self.cut() {
            Cut::Day => self.days.clone(),
            Cut::Month => self.months.clone(),
        }
        .unwrap_or_default()
    }

    /// Formats 0 and 1: the months' summaries of the partition list. Errors name the partition
    /// whose sum overflowed.
    fn months_of_partitions(&self) -> Result<BTreeMap<String, ShardSummary>, SumOverflow> {
        let mut by_month: BTreeMap<String, Vec<PartitionStats>> = BTreeMap::new();
        for p in self.partitions.iter().flatten() {
            by_month
                .entry(shards::month_of(p.date.as_deref()))
                .or_default()
                .push(p.clone());
        }
        by_month
            .into_iter()
            .map(|(m, parts)| Ok((m, ShardSummary::of(&parts)?)))
            .collect()
    }

    /// Whether the folder holds no partition of any table.
    pub fn is_empty(&self) -> bool {
        self.shards()
            .values()
            .all(|m| m.tables.values().all(|n| *n == 0))
    }

    /// Every partition of every table whose date falls in one of the shards `keys` (cut as
    /// [`Self::cut`] says).
    pub fn partitions_in(
        &self,
        out: &Path,
        keys: &BTreeSet<String>,
    ) -> anyhow::Result<Vec<PartitionStats>> {
        let cut = self.cut();
        if let Some(all) = &self.partitions {
            return Ok(all
                .iter()
                .filter(|p| keys.contains(&cut.key(p.date.as_deref())))
                .cloned()
                .collect());
        }
        let known = self.shards();
        let mut read = self.shards_read.borrow_mut();
        let mut parts = Vec::new();
        for k in keys.iter().filter(|k| known.contains_key(*k)) {
            if !read.contains_key(k) {
                read.insert(k.clone(), shards::read(out, cut, k)?);
            }
            parts.extend(read[k].iter().cloned());
        }
        Ok(parts)
    }

    /// The index files (formats 2 and 3), each checked against the manifest's summary of its
    /// shard (its legs), and no file of a shard the manifest does not list: an index that lost
    /// rows would let a merge keep two copies of a leg. `keep_rows`: keep the rows read, to
    /// write every day's file from (a format 2 dataset's month files).
    fn checked_index(&self, out: &Path, keep_rows: bool) -> anyhow::Result<KeyIndex> {
        let (cut, known) = (self.cut(), self.shards());
        let mut ix = KeyIndex::empty();
        let mut ids = Default::default();
        let mut frames = Vec::new();
        for (k, summary) in &known {
            let df = KeyIndex::read_shard(out, cut, k)?;
            let n = df.height() as u64;
            if n != summary.legs {
                anyhow::bail!(
                    "{}: indexes {n} legs, the manifest's {k} holds {}: the catalog was changed outside rerate; nothing was changed. Restore the folder from a backup, or rebuild it with --mode replace-all",
                    out.join(index::keys_file(cut, k)).display(),
                    summary.legs
                );
            }
            if keep_rows {
                frames.push(df);
            } else {
                ix.add(&df, &mut ids)?;
            }
        }
        let dir = out.join(index::KEYS_DIR);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !cut
                .key_of_file(&name)
                .is_some_and(|k| known.contains_key(k))
            {
                anyhow::bail!(
                    "{}: a file of the legs index that manifest.json does not list: the catalog was changed outside rerate; nothing was changed. Restore the folder from a backup, or rebuild it with --mode replace-all",
                    e.path().display()
                );
            }
        }
        if keep_rows {
            return Ok(KeyIndex::build(frames)?);
        }
        Ok(ix)
    }

    /// Whether the catalog's files are not cut by day (formats 0 and 1 had none, format 2 cut
    /// them by month): the next run writes every day's files, not only those it touches.
    pub fn is_legacy(&self) -> bool {
        self.cut() != Cut::Day
    }

    /// Whether the reports are in a folder per account and day (formats before 4), so that a
    /// run keeping the dataset rewrites every day of them, and every day of the catalog.
    pub fn reports_by_account_day(&self) -> bool {
        !self.is_empty() && self.format_version < 4
    }

    /// The files of the catalog that a run moving it to day files leaves behind: format 2's
    /// month files, relative to `out`.
    pub fn superseded_files(&self, out: &Path) -> Vec<String> {
        if self.format_version != 2 {
            return Vec::new();
        }
        let mut files = Vec::new();
        for dir in [shards::PARTITIONS_DIR, index::KEYS_DIR] {
            for e in std::fs::read_dir(out.join(dir))
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = e.file_name().to_string_lossy().into_owned();
                if Cut::Month.key_of_file(&name).is_some() {
                    files.push(format!("{dir}/{name}"));
                }
            }
        }
        files.sort();
        files
    }

    /// Every partition of every table.
    pub fn all_partitions(&self, out: &Path) -> anyhow::Result<Vec<PartitionStats>> {
        self.partitions_in(out, &self.shards().into_keys().collect())
    }

    /// The legs index: read from `_catalog` (formats 2 and 3; format 2's rows kept, to write
    /// its day files from), or built from every legs file of a format 0 or 1 dataset, which
    /// had none (once: the run writes it).
    pub fn key_index(&self, out: &Path) -> anyhow::Result<KeyIndex> {
        if self.partitions.is_none() {
            return self.checked_index(out, self.format_version == 2);
        }
        let mut rows = Vec::new();
        for p in self.partitions.iter().flatten() {
            if p.table == LEGS_TABLE {
                rows.push(index::rows_of(&crate::merge::read_ids(out, p)?)?);
            }
        }
        Ok(KeyIndex::build(rows)?)
    }
}

/// A catalog Parquet file of `out` (`rel`, relative to it), read whole. Errors name the file
/// and say it is `what` that cannot be read.
fn read_parquet(out: &Path, rel: &str, what: &str) -> anyhow::Result<polars::prelude::DataFrame> {
    use polars::prelude::SerReader;
    let path = out.join(rel);
    let read = || -> anyhow::Result<polars::prelude::DataFrame> {
        let f = std::fs::File::open(&path)?;
        Ok(polars::prelude::ParquetReader::new(f).finish()?)
    };
    read().map_err(|e| {
        anyhow::anyhow!(
            "{}: {what} cannot be read: {e}; rebuild the dataset with --mode replace-all",
            path.display()
        )
    })
}

/// Writes a catalog Parquet file under `dir` (`rel`, relative to it), zstd-compressed, making
/// its folder. Errors name the file.
fn write_parquet(dir: &Path, rel: &str, df: &mut polars::prelude::DataFrame) -> anyhow::Result<()> {
    let path = dir.join(rel);
    let mut write = || -> anyhow::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        polars::prelude::ParquetWriter::new(std::fs::File::create(&path)?)
            .with_compression(polars::prelude::ParquetCompression::Zstd(None))
            .finish(df)?;
        Ok(())
    };
    write().map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))
}

/// A partition's key in the index: its account as its folder says it and its day.
pub(crate) fn partition_key(p: &PartitionStats) -> index::Partition {
    (p.account_id.clone(), p.date.as_deref().and_then(parse_date))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Catalog, CatalogError> {
        Catalog::parse(text.as_bytes(), Path::new("out/manifest.json"))
    }

    const GOOD: &str = r#"{"partitions": [{"table": "legs", "account_id": "a", "date": "2026-11-01",
        "path": "legs/account_id=a/date=2026-11-01", "rows": 2, "billing_seconds": 60, "billed_seconds": 120,
        "rated_cost_units": 200, "cost_units": 200, "reseller_cost_units": 0}],
        "definition": {"--tz": "UTC"}, "runs": [], "outputs": ["legs"]}"#;

    #[test]
    fn a_catalog_of_the_release_before_reads() -> anyhow::Result<()> {
        let c = parse(GOOD)?;
        assert_eq!(c.format_version, 0);
        let parts = c.all_partitions(Path::new("out"))?;
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].rows, 2);
        assert_eq!(c.shards()["2026-11"].legs, 2);
        assert_eq!(c.definition["--tz"].as_deref(), Some("UTC"));
        Ok(())
    }

    #[test]
    fn a_catalog_cut_short_is_damaged_not_empty() {
        let cut = &GOOD[..GOOD.len() / 2];
        let e = parse(cut)
            .map(|_| ())
            .expect_err("a cut catalog is refused");
        assert!(matches!(e, CatalogError::Damaged { .. }), "{e}");
        assert!(e.to_string().contains("out/manifest.json"), "{e}");
    }

    #[test]
    fn a_missing_or_mistyped_field_is_named() {
        let no_runs = GOOD.replace(r#""runs": [], "#, "");
        let e = parse(&no_runs)
            .map(|_| ())
            .expect_err("a catalog without runs is refused");
        assert!(e.to_string().contains("runs"), "{e}");
        let bad_rows = GOOD.replace(r#""rows": 2"#, r#""rows": "two""#);
        match parse(&bad_rows) {
            Err(CatalogError::Damaged { field, .. }) => assert_eq!(field, "partitions[0].rows"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_format_2_catalog_needs_its_months_and_index_hash() {
        let two = r#"{"format_version": 2, "months": {}, "keys_hash": "xxh3-64", "definition": {}, "runs": [], "outputs": []}"#;
        assert!(parse(two).is_ok_and(|c| c.is_empty()));
        for (field, text) in [
            ("months", two.replace(r#""months": {}, "#, "")),
            ("keys_hash", two.replace(r#""keys_hash": "xxh3-64", "#, "")),
            ("keys_hash", two.replace("xxh3-64", "sip")),
        ] {
            match parse(&text) {
                Err(CatalogError::Damaged { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_spark_catalog_and_a_newer_format_are_refused_by_name() {
        let spark = GOOD.replacen('{', r#"{"engine": "spark 4.3.0", "#, 1);
        assert!(matches!(
            parse(&spark),
            Err(CatalogError::OtherEngine { .. })
        ));
        let newer = GOOD.replacen('{', r#"{"format_version": 99, "#, 1);
        assert!(matches!(
            parse(&newer),
            Err(CatalogError::Newer { found: 99, .. })
        ));
    }
}
