//! Progress (an indicatif bar on a terminal, periodic lines elsewhere, nothing with `--quiet`) and Ctrl-C handling:
//! long commands poll [`interrupted`] between units of work and stop cleanly, leaving a resumable state.
use std::sync::atomic::{AtomicBool, Ordering};

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Progress of a long command, in `unit`s: a bar on a terminal; elsewhere (logs, `nohup`, batch
/// schedulers) one line every 30 seconds and on [`Progress::line`] (e.g. at an epoch's end), with the
/// rate and the time left. Silent with `--quiet`.
pub struct Progress {
    pub bar: ProgressBar,
    lines: bool,
    what: String,
    unit: &'static str,
    start: Instant,
    start_pos: u64,
    last: Instant,
}

/// How often a non-terminal progress line is printed.
const LINE_EVERY: Duration = Duration::from_secs(30);

impl Progress {
    pub fn new(len: u64, what: &str, unit: &'static str, show: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let bar = if show && terminal {
            let b = ProgressBar::new(len);
            b.set_style(
                ProgressStyle::with_template(&format!("{{prefix}} {{msg}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} {{per_sec}} ETA {{eta}}"))
                    .expect("valid template"),
            );
            b.set_prefix(what.to_string());
            b
        } else {
            let b = ProgressBar::hidden();
            b.set_length(len);
            b
        };
        let now = Instant::now();
        Progress { bar, lines: show && !terminal, what: what.into(), unit, start: now, start_pos: 0, last: now }
    }

    /// Where the work starts (a resume): the rate counts from here.
    pub fn set_position(&mut self, pos: u64) {
        self.bar.set_position(pos);
        self.start_pos = pos;
        self.start = Instant::now();
    }

    /// Sets the position after some work (no rate reset); prints a line when one is due.
    pub fn advance_to(&mut self, pos: u64, extra: &str) {
        self.bar.set_position(pos);
        if self.lines && self.last.elapsed() >= LINE_EVERY {
            self.line(extra);
        }
    }

    pub fn inc(&mut self, n: u64, extra: &str) {
        let pos = self.bar.position() + n;
        self.advance_to(pos, extra);
    }

    /// A short state shown beside the bar and in the lines (e.g. `epoch 2/5`).
    pub fn set_message(&self, msg: String) {
        self.bar.set_message(msg);
    }

    /// Prints a progress line now (non-terminal mode only).
    pub fn line(&mut self, extra: &str) {
        if !self.lines {
            return;
        }
        self.last = Instant::now();
        let (pos, len) = (self.bar.position(), self.bar.length().unwrap_or(0));
        let secs = self.start.elapsed().as_secs_f64();
        let rate = (pos.saturating_sub(self.start_pos)) as f64 / secs.max(1e-9);
        let eta = if rate > 0.0 { format!("{:.0} s", len.saturating_sub(pos) as f64 / rate) } else { "?".into() };
        let msg = self.bar.message();
        let msg = if msg.is_empty() { String::new() } else { format!(" {msg}") };
        eprintln!(
            "{}{msg}: {pos}/{len} {} ({:.0}%), {rate:.1} {}/s, ETA {eta}{extra}",
            self.what,
            self.unit,
            100.0 * pos as f64 / len.max(1) as f64,
            self.unit
        );
    }

    /// A message that stays (above the bar on a terminal).
    pub fn println(&self, msg: String) {
        if self.bar.is_hidden() {
            if self.lines {
                eprintln!("{msg}");
            }
        } else {
            self.bar.println(msg);
        }
    }

    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

pub fn set_interrupted() {
    INTERRUPTED.store(true, Ordering::Relaxed);
}
