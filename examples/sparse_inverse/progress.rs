//! Progress bars and logging.
//!
//! Messages go through the `log` crate to `env_logger`: `info` by default,
//! `warn` with `--quiet`, and `RUST_LOG` overrides both. Progress bars are drawn
//! on standard error only when it is a terminal and `--quiet` is not given.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

/// Starts the logger; `RUST_LOG` overrides the level chosen here.
pub fn init_logger(quiet: bool) {
    let level = if quiet { "warn" } else { "info" };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp(None)
        .format_target(false)
        .init();
}

/// Creates the progress bars of a run.
pub struct Progress {
    visible: bool,
}

impl Progress {
    /// Bars are shown when standard error is a terminal and `quiet` is false.
    pub fn new(quiet: bool) -> Self {
        Self {
            visible: !quiet && std::io::stderr().is_terminal(),
        }
    }

    /// Returns a bar of `len` steps labeled `prefix`, or a hidden one.
    pub fn bar(&self, len: u64, prefix: &str) -> ProgressBar {
        if !self.visible {
            return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        }
        let style = ProgressStyle::with_template("{prefix} [{bar:20}] {pos}/{len} {msg} {rate} {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .with_key("rate", |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1}/s", state.per_sec());
            })
            .progress_chars("=> ");
        ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr())
            .with_style(style)
            .with_prefix(prefix.to_string())
    }
}
