//! Fuzz target: see rerate::internals::ingest::fuzzing::csv_export.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rerate::internals::ingest::fuzzing::csv_export(data));
