//! rerate: a batch engine that re-rates KAZOO call-detail records.
//!
//! The pipeline, one private module per stage: `ingest` (discover, decompress, scan, parse
//! into columns) -> `dedup` -> `rate` (KAZOO's formula) -> `write` (partitioned Parquet/CSV,
//! rejects, manifest). `job` runs them in order for one configured run; `schema` is the one
//! home of column and table names; [`cli`] holds one file per subcommand and is what the
//! binary calls. Internals are `pub(crate)`; [`internals`] is what tests, benches and fuzz
//! targets reach.

pub mod cli;
mod dataset;
mod dedup;
mod gen;
mod ingest;
mod interactions;
mod job;
mod ledger_reconciliation;
mod ledgers;
mod merge;
mod pipeline;
mod progress;
mod rate;
mod reconcile;
mod reports;
mod schema;
mod spill;
mod time;
mod words;
mod write;

/// What the integration tests, benches and fuzz targets reach inside the library, in one place
/// (the paths mirror the modules'). Not an API: it may change with any commit.
#[doc(hidden)]
pub mod internals {
    pub mod dataset {
        pub use crate::dataset::{Catalog, FORMAT_VERSION};
    }
    pub mod dedup {
        pub use crate::dedup::dedup;
    }
    pub mod gen {
        pub use crate::gen::{file_legs, generate, AccountSkew, GenLeg, GenOptions, Rng, Shape};
        pub mod crossbar {
            pub use crate::gen::crossbar::{
                has_reseller_columns, write_csv_export, write_listing_pages, KazooRow,
            };
        }
    }
    pub mod ingest {
        pub use crate::ingest::{fuzzing, parse_buffer, IngestOptions, MAX_RECORD};
        pub mod record {
            pub use crate::ingest::record::RawCdr;
        }
    }
    pub mod interactions {
        pub use crate::interactions::build;
    }
    pub mod job {
        pub use crate::job::Job;
    }
    pub mod rate {
        pub use crate::rate::{apply_deck, rate, rate_frame, DeckSet, Inputs, RateSort, Rounding};
    }
    pub mod reconcile {
        pub use crate::reconcile::reconcile;
    }
    pub mod reports {
        pub use crate::reports::{builtin, context, run};
    }
    pub mod schema {
        pub use crate::schema::{leg_columns, CALL_ID, START_TIME};
    }
    pub mod spill {
        pub use crate::spill::Partitions;
    }
    pub mod time {
        pub use crate::time::ReportTz;
    }
    pub mod write {
        pub use crate::write::{fill_unassigned, write_partitioned, Format, Grain, Output, Table};
    }
}
