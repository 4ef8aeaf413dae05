//! The progress bar on stderr, when stderr is a terminal.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mayfly_scan::scan::Progress;

/// Files and bytes scanned, with rates, redrawn a few times a second.
pub struct Bar {
    bar: ProgressBar,
    files: AtomicU64,
}

impl Bar {
    /// A bar on stderr, or `None` when stderr is not a terminal or the user asked for quiet.
    pub fn stderr(disabled: bool) -> Option<Bar> {
        if disabled || !std::io::stderr().is_terminal() {
            return None;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(8));
        let style = ProgressStyle::with_template(
            "{spinner} scanning: {msg} files, {bytes} ({bytes_per_sec}), {elapsed}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.set_message("0");
        bar.enable_steady_tick(Duration::from_millis(120));
        Some(Bar {
            bar,
            files: AtomicU64::new(0),
        })
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress for Bar {
    fn advance(&self, bytes: u64) {
        let files = self.files.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.inc(bytes);
        if files.is_multiple_of(64) {
            self.bar.set_message(files.to_string());
        }
    }
}
