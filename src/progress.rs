//! Progress bars (indicatif, hidden when asked or when stderr is not a terminal) and Ctrl-C handling:
//! long commands poll [`interrupted`] between units of work and stop cleanly, leaving a resumable state.
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressStyle};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub fn bar(len: u64, what: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{prefix:>8} [{elapsed_precise}] {wide_bar} {pos}/{len} rows {per_sec} ETA {eta}")
            .expect("valid template"),
    );
    b.set_prefix(what.to_string());
    b
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

pub fn set_interrupted() {
    INTERRUPTED.store(true, Ordering::Relaxed);
}
