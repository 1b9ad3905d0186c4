//! Integration tests: the real `rerate` binary on `fixtures/` and on inputs made per test.

mod couch;
mod dataset;
mod decks;
mod extract;
mod first_hour;
mod fuzz_corpus;
mod generator;
mod hostile;
mod inputs;
mod json_shapes;
mod kazoo_exports;
mod money;
mod nightly;
mod pipeline;
mod properties;
mod rating;
mod reconcile;
mod reliability;
mod reports;
mod spill;
mod util;
