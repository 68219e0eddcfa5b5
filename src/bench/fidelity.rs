//! Gradient fidelity: each estimator's head and backbone gradients against the cache-based `full`
//! gradient (what every estimator tries to reproduce from the cache) and against the true teacher's,
//! for one draw and for the mean of many i.i.d. draws with the proposal frozen (bias vs variance).
//!
//! Setup: a superclass-structured teacher (the synthetic generator's posterior) at C classes, softened
//! to a *peaked* (scale 0.6) or *diffuse* (scale 0.3) distribution; a partly trained student — a linear
//! backbone h = x·A (A ≈ I) and the teacher's class means, perturbed, as its head; B = 256, d = 64, T = 2.
//! The backbone gradient is ∂L/∂A.
use rand::SeedableRng;
use serde::Serialize;
use tch::{Device, Kind, Tensor};

use crate::error::Result;
use crate::sample::{DisConfig, Tail};
use crate::train::dis::DisState;
use crate::train::loss::{Estimator, LossConfig, Targets, step_loss};

#[derive(Debug, Clone, Serialize)]
pub struct FidelityRow {
    pub classes: usize,
    pub k: usize,
    /// `peaked` or `diffuse`.
    pub teacher: String,
    /// Estimator, or a `dis` variant at 5% of C: `dis` (defaults), `dis-clusters` (negatives stratified by
    /// the online clusters, weighted by the student's mass), `dis-bucket` (`--dis-tail bucket`, whose dense
    /// counterpart is `ghost`), `dis-noclip` (unclipped head weights).
    pub estimator: String,
    /// Head rows computed per step (mean) and as a share of C.
    pub head_rows: f64,
    pub head_rows_pct: f64,
    /// i.i.d. draws averaged (1 for the deterministic estimators).
    pub draws: usize,
    /// Against the cache-based `full` gradient: mean over draws of one draw's angle (degrees) and norm
    /// ratio, then the angle and norm ratio of the mean of all draws; head, then backbone.
    pub head_angle_1: f64,
    pub head_ratio_1: f64,
    pub head_angle_mean: f64,
    pub head_ratio_mean: f64,
    pub bb_angle_1: f64,
    pub bb_ratio_1: f64,
    pub bb_angle_mean: f64,
    pub bb_ratio_mean: f64,
    /// Against the true teacher (the mean of the draws): head and backbone angle.
    pub head_angle_true: f64,
    pub bb_angle_true: f64,
}

pub fn angle_ratio(g: &Tensor, r: &Tensor) -> Result<(f64, f64)> {
    let (g, r) = (g.f_to_kind(Kind::Double)?, r.f_to_kind(Kind::Double)?);
    let dot = (&g * &r).f_sum(Kind::Double)?.f_double_value(&[])?;
    let (ng, nr) = (g.f_norm()?.f_double_value(&[])?, r.f_norm()?.f_double_value(&[])?);
    Ok(((dot / (ng * nr).max(1e-300)).clamp(-1.0, 1.0).acos().to_degrees(), ng / nr.max(1e-300)))
}

/// Targets from dense teacher logits (CPU ranker), with `m` tail samples drawn from the true tail.
pub fn targets_from_logits(z: &[f32], c: usize, k: usize, m: usize, temp: f32, labels: &[i64], rng: &mut impl rand::Rng) -> Targets {
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
            let w: Vec<f64> =
                zi.iter().enumerate().map(|(j, &v)| if top.contains(&(j as u32)) { 0.0 } else { ((v / temp) as f64 - r.lse[0] as f64).exp() }).collect();
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

/// The problem: data, teacher logits, the student's backbone matrix and head.
pub struct Problem {
    pub c: usize,
    pub x: Tensor,
    pub z: Vec<f32>,
    pub p_true: Tensor,
    pub a: Tensor,
    pub head: Tensor,
    pub temp: f64,
}

impl Problem {
    /// Classes equally frequent.
    pub fn new(c: usize, scale: f64, seed: i64) -> Result<Self> {
        Self::with_prior(c, scale, 0.0, seed)
    }

    /// With `zipf` = s > 0, the rows' classes follow the power law of `synth --zipf` and the teacher
    /// (and the student's head) add the log prior to their logits.
    pub fn with_prior(c: usize, scale: f64, zipf: f64, seed: i64) -> Result<Self> {
        let (b, d, temp) = (256i64, 64i64, 2.0);
        tch::manual_seed(seed);
        let opts = (Kind::Float, Device::Cpu);
        let c10 = (c as i64).div_euclid(10).max(1);
        let centres = Tensor::f_randn([c10, d], opts)?.f_repeat_interleave_self_int(10, Some(0), None)?.f_narrow(0, 0, c as i64)?
            + Tensor::f_randn([c as i64, d], opts)? * 0.5;
        let (rows, log_prior) = if zipf > 0.0 {
            let p = crate::data::synth::ClassPrior::new(c, zipf, seed as u64);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed as u64 ^ 0x5EED);
            let rows: Vec<i64> = (0..b).map(|_| p.sample(&mut rng) as i64).collect();
            let lp: Vec<f32> = p.log_prior().iter().map(|&x| x as f32).collect();
            (Tensor::f_from_slice(&rows)?, Some(Tensor::f_from_slice(&lp)?))
        } else {
            (Tensor::f_randint(c as i64, [b], (Kind::Int64, Device::Cpu))?, None)
        };
        let x = centres.f_index_select(0, &rows)? + Tensor::f_randn([b, d], opts)?;
        let mut bias = centres.f_square()?.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)? * -0.5;
        if let Some(lp) = &log_prior {
            bias = bias.f_add(lp)?;
        }
        let z = (x.f_matmul(&centres.f_tr()?)? + bias.f_unsqueeze(0)?) * scale;
        let zv: Vec<f32> = Vec::<f32>::try_from(&z.f_flatten(0, -1)?)?;
        let p_true = (&z / temp).f_softmax(1, Kind::Float)?;
        let a = Tensor::f_eye(d, opts)? + Tensor::f_randn([d, d], opts)? * 0.05;
        let head = Tensor::f_cat(&[&centres + Tensor::f_randn([c as i64, d], opts)? * 0.3, bias.f_unsqueeze(1)?], 1)? * 0.3;
        Ok(Problem { c, x, z: zv, p_true, a, head, temp })
    }

    /// (head gradient [C, D], backbone gradient [din, d], head rows) of one estimator draw.
    pub fn grads(&self, est: Estimator, tg: &Targets, dis: Option<&mut DisState>, seed: u64) -> Result<(Tensor, Tensor, usize)> {
        let a = self.a.f_detach()?.f_requires_grad_(true)?;
        let h = self.x.f_matmul(&a)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut out = step_loss(&LossConfig { estimator: est, temperature: self.temp, alpha: 1.0 }, &h, &self.head, tg, dis, &mut rng)?;
        out.backward()?;
        let g = out.head_grad()?;
        let gh = match &out.rows {
            Some(r) => self.head.f_zeros_like()?.f_index_add(0, r, &g)?,
            None => g,
        };
        Ok((gh, a.grad(), out.computed_rows))
    }

    /// Gradients of the exact KD loss (α = 1) against the true teacher distribution.
    pub fn true_grads(&self) -> Result<(Tensor, Tensor)> {
        let a = self.a.f_detach()?.f_requires_grad_(true)?;
        let head = self.head.f_detach()?.f_requires_grad_(true)?;
        let ha = crate::train::student::Student::augment(&self.x.f_matmul(&a)?)?;
        let logq = (ha.f_matmul(&head.f_tr()?)? / self.temp).f_log_softmax(1, Kind::Float)?;
        let kl = (&self.p_true * logq).f_sum(Kind::Float)?.f_neg()? / self.x.size()[0] as f64 * (self.temp * self.temp);
        kl.f_backward()?;
        Ok((head.grad(), a.grad()))
    }
}

/// The `dis` settings of the table: 5% of C per step, with variants.
fn dis_variant(name: &str, c: usize) -> DisConfig {
    let mut cfg = DisConfig { head_rows: c.div_ceil(20), ..Default::default() };
    match name {
        "dis-clusters" => cfg.proposal = crate::sample::Proposal::Clusters,
        "dis-bucket" => cfg.tail = Tail::Bucket,
        "dis-noclip" => cfg.clip = f64::INFINITY,
        _ => {}
    }
    cfg
}

struct Acc {
    sum_h: Tensor,
    sum_b: Tensor,
    single: Vec<[f64; 4]>,
    rows: f64,
    n: usize,
}

pub fn fidelity(class_counts: &[usize], ks: &[usize], draws: usize, progress: bool) -> Result<Vec<FidelityRow>> {
    let mut out = vec![];
    for &c in class_counts {
        for (teacher, scale) in [("peaked", 0.6), ("diffuse", 0.3)] {
            let pb = Problem::new(c, scale, 7)?;
            let (gh_true, gb_true) = pb.true_grads()?;
            let labels = vec![-1i64; 256];
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
            for &k in ks {
                let tg = targets_from_logits(&pb.z, c, k, 0, pb.temp as f32, &labels, &mut rng);
                let (gh_ref, gb_ref, _) = pb.grads(Estimator::Full, &tg, None, 0)?;
                let names = ["topk", "ghost", "full", "rs", "dis", "dis-clusters", "dis-bucket", "dis-noclip"];
                for name in names {
                    let est = match name {
                        "topk" => Estimator::Topk,
                        "ghost" => Estimator::Ghost,
                        "full" => Estimator::Full,
                        "rs" => Estimator::Rs,
                        _ => Estimator::Dis,
                    };
                    let n = match est {
                        // the default in full; its variants with fewer draws (their single-draw angles
                        // and biases are what they are compared by)
                        Estimator::Dis if name == "dis" => draws,
                        Estimator::Dis => (draws / 16).max(draws.min(16)),
                        Estimator::Rs => draws.min(if c > 10_000 { 32 } else { 256 }),
                        _ => 1,
                    };
                    if progress {
                        eprintln!("  fidelity: C = {c}, {teacher}, K = {k}, {name} ({n} draws)");
                    }
                    let mut dis = if est == Estimator::Dis {
                        let mut d = DisState::new(dis_variant(name, c), &pb.head, 11, None)?;
                        d.kmeans(&pb.head, 5)?;
                        d.refresh_mass(&crate::train::student::Student::augment(&pb.x.f_matmul(&pb.a)?)?, pb.temp)?;
                        Some(d)
                    } else {
                        None
                    };
                    let mut acc = Acc {
                        sum_h: gh_ref.f_zeros_like()?.f_to_kind(Kind::Double)?,
                        sum_b: gb_ref.f_zeros_like()?.f_to_kind(Kind::Double)?,
                        single: vec![],
                        rows: 0.0,
                        n: 0,
                    };
                    for s in 0..n {
                        let tg_s = if est == Estimator::Rs { targets_from_logits(&pb.z, c, k, k, pb.temp as f32, &labels, &mut rng) } else { tg.clone() };
                        let (gh, gb, used) = pb.grads(est, &tg_s, dis.as_mut(), 1000 + s as u64)?;
                        let (ah, rh) = angle_ratio(&gh, &gh_ref)?;
                        let (ab, rb) = angle_ratio(&gb, &gb_ref)?;
                        acc.single.push([ah, rh, ab, rb]);
                        acc.sum_h += gh.f_to_kind(Kind::Double)?;
                        acc.sum_b += gb.f_to_kind(Kind::Double)?;
                        acc.rows += used as f64;
                        acc.n += 1;
                    }
                    let mh = &acc.sum_h / acc.n as f64;
                    let mb = &acc.sum_b / acc.n as f64;
                    let (ahm, rhm) = angle_ratio(&mh, &gh_ref)?;
                    let (abm, rbm) = angle_ratio(&mb, &gb_ref)?;
                    let avg = |i: usize| acc.single.iter().map(|v| v[i]).sum::<f64>() / acc.n as f64;
                    let rows = acc.rows / acc.n as f64;
                    out.push(FidelityRow {
                        classes: c,
                        k,
                        teacher: teacher.into(),
                        estimator: name.into(),
                        head_rows: rows,
                        head_rows_pct: 100.0 * rows / c as f64,
                        draws: n,
                        head_angle_1: avg(0),
                        head_ratio_1: avg(1),
                        head_angle_mean: ahm,
                        head_ratio_mean: rhm,
                        bb_angle_1: avg(2),
                        bb_ratio_1: avg(3),
                        bb_angle_mean: abm,
                        bb_ratio_mean: rbm,
                        head_angle_true: angle_ratio(&mh, &gh_true)?.0,
                        bb_angle_true: angle_ratio(&mb, &gb_true)?.0,
                    });
                }
            }
        }
    }
    Ok(out)
}
