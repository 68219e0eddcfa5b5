//! The distillation estimators (`train --loss`). Notation: teacher p = softmax(z/T), student
//! s = [h,1]·tableᵀ, q = softmax(s/T), τ the teacher's exact tail mass outside its cached top-K.
//! Every estimator has the same form per row,
//!     KD_i = −Σ_j t_ij·s_ij/T + log Ẑ_i  (+ the teacher-entropy constant, for reporting only)
//! and differs in the target t and the normaliser Ẑ:
//! - `full`:  t = top-K probabilities + τ spread evenly over the other C−K classes; Ẑ over all C
//!            (dense, O(B·C·d)). The reference.
//! - `topk`:  t = top-K probabilities renormalised; Ẑ over the row's top-K only (the common, biased practice).
//! - `ghost`: teacher top-K plus one bucket holding τ; student top-K plus one bucket with its own exact tail
//!            mass (dense student normaliser).
//! - `rs`:    t = top-K + τ spread over the cached tail samples by their counts (unbiased for the true
//!            tail); dense student normaliser. Needs a cache built with --tail-samples.
//! - `dis`:   each row's own positives (its K ranks and its label) exactly, plus the shared columns of
//!            a [`crate::sample::Plan`] (the batch's positives while they fit, then classes drawn by
//!            stratified sampling over online clusters of head rows), each with weight w_j = 1/π_j and
//!            masked for the rows whose own positive it is. Normaliser
//!            Ẑ_i = Σ_{own} e^{s_ij/T} + Σ_{columns ∉ own} w_j·e^{s_ij/T} (unbiased). The tail is exact on
//!            the teacher side: `--dis-tail spread` (default): τ_i/(C−K) on every class outside the
//!            top-K, as `full` — value and features' gradient through the running sum of all head rows,
//!            head gradient on the columns with weight w_j; `--dis-tail bucket`: −τ_i·log(Ẑ^tail_i/Ẑ_i),
//!            as `ghost`. With every class a column, `dis` is `full` (spread) or `ghost` (bucket)
//!            exactly. Cost O(B·(K + |columns|)·d).
//! CE on labels uses the same columns at T = 1 (labels are always exact columns).
//! Loss = α·T²·mean_i KD_i + (1−α)·mean_{labelled i} CE_i.
use rand::Rng;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::format::rows::RowBatch;
use crate::sample::{Plan, RowsView, Tail};
use crate::train::dis::DisState;
use crate::train::optim::RowOptimizer;

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
    /// Target mass of each tail sample slot at the training temperature (0 for empty slots).
    pub tail_w: Vec<f64>,
}

impl Targets {
    /// Rows `rows` of `batch`, at temperature `temp` (the `ti`-th of the cache); the tail samples' target
    /// masses as [`crate::format::rows::RowRef::tail_weights`] gives them (caches whose samples carry no
    /// values, before format 3, serve the first temperature only: the trainer checks).
    pub fn from_rows(batch: &RowBatch, rows: &[usize], ti: usize, temp: f64, classes: usize) -> Self {
        let (k, m) = (batch.k, batch.m);
        let mut t = Targets { b: rows.len(), k, m, classes, idx: vec![], p: vec![], tau: vec![], label: vec![], tail_idx: vec![], tail_w: vec![] };
        for &i in rows {
            let r = batch.get(i);
            let tau = r.tail_mass(ti);
            t.idx.extend(r.topk_idx().iter().map(|&c| c as i64));
            t.p.extend((0..k).map(|j| r.prob(j, ti, temp)));
            t.tau.push(tau);
            t.label.push(r.label());
            t.tail_idx.extend(r.tail_idx().iter().map(|&c| c as i64));
            let at = t.tail_w.len();
            t.tail_w.resize(at + m, 0.0);
            r.tail_weights(ti, temp, &mut t.tail_w[at..]);
        }
        t
    }

    pub fn rows_view(&self) -> RowsView<'_> {
        RowsView { b: self.b, k: self.k, classes: self.classes, idx: &self.idx, p: &self.p, label: &self.label }
    }
}

pub struct LossConfig {
    pub estimator: Estimator,
    pub temperature: f64,
    pub alpha: f64,
}

/// A step's loss and what the optimizer needs. Nothing here has been read back from the device.
pub struct StepOut {
    pub loss: Tensor,
    /// α·T²·(mean teacher entropy term): added to the loss it makes KD read as a KL divergence.
    pub constant: f64,
    /// Head rows the loss touches (None = all C rows, dense).
    pub rows: Option<Tensor>,
    /// The leaf holding those rows (gradient source for the row optimizer), as they were before the step.
    pub leaf: Tensor,
    /// Distinct head rows computed this step.
    pub computed_rows: usize,
    /// The `dis` plan of this step (for the sampler's bookkeeping after the optimizer step).
    pub plan: Option<Plan>,
    /// A `dis` step whose positives were computed on the host: what [`StepOut::backward`] completes.
    host: Option<HostPart>,
    /// The head gradient on `rows` when [`StepOut::backward`] wrote it (host positives).
    grad: Option<Tensor>,
}

/// The tensors a host-positives step keeps for its backward.
struct HostPart {
    /// Leaf of the positives' scores [B, K+1].
    s_pos: Tensor,
    /// Leaf of the shared columns' head rows [n, D].
    cols: Tensor,
    /// The features the loss saw: a detached leaf of `h`, and it with the bias column.
    hd: Tensor,
    ha: Tensor,
    /// The caller's features (their gradient is completed here) and the head.
    h: Tensor,
    head: Tensor,
}

/// A CPU f32 contiguous tensor's values (None for any other tensor).
fn host_f32(t: &Tensor) -> Option<&[f32]> {
    if t.device() != Device::Cpu || t.kind() != Kind::Float || !t.is_contiguous() {
        return None;
    }
    let n = t.numel();
    if n == 0 {
        return Some(&[]);
    }
    // SAFETY: a contiguous CPU f32 tensor holds numel f32 values at data_ptr, alive while `t` is
    Some(unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, n) })
}

/// A step's f32 values as a tensor of `shape`.
fn host_tensor(v: &[f32], shape: &[i64]) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(v)?.f_reshape(shape)?)
}

impl StepOut {
    /// The reported loss value (reads the device).
    pub fn value(&self) -> Result<f64> {
        Ok(self.loss.f_double_value(&[])? + self.constant)
    }

    /// The gradients of the loss: `loss.backward()`, completed for a step whose positives were computed
    /// on the host (their head rows' and the features' share, from the scores' gradient). The caller's
    /// features `h` get their gradient as from `loss.backward()`.
    pub fn backward(&mut self) -> Result<()> {
        self.loss.f_backward()?;
        let (Some(hp), Some(plan)) = (self.host.take(), self.plan.as_ref()) else { return Ok(()) };
        let grad_or_zeros = |t: &Tensor| -> Result<Tensor> {
            let g = t.grad();
            Ok(if g.defined() { g.f_contiguous()? } else { t.f_zeros_like()? })
        };
        let (g_s, mut g_cols) = (grad_or_zeros(&hp.s_pos)?, grad_or_zeros(&hp.cols)?);
        if plan.head_scale.iter().any(|&x| x < 1.0) {
            // a clipped weight scales its column's head gradient (not the features')
            let hs: Vec<f32> = plan.head_scale.iter().map(|&x| x as f32).collect();
            g_cols = g_cols.f_mul(&host_tensor(&hs, &[-1, 1])?)?.f_contiguous()?;
        }
        let internal = |what: &str| Error::Internal(format!("host positives: {what} is not a CPU f32 contiguous tensor"));
        let (g, col_grad) =
            (host_f32(&g_s).ok_or_else(|| internal("the scores' gradient"))?, host_f32(&g_cols).ok_or_else(|| internal("the columns' gradient"))?);
        let (ha, head) = (host_f32(&hp.ha).ok_or_else(|| internal("the features"))?, host_f32(&hp.head).ok_or_else(|| internal("the head"))?);
        let d = hp.ha.size()[1] as usize;
        let rows = Tensor::f_empty([plan.union.len() as i64, d as i64], (Kind::Float, Device::Cpu))?;
        {
            let n = rows.numel();
            // SAFETY: a fresh contiguous CPU f32 tensor of n values, written only here
            let out = if n == 0 { &mut [][..] } else { unsafe { std::slice::from_raw_parts_mut(rows.data_ptr() as *mut f32, n) } };
            let ug = crate::train::positives::UnionGrad { ha, d, slots: plan.slots, pos_u: &plan.pos_u, g, col_u: &plan.col_u, col_grad };
            ug.write(out).map_err(Error::Internal)?;
        }
        let mut extra = vec![0f32; ha.len()];
        crate::train::positives::Positives { head, d, ha, pos: &plan.pos, slots: plan.slots }.features_grad(g, &mut extra);
        if hp.h.requires_grad() {
            let dh = d as i64 - 1;
            let total = grad_or_zeros(&hp.hd)?.f_add(&host_tensor(&extra, &[-1, d as i64])?.f_narrow(1, 0, dh)?)?;
            hp.h.f_mul(&total)?.f_sum(Kind::Float)?.f_backward()?;
        }
        self.grad = Some(rows);
        Ok(())
    }

    /// The head gradient on `rows` after [`StepOut::backward`] (clipped weights of sampled rows are
    /// applied inside the loss).
    pub fn head_grad(&self) -> Result<Tensor> {
        if self.host.is_some() {
            return Err(Error::Internal("the head gradient of a host-positives step needs StepOut::backward, not loss.backward".into()));
        }
        Ok(match &self.grad {
            Some(g) => g.shallow_clone(),
            None => self.leaf.grad(),
        })
    }

    /// The head's update after `backward`: `opt` on the rows the step touched (every row for a dense
    /// step), then the `dis` sampler's bookkeeping — the running sum of the head, the cluster statistics
    /// and the next proposal from the step's features `h` (without the bias column) at temperature
    /// `temp`; after a dense step the running sum is marked stale.
    pub fn update_head(&self, head: &mut Tensor, opt: &mut RowOptimizer, dis: Option<&mut DisState>, h: &Tensor, temp: f64) -> Result<()> {
        let g = self.head_grad()?;
        let delta = match &self.rows {
            Some(rows) => Some(opt.step_rows(head, rows, &g)?),
            None => {
                opt.step_all(head, &g)?;
                None
            }
        };
        if let (Some(d), Some(plan)) = (dis, &self.plan) {
            match &delta {
                Some(delta) => d.after_step(head, delta, plan, &crate::train::student::Student::augment(&h.f_detach()?)?, temp)?,
                None => d.total_stale = true,
            }
        }
        Ok(())
    }
}

fn xlogx(x: f64) -> f64 {
    if x > 0.0 { x * x.ln() } else { 0.0 }
}

/// A step's host arrays, packed so they reach the device in two copies (one i64, one f32).
#[derive(Default)]
struct Upload {
    i: Vec<i64>,
    f: Vec<f32>,
    parts: Vec<(bool, usize, usize, Vec<i64>)>,
}

impl Upload {
    fn ints(&mut self, v: &[i64], shape: &[i64]) -> usize {
        self.parts.push((true, self.i.len(), v.len(), shape.to_vec()));
        self.i.extend_from_slice(v);
        self.parts.len() - 1
    }
    fn floats(&mut self, v: impl IntoIterator<Item = f64>, shape: &[i64]) -> usize {
        let at = self.f.len();
        self.f.extend(v.into_iter().map(|x| x as f32));
        self.parts.push((false, at, self.f.len() - at, shape.to_vec()));
        self.parts.len() - 1
    }
    fn send(self, device: Device) -> Result<Vec<Tensor>> {
        let i = Tensor::f_from_slice(&self.i)?.f_to_device(device)?;
        let f = Tensor::f_from_slice(&self.f)?.f_to_device(device)?;
        self.parts.iter().map(|(int, at, n, shape)| Ok((if *int { &i } else { &f }).f_narrow(0, *at as i64, *n as i64)?.f_reshape(shape)?)).collect()
    }
}

/// The labelled rows and their label columns, queued on an upload: (rows [n], columns [n, 1]).
fn ce_slots(up: &mut Upload, col: &[i64]) -> Option<(usize, usize)> {
    let rows: Vec<i64> = (0..col.len() as i64).filter(|&i| col[i as usize] >= 0).collect();
    if rows.is_empty() {
        return None;
    }
    let cols: Vec<i64> = rows.iter().map(|&i| col[i as usize]).collect();
    Some((up.ints(&rows, &[rows.len() as i64]), up.ints(&cols, &[cols.len() as i64, 1])))
}

/// CE over labelled rows: mean of (logsumexp(logits) − logit at the label column); None if no labels.
fn ce_rows(logits: &Tensor, slots: Option<(usize, usize)>, t: &[Tensor]) -> Result<Option<Tensor>> {
    let Some((r, c)) = slots else { return Ok(None) };
    let lg = logits.f_index_select(0, &t[r])?;
    let picked = lg.f_gather(1, &t[c], false)?.f_squeeze_dim(1)?;
    Ok(Some((lg.f_logsumexp([1i64], false)? - picked).f_mean(Kind::Float)?))
}

fn combine(kd: Tensor, ce: Option<Tensor>, cfg: &LossConfig) -> Result<Tensor> {
    let t2 = cfg.temperature * cfg.temperature;
    Ok(match ce {
        Some(ce) => (kd * (cfg.alpha * t2)).f_add(&(ce * (1.0 - cfg.alpha)))?,
        None => kd * (cfg.alpha * t2),
    })
}

/// Mean over rows of the teacher-side constant Σ t log t of each estimator's target.
fn entropy(tg: &Targets, est: Estimator, tail: Tail) -> f64 {
    let (k, c) = (tg.k, tg.classes);
    let rest = (c - k).max(1) as f64;
    let mut ent = 0.0;
    for i in 0..tg.b {
        let row = &tg.p[i * k..(i + 1) * k];
        let tau = tg.tau[i];
        ent += match est {
            Estimator::Topk => {
                let s: f64 = row.iter().sum();
                row.iter().map(|&x| xlogx(x / s)).sum::<f64>()
            }
            Estimator::Rs => row.iter().map(|&x| xlogx(x)).sum::<f64>() + tg.tail_w[i * tg.m..(i + 1) * tg.m].iter().map(|&x| xlogx(x)).sum::<f64>(),
            Estimator::Ghost => row.iter().map(|&x| xlogx(x)).sum::<f64>() + xlogx(tau),
            Estimator::Dis if tail == Tail::Bucket => row.iter().map(|&x| xlogx(x)).sum::<f64>() + xlogx(tau),
            _ => row.iter().map(|&x| xlogx(x)).sum::<f64>() + if c > k { tau * (tau / rest).max(1e-300).ln() } else { 0.0 },
        };
    }
    ent / tg.b.max(1) as f64
}

/// The loss of one batch. `h` are the backbone features [B, d] (with gradient), `head` the table.
/// `dis` holds the sampler for `--loss dis` (its plan is drawn here with `rng`).
pub fn step_loss(cfg: &LossConfig, h: &Tensor, head: &Tensor, tg: &Targets, dis: Option<&mut DisState>, rng: &mut impl Rng) -> Result<StepOut> {
    let augment = crate::train::student::Student::augment;
    let t2a = cfg.alpha * cfg.temperature * cfg.temperature;
    match cfg.estimator {
        Estimator::Full | Estimator::Rs | Estimator::Ghost => {
            if cfg.estimator == Estimator::Rs && tg.m == 0 {
                return Err(Error::invalid("--loss rs needs tail samples: build the cache with --tail-samples M"));
            }
            let mut out = dense_loss(cfg, &augment(h)?, head, tg)?;
            out.constant = t2a * entropy(tg, cfg.estimator, Tail::Spread);
            Ok(out)
        }
        Estimator::Topk => {
            let mut out = topk_loss(cfg, &augment(h)?, head, tg)?;
            out.constant = t2a * entropy(tg, Estimator::Topk, Tail::Spread);
            Ok(out)
        }
        Estimator::Dis => {
            let st = dis.ok_or_else(|| Error::Internal("dis needs its sampler state".into()))?;
            let plan = st.sampler.plan(&tg.rows_view(), rng);
            if !plan.dense && st.total_stale {
                st.resync_total(head)?;
            }
            let tail = st.sampler.cfg.tail;
            // on the CPU the positives are computed on the host (see `positives`)
            let host = h.device() == Device::Cpu && h.kind() == Kind::Float && host_f32(head).is_some();
            let mut out = dis_loss(cfg, h, head, tg, &plan, tail, &st.total, host)?;
            out.constant = t2a * entropy(tg, Estimator::Dis, tail);
            out.plan = Some(plan);
            Ok(out)
        }
    }
}

/// `full`, `ghost`, `rs`: every class a column.
fn dense_loss(cfg: &LossConfig, ha: &Tensor, head: &Tensor, tg: &Targets) -> Result<StepOut> {
    let device = ha.device();
    let (b, k, c) = (tg.b as i64, tg.k as i64, tg.classes as i64);
    let temp = cfg.temperature;
    let mut up = Upload::default();
    let (i_idx, i_p, i_tau) = (up.ints(&tg.idx, &[b, k]), up.floats(tg.p.iter().copied(), &[b, k]), up.floats(tg.tau.iter().copied(), &[b, 1]));
    let rs = if cfg.estimator == Estimator::Rs {
        Some((up.ints(&tg.tail_idx, &[b, tg.m as i64]), up.floats(tg.tail_w.iter().copied(), &[b, tg.m as i64])))
    } else {
        None
    };
    let ce = ce_slots(&mut up, &tg.label);
    let t = up.send(device)?;
    let (idx, p, tau) = (&t[i_idx], &t[i_p], &t[i_tau]);
    let leaf = head.f_detach()?.f_requires_grad_(true)?;
    let s = ha.f_matmul(&leaf.f_tr()?)?; // [B, C]
    let st = &s / temp;
    let lse = st.f_logsumexp([1i64], false)?;
    let kd = match (cfg.estimator, rs) {
        (Estimator::Ghost, _) => {
            let s_top = st.f_gather(1, idx, false)?;
            let tail_lse = st.f_scatter_value(1, idx, f64::NEG_INFINITY)?.f_logsumexp([1i64], false)?;
            // −Σ p_r (s_r/T − lse) − τ (tail_lse − lse)
            let pos = (p * (s_top - lse.f_unsqueeze(1)?)).f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?;
            let bucket = tau.f_squeeze_dim(1)?.f_mul(&tail_lse.f_sub(&lse)?.f_nan_to_num(0.0, None, None)?)?;
            (pos + bucket).f_neg()?
        }
        (_, Some((ti, tw))) => {
            let target = Tensor::f_zeros([b, c], (Kind::Float, device))?.f_scatter(1, idx, p)?.f_scatter_add(1, &t[ti], &t[tw])?;
            (target * &st).f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?.f_neg()? + &lse
        }
        _ => {
            let fill = if c > k { tau / (c - k) as f64 } else { tau.f_zeros_like()? };
            let target = fill.f_expand([b, c], false)?.f_contiguous()?.f_scatter(1, idx, p)?;
            (target * &st).f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?.f_neg()? + &lse
        }
    };
    let ce = ce_rows(&s, ce, &t)?;
    let loss = combine(kd.f_mean(Kind::Float)?, ce, cfg)?;
    Ok(StepOut { loss, constant: 0.0, rows: None, leaf, computed_rows: tg.classes, plan: None, host: None, grad: None })
}

/// `topk`: the union of the batch's top-K (and labels) as columns; each row normalised over its own.
fn topk_loss(cfg: &LossConfig, ha: &Tensor, head: &Tensor, tg: &Targets) -> Result<StepOut> {
    let device = ha.device();
    let (b, k) = (tg.b, tg.k);
    let mut col_of = std::collections::HashMap::new();
    let mut cols: Vec<i64> = vec![];
    let mut col = |j: i64| {
        *col_of.entry(j).or_insert_with(|| {
            cols.push(j);
            cols.len() as i64 - 1
        })
    };
    let mut pos_col = Vec::with_capacity(b * (k + 1));
    let mut pos_t = Vec::with_capacity(b * (k + 1));
    let mut label_col = vec![-1i64; b];
    for i in 0..b {
        let row = &tg.p[i * k..(i + 1) * k];
        let s: f64 = row.iter().sum();
        for r in 0..k {
            pos_col.push(col(tg.idx[i * k + r]));
            pos_t.push(row[r] / s);
        }
        let l = tg.label[i];
        if l >= 0 {
            label_col[i] = col(l);
        }
        pos_col.push(if l >= 0 { label_col[i] } else { pos_col[i * (k + 1)] });
        pos_t.push(0.0);
    }
    let n = cols.len() as i64;
    let (bi, ki) = (b as i64, k as i64 + 1);
    let mut up = Upload::default();
    let (a, pc, pt) = (up.ints(&cols, &[n]), up.ints(&pos_col, &[bi, ki]), up.floats(pos_t.iter().copied(), &[bi, ki]));
    let ce = ce_slots(&mut up, &label_col);
    let t = up.send(device)?;
    let rows = t[a].shallow_clone();
    let leaf = crate::train::optim::gather_rows(head, &rows)?.f_detach()?.f_requires_grad_(true)?;
    let s_u = ha.f_matmul(&leaf.f_tr()?)?;
    let valid = Tensor::f_zeros([bi, n], (Kind::Bool, device))?.f_scatter_value(1, &t[pc], 1.0)?;
    let invalid = valid.f_logical_not()?;
    let target = Tensor::f_zeros([bi, n], (Kind::Float, device))?.f_scatter_add(1, &t[pc], &t[pt])?;
    let z = (&s_u / cfg.temperature).f_masked_fill(&invalid, f64::NEG_INFINITY)?;
    let lin = (&target * (&s_u / cfg.temperature)).f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?;
    let kd = z.f_logsumexp([1i64], false)?.f_sub(&lin)?.f_mean(Kind::Float)?;
    let ce = ce_rows(&s_u.f_masked_fill(&invalid, f64::NEG_INFINITY)?, ce, &t)?;
    let loss = combine(kd, ce, cfg)?;
    Ok(StepOut { loss, constant: 0.0, rows: Some(rows), leaf, computed_rows: n as usize, plan: None, host: None, grad: None })
}

/// `dis` on a plan (see the module doc). `total` is Σ of all head rows (for the spread tail). With
/// `host` (CPU f32 features and head) each row's own positives — their scores and, for the spread tail,
/// their sums — are computed by [`crate::train::positives`] from the head itself, and
/// [`StepOut::backward`] completes the gradients; otherwise by gathering the rows and a batched product.
#[allow(clippy::too_many_arguments)]
fn dis_loss(cfg: &LossConfig, h: &Tensor, head: &Tensor, tg: &Targets, plan: &Plan, tail: Tail, total: &Tensor, host: bool) -> Result<StepOut> {
    let augment = crate::train::student::Student::augment;
    if plan.dense {
        let est = if tail == Tail::Spread { Estimator::Full } else { Estimator::Ghost };
        return dense_loss(&LossConfig { estimator: est, ..*cfg }, &augment(h)?, head, tg);
    }
    // the host path's features: a leaf, so that the loss's backward stops there and is completed
    let hd = if host { h.f_detach()?.f_requires_grad_(true)? } else { h.shallow_clone() };
    let ha = augment(&hd)?.f_contiguous()?;
    let ha = &ha;
    let device = ha.device();
    let (b, k, c) = (tg.b as i64, tg.k as i64, tg.classes as i64);
    let (sl, n, nu) = (plan.slots as i64, plan.cols.len() as i64, plan.union.len() as i64);
    let temp = cfg.temperature;
    let fill: Vec<f64> = tg.tau.iter().map(|&t| if c > k && tail == Tail::Spread { t / (c - k) as f64 } else { 0.0 }).collect();
    let mut up = Upload::default();
    let i_union = up.ints(&plan.union, &[nu]);
    // the head rows' source: the head itself on the host path (the columns' classes), else the union's
    // leaf (where each slot and each column sits in it)
    let i_cols = host.then(|| up.ints(&plan.cols, &[n]));
    let i_gather = (!host).then(|| (up.ints(&plan.pos_u, &[b * sl]), up.ints(&plan.col_u, &[n])));
    // own positives among the columns, masked per row (−1 → a spare column)
    let own: Vec<i64> = plan.own_col.iter().map(|&o| if o >= 0 { o } else { n }).collect();
    let i_own = up.ints(&own, &[b, sl]);
    let i_lw = up.floats(plan.logw.iter().copied(), &[n]);
    // slot targets; an active label slot outside the top-K carries the spread tail's fill
    let pos_t: Vec<f64> =
        (0..plan.pos_t.len()).map(|at| if at % plan.slots == plan.slots - 1 && plan.active[at] { fill[at / plan.slots] } else { plan.pos_t[at] }).collect();
    let i_pt = up.floats(pos_t, &[b, sl]);
    // masked entries get a large finite negative (not −inf: a row whose every column is masked must
    // still have a finite log-sum-exp and gradient)
    const MASKED: f64 = -1e30;
    let i_act = up.floats(plan.active.iter().map(|&a| if a { 0.0 } else { MASKED }), &[b, sl]);
    let i_tau = up.floats(tg.tau.iter().copied(), &[b, 1]);
    let i_fill = up.floats(fill.iter().copied(), &[b, 1]);
    // the exact mass of each row's target (Σ_r p_ir + τ_i): the coefficient of log Ẑ_i with the bucket
    let i_mass = up.floats((0..tg.b).map(|i| tg.p[i * tg.k..(i + 1) * tg.k].iter().sum::<f64>() + tg.tau[i]), &[b]);
    // clipped weights scale their columns' head gradient: on the host path in the backward
    let clipped = !host && plan.head_scale.iter().any(|&x| x < 1.0);
    let i_hs = clipped.then(|| up.floats(plan.head_scale.iter().copied(), &[n, 1]));
    let i_ce = ce_slots(&mut up, &plan.label_slot);
    let t = up.send(device)?;
    let rows = t[i_union].shallow_clone();
    let d = ha.size()[1];
    // each row's own positives: B·(K+1) dot products, and (spread tail) Σ of its active positive rows and
    // of its own columns' w_j·H_j [B, 2, D]
    let spread = tail == Tail::Spread;
    let (leaf, s_pos, own_sums, mut col_rows, hostpart) = if let Some(i_cols) = i_cols {
        let internal = || Error::Internal("host positives: the head or features are not CPU f32 contiguous tensors".into());
        let p = crate::train::positives::Positives {
            head: host_f32(head).ok_or_else(internal)?,
            d: d as usize,
            ha: host_f32(ha).ok_or_else(internal)?,
            pos: &plan.pos,
            slots: plan.slots,
        };
        p.check().map_err(Error::Internal)?;
        let mut scores = vec![0f32; plan.pos.len()];
        let sums = if spread {
            let wt: Vec<f32> = (0..plan.pos.len())
                .flat_map(|s| {
                    [
                        if plan.active[s] { 1.0 } else { 0.0 },
                        match plan.own_col[s] {
                            o if o >= 0 => (plan.logw[o as usize] as f32).exp(),
                            _ => 0.0,
                        },
                    ]
                })
                .collect();
            let mut sums = vec![0f32; tg.b * 2 * d as usize];
            p.forward(&mut scores, Some((&wt, &mut sums)));
            Some(host_tensor(&sums, &[b, 2, d])?)
        } else {
            p.forward(&mut scores, None);
            None
        };
        let s_pos = host_tensor(&scores, &[b, sl])?.f_requires_grad_(true)?;
        let cols = crate::train::optim::gather_rows(head, &t[i_cols])?.f_detach()?.f_requires_grad_(true)?;
        let hp = HostPart {
            s_pos: s_pos.shallow_clone(),
            cols: cols.shallow_clone(),
            hd: hd.shallow_clone(),
            ha: ha.shallow_clone(),
            h: h.shallow_clone(),
            head: head.shallow_clone(),
        };
        (cols.shallow_clone(), s_pos, sums, cols, Some(hp))
    } else {
        let (i_pu, i_cu) = i_gather.ok_or_else(|| Error::Internal("dis: the gathered path's indices are missing".into()))?;
        let leaf = crate::train::optim::gather_rows(head, &rows)?.f_detach()?.f_requires_grad_(true)?;
        let pos_rows = crate::train::optim::gather_rows(&leaf, &t[i_pu])?.f_reshape([b, sl, d])?;
        let s_pos = pos_rows.f_bmm(&ha.f_unsqueeze(2)?)?.f_squeeze_dim(2)?; // [B, K+1]
        let sums = if spread {
            let act_w = t[i_act].f_gt(-1.0)?.f_to_kind(Kind::Float)?; // 1 on active slots
            let wx = Tensor::f_cat(&[t[i_lw].f_exp()?, Tensor::f_zeros([1], (Kind::Float, device))?], 0)?;
            let own_w = wx.f_index_select(0, &t[i_own].f_flatten(0, -1)?)?.f_reshape([b, 1, sl])?;
            Some(Tensor::f_cat(&[act_w.f_unsqueeze(1)?, own_w], 1)?.f_bmm(&pos_rows.f_detach()?)?)
        } else {
            None
        };
        let col_rows = crate::train::optim::gather_rows(&leaf, &t[i_cu])?;
        (leaf, s_pos, sums, col_rows, None)
    };
    // the shared columns' head gradient scaled where the weight is clipped, by a detached share
    if let Some(hs) = i_hs {
        let s = &t[hs];
        col_rows = col_rows.f_mul(s)?.f_add(&col_rows.f_mul(&s.f_neg()?.f_add_scalar(1.0)?)?.f_detach()?)?;
    }
    // row i's own positives among the columns, and the columns' log-weights with those masked
    let is_own = Tensor::f_zeros([b, n + 1], (Kind::Bool, device))?.f_scatter_value(1, &t[i_own], 1.0)?.f_narrow(1, 0, n)?;
    let logw = t[i_lw].f_unsqueeze(0)?;
    let bias = logw.f_expand([b, n], false)?.f_masked_fill(&is_own, MASKED)?;
    // z_col = s_col/T + log w (masked), s_col = [h,1]·H_colᵀ [B, n]: one product, no pass over [B, n]
    let z_col = bias.f_addmm(&(ha / temp), &col_rows.f_tr()?)?;
    let act = &t[i_act];
    let z_pos = (&s_pos / temp).f_add(act)?;
    let lse_col = z_col.f_logsumexp([1i64], false)?;
    let lse = Tensor::f_stack(&[z_pos.f_logsumexp([1i64], false)?, lse_col.shallow_clone()], 1)?.f_logsumexp([1i64], false)?;
    let lin = (&t[i_pt] * &s_pos).f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)? / temp;
    let tau = t[i_tau].f_squeeze_dim(1)?;
    let kd = match tail {
        Tail::Bucket => {
            // −Σ_r p_r (s_r/T − log Ẑ) − τ (log Ẑ^tail − log Ẑ), as ghost; the tail: the columns outside
            // the row's positives, and its label when that is outside the top-K
            let label_z = z_pos.f_narrow(1, k, 1)?.f_squeeze_dim(1)?;
            let lse_tail = Tensor::f_stack(&[lse_col, label_z], 1)?.f_logsumexp([1i64], false)?;
            lse.f_mul(&t[i_mass])?.f_sub(&lin)?.f_sub(&tau.f_mul(&lse_tail)?)?
        }
        Tail::Spread => {
            // fill_i = τ_i/(C−K) on every class outside the top-K. Value and features' gradient exact:
            // fill_i·h_i·(Σ all rows − Σ own positive rows), the head detached (the label slot carries its
            // own fill above). Head gradient: fill_i·w_j on the columns outside row i's positives
            // (Horvitz–Thompson), added with no value and no features' gradient through
            // Σ_j A_ij·s_ij − h_i·(A·H_detached)_i, A_ij = fill_i·w_j·[j not own].
            let f = &t[i_fill];
            let w = t[i_lw].f_exp()?;
            let sums = own_sums.ok_or_else(|| Error::Internal("dis: the spread tail's sums are missing".into()))?;
            let (own_sum, own_cols) = (sums.f_select(1, 0)?, sums.f_select(1, 1)?);
            let rest = total.f_to_kind(Kind::Float)?.f_unsqueeze(0)?.f_sub(&own_sum)?;
            let exact = (ha * rest).f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?.f_mul(&f.f_squeeze_dim(1)?)? / temp;
            let a = f.f_mul(&w.f_unsqueeze(0)?)?.f_masked_fill(&is_own, 0.0)?; // [B, n]
            // Σ_j A_ij·s_ij/T through z = s/T + log w (A is zero where z is masked)
            let head_part = (&a * &z_col).f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)?;
            // A·H_detached = fill_i·(Σ_j w_j H_j − Σ_{own columns} w_j H_j)
            let col_d = col_rows.f_detach()?;
            let u = w.f_unsqueeze(0)?.f_matmul(&col_d)?; // [1, D]
            let ah = u.f_sub(&own_cols)?.f_mul(f)?;
            let cancel = (ha * ah).f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)? / temp;
            // the two terms' gradients only: their values are equal, and x − x.detach() is exactly zero
            let grads = head_part.f_sub(&cancel)?;
            let grads = grads.f_sub(&grads.f_detach()?)?;
            lse.f_sub(&lin)?.f_sub(&exact)?.f_sub(&grads)?
        }
    };
    let ce = match i_ce {
        Some((r, sl_t)) => {
            // CE at T = 1 over the same classes
            // s_col + log w (masked) = bias + T·(z_col − bias), one pass (masked entries: MASKED + s_col)
            let z1 = if temp == 1.0 { z_col.shallow_clone() } else { bias.f_lerp(&z_col, temp)? };
            let lse1 = Tensor::f_stack(&[s_pos.f_add(act)?.f_logsumexp([1i64], false)?, z1.f_logsumexp([1i64], false)?], 1)?.f_logsumexp([1i64], false)?;
            let picked = s_pos.f_index_select(0, &t[r])?.f_gather(1, &t[sl_t], false)?.f_squeeze_dim(1)?;
            Some(lse1.f_index_select(0, &t[r])?.f_sub(&picked)?.f_mean(Kind::Float)?)
        }
        None => None,
    };
    let loss = combine(kd.f_mean(Kind::Float)?, ce, cfg)?;
    Ok(StepOut { loss, constant: 0.0, rows: Some(rows), leaf, computed_rows: nu as usize, plan: None, host: hostpart, grad: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::DisConfig;
    use rand::SeedableRng;

    /// The host positives and the gathered ones give the same loss and gradients (head rows and the
    /// features, through a backbone) on the same plan, for both tails, with clipped weights and labels
    /// absent, among the ranks and outside them.
    #[test]
    fn host_positives_equal_the_gathered_ones() {
        let (b, c, d, k) = (7usize, 400usize, 6i64, 5usize);
        let opts = (Kind::Float, Device::Cpu);
        tch::manual_seed(3);
        let mut tg = Targets { b, k, m: 0, classes: c, idx: vec![], p: vec![], tau: vec![], label: vec![], tail_idx: vec![], tail_w: vec![] };
        for i in 0..b {
            let ids: Vec<i64> = (0..k as i64).map(|r| (i as i64 * 37 + r * 11) % c as i64).collect();
            tg.p.extend((0..k).map(|r| 0.9 / (k as f64) * (1.0 + 0.1 * r as f64) / 1.2));
            tg.tau.push(0.1);
            tg.label.push(match i % 3 {
                0 => -1,
                1 => ids[2],
                _ => (i as i64 * 53 + 200) % c as i64,
            });
            tg.idx.extend(ids);
        }
        let x = Tensor::randn([b as i64, 4], opts);
        let a0 = Tensor::randn([4, d], opts);
        let head = Tensor::randn([c as i64, d + 1], opts) * 0.5;
        for tail in [Tail::Spread, Tail::Bucket] {
            let cfg = LossConfig { estimator: Estimator::Dis, temperature: 2.0, alpha: 0.7 };
            let dcfg = DisConfig { head_rows: 60, clip: 3.0, tail, ..Default::default() };
            let mut st = DisState::new(dcfg, &head, 5, None).unwrap();
            let plan = st.sampler.plan(&tg.rows_view(), &mut rand_chacha::ChaCha8Rng::seed_from_u64(9));
            assert!(!plan.dense && plan.head_scale.iter().any(|&s| s < 1.0), "the case must be sampled and clipped");
            st.resync_total(&head).unwrap();
            let run = |host: bool| {
                let a = a0.detach().set_requires_grad(true);
                let h = x.matmul(&a);
                let mut out = dis_loss(&cfg, &h, &head, &tg, &plan, tail, &st.total, host).unwrap();
                assert_eq!(out.host.is_some(), host);
                out.plan = Some(plan.clone());
                out.backward().unwrap();
                (out.loss.double_value(&[]), out.head_grad().unwrap(), a.grad())
            };
            let (l0, g0, a_0) = run(false);
            let (l1, g1, a_1) = run(true);
            assert!((l0 - l1).abs() < 1e-5 * l0.abs().max(1.0), "{tail:?}: loss {l0} vs {l1}");
            let close = |x: &Tensor, y: &Tensor| (x - y).abs().max().double_value(&[]) <= 1e-5 * y.abs().max().double_value(&[]).max(1.0);
            assert!(close(&g1, &g0), "{tail:?}: head gradient");
            assert!(close(&a_1, &a_0), "{tail:?}: backbone gradient");
        }
    }
}
