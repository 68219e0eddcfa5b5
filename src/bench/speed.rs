//! Step time vs class count: `full` against `dis` with a fixed head-row budget at every C and with 2% of
//! C. Random head and targets (timings do not depend on values); B = 256, d = 256, K = 64.
use std::time::Instant;

use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::error::Result;
use crate::sample::DisConfig;
use crate::train::dis::DisState;
use crate::train::loss::{Estimator, LossConfig, Targets, step_loss};
use crate::train::optim::{OptConfig, OptKind, RowOptimizer};

#[derive(Debug, Clone, Serialize)]
pub struct SpeedRow {
    pub classes: usize,
    /// `full`, `dis fixed` (the fixed budget) or `dis 2%`.
    pub estimator: String,
    /// Head rows computed per step (mean).
    pub head_rows: f64,
    /// Head + loss + backward + row-wise optimizer + the sampler's bookkeeping, per step, median ms.
    pub head_ms: f64,
    /// Whole step with the demo backbone (MLP 64→256), median ms.
    pub step_ms: f64,
    /// head_ms and step_ms of `full` divided by this row's, at the same C (null where `full` was skipped).
    pub speedup_head: Option<f64>,
    pub speedup_step: Option<f64>,
}

/// MemAvailable from /proc/meminfo, in bytes (None where there is no such file).
fn mem_available() -> Option<f64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: f64 = m.lines().find(|l| l.starts_with("MemAvailable:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn speed(class_counts: &[usize], fixed: usize, reps: usize) -> Result<Vec<SpeedRow>> {
    let (b, d, k, temp) = (256usize, 256i64, 64usize, 2.0f64);
    let opts = (Kind::Float, Device::Cpu);
    let mut out = vec![];
    for &c in class_counts {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(c as u64);
        // targets: a clustered top-K per row (neighbouring class ids, as superclasses give)
        let mut tg = Targets { b, k: k.min(c), m: 0, classes: c, idx: vec![], p: vec![], tau: vec![], label: vec![], tail_idx: vec![], tail_w: vec![] };
        let k = tg.k;
        for _ in 0..b {
            let centre = rand::Rng::random_range(&mut rng, 0..c);
            let mut ids: Vec<i64> = vec![];
            while ids.len() < k {
                let j = (centre as i64 + rand::Rng::random_range(&mut rng, -200i64..200)).rem_euclid(c as i64);
                if !ids.contains(&j) {
                    ids.push(j);
                }
            }
            let w: Vec<f64> = (0..k).map(|r| (-(r as f64) * 0.3).exp()).collect();
            let s: f64 = w.iter().sum::<f64>() / 0.97;
            tg.p.extend(w.iter().map(|x| x / s));
            tg.tau.push(0.03);
            tg.label.push(ids[0]);
            tg.idx.extend(ids);
        }
        let x = Tensor::f_randn([b as i64, 64], opts)?;
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let backbone = crate::nn::Mlp::new(&vs.root(), &[64, d], true);
        // `full` holds the head, its gradient and two Adam moments ([C, d+1] each) and a few [B, C] logit
        // tensors; each `dis` run its own head and moments: skip `full` where that would not fit in the
        // memory available now
        let table = (c as f64) * (d as f64 + 1.0) * 4.0;
        let need = 4.0 * table + (c as f64) * (b as f64) * 4.0 * 5.0 + 2.0 * 3.0 * table;
        let full_fits = mem_available().is_none_or(|avail| need < 0.8 * avail);
        if !full_fits {
            eprintln!("bench: skipping full at C = {c}: needs about {:.1} GB", need / 1e9);
        }
        struct Run {
            name: &'static str,
            est: Estimator,
            reps: usize,
            head: Tensor,
            opt: RowOptimizer,
            dis: Option<DisState>,
            head_t: Vec<f64>,
            step_t: Vec<f64>,
            rows: f64,
        }
        let mut runs = vec![];
        for (name, est, budget) in [("full", Estimator::Full, c), ("dis fixed", Estimator::Dis, fixed.min(c)), ("dis 2%", Estimator::Dis, c.div_ceil(50))] {
            if est == Estimator::Full && !full_fits {
                continue;
            }
            let head = Tensor::f_randn([c as i64, d + 1], opts)? * 0.01;
            let opt = RowOptimizer::new(OptConfig::new(OptKind::Adam, 1e-3), &head)?;
            let dis = if est == Estimator::Dis { Some(DisState::new(DisConfig { head_rows: budget, ..Default::default() }, &head, 1, None)?) } else { None };
            // a full step at a million classes takes seconds: fewer repetitions there
            let reps = if est == Estimator::Full && c >= 500_000 { reps.min(3) } else { reps };
            runs.push(Run { name, est, reps, head, opt, dis, head_t: vec![], step_t: vec![], rows: 0.0 });
        }
        // the estimators take turns, one step each, so that a change in the machine's load (shared
        // machines) falls on all of them alike; the first step of each is a warm-up
        for rep in 0..reps + 1 {
            for r in runs.iter_mut().filter(|r| rep <= r.reps) {
                let t0 = Instant::now();
                let h = backbone.forward(&x)?;
                let t1 = Instant::now();
                let hd = h.f_detach()?.f_requires_grad_(true)?;
                let mut o = step_loss(&LossConfig { estimator: r.est, temperature: temp, alpha: 0.9 }, &hd, &r.head, &tg, r.dis.as_mut(), &mut rng)?;
                o.backward()?;
                o.update_head(&mut r.head, &mut r.opt, r.dis.as_mut(), &hd, temp)?;
                let t2 = Instant::now();
                (&h * hd.grad()).f_sum(Kind::Float)?.f_backward()?;
                let t3 = Instant::now();
                if rep > 0 {
                    r.head_t.push((t2 - t1).as_secs_f64() * 1e3);
                    r.step_t.push((t3 - t0).as_secs_f64() * 1e3);
                    r.rows += o.computed_rows as f64 / r.reps as f64;
                }
            }
        }
        let mut full = None;
        for r in runs {
            let (hm, sm) = (median(r.head_t), median(r.step_t));
            if r.est == Estimator::Full {
                full = Some((hm, sm));
            }
            out.push(SpeedRow {
                classes: c,
                estimator: r.name.into(),
                head_rows: r.rows,
                head_ms: hm,
                step_ms: sm,
                speedup_head: full.map(|f| f.0 / hm),
                speedup_step: full.map(|f| f.1 / sm),
            });
        }
    }
    Ok(out)
}
