//! A progress bar for large transfers, only when stderr is a terminal.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// Transfers smaller than this get no bar.
const MIN_BYTES: u64 = 16 * 1024 * 1024;

/// A bar for `total` bytes of `name`, or a hidden one.
pub fn bar(name: &str, total: u64) -> ProgressBar {
    if total < MIN_BYTES || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(name.to_string());
    pb
}
