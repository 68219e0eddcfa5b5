//! `kdcache compare`: one table of several runs' summaries (and their curves in one plot).
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

pub fn compare(runs: &[PathBuf], plot: Option<&Path>, out: &mut dyn Write) -> Result<()> {
    let io = |e| Error::io("<stdout>", e);
    writeln!(out, "| run | estimator | top-1 | top-5 | ECE | NLL | teacher agreement | ms/step | rows/s | head rows/step | steps |").map_err(io)?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|").map_err(io)?;
    for r in runs {
        let p = r.join("summary.json");
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).ctx(&p)?)
            .map_err(|e| Error::corrupt(&p, None, e.to_string()))?;
        let f = |k: &str, d: usize| v.get(k).and_then(|x| x.as_f64()).map(|x| format!("{x:.d$}")).unwrap_or("–".into());
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.display(), v.get("loss").and_then(|x| x.as_str()).unwrap_or("?"), f("top1", 4), f("top5", 4), f("ece", 4), f("nll", 3),
            f("teacher_agreement", 4), f("step_ms_median", 2), f("rows_per_s", 0), f("candidates", 0), f("steps", 0)
        )
        .map_err(io)?;
    }
    if let Some(p) = plot {
        crate::report::plot::training_curves(runs, p)?;
    }
    Ok(())
}
