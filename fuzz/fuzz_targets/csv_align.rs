//! Fuzz target: see rerate::ingest::fuzzing::csv_align.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rerate::ingest::fuzzing::csv_align(data));
