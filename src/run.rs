//! The files of a training run directory that other commands read back (`compare`, `report`, `bench`):
//! their types live here, free of libtorch, so the writer (`train`) and every reader share them.
//!
//! A run directory holds `config.json` (the options, see `train::TrainOptions`), `metrics.jsonl` (one
//! [`MetricsLine`] per logged step or evaluation), `checkpoint.safetensors`, `curves.svg` and
//! `summary.json` ([`Summary`]).
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};

/// Held-out metrics with the full softmax.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EvalReport {
    pub rows: usize,
    pub top1: f64,
    pub top5: f64,
    pub nll: f64,
    pub ece: f64,
    pub teacher_agreement: Option<f64>,
    /// Top-1 by how many training rows each row's class has (null when no training labels were given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bands: Option<Bands>,
    /// Retrieval from the student's features (`train --retrieval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<Retrieval>,
}

/// Retrieval on the held-out rows from the student's backbone features, as person re-identification
/// (Market-1501) is evaluated: for each class with two held-out rows or more, its first row is a query;
/// every other held-out row is the gallery; the gallery is ranked by cosine similarity to the query.
/// rank-1: the share of queries whose nearest gallery row has their class; mAP: the mean over queries of
/// the average precision of the ranking. `unseen_*`: the same over the queries whose class has no
/// training row (classes the head never trained on: the features must carry them), when there are any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Retrieval {
    pub queries: usize,
    pub gallery: usize,
    pub rank1: f64,
    pub map: f64,
    #[serde(default)]
    pub unseen_queries: usize,
    #[serde(default)]
    pub unseen_rank1: Option<f64>,
    #[serde(default)]
    pub unseen_map: Option<f64>,
}

/// Held-out top-1 by frequency band, as long-tailed recognition reports it: classes with more than 100
/// training rows (many-shot), 20 to 100 (medium) and fewer than 20 (few-shot). A band without held-out
/// rows has top-1 null.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Bands {
    pub many: Option<f64>,
    pub medium: Option<f64>,
    pub few: Option<f64>,
    /// Held-out rows in each band.
    pub many_rows: usize,
    pub medium_rows: usize,
    pub few_rows: usize,
}

impl Bands {
    /// The band (0 many, 1 medium, 2 few) of a class with `n` training rows.
    pub fn band(n: u64) -> usize {
        match n {
            101.. => 0,
            20..=100 => 1,
            _ => 2,
        }
    }

    /// From (training rows of the class, correct) per held-out row.
    pub fn from_rows(rows: impl IntoIterator<Item = (u64, bool)>) -> Self {
        let (mut n, mut ok) = ([0usize; 3], [0usize; 3]);
        for (count, right) in rows {
            let b = Self::band(count);
            n[b] += 1;
            ok[b] += right as usize;
        }
        let top1 = |b: usize| (n[b] > 0).then(|| ok[b] as f64 / n[b] as f64);
        Bands { many: top1(0), medium: top1(1), few: top1(2), many_rows: n[0], medium_rows: n[1], few_rows: n[2] }
    }
}

/// One line of `metrics.jsonl`: a logged training step (`loss`, `step_ms`, `head_rows`) or an
/// evaluation at an epoch's end (`eval`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MetricsLine {
    pub step: u64,
    pub epoch: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_rows: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval: Option<EvalReport>,
    /// Seconds of training (steps and data loading, not evaluation) up to this line, over every process
    /// of a resumed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_s: Option<f64>,
    /// An evaluation within an epoch (`train --eval-every`); `epoch` is then the epoch in progress (1-based).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub within_epoch: bool,
    /// Route anchors (`train --cache a1,…,final`): the cache that trains from this step on, and its place
    /// on the route (0 = the first anchor); on a line of its own at each switch, the first included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor: Option<usize>,
}

/// Reads `metrics.jsonl`; lines that do not parse (a line cut short by a crash) are skipped.
pub fn read_metrics(run: &Path) -> Result<Vec<MetricsLine>> {
    let p = run.join("metrics.jsonl");
    let text = std::fs::read_to_string(&p).ctx(&p)?;
    Ok(text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
}

/// `RUN/summary.json`. The held-out metrics are null when the run had no held-out set.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// The estimator (`full`, `topk`, `ghost`, `rs`, `dis`).
    pub loss: String,
    /// Held-out accuracy with the full softmax, at the end of the run.
    pub top1: Option<f64>,
    pub top5: Option<f64>,
    /// Expected calibration error (15 bins) and negative log-likelihood on the held-out rows.
    pub ece: Option<f64>,
    pub nll: Option<f64>,
    /// Fraction of held-out rows where student and teacher agree on the top class (null without an eval cache).
    pub teacher_agreement: Option<f64>,
    /// The best held-out top-1 of the epoch-end evaluations, and the epoch (1-based) that reached it.
    #[serde(default)]
    pub best_top1: Option<f64>,
    #[serde(default)]
    pub best_epoch: Option<usize>,
    pub steps: u64,
    /// Median milliseconds of a training step: forward, loss, backward, both optimizers and the
    /// sampler's bookkeeping (no data loading).
    pub step_ms_median: f64,
    /// Cache rows trained per second of wall time, data loading included.
    pub rows_per_s: f64,
    pub classes: u64,
    /// Mean number of distinct head rows computed per step (C for the dense estimators).
    #[serde(alias = "candidates")]
    pub head_rows: f64,
    pub temperature: f64,
    pub alpha: f64,
    /// Epochs trained: steps / steps per epoch (fractional when --max-steps stopped the run early).
    pub epochs: f64,
    pub wall_s: f64,
    /// Held-out rows evaluated (0: no held-out set, and the metrics above are null).
    pub eval_rows: usize,
    /// Held-out top-1 by the training frequency of each row's class (see [`Bands`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bands: Option<Bands>,
    /// Retrieval from the student's features at the end (`train --retrieval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retrieval: Option<Retrieval>,
    /// The caches a run of route anchors trained through, in order, with the step and epoch (0-based)
    /// each took over (empty for a run from one cache).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteStop>,
}

/// One cache on a run's route of anchors (`train --cache a1,…,final`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteStop {
    pub cache: String,
    /// The step count when it took over, and the epoch (0-based) it started.
    pub step: u64,
    pub epoch: usize,
    /// Seconds of training when it took over, from `metrics.jsonl` (for the curves; not written to
    /// `summary.json`, which records where the route went, not how long it took).
    #[serde(skip)]
    pub train_s: Option<f64>,
}

/// The route a run's metrics record (each cache once, at its first switch line: a resumed run may
/// repeat one).
pub fn route(lines: &[MetricsLine]) -> Vec<RouteStop> {
    let mut out: Vec<(usize, RouteStop)> = vec![];
    for m in lines {
        if let (Some(place), Some(cache)) = (m.anchor, &m.cache)
            && !out.iter().any(|(p, _)| *p == place)
        {
            out.push((place, RouteStop { cache: cache.clone(), step: m.step, epoch: m.epoch, train_s: m.train_s }));
        }
    }
    out.into_iter().map(|(_, r)| r).collect()
}

impl Summary {
    pub fn load(run: &Path) -> Result<Self> {
        let p = run.join("summary.json");
        let text = std::fs::read_to_string(&p).ctx(&p)?;
        serde_json::from_str(&text).map_err(|e| Error::corrupt(&p, None, format!("not a run summary: {e}")))
    }
}
