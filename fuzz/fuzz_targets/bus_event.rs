//! Fuzz target: see rerate::ingest::fuzzing::bus_event.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rerate::ingest::fuzzing::bus_event(data));
