//! rerate: a batch engine that re-rates KAZOO call-detail records.
//!
//! The pipeline, one module per stage:
//! [`ingest`] (discover, decompress, scan, parse into columns) -> [`dedup`] -> [`rate`]
//! (KAZOO's formula) -> [`write`] (partitioned Parquet/CSV, rejects, manifest).
//! [`job`] runs them in order for one configured run; [`schema`] is the one home of column
//! and table names; [`cli`] holds one file per subcommand.

pub mod alloc;
pub mod cli;
pub mod dataset;
pub mod dedup;
pub mod gen;
pub mod ingest;
pub mod interactions;
pub mod job;
pub mod ledgers;
pub mod merge;
pub mod pipeline;
pub mod progress;
pub mod rate;
pub mod reconcile;
pub mod reports;
pub mod schema;
pub mod spill;
pub mod time;
pub mod words;
pub mod write;
