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

#[derive(Debug, Clone, Serialize)]
pub struct IoRow {
    pub encoding: String,
    pub rows: usize,
    pub bytes_per_row: f64,
    pub write_rows_per_s: f64,
    /// Full sequential scan into columnar batches, 2 prefetch workers.
    pub scan_rows_per_s: f64,
    /// Block-shuffled scan (blocks in random order, rows permuted within blocks).
    pub shuffled_rows_per_s: f64,
    /// pyarrow reading the same Parquet files into numpy arrays (null if no pyarrow).
    pub pyarrow_rows_per_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QualityRow {
    pub estimator: String,
    pub steps: u64,
    pub top1: f64,
    pub ece: f64,
    pub step_ms_median: f64,
    pub head_rows: f64,
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
    /// Cache I/O: C = 131072, K = 64, f16 logits, 3 temperatures.
    pub io: Vec<IoRow>,
    /// Student quality per estimator after the same number of steps on the demo data (empty if absent).
    pub quality: Vec<QualityRow>,
}

/// Rows that look like a real teacher's: a true class, its superclass neighbours and near-by classes
/// ranked first, logits falling with exponential gaps, consistent normalisers. No two rows repeat.
pub fn realistic_rows(n: usize, classes: u32, k: usize, seed: u64) -> crate::format::RowBatch {
    use rand::Rng;
    let spec = crate::format::RowSpec { classes: classes as u64, k, temperatures: vec![1.0, 2.0, 4.0], tail_samples: 0, aug_dim: 0, logit_dtype: crate::format::LogitDtype::F16 };
    let mut b = crate::format::RowBatch::new(&spec);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut ids: Vec<u32> = Vec::with_capacity(k);
    for i in 0..n {
        let c = rng.random_range(0..classes);
        ids.clear();
        ids.push(c);
        let mut misses = 0;
        while ids.len() < k {
            // superclass mates first, then classes at geometric distances, then anywhere (also once
            // the nearer pools run dry: the last superclass may hold fewer than 7 classes)
            let j = match ids.len() {
                _ if misses > 100 => rng.random_range(0..classes),
                1..=6 => (c / 10 * 10 + rng.random_range(0..10)).min(classes - 1),
                7..=32 => ((c as i64 + (rng.random::<f64>().powi(3) * 2000.0 - 1000.0) as i64).rem_euclid(classes as i64)) as u32,
                _ => rng.random_range(0..classes),
            };
            if ids.contains(&j) {
                misses += 1;
            } else {
                ids.push(j);
            }
        }
        let mut z = 12.0 + 2.0 * (rng.random::<f64>() - 0.5) * 2.0;
        let mut zs = Vec::with_capacity(k);
        for _ in 0..k {
            zs.push(half::f16::from_f64(z).to_f64());
            z -= -(rng.random::<f64>().max(1e-9)).ln() * 0.4;
        }
        let tail_z = z - 1.0; // the tail sits below the K-th logit
        for t in [1.0f64, 2.0, 4.0] {
            let head: f64 = zs.iter().map(|&v| (v / t).exp()).sum();
            let tail = (classes as f64 - k as f64) * (tail_z / t).exp() * 0.01;
            let total = head + tail;
            b.lse.push(total.ln() as f32);
            b.log_tail.push((tail / total).ln() as f32);
        }
        b.row.push(i as u64);
        b.view.push(0);
        b.label.push(c as i64);
        b.topk_idx.extend_from_slice(&ids);
        for v in zs {
            b.topk_logit.push(v as f32);
        }
    }
    b
}

/// Section 3: cache I/O for both encodings, and pyarrow on the same Parquet files.
pub fn io(rows: usize, dir: &Path) -> Result<Vec<IoRow>> {
    use crate::format::{CacheWriter, Encoding, Order, Signature, WriterOptions};
    let batch = realistic_rows(rows, 131072, 64, 1);
    let spec = crate::format::RowSpec { classes: 131072, k: 64, temperatures: vec![1.0, 2.0, 4.0], tail_samples: 0, aug_dim: 0, logit_dtype: crate::format::LogitDtype::F16 };
    let mut out = vec![];
    for enc in [Encoding::Kds, Encoding::Parquet] {
        let cdir = dir.join(format!("io_{}", enc.ext()));
        let t0 = Instant::now();
        let mut w = CacheWriter::create(&cdir, &spec, Signature::default(), WriterOptions { encoding: enc, overwrite: true, ..Default::default() }, None)?;
        w.push(&batch, None)?;
        let m = w.finish(rows as u64, 1, "kdcache bench")?;
        let write = rows as f64 / t0.elapsed().as_secs_f64();
        let bytes: u64 = m.shards.iter().map(|s| s.bytes).sum();
        let reader = std::sync::Arc::new(crate::format::CacheReader::open(&cdir)?);
        let scan = |order: Order| -> Result<f64> {
            let t = Instant::now();
            let mut n = 0;
            for b in reader.batches(order, 2) {
                n += b?.len();
            }
            Ok(n as f64 / t.elapsed().as_secs_f64())
        };
        let _ = scan(Order::Sequential)?; // warm the page cache
        let seq = scan(Order::Sequential)?;
        let shuf = scan(Order::Shuffled { seed: 1 })?;
        let py = if enc == Encoding::Parquet { pyarrow_scan(&cdir, rows) } else { None };
        out.push(IoRow { encoding: enc.ext().into(), rows, bytes_per_row: bytes as f64 / rows as f64, write_rows_per_s: write, scan_rows_per_s: seq, shuffled_rows_per_s: shuf, pyarrow_rows_per_s: py });
    }
    Ok(out)
}

fn pyarrow_scan(dir: &Path, rows: usize) -> Option<f64> {
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let script = format!(
        "import glob, time, numpy as np, pyarrow.parquet as pq\nfiles = sorted(glob.glob('{}/shard-*.parquet'))\nfor _ in range(2):\n    t = time.time(); n = 0\n    for f in files:\n        tb = pq.read_table(f)\n        cols = {{c: (tb.column(c).combine_chunks().flatten() if c in ('topk_idx','topk_logit','lse','log_tail') else tb.column(c)).to_numpy() for c in tb.column_names}}\n        n += tb.num_rows\n    dt = time.time() - t\nassert n == {rows}\nprint(n / dt)",
        dir.display()
    );
    let o = std::process::Command::new(py).args(["-c", &script]).output().ok()?;
    String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok()
}

/// Section 4: students trained for `steps` steps per estimator on a demo cache.
pub fn quality(data: &Path, cache: &Path, eval_cache: &Path, steps: usize, out: &Path) -> Result<Vec<QualityRow>> {
    let mut rows = vec![];
    let man = crate::format::Manifest::load(&cache.join("manifest.json"))?;
    let ests: Vec<Estimator> = [Estimator::Dis, Estimator::Full, Estimator::Topk, Estimator::Ghost, Estimator::Rs].into_iter().filter(|e| *e != Estimator::Rs || man.tail_samples > 0).collect();
    for est in ests {
        let run = out.join(format!("quality_{}", est.name()));
        let _ = std::fs::remove_dir_all(&run);
        let c = man.classes as usize;
        let o = crate::train::TrainOptions {
            cache: cache.into(), data: data.into(), eval_data: None, eval_cache: Some(eval_cache.into()), student: Some("mlp:256".into()), student_ts: None,
            loss: est, candidates: (c / 50).max(64).min(c), rank_budget: (man.top_k as f64 / 4.0).max(1.0), temperature: 2.0, alpha: 0.9, epochs: 1000,
            batch_size: 256, lr: 1e-3, head_opt: crate::train::optim::OptKind::Adam, head_lr: 1e-3, seed: 0, device: "cpu".into(), out: run,
            checkpoint_every: 0, log_every: 50, max_steps: steps, resume: false, progress: false,
        };
        let s = crate::train::train(&o)?;
        rows.push(QualityRow { estimator: est.name().into(), steps: s.steps, top1: s.top1, ece: s.ece, step_ms_median: s.step_ms_median, head_rows: s.candidates });
    }
    Ok(rows)
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

/// Section 2: time per step vs class count (random head and targets; the timings do not depend on values).
pub fn speed(class_counts: &[usize], reps: usize) -> Result<Vec<SpeedRow>> {
    let (b, d, k, temp) = (256usize, 256i64, 64usize, 2.0f64);
    let opts = (Kind::Float, Device::Cpu);
    let mut out = vec![];
    for &c in class_counts {
        // `full` holds the head, its gradient and two Adam moments ([C, d+1] each) and a few [B, C] logit
        // tensors; skip a class count whose tables would not fit in the memory available now
        let need = (c as f64) * ((d as f64 + 1.0) * 4.0 * 4.0 + b as f64 * 4.0 * 5.0);
        if let Some(avail) = mem_available() {
            if need > 0.8 * avail {
                eprintln!("bench: skipping C = {c} in the step-time table: needs about {:.1} GB, {:.1} GB available", need / 1e9, avail / 1e9);
                continue;
            }
        }
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
            // a full step at a million classes takes tens of seconds: fewer repetitions there
            let reps = if c >= 500_000 { reps.min(3) } else { reps };
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
    s += "\n## 3. Cache I/O (C = 131072, K = 64, f16 logits, 3 temperatures; 2 reader threads)\n\n";
    s += "| encoding | rows | bytes/row | write rows/s | scan rows/s | block-shuffled rows/s | pyarrow → numpy rows/s | kdcache / pyarrow |\n|---|---|---|---|---|---|---|---|\n";
    for v in &r.io {
        let py = v.pyarrow_rows_per_s.map(|p| format!("{p:.0}")).unwrap_or("–".into());
        let ratio = v.pyarrow_rows_per_s.map(|p| format!("{:.2}×", v.scan_rows_per_s / p)).unwrap_or("–".into());
        s += &format!("| {} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {py} | {ratio} |\n", v.encoding, v.rows, v.bytes_per_row, v.write_rows_per_s, v.scan_rows_per_s, v.shuffled_rows_per_s);
    }
    if !r.quality.is_empty() {
        s += "\n## 4. Student quality after the same number of steps (demo data, full-softmax evaluation)\n\n";
        s += "| estimator | steps | top-1 | ECE | ms/step | head rows/step |\n|---|---|---|---|---|---|\n";
        for q in &r.quality {
            s += &format!("| {} | {} | {:.4} | {:.4} | {:.2} | {:.0} |\n", q.estimator, q.steps, q.top1, q.ece, q.step_ms_median, q.head_rows);
        }
    }
    s
}

pub struct BenchOptions {
    pub classes: Vec<usize>,
    pub quick: bool,
    pub io_rows: usize,
    /// (data, train cache, eval cache) for the quality section.
    pub quality: Option<(std::path::PathBuf, std::path::PathBuf, std::path::PathBuf)>,
    pub quality_steps: usize,
}

pub fn run(out: &Path, o: &BenchOptions) -> Result<BenchReport> {
    let (classes, quick) = (&o.classes[..], o.quick);
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let report = BenchReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: machine(),
        threads: tch::get_num_threads() as usize,
        fidelity: {
            eprintln!("bench 1/4: gradient fidelity");
            fidelity(1000, quick)?
        },
        speed: {
            eprintln!("bench 2/4: step time at C = {classes:?}");
            speed(classes, if quick { 3 } else { 10 })?
        },
        io: {
            eprintln!("bench 3/4: cache I/O, {} rows", o.io_rows);
            io(o.io_rows, out)?
        },
        quality: match &o.quality {
            Some((d, c, e)) if c.join("manifest.json").exists() => {
                eprintln!("bench 4/4: student quality, {} steps per estimator", o.quality_steps);
                quality(d, c, e, o.quality_steps, out)?
            }
            _ => {
                eprintln!("bench 4/4: skipped (no demo cache at {}; run make cache)", o.quality.as_ref().map(|q| q.1.display().to_string()).unwrap_or_default());
                vec![]
            }
        },
    };
    let md = markdown(&report);
    crate::format::manifest::write_atomic(&out.join("bench.md"), md.as_bytes())?;
    let js = serde_json::to_vec_pretty(&report).map_err(|e| Error::Internal(e.to_string()))?;
    crate::format::manifest::write_atomic(&out.join("bench.json"), &js)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn realistic_rows_are_valid_even_when_the_last_superclass_is_small() {
        // 13 classes: the last superclass holds 3, fewer than the 7 superclass mates asked for
        let spec = crate::format::RowSpec { classes: 13, k: 12, temperatures: vec![1.0, 2.0, 4.0], tail_samples: 0, aug_dim: 0, logit_dtype: crate::format::LogitDtype::F16 };
        let b = super::realistic_rows(2000, 13, 12, 7);
        assert_eq!(b.len(), 2000);
        for r in 0..b.len() {
            crate::format::rows::check_row(b.get(r), &spec).unwrap_or_else(|e| panic!("row {r}: {e}"));
        }
    }
}
