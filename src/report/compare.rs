//! `kdcache compare`: one table of several runs' summaries (and their curves in one plot).
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::run::Summary;

/// The head learning rate a run used, from its `config.json` (None when absent or unreadable: the table
/// shows "–"; the defaults differ by estimator, so a comparison should show it).
fn head_lr(run: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(run.join("config.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?.get("head_lr")?.as_f64()
}

/// One table row per run: the end-of-run metrics, the best epoch-end top-1 (with its epoch), speed and
/// wall time, and the settings that differ by estimator (α, T, the head's learning rate).
pub fn compare(runs: &[PathBuf], plot: Option<&Path>, out: &mut dyn Write) -> Result<()> {
    let io = |e| Error::io("<stdout>", e);
    writeln!(
        out,
        "| run | estimator | top-1 | best top-1 (epoch) | top-5 | ECE | NLL | teacher agreement | ms/step | rows/s | head rows/step | steps | wall s | α | T | head lr |"
    )
    .map_err(io)?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|").map_err(io)?;
    for r in runs {
        let s = Summary::load(r)?;
        let f = |x: Option<f64>, d: usize| x.map(|x| format!("{x:.d$}")).unwrap_or("–".into());
        let best = match (s.best_top1, s.best_epoch) {
            (Some(b), Some(e)) => format!("{b:.4} ({e})"),
            _ => "–".into(),
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {} | {:.1} | {} | {} | {} |",
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
            s.steps,
            s.wall_s,
            s.alpha,
            s.temperature,
            head_lr(r).map(|x| format!("{x:e}")).unwrap_or("–".into())
        )
        .map_err(io)?;
    }
    if let Some(p) = plot {
        crate::report::plot::training_curves(runs, p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_runs_settings() {
        let t = tempfile::tempdir().unwrap();
        let mut runs = vec![];
        for (name, loss, lr) in [("a", "dis", Some(0.01)), ("b", "full", None)] {
            let d = t.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            let s = Summary {
                loss: loss.into(),
                top1: Some(0.4),
                top5: None,
                ece: None,
                nll: None,
                teacher_agreement: None,
                best_top1: None,
                best_epoch: None,
                steps: 10,
                step_ms_median: 1.5,
                rows_per_s: 100.0,
                classes: 50,
                head_rows: 20.0,
                temperature: 2.0,
                alpha: 0.9,
                epochs: 1.0,
                wall_s: 12.25,
                eval_rows: 5,
            };
            std::fs::write(d.join("summary.json"), serde_json::to_string(&s).unwrap()).unwrap();
            if let Some(lr) = lr {
                std::fs::write(d.join("config.json"), format!("{{\"head_lr\": {lr}}}")).unwrap();
            }
            runs.push(d);
        }
        let mut out = vec![];
        compare(&runs, None, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("| wall s | α | T | head lr |"), "{}", lines[0]);
        assert!(lines[2].contains("| dis |") && lines[2].ends_with("| 12.2 | 0.9 | 2 | 1e-2 |"), "{}", lines[2]);
        assert!(lines[3].contains("| full |") && lines[3].ends_with("| 0.9 | 2 | – |"), "{}", lines[3]);
    }
}
