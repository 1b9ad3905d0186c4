//! The command line: raw clap arguments, one file per subcommand.

mod check;
mod extract;
mod gen;
mod query;
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
    /// Read CDR exports, rate every leg, and write the datasets (legs, interactions,
    /// reconciliation, reports), summary.html, rejects and manifest.
    Run(Box<run::RunArgs>),
    /// Run SQL over a finished run's dataset (legs, interactions, daily, ... as tables).
    Query(query::QueryArgs),
    /// List the built-in reports with a one-line description each.
    Reports,
    /// Verify a dataset against its catalog: every file present and readable, row counts and
    /// totals, every call_id once, daily and interactions equal to their legs.
    Check(check::CheckArgs),
    /// Write a deterministic corpus of realistic KAZOO CDRs (for benchmarks and scale tests).
    Gen(gen::GenArgs),
    /// Read input files, price every leg, and write the legs as Arrow IPC without
    /// deduplicating or grouping them (the per-record half of a run, for spark/rerate_spark.py).
    Extract(Box<extract::ExtractArgs>),
}

/// Parses the arguments and runs the subcommand.
pub fn main() -> anyhow::Result<ExitCode> {
    execute(parse())
}

/// The command line, parsed; a bad one ends the process with clap's message (and a tip for a
/// mistyped subcommand) and exit status 2.
pub fn parse() -> Cli {
    Cli::try_parse().unwrap_or_else(|e| {
        if let Some(tip) = subcommand_tip(&e) {
            // clap's own message, then the tip, then clap's exit status (2).
            let _ = e.print();
            eprintln!("\n  tip: did you mean '{tip}'?");
            std::process::exit(e.exit_code());
        }
        e.exit()
    })
}

/// The environment variables polars reads that a command line decides, for the binary to set
/// before any thread starts (the library never sets one): `--threads N` of `run` and
/// `extract`, `POLARS_MAX_THREADS` (polars sizes its pool once, on first use); `query`, the
/// table format's `POLARS_FMT_MAX_ROWS` (`--max-rows`), `POLARS_FMT_MAX_COLS` (64),
/// `POLARS_FMT_STR_LEN` (48) and, when the table is not printed to a terminal,
/// `POLARS_TABLE_WIDTH` (65535: no terminal width to fit, so the columns are not squeezed).
pub fn polars_env(cli: &Cli) -> Vec<(&'static str, String)> {
    use std::io::IsTerminal;
    let threads = |t: Option<usize>| {
        t.filter(|n| *n > 0)
            .map(|n| ("POLARS_MAX_THREADS", n.to_string()))
            .into_iter()
            .collect()
    };
    match &cli.command {
        Command::Run(args) => threads(args.threads),
        Command::Extract(args) => threads(args.run.threads),
        Command::Query(args) => {
            let mut env = vec![
                ("POLARS_FMT_MAX_ROWS", args.max_rows.to_string()),
                ("POLARS_FMT_MAX_COLS", "64".to_owned()),
                ("POLARS_FMT_STR_LEN", "48".to_owned()),
            ];
            if !std::io::stdout().is_terminal() || args.output.is_some() {
                env.push(("POLARS_TABLE_WIDTH", "65535".to_owned()));
            }
            env
        }
        _ => Vec::new(),
    }
}

/// Runs a parsed command line; the exit status on success (see [`exit_status`] for errors).
pub fn execute(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => run::run(*args),
        Command::Gen(args) => gen::run(args),
        Command::Query(args) => query::run(args),
        Command::Reports => query::list(),
        Command::Check(args) => check::run(args),
        Command::Extract(args) => extract::run(*args),
    }
}

/// The subcommand a mistyped one most likely meant (`rnu` -> `run`): the nearest by
/// Damerau-Levenshtein distance, at most 2 edits away, when clap found none.
fn subcommand_tip(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if e.kind() != ErrorKind::InvalidSubcommand {
        return None;
    }
    if e.get(ContextKind::SuggestedSubcommand).is_some() {
        return None;
    }
    let Some(ContextValue::String(typed)) = e.get(ContextKind::InvalidSubcommand) else {
        return None;
    };
    <Cli as clap::CommandFactory>::command()
        .get_subcommands()
        .map(|c| c.get_name().to_owned())
        .map(|name| (strsim::damerau_levenshtein(typed, &name), name))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, name)| name)
}

/// The exit status of a run that passed its commit point but could not finish moving the
/// output into place: committed; the next run completes it.
pub const EXIT_AFTER_COMMIT: u8 = 6;

/// The exit status of a failed command: 4 when no CDR input was found at all (so a nightly job
/// can tell an empty export folder from a broken run), 5 when every record read was rejected or
/// more than `--max-rejects`, 6 when the run committed but finishing the commit failed
/// ([`EXIT_AFTER_COMMIT`]), else 2 (nothing was committed).
pub fn exit_status(err: &anyhow::Error) -> u8 {
    if err
        .chain()
        .any(|e| e.downcast_ref::<crate::job::TooManyRejects>().is_some())
    {
        return crate::job::EXIT_REJECTS;
    }
    if err.chain().any(|e| {
        matches!(
            e.downcast_ref::<crate::write::WriteError>(),
            Some(crate::write::WriteError::AfterCommit(_))
        )
    }) {
        return EXIT_AFTER_COMMIT;
    }
    let no_input = err.chain().any(|e| {
        matches!(
            e.downcast_ref::<crate::ingest::IngestError>(),
            Some(crate::ingest::IngestError::NoCdrInput { .. })
        )
    });
    if no_input {
        4
    } else {
        2
    }
}

/// A size on the command line: `65536`, `64K`, `8M`, `1.5G` (also `KB`/`KiB` ...; powers of
/// 1,024 either way, as memory is counted). Zero is refused. The `parse-size` crate does the
/// parsing (suffixes, decimals, overflow).
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let n = parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("{s:?} is not a size such as 8M or 65536 ({e})"))?;
    match usize::try_from(n) {
        Ok(0) => Err(format!("{s:?} must be a positive size")),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("{s:?} is larger than this machine can address")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_suffixes() {
        assert_eq!(parse_bytes("8M"), Ok(8 << 20));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert_eq!(parse_bytes("16MiB"), Ok(16 << 20));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("100"), Ok(100));
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("8X").is_err());
    }

    #[test]
    fn the_binary_sets_polars_threads_from_the_command_line() {
        let cli = |args: &[&str]| Cli::try_parse_from(args).expect("a command line");
        let env = polars_env(&cli(&[
            "rerate",
            "run",
            "in",
            "--out",
            "o",
            "--threads",
            "3",
        ]));
        assert_eq!(env, [("POLARS_MAX_THREADS", "3".to_owned())]);
        assert!(polars_env(&cli(&["rerate", "run", "in", "--out", "o"])).is_empty());
        let q = polars_env(&cli(&[
            "rerate",
            "query",
            "--data",
            "d",
            "select 1",
            "--max-rows",
            "7",
        ]));
        assert!(
            q.contains(&("POLARS_FMT_MAX_ROWS", "7".to_owned())),
            "{q:?}"
        );
    }

    /// The library never sets an environment variable: preparing and running a job with
    /// `threads` leaves `POLARS_MAX_THREADS` as the process had it.
    #[test]
    fn a_job_sets_no_environment_variable() {
        let before = std::env::var_os("POLARS_MAX_THREADS");
        let dir = tempfile::tempdir().expect("a folder");
        let out = dir.path().join("out");
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/ndjson");
        let args = ["rerate", "run", fixtures.to_str().expect("utf-8"), "--out"];
        let mut args: Vec<&str> = args.to_vec();
        args.extend([out.to_str().expect("utf-8"), "--threads", "1", "-q"]);
        let Command::Run(run) = Cli::try_parse_from(&args).expect("a command line").command else {
            panic!("a run");
        };
        let job = crate::job::Job::prepare(run::config(*run).expect("a config")).expect("a job");
        job.run().expect("a run");
        assert_eq!(std::env::var_os("POLARS_MAX_THREADS"), before);
    }
}
