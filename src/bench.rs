//! `kdcache bench`: the figures users choose a method and a cache budget by, measured side by side in
//! one run, written as `bench.md` and `bench.json` (keys documented on [`BenchReport`]).
use std::path::Path;
use std::time::Instant;

use rand::SeedableRng;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::sample::{ClassProposal, RankProposal};
use crate::train::loss::{DisState, Estimator, LossConfig, Targets, step_loss};
use crate::train::optim::{OptConfig, OptKind, RowOptimizer};

#[derive(Debug, Clone, Serialize)]
pub struct FidelityRow {
    pub estimator: String,
    /// Cached classes per row (K).
    pub k: usize,
    /// Head rows computed per step (mean).
    pub head_rows: f64,
    pub angle_single_deg: f64,
    pub norm_ratio_single: f64,
    pub angle_mean64_deg: f64,
    pub norm_ratio_mean64: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SpeedRow {
    pub classes: usize,
    pub estimator: String,
    pub candidates: usize,
    /// Head + loss + backward + row-wise optimizer, per step, median ms.
    pub head_ms: f64,
    /// Whole step with the demo backbone (MLP 64→256), median ms.
    pub step_ms: f64,
    /// head_ms of `full` / head_ms of this estimator at the same C.
    pub speedup_head: f64,
    pub speedup_step: f64,
}

/// `bench.json`.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    pub command: String,
    pub machine: String,
    pub threads: usize,
    /// Angle (degrees) and norm ratio of each estimator's head gradient to the exact gradient of the
    /// full KD loss against the *true* teacher distribution, single draw and mean of 64 draws.
    pub fidelity: Vec<FidelityRow>,
    /// Time per step vs class count.
    pub speed: Vec<SpeedRow>,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())).unwrap_or_default();
    format!("{} cores, {cpu}", std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1))
}

fn angle_ratio(g: &Tensor, r: &Tensor) -> Result<(f64, f64)> {
    let dot = (g * r).f_sum(Kind::Double)?.f_double_value(&[])?;
    let (ng, nr) = (g.f_norm()?.f_double_value(&[])?, r.f_norm()?.f_double_value(&[])?);
    Ok(((dot / (ng * nr).max(1e-300)).clamp(-1.0, 1.0).acos().to_degrees(), ng / nr.max(1e-300)))
}

/// Gradient of the exact KD loss (α = 1) w.r.t. the head, for a dense teacher distribution p [B, C].
fn exact_head_grad(p: &Tensor, ha: &Tensor, head: &Tensor, temp: f64) -> Result<Tensor> {
    let s = ha.f_matmul(&head.f_tr()?)?;
    let q = (&s / temp).f_softmax(1, Kind::Float)?;
    let b = ha.size()[0] as f64;
    Ok(((q - p) * (temp / b)).f_tr()?.f_matmul(ha)?)
}

fn head_grad(est: Estimator, tg: &Targets, h: &Tensor, head: &Tensor, temp: f64, dis: Option<&mut DisState>, seed: u64) -> Result<(Tensor, usize)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let out = step_loss(&LossConfig { estimator: est, temperature: temp, alpha: 1.0 }, h, head, tg, dis, &mut rng)?;
    out.loss.f_backward()?;
    let g = out.leaf.grad();
    let full = match &out.rows {
        Some(r) => head.f_zeros_like()?.f_index_add(0, r, &g)?,
        None => g,
    };
    Ok((full, out.computed_rows))
}

/// Targets from dense teacher logits (CPU ranker), with `m` tail samples drawn from the true tail.
fn targets_from_logits(z: &[f32], c: usize, k: usize, m: usize, temp: f32, labels: &[i64], rng: &mut impl rand::Rng) -> Targets {
    let b = z.len() / c;
    let mut t = Targets { b, k, m, classes: c, idx: vec![], p: vec![], tau: vec![], label: labels.to_vec(), tail_idx: vec![], tail_w: vec![] };
    for i in 0..b {
        let zi = &z[i * c..(i + 1) * c];
        let r = crate::rank::rank_row(zi, k, &[temp], None).expect("finite logits");
        t.idx.extend(r.idx.iter().map(|&x| x as i64));
        t.p.extend(r.logit.iter().map(|&v| ((v / temp) as f64 - r.lse[0] as f64).exp()));
        let tau = (r.log_tail[0] as f64).exp();
        t.tau.push(tau);
        if m > 0 {
            let top: std::collections::HashSet<u32> = r.idx.iter().copied().collect();
            let w: Vec<f64> = zi.iter().enumerate().map(|(j, &v)| if top.contains(&(j as u32)) { 0.0 } else { ((v / temp) as f64 - r.lse[0] as f64).exp() }).collect();
            let dist = rand::distr::weighted::WeightedIndex::new(&w).expect("a tail");
            let mut cnt = std::collections::BTreeMap::new();
            for _ in 0..m {
                *cnt.entry(rand::distr::Distribution::sample(&dist, rng)).or_insert(0u32) += 1;
            }
            let n = cnt.len();
            for (j, c) in cnt {
                t.tail_idx.push(j as i64);
                t.tail_w.push(tau * c as f64 / m as f64);
            }
            for _ in n..m {
                t.tail_idx.push(0);
                t.tail_w.push(0.0);
            }
        }
    }
    t
}

/// Section 1: gradient fidelity on the synthetic generator's Bayes-optimal teacher.
pub fn fidelity(classes: usize, quick: bool) -> Result<Vec<FidelityRow>> {
    let (b, d, temp) = (256usize, 64i64, 2.0f64);
    tch::manual_seed(7);
    let opts = (Kind::Float, Device::Cpu);
    // a teacher with class structure: logits from superclass-grouped centres
    let centres = Tensor::f_randn([classes as i64 / 10, d], opts)?.f_repeat_interleave_self_int(10, Some(0), None)? + Tensor::f_randn([classes as i64, d], opts)? * 0.5;
    let x = centres.f_index_select(0, &Tensor::f_randint(classes as i64, [b as i64], (Kind::Int64, Device::Cpu))?)? + Tensor::f_randn([b as i64, d], opts)? * 1.0;
    // teacher: the generator's posterior, softened (scale 0.3) so the tail beyond the top-K matters
    let bias = centres.f_square()?.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)? * -0.5;
    let z = (x.f_matmul(&centres.f_tr()?)? + bias.f_unsqueeze(0)?) * 0.3;
    let zv: Vec<f32> = Vec::<f32>::try_from(&z.f_flatten(0, -1)?)?;
    let p_true = (&z / temp).f_softmax(1, Kind::Float)?;
    // a partly trained student: the teacher's head, perturbed
    let h = x.f_detach()?;
    let ha = crate::train::student::Student::augment(&h)?;
    let head = Tensor::f_cat(&[&centres + Tensor::f_randn([classes as i64, d], opts)? * 0.3, bias.f_unsqueeze(1)?], 1)? * 0.3;
    let g_ref = exact_head_grad(&p_true, &ha, &head, temp)?;
    let labels = vec![-1i64; b];
    let draws = if quick { 8 } else { 64 };
    let mut rows = vec![];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    for k in [4usize, 12, 64] {
        let m = k; // as many tail samples as cached ranks (RS-KD at equal budget)
        for est in [Estimator::Topk, Estimator::Ghost, Estimator::Full, Estimator::Rs, Estimator::Dis] {
            let mut mean = head.f_zeros_like()?;
            let mut singles = vec![];
            let mut rows_used = 0.0;
            let mut dis = (est == Estimator::Dis).then(|| {
                let init: Vec<f64> = (0..k).map(|r| 1.0 / (1.0 + r as f64)).collect();
                DisState::new(RankProposal::new(&init, (k as f64 / 2.0).max(2.0), 0.05, 0.05), ClassProposal::new(&vec![1.0; classes], 0.2, 0.05, 0.1), (classes / 50).max(64))
            });
            let deterministic = matches!(est, Estimator::Topk | Estimator::Ghost | Estimator::Full);
            for s in 0..draws {
                let tg = targets_from_logits(&zv, classes, k, if est == Estimator::Rs { m } else { 0 }, temp as f32, &labels, &mut rng);
                let hh = h.f_detach()?;
                let (g, used) = head_grad(est, &tg, &hh, &head, temp, dis.as_mut(), s as u64)?;
                singles.push(angle_ratio(&g, &g_ref)?);
                rows_used += used as f64;
                mean += g;
                if deterministic {
                    mean *= draws as f64; // identical every draw: one is enough
                    rows_used *= draws as f64;
                    singles = vec![singles[0]; draws];
                    break;
                }
            }
            let mean = mean / draws as f64;
            let (am, rm) = angle_ratio(&mean, &g_ref)?;
            let a1 = singles.iter().map(|x| x.0).sum::<f64>() / singles.len() as f64;
            let r1 = singles.iter().map(|x| x.1).sum::<f64>() / singles.len() as f64;
            rows.push(FidelityRow { estimator: est.name().into(), k, head_rows: rows_used / draws as f64, angle_single_deg: a1, norm_ratio_single: r1, angle_mean64_deg: am, norm_ratio_mean64: rm });
        }
    }
    Ok(rows)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Section 2: time per step vs class count (random head and targets; the timings do not depend on values).
pub fn speed(class_counts: &[usize], reps: usize) -> Result<Vec<SpeedRow>> {
    let (b, d, k, temp) = (256usize, 256i64, 64usize, 2.0f64);
    let opts = (Kind::Float, Device::Cpu);
    let mut out = vec![];
    for &c in class_counts {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(c as u64);
        // targets: a clustered top-K per row (neighbouring class ids, as superclasses give)
        let mut tg = Targets { b, k, m: 0, classes: c, idx: vec![], p: vec![], tau: vec![], label: vec![], tail_idx: vec![], tail_w: vec![] };
        for _ in 0..b {
            let centre = rand::Rng::random_range(&mut rng, 0..c);
            let mut ids: Vec<i64> = vec![];
            while ids.len() < k {
                let j = ((centre as i64 + rand::Rng::random_range(&mut rng, -200i64..200)).rem_euclid(c as i64)) as i64;
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
        let mut full_head = 0.0;
        let mut full_step = 0.0;
        let cand = (c / 50).max(64).min(c);
        for est in [Estimator::Full, Estimator::Dis] {
            let mut head = Tensor::f_randn([c as i64, d + 1], opts)? * 0.01;
            let mut opt = RowOptimizer::new(OptConfig::new(OptKind::Adam, 1e-3), &head)?;
            let mut dis = (est == Estimator::Dis).then(|| DisState::new(RankProposal::new(&vec![0.1; k], 16.0, 0.05, 0.05), ClassProposal::new(&vec![1.0; c], 0.2, 0.05, 0.1), cand));
            let mut head_t = vec![];
            let mut step_t = vec![];
            for rep in 0..reps + 1 {
                let t0 = Instant::now();
                let h = backbone.forward(&x)?;
                let t1 = Instant::now();
                let hd = h.f_detach()?.f_requires_grad_(true)?;
                let o = step_loss(&LossConfig { estimator: est, temperature: temp, alpha: 0.9 }, &hd, &head, &tg, dis.as_mut(), &mut rng)?;
                o.loss.f_backward()?;
                let g = o.leaf.grad();
                match &o.rows {
                    Some(r) => opt.step_rows(&mut head, r, &g)?,
                    None => opt.step_all(&mut head, &g)?,
                }
                let t2 = Instant::now();
                (&h * hd.grad()).f_sum(Kind::Float)?.f_backward()?;
                let t3 = Instant::now();
                if rep > 0 {
                    head_t.push((t2 - t1).as_secs_f64() * 1e3);
                    step_t.push((t3 - t0).as_secs_f64() * 1e3);
                }
            }
            let (hm, sm) = (median(head_t), median(step_t));
            if est == Estimator::Full {
                (full_head, full_step) = (hm, sm);
            }
            out.push(SpeedRow { classes: c, estimator: est.name().into(), candidates: if est == Estimator::Full { c } else { cand }, head_ms: hm, step_ms: sm, speedup_head: full_head / hm, speedup_step: full_step / sm });
        }
    }
    Ok(out)
}

pub fn markdown(r: &BenchReport) -> String {
    let mut s = format!("# kdcache bench\n\n`{}` on {} ({} threads).\n\n", r.command, r.machine, r.threads);
    s += "## 1. Gradient fidelity (head gradient vs the exact full-KD gradient against the true teacher, T = 2)\n\n";
    s += "| estimator | K | head rows/step | angle, 1 draw | norm ratio, 1 draw | angle, mean of 64 | norm ratio, mean of 64 |\n|---|---|---|---|---|---|---|\n";
    for f in &r.fidelity {
        s += &format!("| {} | {} | {:.0} | {:.1}° | {:.3} | {:.1}° | {:.3} |\n", f.estimator, f.k, f.head_rows, f.angle_single_deg, f.norm_ratio_single, f.angle_mean64_deg, f.norm_ratio_mean64);
    }
    s += "\n`full` here is the full softmax against the cache's view of the teacher (top-K exact, tail spread evenly); `rs` draws as many tail samples as K.\n\n";
    s += "## 2. Step time vs class count (B = 256, d = 256, K = 64; dis candidates = 2% of C, at least 64)\n\n";
    s += "| C | estimator | candidates | head+loss+opt ms | whole step ms | speed-up (head) | speed-up (step) |\n|---|---|---|---|---|---|---|\n";
    for v in &r.speed {
        s += &format!("| {} | {} | {} | {:.2} | {:.2} | {:.1}× | {:.1}× |\n", v.classes, v.estimator, v.candidates, v.head_ms, v.step_ms, v.speedup_head, v.speedup_step);
    }
    s
}

pub fn run(out: &Path, classes: &[usize], quick: bool) -> Result<BenchReport> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let report = BenchReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        threads: tch::get_num_threads() as usize,
        fidelity: fidelity(1000, quick)?,
        speed: speed(classes, if quick { 3 } else { 10 })?,
    };
    let md = markdown(&report);
    crate::format::manifest::write_atomic(&out.join("bench.md"), md.as_bytes())?;
    let js = serde_json::to_vec_pretty(&report).map_err(|e| Error::Internal(e.to_string()))?;
    crate::format::manifest::write_atomic(&out.join("bench.json"), &js)?;
    Ok(report)
}
