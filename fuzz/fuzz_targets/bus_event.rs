//! Fuzz target: see rerate::internals::ingest::fuzzing::bus_event.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rerate::internals::ingest::fuzzing::bus_event(data));
