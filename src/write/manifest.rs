//! `manifest.json`: what a run read, wrote, rejected and dropped, with per-partition totals and
//! stage timings. Its counts balance: records read = legs written + rejected + duplicates dropped
//! + ledgers read (whose own term is: ledgers read = written + duplicates dropped).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::Serialize;

use super::{PartitionStats, WriteError};
use crate::dedup::DedupStats;
use crate::ingest::discover::Skipped;
use crate::ingest::FileStats;
use crate::schema::{LEGS_TABLE, MANIFEST_FILE};

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    /// The catalog format ([`crate::dataset::FORMAT_VERSION`]).
    pub format_version: u32,
    pub rerate_version: &'static str,
    pub options: serde_json::Value,
    pub inputs: Vec<FileStats>,
    pub skipped_files: Vec<Skipped>,
    pub counts: Counts,
    pub totals: Totals,
    pub interactions: u64,
    pub reconciliation: crate::reconcile::Summary,
    /// Rate deck rows that could not be used, with their lines.
    pub rate_deck_issues: Vec<crate::rate::deck::DeckIssue>,
    /// How this run changed the previous output: `merge`, `overwrite-partitions` or
    /// `replace-all`.
    pub mode: super::commit::Mode,
    /// The options that decide a leg's partition or cost, as the dataset was first built with
    /// them: a later run with other values is refused (see [`Definition`]).
    pub definition: Definition,
    /// Input files that could not be read to their end (a truncated gzip or zstd stream, an
    /// I/O error, a size limit): what was read before the break is in the dataset.
    pub partial_inputs: Vec<PartialInput>,
    /// Under `--mode merge`: the legs read back from the partitions the run rewrote.
    pub merge: MergeCounts,
    /// Whether this run first finished the commit of an earlier run that was killed.
    pub finished_interrupted_commit: bool,
    /// The top-level names of the output folder rerate manages (the next run's to replace).
    pub outputs: Vec<String>,
    /// The whole dataset now in the folder: this run's partitions and those kept from earlier
    /// runs (`counts` and `totals` are this run's alone).
    pub dataset: Dataset,
    /// The partitions of every table this run wrote, with their rows and money (every
    /// partition of the folder is in `_catalog/partitions/`, by day: see
    /// [`crate::dataset::shards`]).
    pub partitions_written: Vec<PartitionStats>,
    /// Per day of the partitions' dates (`none` for no date): partitions per table and the
    /// legs' totals.
    pub days: BTreeMap<String, crate::dataset::ShardSummary>,
    /// The hash of the legs index, `_catalog/keys/`.
    pub keys_hash: &'static str,
    /// The runs that wrote this folder, oldest first, each with the partitions it wrote.
    pub runs: Vec<RunRecord>,
    /// Milliseconds per stage, in run order.
    /// The memory budget, how many buckets the legs were processed in, and whether any went
    /// to disk.
    pub memory: serde_json::Value,
    pub stages_ms: BTreeMap<&'static str, u64>,
    pub elapsed_ms: u64,
}

/// What a run that brought nothing new says (the terminal, summary.html).
pub(crate) const NOTHING_CHANGED: &str =
    "nothing changed: every leg of this input was already in the dataset";

impl Manifest {
    /// Whether the run brought nothing new into a dataset: no leg written, none replaced, no
    /// partition emptied, and legs read back (a rerun of a night already merged).
    pub fn changed_nothing(&self) -> bool {
        let c = &self.counts;
        c.legs_written == 0
            && c.dedup.dataset_legs_replaced == 0
            && self.merge.partitions_emptied.is_empty()
            && self.merge.legs_read_back > 0
    }

    /// What the folder holds after the run, and how it got there, in words: `the dataset now:
    /// 40 legs in 9 partitions, months 2013-07 to 2026-11, customer cost 2.3567 over 28 priced
    /// legs; --mode merge, run 1 of this folder` (partitions of the legs table; money over no
    /// priced leg is `—`).
    pub fn dataset_words(&self) -> String {
        use crate::words::{count, money};
        let d = &self.dataset;
        let months: Vec<String> = self
            .days
            .keys()
            .filter(|k| k.as_str() != "none")
            .map(|k| crate::dataset::shards::month_of(Some(k)))
            .collect();
        let period = match (months.first(), months.last()) {
            (Some(a), Some(b)) if a == b => format!(", month {a}"),
            (Some(a), Some(b)) => format!(", months {a} to {b}"),
            _ => String::new(),
        };
        let priced = d.legs.saturating_sub(d.totals.unpriced_legs);
        let cost = if priced == 0 {
            "—".to_owned()
        } else {
            money(d.totals.cost_units)
        };
        format!(
            "the dataset now: {} in {}{period}, customer cost {cost} over {}; --mode {}, run {} of this folder",
            count(d.legs, "leg", "legs"),
            count(d.partitions, "partition", "partitions"),
            count(priced, "priced leg", "priced legs"),
            serde_json::to_value(self.mode)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            self.runs.last().map_or(1, |r| r.run),
        )
    }
}

/// The legs dataset as a whole, summed over its partitions.
#[derive(Debug, Clone, Serialize)]
pub struct Dataset {
    pub legs: u64,
    pub partitions: u64,
    #[serde(flatten)]
    pub totals: Totals,
}

impl Dataset {
    /// The dataset of the shards' summaries (days). Errors name the shard at which a sum
    /// overflowed.
    pub fn of_shards(
        shards: &BTreeMap<String, crate::dataset::ShardSummary>,
    ) -> Result<Self, SumOverflow> {
        let start = Dataset {
            legs: 0,
            partitions: 0,
            totals: Totals::default(),
        };
        shards.iter().try_fold(start, |d, (key, m)| {
            let over = |field| SumOverflow {
                what: format!("the dataset's partitions up to {key}"),
                field,
            };
            Ok(Dataset {
                legs: d.legs.checked_add(m.legs).ok_or_else(|| over("legs"))?,
                partitions: d.partitions + m.tables.get(LEGS_TABLE).copied().unwrap_or(0),
                totals: d.totals.checked_plus(&m.totals).map_err(over)?,
            })
        })
    }
}

/// One run of the folder's history.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct RunRecord {
    pub run: u64,
    pub mode: super::commit::Mode,
    pub records_read: u64,
    pub legs_written: u64,
    /// How many (account_id, date) legs partitions it wrote.
    #[serde(default)]
    pub partitions_written: u64,
    /// The first [`RUN_PARTITIONS_LISTED`] of them.
    pub partitions: Vec<(String, Option<String>)>,
}

impl RunRecord {
    /// The record of a run that wrote `partitions` (in order).
    pub fn new(
        run: u64,
        mode: super::commit::Mode,
        counts: &Counts,
        partitions: impl ExactSizeIterator<Item = (String, Option<String>)>,
    ) -> Self {
        RunRecord {
            run,
            mode,
            records_read: counts.records_read,
            legs_written: counts.legs_written,
            partitions_written: partitions.len() as u64,
            partitions: partitions.take(RUN_PARTITIONS_LISTED).collect(),
        }
    }
}

/// The history kept in the manifest: the latest runs.
pub(crate) const RUNS_KEPT: usize = 1000;
/// Partitions listed per run in the history (all are counted): the manifest stays bounded
/// whatever the number of accounts. With 100, the history of a year of nights was 2.2 MB of
/// the 4.3 MB every night reads and rewrites; the partitions a run wrote are the manifest's
/// `partitions_written`, and every leg names its run's input (`source_file`).
pub(crate) const RUN_PARTITIONS_LISTED: usize = 10;

/// The options that decide which partition a leg lands in or what it costs, by flag:
/// `--tz`, `--rounding`, `--rates` (the deck's SHA-256), `--ratedeck-map` (its SHA-256),
/// `--rate-sort`. Recorded at a dataset's first run; a flag a dataset's record lacks (one added
/// by a later rerate) is taken from the run that first meets it.
pub(crate) type Definition = BTreeMap<String, Option<String>>;

/// The first difference between a dataset's definition and a run's: (flag, dataset's value,
/// run's value).
pub(crate) fn definition_change(
    dataset: &Definition,
    run: &Definition,
) -> Option<(String, Option<String>, Option<String>)> {
    // The options a user names first, then the settings of the rate choice.
    let first = ["--tz", "--rounding", "--rates", "--ratedeck-map"];
    let rank = |flag: &str| first.iter().position(|f| *f == flag).unwrap_or(first.len());
    let mut flags: Vec<(&String, &Option<String>)> = run.iter().collect();
    flags.sort_by_key(|(f, _)| rank(f));
    flags
        .into_iter()
        .find_map(|(flag, value)| match dataset.get(flag) {
            Some(old) if old != value => Some((flag.clone(), old.clone(), value.clone())),
            _ => None,
        })
}

/// An input file that could not be read to its end.
#[derive(Debug, Clone, Serialize)]
pub struct PartialInput {
    pub file: String,
    /// The reject code (`unreadable_input`, `file_too_large`).
    pub code: &'static str,
    pub reason: String,
}

/// What a merge read back and kept.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MergeCounts {
    /// Legs partitions the run rewrote that already held legs.
    pub partitions_read_back: u64,
    /// Their legs, read back.
    pub legs_read_back: u64,
    /// Of those, the ones kept (the rest lost to a newer conflicting copy of this run:
    /// `counts.dataset_legs_replaced`).
    pub legs_kept: u64,
    /// Legs partitions (account_id, date) read back that hold no leg any more: each of their
    /// legs lost to a newer copy in another partition. Their files are deleted in every table.
    pub partitions_emptied: Vec<(String, Option<String>)>,
    /// Legs partitions dated before this run's first day whose legs or money the merge changed
    /// (a period finance may already have invoiced).
    pub past_days_changed: Vec<DayChange>,
}

/// A legs partition's totals before and after a run.
#[derive(Debug, Clone, Serialize)]
pub struct DayChange {
    pub account_id: String,
    pub date: Option<String>,
    pub legs_before: u64,
    pub legs_after: u64,
    /// `cost_units` (units of 1/10,000 of the currency) before and after.
    pub cost_units_before: i64,
    pub cost_units_after: i64,
    pub billing_seconds_before: i64,
    pub billing_seconds_after: i64,
}

impl DayChange {
    /// `after`: the partition as the run wrote it, `None` when it was emptied.
    pub fn of(before: &PartitionStats, after: Option<&PartitionStats>) -> Self {
        DayChange {
            account_id: before.account_id.clone(),
            date: before.date.clone(),
            legs_before: before.rows,
            legs_after: after.map_or(0, |p| p.rows),
            cost_units_before: before.cost_units,
            cost_units_after: after.map_or(0, |p| p.cost_units),
            billing_seconds_before: before.billing_seconds,
            billing_seconds_after: after.map_or(0, |p| p.billing_seconds),
        }
    }

    pub fn changed(&self) -> bool {
        self.legs_before != self.legs_after
            || self.cost_units_before != self.cost_units_after
            || self.billing_seconds_before != self.billing_seconds_after
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub records_read: u64,
    pub legs_written: u64,
    pub rejected: u64,
    pub rejected_by_reason: BTreeMap<&'static str, u64>,
    #[serde(flatten)]
    pub dedup: DedupStats,
    /// Number of call_ids whose copies differed.
    pub conflicts: u64,
    /// records_read == legs_written + rejected + duplicates_dropped + ledgers.read, and
    /// ledgers.read == ledgers.written + ledgers.duplicates_dropped.
    pub balanced: bool,
    /// Legs now in the partitions this run wrote: `legs_written` plus the dataset's legs they
    /// kept (`merge.legs_kept`).
    pub legs_in_written_partitions: u64,
    /// The ledgers' own terms: read (among `records_read`) = written + duplicates dropped; a
    /// ledger rejected is among `rejected`.
    #[serde(default)]
    pub ledgers: crate::ledgers::LedgerCounts,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Totals {
    pub billing_seconds: i64,
    pub billed_seconds: i64,
    pub rated_cost_units: i64,
    pub cost_units: i64,
    pub reseller_cost_units: i64,
    /// Legs with no price (null `cost_units`), which `cost_units` does not include.
    pub unpriced_legs: u64,
    /// Their `billing_seconds`, part of `billing_seconds`; `billed_seconds` covers the priced
    /// legs only (an unpriced leg's is null).
    pub unpriced_billing_seconds: i64,
}

/// A sum of the totals that does not fit in 64 bits. Each leg's money is bounded
/// ([`crate::rate::MAX_LEG_UNITS`]), so only a dataset of millions of legs at that bound gets
/// here; rerate stops rather than write a wrapped figure.
#[derive(Debug, thiserror::Error)]
#[error("{what}: the sum of {field} does not fit in a 64-bit integer (money in units of 1/10,000); nothing is written rather than a wrapped figure")]
pub struct SumOverflow {
    /// What was being summed: the partition or month where the sum overflowed.
    pub what: String,
    /// The total's field.
    pub field: &'static str,
}

impl Totals {
    /// The sum of two totals; `Err(field)` names the first that does not fit.
    pub fn checked_plus(&self, o: &Totals) -> Result<Totals, &'static str> {
        let add = |a: i64, b: i64, f: &'static str| a.checked_add(b).ok_or(f);
        Ok(Totals {
            billing_seconds: add(self.billing_seconds, o.billing_seconds, "billing_seconds")?,
            billed_seconds: add(self.billed_seconds, o.billed_seconds, "billed_seconds")?,
            rated_cost_units: add(
                self.rated_cost_units,
                o.rated_cost_units,
                "rated_cost_units",
            )?,
            cost_units: add(self.cost_units, o.cost_units, "cost_units")?,
            reseller_cost_units: add(
                self.reseller_cost_units,
                o.reseller_cost_units,
                "reseller_cost_units",
            )?,
            unpriced_legs: self
                .unpriced_legs
                .checked_add(o.unpriced_legs)
                .ok_or("unpriced_legs")?,
            unpriced_billing_seconds: add(
                self.unpriced_billing_seconds,
                o.unpriced_billing_seconds,
                "unpriced_billing_seconds",
            )?,
        })
    }

    /// The totals of legs partitions. Errors name the partition at which a sum overflowed.
    pub fn of(parts: &[PartitionStats]) -> Result<Self, SumOverflow> {
        parts.iter().try_fold(Totals::default(), |t, p| {
            t.checked_plus(&Totals {
                billing_seconds: p.billing_seconds,
                billed_seconds: p.billed_seconds,
                rated_cost_units: p.rated_cost_units,
                cost_units: p.cost_units,
                reseller_cost_units: p.reseller_cost_units,
                unpriced_legs: p.unpriced_legs,
                unpriced_billing_seconds: p.unpriced_billing_seconds,
            })
            .map_err(|field| SumOverflow {
                what: format!("partition {}", p.path),
                field,
            })
        })
    }
}

impl Counts {
    /// `parts`: the legs partitions written, which hold `kept_from_dataset` legs read back from
    /// the dataset besides this run's.
    pub fn new(
        records_read: u64,
        parts: &[PartitionStats],
        kept_from_dataset: u64,
        rejected_by_reason: BTreeMap<&'static str, u64>,
        dedup: DedupStats,
        ledgers: crate::ledgers::LedgerCounts,
    ) -> Self {
        let in_parts: u64 = parts.iter().map(|p| p.rows).sum();
        let legs_written = in_parts.saturating_sub(kept_from_dataset);
        let rejected = rejected_by_reason.values().sum();
        let balanced = records_read
            == legs_written + rejected + dedup.duplicates_dropped + ledgers.read
            && in_parts >= kept_from_dataset
            && ledgers.read == ledgers.written + ledgers.duplicates_dropped;
        Counts {
            records_read,
            legs_written,
            legs_in_written_partitions: in_parts,
            rejected,
            rejected_by_reason,
            conflicts: dedup.conflict_call_ids.len() as u64,
            dedup,
            balanced,
            ledgers,
        }
    }
}

impl Manifest {
    pub fn write(&self, out: &Path) -> Result<(), WriteError> {
        let path = out.join(MANIFEST_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| WriteError::Io {
            path: path.display().to_string(),
            source: e.into(),
        })?;
        fs::write(&path, text + "\n").map_err(|source| WriteError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legs_partition(path: &str, cost_units: i64) -> PartitionStats {
        PartitionStats {
            table: LEGS_TABLE.to_owned(),
            account_id: "a".to_owned(),
            date: Some("2026-11-01".to_owned()),
            path: path.to_owned(),
            rows: 1,
            billing_seconds: 60,
            billed_seconds: 60,
            rated_cost_units: 0,
            cost_units,
            reseller_cost_units: 0,
            unpriced_legs: 0,
            unpriced_billing_seconds: 0,
        }
    }

    #[test]
    fn a_sum_that_does_not_fit_is_an_error_naming_the_partition_never_a_wrapped_figure() {
        let half = i64::MAX / 2 + 1;
        let ok = Totals::of(&[
            legs_partition("legs/p1", half),
            legs_partition("legs/p2", 5),
        ]);
        assert_eq!(ok.map(|t| t.cost_units).ok(), Some(half + 5));
        let err = Totals::of(&[
            legs_partition("legs/p1", half),
            legs_partition("legs/p2", half),
            legs_partition("legs/p3", 1),
        ])
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(
            err.starts_with("partition legs/p2: the sum of cost_units does not fit"),
            "{err}"
        );
        // Negative money (a refund) wraps too, the other way.
        let err = Totals::of(&[legs_partition("x", i64::MIN), legs_partition("y", -1)]);
        assert_eq!(err.err().map(|e| e.field), Some("cost_units"));
    }

    #[test]
    fn the_dataset_of_its_days_names_the_day_whose_sum_does_not_fit() {
        let month = |cost: i64| crate::dataset::ShardSummary {
            tables: [(LEGS_TABLE.to_owned(), 1)].into(),
            legs: 1,
            totals: Totals {
                cost_units: cost,
                ..Totals::default()
            },
        };
        let months: BTreeMap<String, crate::dataset::ShardSummary> = [
            ("2026-10-01".to_owned(), month(i64::MAX - 10)),
            ("2026-11-01".to_owned(), month(10)),
        ]
        .into();
        assert_eq!(
            Dataset::of_shards(&months)
                .map(|d| d.totals.cost_units)
                .ok(),
            Some(i64::MAX)
        );
        let mut over = months.clone();
        over.insert("2026-12-01".to_owned(), month(1));
        let err = Dataset::of_shards(&over).err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.starts_with(
                "the dataset's partitions up to 2026-12-01: the sum of cost_units does not fit"
            )),
            "{err:?}"
        );
    }
}
