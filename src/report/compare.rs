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

/// Where a run first reached held-out top-1 `target`: (step, seconds of training; None for a run that
/// did not record them).
fn first_reaching(run: &Path, target: f64) -> Result<Option<(u64, Option<f64>)>> {
    let lines = crate::run::read_metrics(run)?;
    Ok(lines.iter().find(|m| m.eval.as_ref().is_some_and(|e| e.top1 >= target - 1e-12)).map(|m| (m.step, m.train_s)))
}

/// The best held-out top-1 of any evaluation of a run.
fn best_top1(run: &Path) -> Result<Option<f64>> {
    Ok(crate::run::read_metrics(run)?.iter().filter_map(|m| m.eval.as_ref().map(|e| e.top1)).reduce(f64::max))
}

/// One table row per run: the end-of-run metrics (top-1 also by frequency band: classes with > 100, 20–100
/// and < 20 training rows), the best epoch-end top-1 (with its epoch), speed and wall time, and the
/// settings that differ by estimator (α, T, the head's learning rate). Then the time to accuracy: the
/// steps and seconds of training each run needed to first reach the best top-1 of `target` (one of the
/// runs; default: the run that reached the least, the slowest-converging one), from every held-out
/// evaluation (`train --eval-every` makes them finer than epochs).
pub fn compare(runs: &[PathBuf], plot: Option<&Path>, target: Option<&Path>, out: &mut dyn Write) -> Result<()> {
    let io = |e| Error::io("<stdout>", e);
    writeln!(
        out,
        "| run | estimator | top-1 | top-1 many/medium/few | retrieval rank-1/mAP | best top-1 (epoch) | top-5 | ECE | NLL | teacher agreement | ms/step | rows/s | head rows/step | steps | wall s | α | T | head lr |"
    )
    .map_err(io)?;
    writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|").map_err(io)?;
    let f = |x: Option<f64>, d: usize| x.map(|x| format!("{x:.d$}")).unwrap_or("–".into());
    let mut routes = vec![];
    for r in runs {
        let s = Summary::load(r)?;
        if !s.route.is_empty() {
            let stops: Vec<String> = s.route.iter().map(|w| format!("{} from epoch {} (step {})", w.cache, w.epoch + 1, w.step)).collect();
            routes.push(format!("route of {}: {}", r.display(), stops.join(" → ")));
        }
        let retr = s.retrieval.map(|r| format!("{:.3}/{:.3}", r.rank1, r.map)).unwrap_or("–".into());
        let bands = s.bands.map(|b| format!("{}/{}/{}", f(b.many, 3), f(b.medium, 3), f(b.few, 3))).unwrap_or("–".into());
        let best = match (s.best_top1, s.best_epoch) {
            (Some(b), Some(e)) => format!("{b:.4} ({e})"),
            _ => "–".into(),
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.0} | {:.0} | {} | {:.1} | {} | {} | {} |",
            r.display(),
            s.loss,
            f(s.top1, 4),
            bands,
            retr,
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
    // runs along a route of anchors: where each moved on
    for line in routes {
        writeln!(out, "\n{line}").map_err(io)?;
    }
    let bests: Vec<Option<f64>> = runs.iter().map(|r| best_top1(r)).collect::<Result<_>>()?;
    let chosen = match target {
        Some(t) => {
            let i = runs.iter().position(|r| r == t).ok_or_else(|| Error::invalid(format!("--target {}: not one of the runs compared", t.display())))?;
            let b = bests[i].ok_or_else(|| Error::invalid(format!("--target {}: the run has no held-out evaluation", t.display())))?;
            Some((i, b, "the target"))
        }
        None if runs.len() > 1 => {
            bests.iter().enumerate().filter_map(|(i, b)| b.map(|b| (i, b, "the run that reached least"))).min_by(|a, b| a.1.total_cmp(&b.1))
        }
        None => None,
    };
    if let Some((slow, target, why)) = chosen {
        writeln!(out, "\ntime to accuracy: to first reach top-1 {target:.4} (the best of {}, {why})\n", runs[slow].display()).map_err(io)?;
        writeln!(out, "| run | step | seconds of training |\n|---|---|---|").map_err(io)?;
        for r in runs {
            let (step, secs) = match first_reaching(r, target)? {
                Some((step, secs)) => (step.to_string(), f(secs, 1)),
                None => ("–".into(), "–".into()),
            };
            writeln!(out, "| {} | {step} | {secs} |", r.display()).map_err(io)?;
        }
    }
    if let Some(p) = plot {
        crate::report::plot::training_curves(runs, p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The settings, the bands, and the time to accuracy by hand: b reaches least (best 0.4), which a
    /// first reaches at step 10 after 5 s of training and b at step 20 after 7 s.
    #[test]
    fn the_table_shows_each_runs_settings() {
        let t = tempfile::tempdir().unwrap();
        let mut runs = vec![];
        let evals = |pts: &[(u64, f64, f64)]| -> String {
            pts.iter()
                .map(|&(step, top1, secs)| {
                    let e = crate::run::EvalReport { top1, ..Default::default() };
                    serde_json::to_string(&crate::run::MetricsLine { step, eval: Some(e), train_s: Some(secs), ..Default::default() }).unwrap() + "\n"
                })
                .collect()
        };
        let bands = crate::run::Bands { many: Some(0.5), medium: None, few: Some(0.25), many_rows: 2, medium_rows: 0, few_rows: 4 };
        for (name, loss, lr, pts, bands) in
            [("a", "dis", Some(0.01), [(10, 0.45, 5.0), (20, 0.5, 9.0)], Some(bands)), ("b", "full", None, [(10, 0.2, 3.0), (20, 0.4, 7.0)], None)]
        {
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
                bands,
                retrieval: None,
                route: vec![],
            };
            std::fs::write(d.join("summary.json"), serde_json::to_string(&s).unwrap()).unwrap();
            std::fs::write(d.join("metrics.jsonl"), evals(&pts)).unwrap();
            if let Some(lr) = lr {
                std::fs::write(d.join("config.json"), format!("{{\"head_lr\": {lr}}}")).unwrap();
            }
            runs.push(d);
        }
        let mut out = vec![];
        compare(&runs, None, None, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("| wall s | α | T | head lr |"), "{}", lines[0]);
        assert!(lines[2].contains("| dis |") && lines[2].ends_with("| 12.2 | 0.9 | 2 | 1e-2 |"), "{}", lines[2]);
        assert!(lines[3].contains("| full |") && lines[3].ends_with("| 0.9 | 2 | – |"), "{}", lines[3]);
        assert!(lines[2].contains("| 0.4000 | 0.500/–/0.250 | – |") && lines[3].contains("| 0.4000 | – | – |"), "{}\n{}", lines[2], lines[3]);
        assert!(text.contains("to first reach top-1 0.4000 (the best of") && text.contains("b, the run that reached least)"), "{text}");
        let tail: Vec<&str> = lines.iter().rev().take(2).copied().collect();
        assert!(tail[1].ends_with("a | 10 | 5.0 |") && tail[0].ends_with("b | 20 | 7.0 |"), "{text}");
        // the best of a as the target: b never reaches 0.5
        let mut out = vec![];
        compare(&runs, None, Some(&runs[0]), &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("to first reach top-1 0.5000") && text.contains("a, the target)"), "{text}");
        assert!(text.trim_end().ends_with("b | – | – |") && text.contains("a | 20 | 9.0 |"), "{text}");
        let mut out = vec![];
        let err = compare(&runs, None, Some(Path::new("elsewhere")), &mut out).unwrap_err().to_string();
        assert!(err.contains("not one of the runs"), "{err}");
    }
}
