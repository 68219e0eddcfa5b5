//! Student quality at equal steps on a cache (meant for the sparse regime: ≥ 20,000 classes, ≥ 10 rows
//! per class — the demo's default), each estimator with `train`'s defaults, `dis` also with each of its
//! other proposals, plus `dis` trained for the wall time `full` took.
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::sample::DisConfig;
use crate::train::loss::Estimator;

#[derive(Debug, Clone, Serialize)]
pub struct QualityRow {
    /// The estimator; `dis (clusters)` etc.: dis with another proposal than the default; `dis (full's
    /// wall time)` is dis trained for as long as `full` took.
    pub run: String,
    pub classes: u64,
    pub steps: u64,
    pub top1: f64,
    pub top5: f64,
    pub ece: f64,
    /// Held-out top-1 by the training frequency of each row's class (see `run::Bands`).
    pub bands: Option<crate::run::Bands>,
    pub step_ms_median: f64,
    pub head_rows: f64,
    pub wall_s: f64,
}

fn train_one(data: &Path, cache: &Path, eval_cache: &Path, est: Estimator, dis: DisConfig, steps: usize, out: &Path) -> Result<crate::train::Summary> {
    super::train_student(data, cache, Some(eval_cache), "mlp:256", est, dis, 2.0, 1000, steps, out)
}

pub fn quality(data: &Path, cache: &Path, eval_cache: &Path, steps: usize, out: &Path) -> Result<Vec<QualityRow>> {
    let man = crate::format::Manifest::load(&crate::format::manifest::manifest_path(cache))?;
    let ests: Vec<Estimator> = [Estimator::Dis, Estimator::Full, Estimator::Ghost, Estimator::Topk, Estimator::Rs]
        .into_iter()
        // rs trains at T = 2 here: caches whose tail samples carry their logits serve any temperature
        .filter(|e| *e != Estimator::Rs || (man.tail_samples > 0 && (man.spec().has_tail_logit() || (man.temperatures[0] - 2.0).abs() < 1e-6)))
        .collect();
    let mut rows = vec![];
    let row = |run: &str, s: &crate::train::Summary| QualityRow {
        run: run.into(),
        classes: s.classes,
        steps: s.steps,
        top1: s.top1.unwrap_or(f64::NAN),
        top5: s.top5.unwrap_or(f64::NAN),
        ece: s.ece.unwrap_or(f64::NAN),
        bands: s.bands,
        step_ms_median: s.step_ms_median,
        head_rows: s.head_rows,
        wall_s: s.wall_s,
    };
    let mut walls = std::collections::HashMap::new();
    for est in ests {
        eprintln!("  quality: {} for {steps} steps", est.name());
        let s = train_one(data, cache, eval_cache, est, DisConfig::default(), steps, &out.join(format!("quality_{}", est.name())))?;
        walls.insert(est.name(), s.step_ms_median);
        rows.push(row(est.name(), &s));
    }
    for proposal in crate::bench::proposals::PROPOSALS.into_iter().filter(|&p| p != DisConfig::default().proposal) {
        if proposal == crate::sample::Proposal::Prior && man.stats.class_prior.is_empty() {
            continue;
        }
        eprintln!("  quality: dis with the {} proposal for {steps} steps", proposal.name());
        let dis = DisConfig { proposal, ..Default::default() };
        let s = train_one(data, cache, eval_cache, Estimator::Dis, dis, steps, &out.join(format!("quality_dis_{}", proposal.name())))?;
        rows.push(row(&format!("dis ({})", proposal.name()), &s));
    }
    // dis for the training time full took (by median step time, so data loading is not counted)
    if let (Some(f), Some(d)) = (walls.get("full"), walls.get("dis"))
        && *d > 0.0
    {
        let n = ((steps as f64) * f / d).round().min(steps as f64 * 50.0) as usize;
        eprintln!("  quality: dis for {n} steps (full's time)");
        let s = train_one(data, cache, eval_cache, Estimator::Dis, DisConfig::default(), n, &out.join("quality_dis_wall"))?;
        rows.push(row("dis (full's time)", &s));
    }
    Ok(rows)
}
