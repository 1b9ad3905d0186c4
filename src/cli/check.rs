//! `rerate check DIR`: verifies a dataset against its catalog (see [`crate::dataset::check`]).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// Exit status when the check found problems.
pub(super) const EXIT_PROBLEMS: u8 = 1;

#[derive(Debug, Args)]
#[command(
    after_help = "Exit status:\n  0  the dataset agrees with its catalog\n  1  problems were found; each is printed, naming the file, partition or call_id\n  2  the folder has no catalog (manifest.json) or one that cannot be read"
)]
pub struct CheckArgs {
    /// The dataset folder (a `rerate run --out` folder).
    pub dir: PathBuf,
    /// How many problems to print (all are counted).
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
}

/// Checks the folder and prints what was found.
pub(super) fn run(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let report = crate::dataset::check::check(&args.dir)?;
    let text = crate::dataset::check::describe(&args.dir, &report, args.limit);
    if report.problems.is_empty() {
        println!("{text}");
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("{text}");
        Ok(ExitCode::from(EXIT_PROBLEMS))
    }
}
