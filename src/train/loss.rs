//! The distillation estimators (`train --loss`). Notation: teacher p = softmax(z/T), student
//! s = [h,1]·tableᵀ, q = softmax(s/T). Every estimator has the same form per row,
//!     KD_i = −Σ_j t_ij·s_ij/T + log Ẑ_i  (+ the teacher-entropy constant, for reporting only)
//! and differs in the target t and the normaliser Ẑ:
//! - `full`:  t = top-K probabilities + the exact tail mass τ spread evenly over the other C−K classes;
//!            Ẑ = Σ over all C (dense, O(B·C·d)). The reference.
//! - `topk`:  t = top-K probabilities renormalised; Ẑ over the row's top-K only (the common, biased practice).
//! - `ghost`: teacher top-K plus one bucket holding τ; student top-K plus one bucket with its own exact tail
//!            mass (dense student normaliser).
//! - `rs`:    t = top-K + τ spread over the cached tail samples by their counts (unbiased for the true
//!            tail); dense student normaliser. Needs a cache built with --tail-samples.
//! - `dis`:   ranked positives kept with probability π_r and weighted 1/π_r (Horvitz–Thompson). One
//!            candidate set U is shared by the batch: the union of every row's positives (and labels),
//!            whose logits are computed for all rows, so they enter every row's normaliser exactly, plus
//!            negatives S drawn from the class proposal Q (see `crate::sample`); a sampled class not
//!            already in U has its logit corrected by −log incl_j (logQ correction). No class is counted
//!            twice in a row (accidental hits cannot occur). Given U, the normaliser estimate
//!            Ẑ_i = Σ_{j∈U} e^{s_ij/T} + Σ_{j∈S∖U} e^{s_ij/T}/incl_j is unbiased. The tail target
//!            τ/(C−K) rides on candidates outside the row's top-K (times 1/incl_j for sampled ones), or on
//!            the cached tail samples when the cache has them. With S = all classes and π ≡ 1 this is
//!            exactly `full`. Cost O(B·|U|·d) instead of O(B·C·d).
//! CE on labels uses the same candidates at T = 1, with the label always a candidate.
//! Loss = α·T²·mean_i KD_i + (1−α)·mean_{labelled i} CE_i.
use rand::Rng;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::format::rows::RowBatch;
use crate::sample::{ClassProposal, RankProposal, inclusion};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Estimator {
    Full,
    Topk,
    Ghost,
    Rs,
    Dis,
}

impl Estimator {
    pub fn name(self) -> &'static str {
        match self {
            Estimator::Full => "full",
            Estimator::Topk => "topk",
            Estimator::Ghost => "ghost",
            Estimator::Rs => "rs",
            Estimator::Dis => "dis",
        }
    }
}

/// What the cache says about a batch's rows, at the training temperature.
#[derive(Debug, Clone)]
pub struct Targets {
    pub b: usize,
    pub k: usize,
    pub m: usize,
    pub classes: usize,
    pub idx: Vec<i64>,
    pub p: Vec<f64>,
    pub tau: Vec<f64>,
    pub label: Vec<i64>,
    pub tail_idx: Vec<i64>,
    /// τ·cnt/Σcnt per tail sample slot (0 for empty slots).
    pub tail_w: Vec<f64>,
}

impl Targets {
    /// Rows `rows` of `batch`, at temperature `temp` (the `ti`-th of the cache).
    pub fn from_rows(batch: &RowBatch, rows: &[usize], ti: usize, temp: f64, classes: usize) -> Self {
        let (k, m) = (batch.k, batch.m);
        let mut t = Targets { b: rows.len(), k, m, classes, idx: vec![], p: vec![], tau: vec![], label: vec![], tail_idx: vec![], tail_w: vec![] };
        for &i in rows {
            let r = batch.get(i);
            let lse = r.lse()[ti] as f64;
            let tau = (r.log_tail()[ti] as f64).exp();
            t.idx.extend(r.topk_idx().iter().map(|&c| c as i64));
            t.p.extend((0..k).map(|j| (r.logit(j) as f64 / temp - lse).exp()));
            t.tau.push(tau);
            t.label.push(r.label());
            let cnt = r.tail_cnt();
            let total: u32 = cnt.iter().sum();
            t.tail_idx.extend(r.tail_idx().iter().map(|&c| c as i64));
            t.tail_w.extend(cnt.iter().map(|&c| if total > 0 { tau * c as f64 / total as f64 } else { 0.0 }));
        }
        t
    }
}

pub struct LossConfig {
    pub estimator: Estimator,
    pub temperature: f64,
    pub alpha: f64,
}

/// DIS state: both proposals, the negative budget, reusable class maps.
pub struct DisState {
    pub ranks: RankProposal,
    pub classes: ClassProposal,
    pub candidates: usize,
    upos: Vec<i32>,
}

impl DisState {
    pub fn new(ranks: RankProposal, classes: ClassProposal, candidates: usize) -> Self {
        let c = classes.mass.len();
        DisState { ranks, classes, candidates, upos: vec![-1; c] }
    }
}

/// A step's loss and what the optimizer needs.
pub struct StepOut {
    pub loss: Tensor,
    /// Reported value: the loss plus the teacher-entropy constant (so KD reads as a KL divergence).
    pub value: f64,
    /// Head rows the loss touches (None = all C rows, dense).
    pub rows: Option<Tensor>,
    /// The leaf holding those rows (gradient source for the row optimizer).
    pub leaf: Tensor,
    /// Distinct head rows computed this step.
    pub computed_rows: usize,
}

fn xlogx(x: f64) -> f64 {
    if x > 0.0 { x * x.ln() } else { 0.0 }
}

fn f32_tensor(v: &[f64], shape: &[i64], device: Device) -> Result<Tensor> {
    let u: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    Ok(Tensor::f_from_slice(&u)?.f_reshape(shape)?.f_to_device(device)?)
}

/// CE over labelled rows: mean of (logsumexp(logits) − logit at the label slot); None if no labels.
fn ce_rows(logits: &Tensor, slot: &[i64], device: Device) -> Result<Option<Tensor>> {
    let rows: Vec<i64> = (0..slot.len() as i64).filter(|&i| slot[i as usize] >= 0).collect();
    if rows.is_empty() {
        return Ok(None);
    }
    let sl: Vec<i64> = rows.iter().map(|&i| slot[i as usize]).collect();
    let r = Tensor::f_from_slice(&rows)?.f_to_device(device)?;
    let lg = logits.f_index_select(0, &r)?;
    let picked = lg.f_gather(1, &Tensor::f_from_slice(&sl)?.f_to_device(device)?.f_unsqueeze(1)?, false)?.f_squeeze_dim(1)?;
    Ok(Some((lg.f_logsumexp([1i64], false)? - picked).f_mean(Kind::Float)?))
}

fn combine(kd: Tensor, ce: Option<Tensor>, cfg: &LossConfig, ent: f64) -> Result<(Tensor, f64)> {
    let t2 = cfg.temperature * cfg.temperature;
    let loss = match ce {
        Some(ce) => (kd * (cfg.alpha * t2)).f_add(&(ce * (1.0 - cfg.alpha)))?,
        None => kd * (cfg.alpha * t2),
    };
    let value = loss.f_double_value(&[])? + cfg.alpha * t2 * ent;
    Ok((loss, value))
}

/// The loss of one batch. `h` are the backbone features [B, d] (with gradient), `head` the table.
pub fn step_loss(cfg: &LossConfig, h: &Tensor, head: &Tensor, tg: &Targets, dis: Option<&mut DisState>, rng: &mut impl Rng) -> Result<StepOut> {
    let device = h.device();
    let ha = crate::train::student::Student::augment(h)?;
    let (b, k, c) = (tg.b as i64, tg.k, tg.classes);
    let temp = cfg.temperature;
    match cfg.estimator {
        Estimator::Full | Estimator::Rs | Estimator::Ghost => {
            if cfg.estimator == Estimator::Rs && tg.m == 0 {
                return Err(Error::invalid("--loss rs needs tail samples: build the cache with --tail-samples M"));
            }
            let leaf = head.f_detach()?.f_requires_grad_(true)?;
            let s = ha.f_matmul(&leaf.f_tr()?)?; // [B, C]
            let st = &s / temp;
            let lse = st.f_logsumexp([1i64], false)?;
            let idx = Tensor::f_from_slice(&tg.idx)?.f_reshape([b, k as i64])?.f_to_device(device)?;
            let p = f32_tensor(&tg.p, &[b, k as i64], device)?;
            let rest = (c - k).max(1) as f64;
            let mut ent = 0.0;
            let kd = match cfg.estimator {
                Estimator::Ghost => {
                    let s_top = st.f_gather(1, &idx, false)?;
                    let tail_lse = st.f_scatter_value(1, &idx, f64::NEG_INFINITY)?.f_logsumexp([1i64], false)?;
                    let tau = f32_tensor(&tg.tau, &[b], device)?;
                    for i in 0..tg.b {
                        ent += (0..k).map(|j| xlogx(tg.p[i * k + j])).sum::<f64>() + xlogx(tg.tau[i]);
                    }
                    // −Σ p_r (s_r/T − lse) − τ (tail_lse − lse)
                    let pos = (&p * (s_top - lse.f_unsqueeze(1)?)).f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?;
                    let bucket = tau.f_mul(&tail_lse.f_sub(&lse)?.f_nan_to_num(0.0, None, None)?)?;
                    (pos + bucket).f_neg()?
                }
                _ => {
                    let target = if cfg.estimator == Estimator::Full {
                        let fill: Vec<f64> = tg.tau.iter().map(|t| if c > k { t / rest } else { 0.0 }).collect();
                        for i in 0..tg.b {
                            ent += (0..k).map(|j| xlogx(tg.p[i * k + j])).sum::<f64>() + if c > k { tg.tau[i] * (tg.tau[i] / rest).max(1e-300).ln() } else { 0.0 };
                        }
                        f32_tensor(&fill, &[b, 1], device)?.f_expand([b, c as i64], false)?.f_contiguous()?.f_scatter(1, &idx, &p)?
                    } else {
                        for i in 0..tg.b {
                            ent += (0..k).map(|j| xlogx(tg.p[i * k + j])).sum::<f64>() + (0..tg.m).map(|j| xlogx(tg.tail_w[i * tg.m + j])).sum::<f64>();
                        }
                        let tidx = Tensor::f_from_slice(&tg.tail_idx)?.f_reshape([b, tg.m as i64])?.f_to_device(device)?;
                        let tw = f32_tensor(&tg.tail_w, &[b, tg.m as i64], device)?;
                        Tensor::f_zeros([b, c as i64], (Kind::Float, device))?.f_scatter(1, &idx, &p)?.f_scatter_add(1, &tidx, &tw)?
                    };
                    (target * &st).f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?.f_neg()? + &lse
                }
            };
            let kd = kd.f_mean(Kind::Float)?;
            let label_slot: Vec<i64> = tg.label.clone();
            let ce = ce_rows(&s, &label_slot, device)?;
            let (loss, value) = combine(kd, ce, cfg, ent / tg.b as f64)?;
            Ok(StepOut { loss, value, rows: None, leaf, computed_rows: c })
        }
        Estimator::Topk | Estimator::Dis => sparse_loss(cfg, &ha, head, tg, dis, rng),
    }
}

fn sparse_loss(cfg: &LossConfig, ha: &Tensor, head: &Tensor, tg: &Targets, dis: Option<&mut DisState>, rng: &mut impl Rng) -> Result<StepOut> {
    let device = ha.device();
    let (b, k, m, c) = (tg.b, tg.k, tg.m, tg.classes);
    let temp = cfg.temperature;
    let is_dis = cfg.estimator == Estimator::Dis;
    let mut local;
    let st: &mut DisState = match dis {
        Some(d) => d,
        None if is_dis => return Err(Error::Internal("dis needs its state".into())),
        None => {
            local = DisState::new(RankProposal::new(&vec![1.0; k], k as f64, 1.0, 0.0), ClassProposal::new(&vec![1.0; c], 0.0, 1.0, 0.0), 0);
            &mut local
        }
    };
    // --- positives per row: slot 0 the label, 1..=K the ranks, then the tail samples
    let p_slots = 1 + k + m;
    let mut pos_cls = vec![-1i64; b * p_slots];
    let mut pos_t = vec![0f64; b * p_slots];
    let mut ce_cls = vec![-1i64; b];
    let mut keep = vec![];
    let mut ent = 0.0;
    let rest = (c - k).max(1) as f64;
    for i in 0..b {
        let row_p = &tg.p[i * k..(i + 1) * k];
        let psum: f64 = row_p.iter().sum();
        let label = tg.label[i];
        if is_dis {
            st.ranks.keep(rng, &mut keep);
            ent += row_p.iter().map(|&x| xlogx(x)).sum::<f64>()
                + if m > 0 { (0..m).map(|j| xlogx(tg.tail_w[i * m + j])).sum::<f64>() } else if c > k { tg.tau[i] * (tg.tau[i] / rest).max(1e-300).ln() } else { 0.0 };
        } else {
            keep.clear();
            keep.resize(k, true);
            ent += row_p.iter().map(|&x| xlogx(x / psum)).sum::<f64>();
        }
        let base = i * p_slots;
        for r in 0..k {
            if keep[r] {
                pos_cls[base + 1 + r] = tg.idx[i * k + r];
                pos_t[base + 1 + r] = if is_dis { row_p[r] / st.ranks.pi[r] } else { row_p[r] / psum };
            }
        }
        if is_dis {
            for j in 0..m {
                let w = tg.tail_w[i * m + j];
                if w > 0.0 {
                    pos_cls[base + 1 + k + j] = tg.tail_idx[i * m + j];
                    pos_t[base + 1 + k + j] = w;
                }
            }
        }
        if label >= 0 {
            ce_cls[i] = label;
            if !pos_cls[base..base + p_slots].contains(&label) {
                pos_cls[base] = label;
            }
        }
    }
    // --- the candidate set U: every row's positives (computed for all rows, so exact in every row's
    // normaliser), then the negatives drawn from Q that are not already in U (weighted 1/incl)
    let mut u: Vec<i64> = vec![];
    for &cls in &pos_cls {
        if cls >= 0 && st.upos[cls as usize] < 0 {
            st.upos[cls as usize] = u.len() as i32;
            u.push(cls);
        }
    }
    let core = u.len();
    let mut colw = vec![1f64; core];
    let mut logc = vec![0f64; core];
    if is_dis {
        if st.candidates >= c {
            for j in 0..c {
                if st.upos[j] < 0 {
                    st.upos[j] = u.len() as i32;
                    u.push(j as i64);
                    colw.push(1.0);
                    logc.push(0.0);
                }
            }
        } else {
            let q = st.classes.q();
            let mut cdf = Vec::with_capacity(c);
            let mut acc = 0.0;
            for &x in &q {
                acc += x;
                cdf.push(acc);
            }
            for _ in 0..st.candidates {
                let x = rng.random::<f64>() * acc;
                let j = cdf.partition_point(|&v| v <= x).min(c - 1);
                if st.upos[j] < 0 {
                    st.upos[j] = u.len() as i32;
                    u.push(j as i64);
                    let inc = inclusion(q[j], st.candidates);
                    colw.push(1.0 / inc);
                    logc.push(inc.ln());
                }
            }
        }
    }
    let nu = u.len();
    let col = |cls: i64, st: &DisState| -> i64 { if cls >= 0 { st.upos[cls as usize] as i64 } else { nu as i64 } };
    let pos_col: Vec<i64> = pos_cls.iter().map(|&cls| col(cls, st)).collect();
    let ce_col: Vec<i64> = ce_cls.iter().map(|&cls| if cls >= 0 { col(cls, st) } else { -1 }).collect();
    let topk_col: Vec<i64> = tg.idx.iter().map(|&cls| { let p = st.upos[cls as usize]; if p >= 0 { p as i64 } else { nu as i64 } }).collect();
    for &cls in &u {
        st.upos[cls as usize] = -1;
    }
    if nu == 0 {
        return Err(Error::invalid("a batch with no candidate classes (no labels, no kept ranks)"));
    }
    // --- logits over U for every row (one GEMM), targets as a dense [B, |U|] matrix (+1 spare column)
    let (bi, nui) = (b as i64, nu as i64);
    let rows = Tensor::f_from_slice(&u)?.f_to_device(device)?;
    let leaf = head.f_index_select(0, &rows)?.f_detach()?.f_requires_grad_(true)?;
    let s_u = ha.f_matmul(&leaf.f_tr()?)?; // [B, |U|]
    let corr = f32_tensor(&logc, &[nui], device)?;
    let pos_col_t = Tensor::f_from_slice(&pos_col)?.f_reshape([bi, p_slots as i64])?.f_to_device(device)?;
    let pos_t_t = f32_tensor(&pos_t, &[bi, p_slots as i64], device)?;
    let topk_col_t = Tensor::f_from_slice(&topk_col)?.f_reshape([bi, k as i64])?.f_to_device(device)?;
    let mut target = Tensor::f_zeros([bi, nui + 1], (Kind::Float, device))?;
    let mut valid = None;
    if is_dis {
        if m == 0 && c > k {
            // uniform tail τ/(C−K) on every candidate outside the row's top-K (1/incl for sampled ones)
            let tr: Vec<f64> = tg.tau.iter().map(|t| t / rest).collect();
            let mut cw = colw.clone();
            cw.push(0.0);
            target = f32_tensor(&tr, &[bi, 1], device)?.f_mul(&f32_tensor(&cw, &[1, nui + 1], device)?)?;
            target = target.f_scatter_value(1, &topk_col_t, 0.0)?;
        }
    } else {
        // topk: each row is normalised over its own top-K (and label) only
        let ones = Tensor::f_ones([bi, p_slots as i64], (Kind::Float, device))?;
        let mask = Tensor::f_zeros([bi, nui + 1], (Kind::Float, device))?.f_scatter(1, &pos_col_t, &ones)?;
        valid = Some(mask.f_narrow(1, 0, nui)?.f_gt(0.5)?);
    }
    let target = target.f_scatter_add(1, &pos_col_t, &pos_t_t)?.f_narrow(1, 0, nui)?;
    let mut z_kd = (&s_u / temp).f_sub(&corr)?;
    let mut z_ce = s_u.f_sub(&corr)?;
    if let Some(v) = &valid {
        let inv = v.f_logical_not()?;
        z_kd = z_kd.f_masked_fill(&inv, f64::NEG_INFINITY)?;
        z_ce = z_ce.f_masked_fill(&inv, f64::NEG_INFINITY)?;
    }
    let lse = z_kd.f_logsumexp([1i64], false)?;
    let lin = (&target * (&s_u / temp)).f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?;
    let kd = lse.f_sub(&lin)?.f_mean(Kind::Float)?;
    let ce = ce_rows(&z_ce, &ce_col, device)?;
    let (loss, value) = combine(kd, ce, cfg, ent / b as f64)?;

    if is_dis {
        // feedback: the student's estimated softmax q̂ = e^{s/T}/Ẑ on every candidate
        let _g = tch::no_grad_guard();
        let q = (&s_u.f_detach()? / temp).f_sub(&lse.f_detach()?.f_unsqueeze(1)?)?.f_exp()?;
        // per-rank |p − q̂|/π over the kept ranks
        let rank_cols = pos_col_t.f_narrow(1, 1, k as i64)?.f_clamp_max(nui - 1)?;
        let q_rank: Vec<f32> = Vec::<f32>::try_from(&q.f_gather(1, &rank_cols, false)?.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?;
        let mut obs = vec![0f64; k];
        for i in 0..b {
            for r in 0..k {
                if pos_cls[i * p_slots + 1 + r] >= 0 {
                    obs[r] += (tg.p[i * k + r] - q_rank[i * k + r] as f64).abs() / st.ranks.pi[r];
                }
            }
        }
        obs.iter_mut().for_each(|o| *o /= b as f64);
        st.ranks.update(&obs);
        // the batch-mean student mass of every candidate class
        let mass: Vec<f32> = Vec::<f32>::try_from(&q.f_mean_dim([0i64].as_slice(), false, Kind::Float)?.f_to_device(Device::Cpu)?)?;
        let mass: Vec<f64> = mass.into_iter().map(f64::from).collect();
        st.classes.update(&u, &mass);
    }
    Ok(StepOut { loss, value, rows: Some(rows), leaf, computed_rows: nu })
}
