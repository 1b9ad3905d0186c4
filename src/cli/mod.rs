//! The command line: raw clap arguments, one file per subcommand.

pub mod gen;
pub mod query;
pub mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Re-rates KAZOO call-detail records: reads CDR exports, re-derives what every leg should cost
/// with KAZOO's own formula, and writes Parquet/CSV datasets partitioned by account and day.
#[derive(Debug, Parser)]
#[command(name = "rerate", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read CDR exports, rate every leg, and write the legs dataset, rejects and manifest.
    Run(run::RunArgs),
    /// Run SQL over a finished run's dataset (legs, interactions, daily, ... as tables).
    Query(query::QueryArgs),
    /// List the built-in reports with a one-line description each.
    Reports,
    /// Write a deterministic corpus of realistic KAZOO CDRs (for benchmarks and scale tests).
    Gen(gen::GenArgs),
}

/// Parses the arguments and runs the subcommand.
pub fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Gen(args) => gen::run(args),
        Command::Query(args) => query::run(args),
        Command::Reports => query::list(),
    }
}
