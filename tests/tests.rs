//! Integration tests: the real `rerate` binary on `fixtures/` and on inputs made per test.

mod inputs;
mod pipeline;
mod rating;
mod reports;
mod util;
