//! `rerate extract`: one input's legs, priced, as Arrow IPC for another engine (see
//! [`crate::job::extract`]); `spark/rerate_spark.py` runs it inside Spark's executors.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use super::run::{config, RunArgs};
use crate::job::Job;

#[derive(Debug, Args)]
pub struct ExtractArgs {
    /// Print, as JSON, the files a `rerate run` with these INPUTs and --out would read and
    /// those it would skip, and read nothing.
    #[arg(long, conflicts_with_all = ["to", "name"])]
    pub list: bool,

    /// The folder to write `legs.arrows` (an Arrow IPC stream),
    /// `rejects.ndjson` and `stats.json` into; created if missing.
    #[arg(long, value_name = "DIR", required_unless_present = "list")]
    pub to: Option<PathBuf>,

    /// The name legs and rejects give the one input file (`source_file`): where the engine
    /// found it (an s3a:// or hdfs:// URI) when the file read is a local copy.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// `rerate run`'s inputs and options. --out is the dataset the job writes, left out of the
    /// inputs as a run leaves it; --tz, --rounding, --max-record-size, --chunk-size, --threads,
    /// --rates and the deck's settings apply; the others are accepted and not used.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Lists or extracts; exit status 0 when the folder is written (a partial input included:
/// `stats.json` names it), 4 when no CDR file is found.
pub(super) fn run(args: ExtractArgs) -> anyhow::Result<ExitCode> {
    let mut job = Job::prepare(config(args.run)?)?;
    if args.list {
        println!("{}", serde_json::to_string(&job.listing())?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(name) = args.name {
        job.name_input(name)?;
    }
    let to = args.to.context("--to is required")?;
    job.extract(&to)?;
    Ok(ExitCode::SUCCESS)
}
