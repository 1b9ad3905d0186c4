//! The `rerate` binary: parse arguments, run, print the error chain.

use std::io::{self, Write};

// mimalloc: polars' many short-lived column buffers are faster to get from it than from glibc
// malloc, and it returns freed pages to the system (Cargo.toml says more). The benches declare
// it too, so that they time the allocator the job runs on.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = rerate::cli::parse();
    // Before any thread starts: polars reads these once (the library never sets one).
    for (key, value) in rerate::cli::polars_env(&cli) {
        std::env::set_var(key, value);
    }
    match rerate::cli::execute(cli) {
        Ok(code) => code,
        Err(err) => {
            // A closed pipe (rerate ... | head) is not a failure.
            if err
                .chain()
                .filter_map(|e| e.downcast_ref::<io::Error>())
                .any(|e| e.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            let mut stderr = io::stderr().lock();
            let _ = write!(stderr, "rerate: error: {err}");
            for cause in err.chain().skip(1) {
                let _ = write!(stderr, ": {cause}");
            }
            let _ = writeln!(stderr);
            ExitCode::from(rerate::cli::exit_status(&err))
        }
    }
}
