//! Dynamic importance sampling (DIS): which head rows a `dis` step computes, and with what weights.
//! Everything here is host-side bookkeeping with cost independent of C per step (no torch, no files);
//! the device side (cluster statistics, the student-mass estimate) lives in `train::dis`.
//!
//! One step computes a shared set of **columns** (head rows) for the whole batch, each with an inclusion
//! probability π_j and weight w_j = 1/π_j:
//!
//! 1. **Positives, kept deterministically while they fit.** Every row's label, then rank 0 of every row,
//!    rank 1, … are added as whole rank levels while the union fits the positive budget
//!    (`head_rows` minus the negative reserve). Their teacher probabilities are known exactly, so they
//!    are never dropped when they fit (π = 1).
//! 2. **Positives beyond the budget** (the rank levels that did not fit) are Poisson-sampled per class
//!    with π_j ∝ √(Σ_i p_ij²) (the teacher's second moment over the batch: the variance-optimal rule
//!    for a Horvitz–Thompson sum of the rows' target terms), water-filled to the remaining budget and
//!    floored at `pi_min`; a kept one carries target p_ij/π_j. Classes dropped this way are excluded
//!    from the negatives, so every class is counted by exactly one design.
//! 3. **Negatives: stratified sampling over online clusters of head rows.** The classes outside the
//!    positives are split into strata, the clusters of [`Clusters`] (head rows near each other in
//!    d-space, so the student's logits of a cluster's members are alike for every row). Stratum c of
//!    R_c free classes receives an expected x_c = m·a_c draws, a_c ∝ (1−λ)·M_c·R_c/|c| + λ·R_c/R, where
//!    M_c is the batch's current student softmax mass in cluster c (estimated on the device from the
//!    cluster means and variances — the "dynamic" proposal that follows each row's softmax), capped at
//!    R_c. It draws ⌊x_c⌋ or ⌈x_c⌉ members uniformly without replacement, so each member's inclusion
//!    probability is exactly π_j = x_c/R_c and Σ_{j drawn} e^{s_ij/T}/π_j is an unbiased estimate of the
//!    stratum's share of every row's normaliser. The uniform share λ keeps every free class reachable.
//!
//! Cost per step: O(B·K + m + number of clusters), plus O(|columns|) to reset the scratch map.
//! With `head_rows` ≥ `dense_above`·C the step is dense: every class a column, π ≡ 1.
use rand::Rng;
use rand::seq::index::sample as sample_indices;

/// How the teacher's tail mass τ (outside its cached top-K) enters the `dis` target. Both are exact on
/// the teacher side: nothing about the teacher is sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Tail {
    /// τ spread evenly over the C−K classes outside the row's top-K, as `full` does (the sum over the
    /// classes without a column is exact, through the running sum of all head rows).
    Spread,
    /// τ as one bucket against the student's own tail mass, as `ghost` does.
    Bucket,
}

/// The DIS hyper-parameters; `Default` is what `train` and `bench` use unless told otherwise.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DisConfig {
    /// Head rows computed per step, positives and negatives together (the budget; ≥ C means dense).
    pub head_rows: usize,
    /// Share of `head_rows` reserved for sampled negatives when the positives would fill it.
    pub neg_reserve: f64,
    /// Number of clusters (strata) of head rows; 0 = automatic (√C, between 1 and 1024, at most a
    /// quarter of the negative reserve).
    pub clusters: usize,
    /// Share λ of the negative draws spread over strata by size alone (keeps every class reachable).
    pub uniform_share: f64,
    /// Largest weight 1/π a sampled row's *head* update may carry; larger ones are scaled down to it
    /// (their contribution to the normaliser and to the backbone gradient stays unbiased).
    /// `f64::INFINITY` = no clipping.
    pub clip: f64,
    /// Floor of a sampled positive's inclusion probability.
    pub pi_min: f64,
    /// Head rows re-clustered per step (those the step moved, then a rotating sweep over all C).
    pub reassign: usize,
    /// Dense step (every class a column) when `head_rows` ≥ this share of C.
    pub dense_above: f64,
    pub tail: Tail,
}

impl Default for DisConfig {
    fn default() -> Self {
        DisConfig { head_rows: 0, neg_reserve: 0.25, clusters: 0, uniform_share: 0.2, clip: 8.0, pi_min: 0.05, reassign: 256, dense_above: 0.6, tail: Tail::Bucket }
    }
}

impl DisConfig {
    /// The default budget for C classes: 5% of C, at least 1,024 rows, at most C.
    pub fn default_head_rows(classes: usize) -> usize {
        classes.div_ceil(20).max(1024).min(classes)
    }

    /// The cluster count used for C classes.
    pub fn cluster_count(&self, classes: usize) -> usize {
        if self.clusters > 0 {
            return self.clusters.min(classes.max(1));
        }
        let by_c = (classes as f64).sqrt().round() as usize;
        let by_budget = ((self.head_rows as f64 * self.neg_reserve) / 4.0) as usize;
        by_c.min(by_budget).clamp(1, 1024).min(classes.max(1))
    }

    pub fn is_dense(&self, classes: usize) -> bool {
        self.head_rows as f64 >= self.dense_above * classes as f64
    }

    /// Checks the values a user can set; the message names the option.
    pub fn validate(&self, classes: usize) -> Result<(), String> {
        if self.head_rows == 0 || self.head_rows > classes {
            return Err(format!("--candidates {} must be between 1 and the class count C = {classes}", self.head_rows));
        }
        if !(self.clip >= 1.0) {
            return Err(format!("--dis-clip {} must be at least 1 (inf = no clipping)", self.clip));
        }
        if !(0.0..1.0).contains(&self.neg_reserve) || !(0.0..=1.0).contains(&self.uniform_share) || !(self.pi_min > 0.0 && self.pi_min <= 1.0) {
            return Err("DIS shares must lie in [0, 1) and pi_min in (0, 1]".into());
        }
        Ok(())
    }
}

/// Online clusters of head rows: the strata of the negatives. Host side: membership only (the device
/// keeps each cluster's running sums, see `train::dis`).
#[derive(Debug, Clone)]
pub struct Clusters {
    /// Cluster of each class.
    pub assign: Vec<u32>,
    /// Members of each cluster.
    pub members: Vec<Vec<u32>>,
    /// Position of each class in its cluster's member list.
    pos: Vec<u32>,
}

impl Clusters {
    /// `n` balanced clusters of a seeded random permutation of the classes (the head starts random, so
    /// any partition is as good as another; the clusters organise as rows are trained and re-assigned).
    pub fn new(classes: usize, n: usize, seed: u64) -> Self {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let n = n.clamp(1, classes.max(1));
        let mut perm: Vec<u32> = (0..classes as u32).collect();
        perm.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ 0xC1u64));
        let mut assign = vec![0u32; classes];
        for (i, &j) in perm.iter().enumerate() {
            assign[j as usize] = (i % n) as u32;
        }
        Self::from_assign(assign, n).expect("valid by construction")
    }

    /// Rebuilds from a saved assignment (checkpoints); None if a cluster id is out of range.
    pub fn from_assign(assign: Vec<u32>, n: usize) -> Option<Self> {
        let mut members = vec![vec![]; n];
        let mut pos = vec![0u32; assign.len()];
        for (j, &c) in assign.iter().enumerate() {
            let m = members.get_mut(c as usize)?;
            pos[j] = m.len() as u32;
            m.push(j as u32);
        }
        Some(Clusters { assign, members, pos })
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Moves class `j` to cluster `to` (O(1)).
    pub fn move_class(&mut self, j: usize, to: u32) {
        let from = self.assign[j] as usize;
        if from == to as usize {
            return;
        }
        let p = self.pos[j] as usize;
        let last = *self.members[from].last().expect("j is a member");
        self.members[from].swap_remove(p);
        if last as usize != j {
            self.pos[last as usize] = p as u32;
        }
        self.pos[j] = self.members[to as usize].len() as u32;
        self.members[to as usize].push(j as u32);
        self.assign[j] = to;
    }
}

/// The step's targets as the sampler sees them: B rows of K ranked classes with their teacher
/// probabilities at the training temperature, and labels (−1 = none).
pub struct RowsView<'a> {
    pub b: usize,
    pub k: usize,
    pub classes: usize,
    pub idx: &'a [i64],
    pub p: &'a [f64],
    pub label: &'a [i64],
}

/// What a step computes: columns (classes) with weights, and where each row's positives sit.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Class of each column. Columns `[0, exact)` have π = 1.
    pub cols: Vec<i64>,
    /// log w_j = −log π_j per column (0 for exact ones).
    pub logw: Vec<f64>,
    /// Factor on each column's head gradient: min(1, clip·π_j).
    pub head_scale: Vec<f64>,
    pub exact: usize,
    /// Columns holding positives: `[0, positives)`; the rest are sampled negatives.
    pub positives: usize,
    /// Column of rank r of row i at `[i*K + r]`, or `cols.len()` (a spare column) when not computed.
    pub pos_col: Vec<i64>,
    /// Target weight of that slot: p_ir·w_j (0 when not computed).
    pub pos_t: Vec<f64>,
    /// Column of each row's label (−1 without one).
    pub label_col: Vec<i64>,
    /// Every class is a column (π ≡ 1): the step is the dense estimator.
    pub dense: bool,
}

/// Sampler state that lives across steps: the clusters, the current student-mass estimate per cluster,
/// and scratch space (a class → column map, reset after each step in O(|columns|)).
#[derive(Debug, Clone)]
pub struct Sampler {
    pub cfg: DisConfig,
    pub clusters: Clusters,
    /// Batch-mean student softmax mass per cluster (from the device, updated each step).
    pub mass: Vec<f64>,
    slot: Vec<i32>,
    excluded_in: Vec<u32>,
}

const EXCLUDED: i32 = -2;

impl Sampler {
    pub fn new(cfg: DisConfig, classes: usize, seed: u64) -> Self {
        let n = cfg.cluster_count(classes);
        let clusters = Clusters::new(classes, n, seed);
        let mass = clusters.members.iter().map(|m| m.len() as f64 / classes.max(1) as f64).collect();
        Sampler { cfg, clusters, mass, slot: vec![-1; classes], excluded_in: vec![0; n] }
    }

    pub fn classes(&self) -> usize {
        self.slot.len()
    }

    /// Builds the step's plan. `rng` drives every random choice (the trainer seeds it per step).
    pub fn plan(&mut self, rows: &RowsView, rng: &mut impl Rng) -> Plan {
        let (b, k, c) = (rows.b, rows.k, rows.classes);
        debug_assert_eq!(c, self.slot.len());
        let mut pl = Plan { label_col: vec![-1; b], ..Default::default() };
        if self.cfg.is_dense(c) {
            pl.dense = true;
            pl.cols = (0..c as i64).collect();
            pl.logw = vec![0.0; c];
            pl.head_scale = vec![1.0; c];
            pl.exact = c;
            pl.positives = c;
            pl.pos_col = rows.idx.to_vec();
            pl.pos_t = rows.p.to_vec();
            pl.label_col = rows.label.to_vec();
            return pl;
        }
        let budget = self.cfg.head_rows.min(c);
        let reserve = ((budget as f64) * self.cfg.neg_reserve).ceil() as usize;
        // 1. labels, then whole rank levels while they fit
        let add = |slot: &mut Vec<i32>, cols: &mut Vec<i64>, j: i64| {
            if slot[j as usize] < 0 {
                slot[j as usize] = cols.len() as i32;
                cols.push(j);
            }
        };
        for &l in rows.label {
            if l >= 0 {
                add(&mut self.slot, &mut pl.cols, l);
            }
        }
        let mut level = 0;
        let mut fresh = vec![];
        while level < k {
            fresh.clear();
            for i in 0..b {
                let j = rows.idx[i * k + level];
                if self.slot[j as usize] < 0 {
                    self.slot[j as usize] = i32::MAX; // tentatively taken
                    fresh.push(j);
                }
            }
            // the negative reserve is needed only for the classes the positives leave out
            let after = pl.cols.len() + fresh.len();
            if after + reserve.min(c - after) > budget.max(pl.cols.len()) && level > 0 {
                for &j in &fresh {
                    self.slot[j as usize] = -1;
                }
                break;
            }
            for &j in &fresh {
                self.slot[j as usize] = pl.cols.len() as i32;
                pl.cols.push(j);
            }
            level += 1;
        }
        pl.exact = pl.cols.len();
        // 2. the ranks beyond: Poisson sampling by the teacher's second moment
        let mut extra: Vec<(i64, f64)> = vec![]; // (class, Σ p²) — index into it via a negative slot
        for i in 0..b {
            for r in level..k {
                let j = rows.idx[i * k + r];
                let s = self.slot[j as usize];
                let p2 = rows.p[i * k + r] * rows.p[i * k + r];
                if s == -1 {
                    self.slot[j as usize] = -3 - extra.len() as i32;
                    extra.push((j, p2));
                } else if s <= -3 {
                    extra[(-3 - s) as usize].1 += p2;
                }
            }
        }
        let mut pi_extra = vec![];
        if !extra.is_empty() {
            let w: Vec<f64> = extra.iter().map(|e| e.1.sqrt()).collect();
            pi_extra = waterfill(&w, budget.saturating_sub(reserve + pl.exact) as f64, self.cfg.pi_min);
            for (e, &pi) in extra.iter().zip(&pi_extra) {
                if pi >= 1.0 || rng.random::<f64>() < pi {
                    self.slot[e.0 as usize] = pl.cols.len() as i32;
                    pl.cols.push(e.0);
                } else {
                    self.slot[e.0 as usize] = EXCLUDED;
                }
            }
        }
        pl.logw = vec![0.0; pl.exact];
        for (e, &pi) in extra.iter().zip(&pi_extra) {
            if self.slot[e.0 as usize] >= 0 {
                pl.logw.push(-pi.min(1.0).ln());
            }
        }
        pl.positives = pl.cols.len();
        // 3. negatives: stratified over the clusters, outside every positive
        let m = budget.saturating_sub(pl.positives).max(reserve.min(c - pl.positives));
        let nclu = self.clusters.len();
        self.excluded_in.iter_mut().for_each(|x| *x = 0);
        for &j in &pl.cols {
            self.excluded_in[self.clusters.assign[j as usize] as usize] += 1;
        }
        for e in &extra {
            if self.slot[e.0 as usize] == EXCLUDED {
                self.excluded_in[self.clusters.assign[e.0 as usize] as usize] += 1;
            }
        }
        let free: Vec<f64> = (0..nclu).map(|cl| (self.clusters.members[cl].len() as u32 - self.excluded_in[cl]) as f64).collect();
        let x = allocate(&free, &self.mass, &self.clusters, m as f64, self.cfg.uniform_share);
        let mut drawn = vec![];
        for cl in 0..nclu {
            if x[cl] <= 0.0 || free[cl] <= 0.0 {
                continue;
            }
            let want = x[cl].floor() as usize + (rng.random::<f64>() < x[cl].fract()) as usize;
            let want = want.min(free[cl] as usize);
            if want == 0 {
                continue;
            }
            let pi = (x[cl] / free[cl]).min(1.0);
            drawn.clear();
            let mem = &self.clusters.members[cl];
            if 4 * want <= free[cl] as usize && 2 * free[cl] as usize >= mem.len() {
                // rejection: most members are free and few are wanted
                while drawn.len() < want {
                    let j = mem[rng.random_range(0..mem.len())] as i64;
                    if self.slot[j as usize] == -1 {
                        self.slot[j as usize] = i32::MAX;
                        drawn.push(j);
                    }
                }
            } else {
                let avail: Vec<i64> = mem.iter().map(|&j| j as i64).filter(|&j| self.slot[j as usize] == -1).collect();
                for t in sample_indices(rng, avail.len(), want) {
                    drawn.push(avail[t]);
                }
            }
            for &j in &drawn {
                self.slot[j as usize] = pl.cols.len() as i32;
                pl.cols.push(j);
                pl.logw.push(-pi.ln());
            }
        }
        // per-row slots, label columns, head scales
        let spare = pl.cols.len() as i64;
        pl.pos_col = Vec::with_capacity(b * k);
        pl.pos_t = Vec::with_capacity(b * k);
        for i in 0..b {
            for r in 0..k {
                let j = rows.idx[i * k + r] as usize;
                let s = self.slot[j];
                if s >= 0 {
                    pl.pos_col.push(s as i64);
                    pl.pos_t.push(rows.p[i * k + r] * pl.logw[s as usize].exp());
                } else {
                    pl.pos_col.push(spare);
                    pl.pos_t.push(0.0);
                }
            }
            let l = rows.label[i];
            pl.label_col[i] = if l >= 0 { self.slot[l as usize] as i64 } else { -1 };
        }
        let clip = self.cfg.clip;
        pl.head_scale = pl.logw.iter().map(|&lw| (clip * (-lw).exp()).min(1.0)).collect();
        // reset the scratch map
        for &j in &pl.cols {
            self.slot[j as usize] = -1;
        }
        for e in &extra {
            self.slot[e.0 as usize] = -1;
        }
        pl
    }
}

/// Inclusion probabilities π_j = max(floor, min(1, c·w_j)) with Σπ = budget where possible
/// (water-filling by bisection on c); all 1 when the budget covers every item.
pub fn waterfill(w: &[f64], budget: f64, floor: f64) -> Vec<f64> {
    let n = w.len() as f64;
    if budget >= n {
        return vec![1.0; w.len()];
    }
    if floor * n >= budget {
        return vec![floor.max(budget / n).min(1.0); w.len()];
    }
    let f = |c: f64| -> f64 { w.iter().map(|&x| (c * x).min(1.0).max(floor)).sum() };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    while f(hi) < budget && hi < 1e300 {
        hi *= 2.0;
    }
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if f(mid) > budget { hi = mid } else { lo = mid }
    }
    w.iter().map(|&x| (lo * x).min(1.0).max(floor)).collect()
}

/// Expected draws per stratum: x_c = m·a_c with a_c ∝ (1−λ)·M_c·R_c/|c| + λ·R_c/R, capped at R_c
/// (the excess goes to the uncapped strata).
fn allocate(free: &[f64], mass: &[f64], cl: &Clusters, m: f64, lambda: f64) -> Vec<f64> {
    let n = free.len();
    let total_free: f64 = free.iter().sum();
    if total_free <= 0.0 || m <= 0.0 {
        return vec![0.0; n];
    }
    if m >= total_free {
        return free.to_vec();
    }
    let dyn_w: Vec<f64> = (0..n).map(|c| if free[c] > 0.0 { mass[c].max(0.0) * free[c] / cl.members[c].len().max(1) as f64 } else { 0.0 }).collect();
    let dyn_sum: f64 = dyn_w.iter().sum();
    let lam = if dyn_sum > 0.0 { lambda } else { 1.0 };
    let a: Vec<f64> = (0..n).map(|c| lam * free[c] / total_free + if dyn_sum > 0.0 { (1.0 - lam) * dyn_w[c] / dyn_sum } else { 0.0 }).collect();
    let mut x = vec![0.0; n];
    let mut capped = vec![false; n];
    let mut left = m;
    for _ in 0..n.min(64) {
        let s: f64 = (0..n).filter(|&c| !capped[c]).map(|c| a[c]).sum();
        if s <= 0.0 || left <= 0.0 {
            break;
        }
        let mut changed = false;
        for c in 0..n {
            if !capped[c] {
                x[c] = left * a[c] / s;
                if x[c] >= free[c] {
                    capped[c] = true;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
        left = m - (0..n).filter(|&c| capped[c]).map(|c| free[c]).sum::<f64>();
        for c in 0..n {
            if capped[c] {
                x[c] = free[c];
            }
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn waterfill_meets_budget_and_floor() {
        let pi = waterfill(&[0.5, 0.2, 0.1, 0.05, 0.01, 0.001], 3.0, 0.05);
        let s: f64 = pi.iter().sum();
        assert!((s - 3.0).abs() < 1e-6, "{pi:?}");
        assert_eq!(pi[0], 1.0);
        assert!(pi.iter().all(|&p| p >= 0.05));
        assert!(pi.windows(2).all(|w| w[0] >= w[1]));
        assert_eq!(waterfill(&[1.0, 2.0], 5.0, 0.1), vec![1.0, 1.0]);
    }

    #[test]
    fn clusters_move_keeps_membership_consistent() {
        let mut c = Clusters::new(100, 7, 1);
        let sizes: Vec<usize> = c.members.iter().map(|m| m.len()).collect();
        assert!(sizes.iter().all(|&s| s == 14 || s == 15), "{sizes:?}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        for _ in 0..1000 {
            c.move_class(rng.random_range(0..100), rng.random_range(0..7));
        }
        let mut seen = vec![false; 100];
        for (cl, m) in c.members.iter().enumerate() {
            for &j in m {
                assert_eq!(c.assign[j as usize] as usize, cl);
                assert!(!seen[j as usize]);
                seen[j as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }

    fn rows(b: usize, k: usize, c: usize, seed: u64) -> (Vec<i64>, Vec<f64>, Vec<i64>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut idx = vec![];
        let mut p = vec![];
        for _ in 0..b {
            let ids = sample_indices(&mut rng, c, k);
            for (r, j) in ids.into_iter().enumerate() {
                idx.push(j as i64);
                p.push(0.5f64.powi(r as i32 + 1));
            }
        }
        let label = (0..b).map(|i| if i % 3 == 0 { -1 } else { idx[i * k] }).collect();
        (idx, p, label)
    }

    /// Every class is counted by exactly one design, and the Horvitz–Thompson weights make every
    /// sum over classes unbiased: E[Σ_{columns} f(j)·w_j] = Σ_j f(j) for an arbitrary f, and
    /// E[target weight of (i, r)] = p_ir. Checked by averaging many plans with a frozen proposal.
    #[test]
    fn plans_are_unbiased_for_every_class() {
        let (b, k, c) = (16, 6, 300);
        let (idx, p, label) = rows(b, k, c, 3);
        let view = RowsView { b, k, classes: c, idx: &idx, p: &p, label: &label };
        // a budget the positives overflow, so both positives and negatives are sampled
        let cfg = DisConfig { head_rows: 60, clusters: 5, ..Default::default() };
        let mut s = Sampler::new(cfg, c, 4);
        s.mass = vec![0.5, 0.1, 0.2, 0.15, 0.05];
        let f: Vec<f64> = (0..c).map(|j| 1.0 + (j % 7) as f64).collect();
        let truth: f64 = f.iter().sum();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 20000;
        let (mut est, mut tsum, mut ncols) = (0.0, vec![0.0; b * k], 0.0);
        for _ in 0..n {
            let pl = s.plan(&view, &mut rng);
            assert!(!pl.dense);
            let mut seen = std::collections::HashSet::new();
            for (t, &j) in pl.cols.iter().enumerate() {
                assert!(seen.insert(j), "class {j} twice");
                est += f[j as usize] * pl.logw[t].exp();
            }
            for (a, &t) in tsum.iter_mut().zip(&pl.pos_t) {
                *a += t;
            }
            for (i, &l) in label.iter().enumerate() {
                if l >= 0 {
                    assert!(pl.label_col[i] >= 0 && (pl.label_col[i] as usize) < pl.exact, "labels are always exact columns");
                }
            }
            ncols += pl.cols.len() as f64;
        }
        let rel = (est / n as f64 - truth).abs() / truth;
        assert!(rel < 0.003, "HT sum off by {rel}");
        for (i, (&a, &pt)) in tsum.iter().zip(&p).enumerate() {
            assert!((a / n as f64 - pt).abs() < 0.06 * pt + 1e-3, "slot {i}: mean target {} vs {pt}", a / n as f64);
        }
        let mean_cols = ncols / n as f64;
        assert!((mean_cols - 60.0).abs() < 8.0, "mean columns {mean_cols} vs budget 60");
    }

    #[test]
    fn positives_that_fit_are_all_kept_exactly() {
        let (b, k, c) = (8, 4, 1000);
        let (idx, p, label) = rows(b, k, c, 7);
        let view = RowsView { b, k, classes: c, idx: &idx, p: &p, label: &label };
        let mut s = Sampler::new(DisConfig { head_rows: 100, ..Default::default() }, c, 1);
        let pl = s.plan(&view, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        assert!(pl.pos_col.iter().all(|&col| (col as usize) < pl.exact), "a positive was sampled although all fit");
        assert_eq!(pl.pos_t, p);
        assert!(pl.cols.len() >= 100 - 2 && pl.cols.len() <= 100 + 2, "{} columns", pl.cols.len());
        // dense when the budget covers most classes
        let mut s = Sampler::new(DisConfig { head_rows: 900, ..Default::default() }, c, 1);
        assert!(s.plan(&view, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1)).dense);
    }
}
