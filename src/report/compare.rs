//! `kdcache compare`: one table of several runs' summaries (and their curves in one plot).
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::run::Summary;

/// One table row per run: the end-of-run metrics, the best epoch-end top-1 (with its epoch), speed.
pub fn compare(runs: &[PathBuf], plot: Option<&Path>, out: &mut dyn Write) -> Result<()> {
    let io = |e| Error::io("<stdout>", e);
    writeln!(out, "| run | estimator | top-1 | best top-1 (epoch) | top-5 | ECE | NLL | teacher agreement | ms/step | rows/s | head rows/step | steps |")
        .map_err(io)?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|").map_err(io)?;
    for r in runs {
        let s = Summary::load(r)?;
        let f = |x: Option<f64>, d: usize| x.map(|x| format!("{x:.d$}")).unwrap_or("–".into());
        let best = match (s.best_top1, s.best_epoch) {
            (Some(b), Some(e)) => format!("{b:.4} ({e})"),
            _ => "–".into(),
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {} |",
            r.display(),
            s.loss,
            f(s.top1, 4),
            best,
            f(s.top5, 4),
            f(s.ece, 4),
            f(s.nll, 3),
            f(s.teacher_agreement, 4),
            s.step_ms_median,
            s.rows_per_s,
            s.head_rows,
            s.steps
        )
        .map_err(io)?;
    }
    if let Some(p) = plot {
        crate::report::plot::training_curves(runs, p)?;
    }
    Ok(())
}
