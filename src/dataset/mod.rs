//! The dataset's catalog as the next run reads it: the part of `manifest.json` that says what
//! the folder holds (every partition of every table), how it was defined, and which runs wrote
//! it.
//!
//! Three states of an output folder, kept apart:
//! - no catalog (no `manifest.json`): a new dataset;
//! - a catalog this rerate reads: a typed [`Catalog`];
//! - a catalog it cannot read (cut short, not JSON, a field missing or of the wrong type, a
//!   newer format, or written by the Spark job): [`CatalogError`], and the run stops before any
//!   work, naming the file and the field. Taking such a folder for an empty one would rewrite
//!   its partitions without what they held.

pub mod check;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::schema::MANIFEST_FILE;
use crate::write::manifest::{Definition, RunRecord};
use crate::write::PartitionStats;

/// The catalog format this rerate writes (`manifest.json`'s `format_version`). Version 1 added
/// the field; a manifest without it is of the release before (format 0), which had the same
/// fields and still reads.
pub const FORMAT_VERSION: u32 = 1;

/// What a run needs of the folder's previous catalog.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Catalog {
    #[serde(default)]
    pub format_version: u32,
    /// The engine that wrote it; only the Spark job writes the field.
    #[serde(default)]
    pub engine: Option<String>,
    /// Every partition of every table.
    pub partitions: Vec<PartitionStats>,
    /// The options that decide a leg's partition or cost.
    pub definition: Definition,
    /// The runs that wrote the folder, oldest first.
    pub runs: Vec<RunRecord>,
    /// The top-level names earlier runs wrote.
    pub outputs: Vec<String>,
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
    #[error("{path}: this folder was written by the Spark job ({engine}), whose catalog lacks what `rerate run` needs to merge into it (the definition, the history); keep one engine per dataset: go on with spark/rerate_spark.py, or rebuild it with rerate run --mode replace-all into a new folder")]
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
        let damaged = |field: String, reason: String| CatalogError::Damaged {
            path: path.to_owned(),
            field,
            reason,
        };
        // First as a document, to tell a foreign engine or a newer format from damage.
        let doc: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| damaged(".".to_owned(), e.to_string()))?;
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
        serde_path_to_error::deserialize(doc).map_err(|e| {
            let field = e.path().to_string();
            damaged(field, e.into_inner().to_string())
        })
    }
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
    fn a_catalog_of_the_release_before_reads() -> Result<(), CatalogError> {
        let c = parse(GOOD)?;
        assert_eq!(c.format_version, 0);
        assert_eq!(c.partitions.len(), 1);
        assert_eq!(c.partitions[0].rows, 2);
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
