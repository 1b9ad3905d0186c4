//! Integration tests: the real `rerate` binary on `fixtures/` and on inputs made per test.

mod inputs;
mod pipeline;
mod rating;
mod reconcile;
mod reliability;
mod reports;
mod util;
