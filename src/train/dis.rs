//! The device side of DIS: running statistics of the head-row clusters (the strata of
//! [`crate::sample`]), the student-mass estimate per cluster that steers the next step's negatives, and
//! the running sum of all head rows (the exact `spread` tail).
//!
//! Per cluster c the device keeps n_c, Σ_{j∈c} H_j and Σ_{j∈c} H_j² (f64, updated by the rows a step
//! moves: O(|columns|·d)). From them, the student's softmax mass of row i in cluster c is estimated
//! as log M_ic ≈ log n_c + h_i·μ_c/T + ½·h_i²·σ_c²/T² (the log-normal moment of e^{h·H_j/T} over the
//! cluster, diagonal covariance), normalised over clusters and averaged over the batch: O(B·n·d) per
//! step with n clusters, independent of C. After each step, the rows the step moved (positives first)
//! and a rotating sweep over all classes are re-assigned to their nearest cluster mean (online k-means).
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::sample::{DisConfig, Plan, Sampler};

pub struct DisState {
    pub sampler: Sampler,
    /// Per cluster: member count [n], Σ rows [n, D], Σ rows² [n, D] (f64).
    pub counts: Tensor,
    pub sums: Tensor,
    pub sq: Tensor,
    /// Σ of all C head rows [D] (f64).
    pub total: Tensor,
    /// Next class of the rotating re-assignment sweep.
    pub cursor: usize,
    /// `total` needs recomputing before the next sparse step (a dense step moved every row).
    pub total_stale: bool,
}

fn f64_of(t: &Tensor) -> Result<Tensor> {
    Ok(t.f_detach()?.f_to_kind(Kind::Double)?)
}

impl DisState {
    /// Fresh state for `head` [C, D]: balanced random clusters (or the proposal's fixed strata; `prior`
    /// is the prior proposal's weight per class), statistics computed once (O(C·D)).
    pub fn new(cfg: DisConfig, head: &Tensor, seed: u64, prior: Option<&[f64]>) -> Result<Self> {
        let c = head.size()[0] as usize;
        let sampler = Sampler::new(cfg, c, seed, prior).map_err(Error::invalid)?;
        let mut st = DisState { sampler, counts: Tensor::new(), sums: Tensor::new(), sq: Tensor::new(), total: Tensor::new(), cursor: 0, total_stale: false };
        st.recompute(head)?;
        Ok(st)
    }

    /// Recomputes every statistic from the head and the current assignment.
    pub fn recompute(&mut self, head: &Tensor) -> Result<()> {
        let _g = tch::no_grad_guard();
        let (dev, d) = (head.device(), head.size()[1]);
        let n = self.sampler.clusters.len() as i64;
        let assign: Vec<i64> = self.sampler.clusters.assign.iter().map(|&a| a as i64).collect();
        let a = Tensor::f_from_slice(&assign)?.f_to_device(dev)?;
        let h = f64_of(head)?;
        let z = |shape: &[i64]| Tensor::f_zeros(shape, (Kind::Double, dev));
        self.sums = z(&[n, d])?.f_index_add(0, &a, &h)?;
        self.sq = z(&[n, d])?.f_index_add(0, &a, &h.f_square()?)?;
        self.counts = z(&[n])?.f_index_add(0, &a, &Tensor::f_ones([assign.len() as i64], (Kind::Double, dev))?)?;
        self.total = h.f_sum_dim_intlist([0i64].as_slice(), false, Kind::Double)?;
        Ok(())
    }

    /// The checkpoint's part of the sampler: everything that steers later steps, so that a resumed run
    /// draws what the uninterrupted one draws — the clusters' member lists in their current order (the
    /// draws index into them; the assignment alone would rebuild them sorted), the proposal, the cluster
    /// statistics, the running sum of the head, the sweep's cursor and whether that sum is stale.
    pub fn checkpoint(&self) -> Result<Vec<(String, Tensor)>> {
        let members = &self.sampler.clusters.members;
        let order: Vec<i64> = members.iter().flatten().map(|&j| j as i64).collect();
        let sizes: Vec<i64> = members.iter().map(|m| m.len() as i64).collect();
        Ok(vec![
            ("dis_members".into(), Tensor::f_from_slice(&order)?),
            ("dis_sizes".into(), Tensor::f_from_slice(&sizes)?),
            ("dis_mass".into(), Tensor::f_from_slice(&self.sampler.mass)?),
            ("dis_counts".into(), self.counts.shallow_clone()),
            ("dis_sums".into(), self.sums.shallow_clone()),
            ("dis_sq".into(), self.sq.shallow_clone()),
            ("dis_total".into(), self.total.shallow_clone()),
            ("dis_cursor".into(), Tensor::f_from_slice(&[self.cursor as i64, self.total_stale as i64])?),
        ])
    }

    /// Restores what [`DisState::checkpoint`] saved. `get(name, like)` reads a saved tensor of the shape
    /// and type of `like` (None when absent), `bad` makes the error for a checkpoint that does not fit.
    pub fn restore(&mut self, get: &dyn Fn(&str, &Tensor) -> Result<Option<Tensor>>, bad: &dyn Fn(String) -> Error) -> Result<()> {
        let need = |n: &str, like: &Tensor| get(n, like)?.ok_or_else(|| bad(format!("missing tensor {n}")));
        let (c, n) = (self.sampler.classes(), self.sampler.clusters.len());
        let ints = |t: Tensor| -> Result<Vec<u32>> { Ok(Vec::<i64>::try_from(&t)?.into_iter().map(|a| u32::try_from(a).unwrap_or(u32::MAX)).collect()) };
        let zeros = |len: usize| Tensor::f_from_slice(&vec![0i64; len]);
        let clusters = match get("dis_members", &zeros(c)?)? {
            Some(order) => {
                let (order, sizes) = (ints(order)?, ints(need("dis_sizes", &zeros(n)?)?)?);
                let mut members = Vec::with_capacity(n);
                let mut at = 0usize;
                for &s in &sizes {
                    let end = at.saturating_add(s as usize).min(order.len());
                    members.push(order[at..end].to_vec());
                    at = end;
                }
                crate::sample::Clusters::from_members(members, c)
            }
            // a checkpoint written before the member order was saved: the assignment, members sorted
            None => crate::sample::Clusters::from_assign(ints(need("dis_assign", &zeros(c)?)?)?, n),
        };
        self.sampler.clusters = clusters.ok_or_else(|| bad("the saved clusters do not hold every class once".into()))?;
        self.sampler.mass = Vec::<f64>::try_from(&need("dis_mass", &Tensor::f_from_slice(&self.sampler.mass)?)?)?;
        self.counts = need("dis_counts", &self.counts)?;
        self.sums = need("dis_sums", &self.sums)?;
        self.sq = need("dis_sq", &self.sq)?;
        self.total = need("dis_total", &self.total)?;
        let cur = need("dis_cursor", &Tensor::f_from_slice(&[0i64, 0])?)?;
        self.cursor = (cur.f_int64_value(&[0])?.max(0) as usize) % c.max(1);
        self.total_stale = cur.f_int64_value(&[1])? != 0;
        Ok(())
    }

    /// Σ of all head rows recomputed (before a sparse step that follows dense ones).
    pub fn resync_total(&mut self, head: &Tensor) -> Result<()> {
        self.total = f64_of(head)?.f_sum_dim_intlist([0i64].as_slice(), false, Kind::Double)?;
        self.total_stale = false;
        Ok(())
    }

    /// What steers the next draws, per cluster [n] (f64, on the device): the batch mean of each row's
    /// estimated softmax distribution over clusters, or for the Neyman allocation √(mean_i M_ic²·(e^{v_ic} − 1))
    /// normalised (see [`crate::sample::Proposal::Neyman`]).
    fn mass_tensor(&self, ha: &Tensor, temp: f64) -> Result<Tensor> {
        let _g = tch::no_grad_guard();
        let ha = ha.f_detach()?.f_to_kind(Kind::Float)?;
        let cnt = self.counts.f_unsqueeze(1)?;
        let safe = cnt.f_clamp_min(1.0)?;
        let mu = self.sums.f_div(&safe)?;
        let var = self.sq.f_div(&safe)?.f_sub(&mu.f_square()?)?.f_clamp_min(0.0)?;
        let (mu, var) = (mu.f_to_kind(Kind::Float)?, var.f_to_kind(Kind::Float)?);
        let lin = ha.f_matmul(&mu.f_tr()?)? / temp;
        let quad = (ha.f_square()?.f_matmul(&var.f_tr()?)? * (0.5 / (temp * temp))).f_clamp_max(8.0)?;
        let logn = self.counts.f_to_kind(Kind::Float)?.f_log()?; // −inf for empty clusters
        let logits = (&lin + &quad).f_add(&logn.f_unsqueeze(0)?)?;
        let m = logits.f_softmax(1, Kind::Float)?;
        if self.sampler.cfg.proposal == crate::sample::Proposal::Neyman {
            // v = h²·σ²/T² = 2·quad; each row's share of a stratum's variance, summed over the rows
            let cv2 = (quad * 2.0).f_expm1()?;
            let a = m.f_square()?.f_mul(&cv2)?.f_mean_dim([0i64].as_slice(), false, Kind::Double)?.f_sqrt()?;
            let s = a.f_sum(Kind::Double)?;
            return Ok(a.f_div(&s)?.f_nan_to_num(0.0, None, None)?);
        }
        Ok(m.f_mean_dim([0i64].as_slice(), false, Kind::Double)?.f_nan_to_num(0.0, None, None)?)
    }

    /// Sets the sampler's cluster masses from the features `ha` [B, D] (the proposal of the next draws).
    pub fn refresh_mass(&mut self, ha: &Tensor, temp: f64) -> Result<()> {
        if !self.sampler.adaptive() {
            return Ok(());
        }
        let m = self.mass_tensor(ha, temp)?;
        self.sampler.mass = Vec::<f64>::try_from(&m.f_to_device(Device::Cpu)?)?;
        Ok(())
    }

    /// After the optimizer moved the plan's touched rows (its union) by `delta` = Σ (new − old) [D]:
    /// keeps Σ all rows exact, sets the next step's proposal from this batch's features `ha`, and
    /// re-assigns up to `reassign` rows (the step's first touched rows: positives, then a rotating sweep
    /// over all classes) to their nearest cluster mean. Cost O(reassign·(n + D)) plus one O(|columns|·D) sum:
    /// the cluster statistics follow only the re-assigned rows (they steer the proposal, so they may
    /// lag: nothing unbiased depends on them) and are recomputed exactly each time the sweep has passed
    /// over all C classes (O(C·D) once per C/reassign steps). One read from the device.
    pub fn after_step(&mut self, head: &Tensor, delta: &Tensor, plan: &Plan, ha: &Tensor, temp: f64) -> Result<()> {
        let _g = tch::no_grad_guard();
        let dev = head.device();
        let c = self.sampler.classes();
        let ncl = self.sampler.clusters.len();
        self.total = self.total.f_add(&delta.f_to_device(dev)?.f_to_kind(Kind::Double)?)?;
        if !self.sampler.adaptive() {
            return Ok(()); // a fixed proposal: nothing else follows the student
        }
        let mass = self.mass_tensor(ha, temp)?;
        let budget = self.sampler.cfg.reassign;
        if budget == 0 {
            self.sampler.mass = Vec::<f64>::try_from(&mass.f_to_device(Device::Cpu)?)?;
            return Ok(());
        }
        // the rows to re-assign: the step's first columns (positives), then a sweep over all classes
        let moved = plan.union.len().min(budget.div_ceil(2));
        let mut rows: Vec<i64> = plan.union[..moved].to_vec();
        let in_plan: std::collections::HashSet<i64> = rows.iter().copied().collect();
        let sweep_n = (budget - moved).min(c);
        rows.extend((0..sweep_n).map(|t| ((self.cursor + t) % c) as i64).filter(|j| !in_plan.contains(j)));
        let wrapped = self.cursor + sweep_n >= c;
        self.cursor = (self.cursor + sweep_n) % c.max(1);
        let rows_t = Tensor::f_from_slice(&rows)?.f_to_device(dev)?;
        let cand = f64_of(&crate::train::optim::gather_rows(head, &rows_t)?)?;
        // nearest mean: argmax_c  w·μ_c − ½‖μ_c‖²  (empty clusters excluded)
        let safe = self.counts.f_clamp_min(1.0)?.f_unsqueeze(1)?;
        let mu = self.sums.f_div(&safe)?;
        let half = mu.f_square()?.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Double)? * 0.5;
        let empty = self.counts.f_lt(0.5)?;
        let score = cand.f_matmul(&mu.f_tr()?)?.f_sub(&half.f_unsqueeze(0)?)?.f_masked_fill(&empty.f_unsqueeze(0)?, f64::NEG_INFINITY)?;
        // one read: the new clusters and the next proposal
        let both = Vec::<f64>::try_from(&Tensor::f_cat(&[score.f_argmax(1, false)?.f_to_kind(Kind::Double)?, mass], 0)?.f_to_device(Device::Cpu)?)?;
        let (best, mass) = both.split_at(rows.len());
        self.sampler.mass = mass.to_vec();
        let (mut from, mut to, mut which) = (vec![], vec![], vec![]);
        for (t, (&j, &b)) in rows.iter().zip(best).enumerate() {
            let (a, b) = (self.sampler.clusters.assign[j as usize] as i64, b as i64);
            if b < 0 || b as usize >= ncl {
                return Err(Error::Internal(format!("cluster id {b} out of range")));
            }
            if a != b {
                self.sampler.clusters.move_class(j as usize, b as u32);
                from.push(a);
                to.push(b);
                which.push(t as i64);
            }
        }
        if wrapped {
            return self.recompute(head);
        }
        if !which.is_empty() {
            let n = which.len() as i64;
            let w = cand.f_index_select(0, &Tensor::f_from_slice(&which)?.f_to_device(dev)?)?;
            let ids = Tensor::f_from_slice(&[from, to].concat())?.f_to_device(dev)?;
            let signed = Tensor::f_cat(&[w.f_neg()?, w.shallow_clone()], 0)?;
            let sq = w.f_square()?;
            let sq = Tensor::f_cat(&[sq.f_neg()?, sq], 0)?;
            let ones = Tensor::f_cat(&[Tensor::f_full([n], -1.0, (Kind::Double, dev))?, Tensor::f_ones([n], (Kind::Double, dev))?], 0)?;
            self.sums = self.sums.f_index_add(0, &ids, &signed)?;
            self.sq = self.sq.f_index_add(0, &ids, &sq)?;
            self.counts = self.counts.f_index_add(0, &ids, &ones)?;
        }
        Ok(())
    }
}

impl DisState {
    /// Full k-means passes over all C rows (O(C·n·d) each): organises the clusters of a head that was
    /// trained elsewhere (the benchmark's partly trained student). Training does not need it: its
    /// re-assignment sweep does the same work spread over the steps.
    pub fn kmeans(&mut self, head: &Tensor, iters: usize) -> Result<()> {
        let _g = tch::no_grad_guard();
        let c = self.sampler.classes() as i64;
        let n = self.sampler.clusters.len();
        for _ in 0..iters {
            let safe = self.counts.f_clamp_min(1.0)?.f_unsqueeze(1)?;
            let mu = self.sums.f_div(&safe)?.f_to_kind(Kind::Float)?;
            let half = mu.f_square()?.f_sum_dim_intlist([1i64].as_slice(), false, Kind::Float)? * 0.5;
            let empty = self.counts.f_lt(0.5)?.f_unsqueeze(0)?;
            let mut assign = Vec::with_capacity(c as usize);
            let chunk = 8192i64;
            for lo in (0..c).step_by(chunk as usize) {
                let rows = head.f_narrow(0, lo, chunk.min(c - lo))?.f_detach()?;
                let score = rows.f_matmul(&mu.f_tr()?)?.f_sub(&half.f_unsqueeze(0)?)?.f_masked_fill(&empty, f64::NEG_INFINITY)?;
                assign.extend(Vec::<i64>::try_from(&score.f_argmax(1, false)?.f_to_device(Device::Cpu)?)?.into_iter().map(|a| a as u32));
            }
            self.sampler.clusters = crate::sample::Clusters::from_assign(assign, n).ok_or_else(|| Error::Internal("cluster id out of range".into()))?;
            self.recompute(head)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::RowsView;
    use crate::train::optim::{OptConfig, OptKind, RowOptimizer};
    use rand::SeedableRng;

    /// A state restored from its checkpoint tensors steps exactly as the one that wrote them: the same
    /// plans and the same state after every later step, across sweeps (what `train --resume` relies on).
    #[test]
    fn restored_state_steps_as_the_original() {
        let (c, d, b, k) = (300usize, 5i64, 6usize, 3usize);
        tch::manual_seed(1);
        let cfg = DisConfig { head_rows: 40, clusters: 6, reassign: 20, proposal: crate::sample::Proposal::Clusters, ..Default::default() };
        let mut head = Tensor::randn([c as i64, d], (Kind::Float, Device::Cpu));
        let mut a = DisState::new(cfg.clone(), &head, 2, None).unwrap();
        let mut opt = RowOptimizer::new(OptConfig::new(OptKind::Adam, 0.1), &head).unwrap();
        let mut restored: Option<(DisState, Tensor)> = None;
        for step in 0..80usize {
            let idx: Vec<i64> = (0..b * k).map(|i| ((i * 37 + step * 11) % c) as i64).collect();
            let (p, label) = (vec![0.2; b * k], vec![-1i64; b]);
            let view = RowsView { b, k, classes: c, idx: &idx, p: &p, label: &label };
            let seed = rand_chacha::ChaCha8Rng::seed_from_u64(step as u64);
            let plan = a.sampler.plan(&view, &mut seed.clone());
            let g = Tensor::randn([plan.union.len() as i64, d], (Kind::Float, Device::Cpu));
            let ha = Tensor::randn([b as i64, d], (Kind::Float, Device::Cpu));
            if let Some((r, rhead)) = &mut restored {
                let plan_r = r.sampler.plan(&view, &mut seed.clone());
                assert_eq!((&plan_r.cols, &plan_r.logw, &plan_r.union), (&plan.cols, &plan.logw, &plan.union), "step {step}: the plans differ");
                let mut ropt = RowOptimizer { cfg: opt.cfg, m: opt.m.copy(), v: opt.v.copy(), t: opt.t.copy() };
                let mut h2 = rhead.copy();
                let delta = ropt.step_rows(&mut h2, &Tensor::from_slice(&plan.union), &g).unwrap();
                r.after_step(&h2, &delta, &plan_r, &ha, 2.0).unwrap();
                *rhead = h2;
            }
            let delta = opt.step_rows(&mut head, &Tensor::from_slice(&plan.union), &g).unwrap();
            a.after_step(&head, &delta, &plan, &ha, 2.0).unwrap();
            if let Some((r, _)) = &restored {
                for ((n, x), (_, y)) in a.checkpoint().unwrap().iter().zip(r.checkpoint().unwrap().iter()) {
                    assert!(x.equal(y), "step {step}: {n} differs after a restore");
                }
            }
            if step == 25 {
                // the state as a checkpoint holds it, restored into a fresh sampler (another seed)
                let saved: std::collections::HashMap<String, Tensor> = a.checkpoint().unwrap().into_iter().map(|(n, t)| (n, t.copy())).collect();
                let mut r = DisState::new(cfg.clone(), &head, 99, None).unwrap();
                r.restore(&|n, _| Ok(saved.get(n).map(|t| t.copy())), &|w| Error::Internal(w)).unwrap();
                restored = Some((r, head.copy()));
            }
        }
        assert!(restored.is_some());
    }

    /// The running sum of all head rows stays the exact sum through many sparse steps (the spread tail
    /// depends on it), and the cluster counts always match the membership.
    #[test]
    fn running_sums_stay_exact() {
        let (c, d, b, k) = (300usize, 5i64, 6usize, 3usize);
        tch::manual_seed(1);
        let mut head = Tensor::randn([c as i64, d], (Kind::Float, Device::Cpu));
        let mut st = DisState::new(
            DisConfig { head_rows: 40, clusters: 6, reassign: 20, proposal: crate::sample::Proposal::Clusters, ..Default::default() },
            &head,
            2,
            None,
        )
        .unwrap();
        let mut opt = RowOptimizer::new(OptConfig::new(OptKind::Adam, 0.1), &head).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        for step in 0..60 {
            let idx: Vec<i64> = (0..b * k).map(|i| ((i * 37 + step * 11) % c) as i64).collect();
            let p = vec![0.2; b * k];
            let label = vec![-1i64; b];
            let plan = st.sampler.plan(&RowsView { b, k, classes: c, idx: &idx, p: &p, label: &label }, &mut rng);
            let rows = Tensor::from_slice(&plan.union);
            let g = Tensor::randn([plan.union.len() as i64, d], (Kind::Float, Device::Cpu));
            let delta = opt.step_rows(&mut head, &rows, &g).unwrap();
            let ha = Tensor::randn([b as i64, d], (Kind::Float, Device::Cpu));
            st.after_step(&head, &delta, &plan, &ha, 2.0).unwrap();
            let exact = head.to_kind(Kind::Double).sum_dim_intlist([0i64].as_slice(), false, Kind::Double);
            let err = (&st.total - exact).abs().max().double_value(&[]);
            assert!(err < 1e-4, "step {step}: running sum off by {err}");
            let counts: Vec<f64> = Vec::try_from(&st.counts).unwrap();
            let sizes: Vec<f64> = st.sampler.clusters.members.iter().map(|m| m.len() as f64).collect();
            assert_eq!(counts, sizes, "step {step}");
        }
    }
}
