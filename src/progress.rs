//! Progress on stderr while reading: a bar over input bytes when stderr is a terminal, nothing
//! otherwise or with --quiet.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(crate) struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar over `total_bytes` of input, shown only when wanted and stderr is a terminal.
    pub(crate) fn new(total_bytes: u64, quiet: bool) -> Self {
        Self::bar(
            total_bytes,
            "{spinner} reading {bytes}/{total_bytes} [{wide_bar}] {bytes_per_sec}, {eta} left",
            quiet,
        )
    }

    /// A bar over `steps` steps of a stage named `what` (e.g. the buckets of the grouping
    /// stage), shown only when wanted and stderr is a terminal.
    pub(crate) fn steps(steps: u64, what: &str, quiet: bool) -> Self {
        let template = format!("{{spinner}} {what} {{pos}}/{{len}} [{{wide_bar}}] {{eta}} left");
        Self::bar(steps, &template, quiet)
    }

    fn bar(len: u64, template: &str, quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style.progress_chars("=> "));
        Progress(Some(bar))
    }

    pub(crate) fn inc(&self, bytes: u64) {
        if let Some(b) = &self.0 {
            b.inc(bytes);
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}
