//! Progress of a long resampling run (`boot`, `bdiff`) on stderr: a bar with the replicates
//! done, the rate and the time left, drawn by `indicatif`, only when the user asked for it and
//! stderr is a terminal (logs and pipes get nothing).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A replicate counter that draws itself, or does nothing.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// `total` replicates of the command `label`; drawn if `wanted` and stderr is a terminal.
    pub fn replicates(label: &str, total: usize, wanted: bool) -> Self {
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new(total as u64);
        let template =
            format!("{label}: {{bar:30}} {{pos}}/{{len}} replicates  {{per_sec}}  {{elapsed}} elapsed, ETA {{eta}}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        Progress(Some(bar))
    }

    /// `done` replicates are finished.
    pub fn set(&self, done: usize) {
        if let Some(bar) = &self.0 {
            bar.set_position(done as u64);
        }
    }

    /// Leaves the final state on screen.
    pub fn finish(&self) {
        if let Some(bar) = &self.0 {
            bar.finish();
        }
    }
}
