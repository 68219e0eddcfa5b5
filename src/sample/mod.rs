//! Dynamic importance sampling (DIS): which head rows a `dis` step computes, and with what weights.
//! Everything here is host-side bookkeeping with cost independent of C per step (no torch, no files);
//! the device side (cluster statistics, the student-mass estimate) lives in `train::dis`.
//!
//! A step computes, for every row i of the batch,
//!
//! 1. **its own positives exactly**: its K cached ranks and its label, B·(K+1) dot products (each row
//!    gathers its own head rows). The teacher's probabilities are known exactly for every cached rank,
//!    so none is ever dropped, whatever the budget.
//! 2. **`head_rows` shared columns** for the rest of its normaliser, drawn once for the whole batch
//!    from strata, each column with its exact inclusion probability π_j and weight w_j = 1/π_j:
//!    - the batch's positives U (the other rows' ranked classes are each row's hardest negatives):
//!      all of them while they fit in the budget less a reserve (`reserve`, kept for the classes
//!      outside U), else a uniform subsample of that size;
//!    - the classes outside U, from the [`Proposal`]: by default uniformly (one stratum); with
//!      `prior`, strata of alike class prior; with `clusters` (described here) or `neyman`, stratified
//!      by the online clusters of head rows ([`Clusters`]: rows
//!      near each other in d-space, so a cluster's logits are alike for every row). Stratum c with
//!      R_c free classes receives an expected x_c = m·a_c draws, a_c ∝ (1−λ)·M_c + λ·R_c/R, where
//!      M_c is the batch's current student softmax mass in cluster c — estimated on the device from
//!      the cluster means and variances and the batch's features: the dynamic proposal, derived from
//!      the student as it is now — capped at R_c. It draws ⌊x_c⌋ or ⌈x_c⌉ of its free members
//!      uniformly without replacement, so π_j = x_c/R_c exactly; the uniform share λ keeps every
//!      class reachable.
//!    For row i, a column that is one of its own positives is masked, so
//!    Σ_{columns j ∉ P_i} w_j·e^{s_ij/T} is an unbiased estimate of row i's normaliser outside P_i.
//!
//! Cost per step: O(B·K + |U| + head_rows + number of clusters). With `head_rows` ≥ `dense_above`·C
//! the step is dense instead (the exact `full` or `ghost`).
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

/// Where the sampled negatives (the classes outside the batch's ranked ones) are drawn from. Every
/// proposal stratifies the classes and draws uniformly within a stratum, so each column's inclusion
/// probability is exact and the normaliser unbiased; they differ in the strata and in how the draws are
/// spread over them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Proposal {
    /// One stratum: every free class equally likely (Partial FC's positives plus uniform negatives).
    /// No bookkeeping. The default: on the demo world and on a power-law world (C = 100,000) it trained
    /// students as good as or better than every other proposal, at the lowest step time.
    #[default]
    Uniform,
    /// The teacher's class prior from the cache's manifest, tempered (π_c^(1/T)): the unigram proposal
    /// of sampled softmax. Strata are runs of classes whose tempered prior lies within a factor 2 of
    /// each other, each receiving draws in proportion to its free members' prior mass. Fixed: no
    /// bookkeeping per step.
    Prior,
    /// Online clusters of head rows, with draws in proportion to the batch's current student softmax
    /// mass in each (estimated from the cluster statistics): the proposal follows the student.
    Clusters,
    /// The same clusters, with the draws allocated for the least variance of the rows' normalisers
    /// (Neyman allocation): stratum c receives draws ∝ √(Σ_i M_ic²·(e^{v_ic} − 1)), where M_ic is row
    /// i's estimated softmax mass in c and e^{v_ic} − 1 the squared coefficient of variation of e^{s/T}
    /// over c's rows under the clusters' log-normal model — a tight cluster needs few draws however much
    /// mass it holds, a spread one many. Each row's own allocation enters, not only the batch mean.
    Neyman,
}

impl Proposal {
    fn clusters() -> Self {
        Proposal::Clusters
    }

    pub fn name(self) -> &'static str {
        match self {
            Proposal::Uniform => "uniform",
            Proposal::Prior => "prior",
            Proposal::Clusters => "clusters",
            Proposal::Neyman => "neyman",
        }
    }
}

/// The DIS hyper-parameters; `Default` is what `train` and `bench` use unless told otherwise.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DisConfig {
    /// Shared columns per step (head rows computed for every row of the batch, besides each row's own
    /// positives); 0 = automatic: all the batch's positives U plus max(|U|·reserve/(1 − reserve),
    /// [`DisConfig::auto_rest`]) sampled classes. A step with `dense_above`·C columns or more is dense.
    /// Recorded in a run's config.json as `candidates`, the option that sets it.
    #[serde(rename = "candidates", alias = "head_rows")]
    pub head_rows: usize,
    /// Share of the budget kept for the classes outside the batch's positives when those positives
    /// would fill it.
    pub reserve: f64,
    /// Number of clusters (strata) of head rows; 0 = automatic (√C, at most a quarter of `head_rows`,
    /// between 1 and 1024).
    pub clusters: usize,
    /// Share λ of the draws spread over strata by size alone (keeps every class reachable).
    pub uniform_share: f64,
    /// Largest weight 1/π a sampled row's *head* update may carry; larger ones are scaled down to it
    /// (the normaliser and the features' gradient keep the unbiased weight). `f64::INFINITY` = no clipping.
    pub clip: f64,
    /// Head rows re-clustered per step (those the step moved, then a rotating sweep over all C).
    pub reassign: usize,
    /// Dense step (the exact `full` or `ghost`) when `head_rows` ≥ this share of C.
    pub dense_above: f64,
    pub tail: Tail,
    /// Where the negatives outside the batch's ranked classes come from (a configuration written before
    /// the option existed used the clusters).
    #[serde(default = "Proposal::clusters")]
    pub proposal: Proposal,
}

impl Default for DisConfig {
    fn default() -> Self {
        DisConfig {
            head_rows: 0,
            reserve: 0.25,
            clusters: 0,
            uniform_share: 0.2,
            clip: 8.0,
            reassign: 256,
            dense_above: 0.6,
            tail: Tail::Spread,
            proposal: Proposal::Uniform,
        }
    }
}

impl DisConfig {
    /// Sampled classes outside the batch's positives in the automatic budget: 15% of C, between 512 and
    /// 8,192 (at most C). Measured at 20,000 classes (K = 12, 600 steps): 950 sampled classes lost 4.8
    /// points of top-1 against `full`, 2,300 lost 0.3, 3,300 gained 0.8.
    pub fn auto_rest(classes: usize) -> usize {
        (classes * 3).div_ceil(20).clamp(512, 8192).min(classes)
    }

    /// The cluster count used for C classes (1 for the uniform proposal; the prior's strata follow
    /// the prior, see [`prior_strata`]).
    pub fn cluster_count(&self, classes: usize) -> usize {
        if self.proposal == Proposal::Uniform {
            return 1;
        }
        if self.clusters > 0 {
            return self.clusters.min(classes.max(1));
        }
        let by_c = (classes as f64).sqrt().round() as usize;
        let rest = if self.head_rows == 0 { Self::auto_rest(classes) } else { self.head_rows };
        by_c.min(rest / 4).clamp(1, 1024).min(classes.max(1))
    }

    /// Whether `columns` shared columns make a step dense.
    pub fn is_dense(&self, columns: usize, classes: usize) -> bool {
        columns as f64 >= self.dense_above * classes as f64
    }

    /// Checks the values a user can set; the message names the option.
    pub fn validate(&self, classes: usize) -> Result<(), String> {
        if self.head_rows > classes {
            return Err(format!("--candidates {} must be between 1 and the class count C = {classes}", self.head_rows));
        }
        if !(self.clip >= 1.0) {
            return Err(format!("--dis-clip {} must be at least 1 (inf = no clipping)", self.clip));
        }
        if !(0.0..=1.0).contains(&self.uniform_share) || !(self.uniform_share > 0.0) || !(0.0..1.0).contains(&self.reserve) {
            return Err("the DIS uniform share must lie in (0, 1] and the reserve in [0, 1)".into());
        }
        Ok(())
    }
}

/// The tempered prior π_c^(1/T) of a manifest's class prior (non-finite or negative entries count as 0).
pub fn tempered_prior(prior: &[f64], temperature: f64) -> Vec<f64> {
    prior.iter().map(|&p| if p.is_finite() && p > 0.0 { p.powf(1.0 / temperature) } else { 0.0 }).collect()
}

/// The strata of the prior proposal: classes in decreasing order of `weight`, a new stratum starting
/// where the weight falls below half of the stratum's first (so weights within a stratum differ by less
/// than 2×, and draws uniform within it are close to draws ∝ weight); classes of weight 0 form the last
/// stratum. Returns the assignment and each stratum's share of the total weight.
pub fn prior_strata(weight: &[f64]) -> (Vec<u32>, Vec<f64>) {
    let mut order: Vec<u32> = (0..weight.len() as u32).collect();
    order.sort_by(|&a, &b| weight[b as usize].total_cmp(&weight[a as usize]).then(a.cmp(&b)));
    let total: f64 = weight.iter().sum();
    let mut assign = vec![0u32; weight.len()];
    let mut mass: Vec<f64> = vec![];
    let mut first = f64::NAN;
    for &j in &order {
        let w = weight[j as usize];
        if mass.is_empty() || (w < 0.5 * first && !(first <= 0.0)) {
            mass.push(0.0);
            first = w;
        }
        *mass.last_mut().expect("one stratum") += if total > 0.0 { w / total } else { 0.0 };
        assign[j as usize] = (mass.len() - 1) as u32;
    }
    (assign, mass)
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

    /// Rebuilds from saved member lists (checkpoints: the order within each list steers the draws, so
    /// it is saved as it is); None unless they hold every class of `0..classes` exactly once.
    pub fn from_members(members: Vec<Vec<u32>>, classes: usize) -> Option<Self> {
        let mut assign = vec![u32::MAX; classes];
        let mut pos = vec![0u32; classes];
        for (c, m) in members.iter().enumerate() {
            for (i, &j) in m.iter().enumerate() {
                let a = assign.get_mut(j as usize).filter(|a| **a == u32::MAX)?;
                *a = c as u32;
                pos[j as usize] = i as u32;
            }
        }
        if members.is_empty() || assign.contains(&u32::MAX) {
            return None;
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

/// What a step computes: each row's positive slots, the shared sampled columns with their weights,
/// and the union of head rows the step touches.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Slots per row: the K ranks, then the label (a label among the ranks is marked inactive).
    pub slots: usize,
    /// Class of each row's slot `[i*slots + r]` (the label slot holds rank 0's class when inactive).
    pub pos: Vec<i64>,
    /// Whether the slot counts (false for an absent label or one already among the ranks).
    pub active: Vec<bool>,
    /// Teacher target of each slot at the training temperature (0 for the label slot).
    pub pos_t: Vec<f64>,
    /// Slot holding the row's label (−1 without one): CE picks it.
    pub label_slot: Vec<i64>,
    /// The shared sampled columns: class, log w_j = −log π_j, and the factor min(1, clip·π_j) on
    /// each column's head gradient.
    pub cols: Vec<i64>,
    pub logw: Vec<f64>,
    pub head_scale: Vec<f64>,
    /// Column holding slot `[i*slots + r]`'s class, or −1 (those entries are masked for row i).
    pub own_col: Vec<i64>,
    /// The distinct head rows the step touches (positives, then columns), and where each slot and
    /// each column sits among them.
    pub union: Vec<i64>,
    pub pos_u: Vec<i64>,
    pub col_u: Vec<i64>,
    /// The dense estimator applies instead (every class a column).
    pub dense: bool,
}

/// Sampler state that lives across steps: the clusters, the current student-mass estimate per cluster,
/// and scratch space (class → union index, and → column; reset after each step in O(|union|)).
#[derive(Debug, Clone)]
pub struct Sampler {
    pub cfg: DisConfig,
    pub clusters: Clusters,
    /// Batch-mean student softmax mass per cluster (from the device, updated each step).
    pub mass: Vec<f64>,
    slot: Vec<i32>,
    col: Vec<i32>,
}

impl Sampler {
    /// A fresh sampler for `classes` classes. `prior` is the prior proposal's weight per class (see
    /// [`tempered_prior`]), needed by it and ignored by the others; the error says what is missing.
    pub fn new(cfg: DisConfig, classes: usize, seed: u64, prior: Option<&[f64]>) -> Result<Self, String> {
        let (clusters, mass) = match cfg.proposal {
            Proposal::Prior => {
                let w = prior.ok_or("the prior proposal needs the teacher's class prior, and the cache's manifest records none")?;
                if w.len() != classes {
                    return Err(format!("the class prior has {} entries for C = {classes} classes", w.len()));
                }
                if !w.iter().any(|&x| x > 0.0) || w.iter().any(|&x| !(x >= 0.0 && x.is_finite())) {
                    return Err("the class prior must be finite, non-negative and not all zero".into());
                }
                let (assign, mass) = prior_strata(w);
                let n = mass.len();
                (Clusters::from_assign(assign, n).ok_or("prior strata out of range")?, mass)
            }
            _ => {
                let clusters = Clusters::new(classes, cfg.cluster_count(classes), seed);
                let mass = clusters.members.iter().map(|m| m.len() as f64 / classes.max(1) as f64).collect();
                (clusters, mass)
            }
        };
        Ok(Sampler { cfg, clusters, mass, slot: vec![-1; classes], col: vec![-1; classes] })
    }

    /// Whether the proposal follows the student (the device keeps cluster statistics and re-assigns
    /// rows after each step); the others are fixed.
    pub fn adaptive(&self) -> bool {
        matches!(self.cfg.proposal, Proposal::Clusters | Proposal::Neyman) && self.clusters.len() > 1
    }

    pub fn classes(&self) -> usize {
        self.slot.len()
    }

    /// Builds the step's plan. `rng` drives every random choice (the trainer seeds it per step).
    pub fn plan(&mut self, rows: &RowsView, rng: &mut impl Rng) -> Plan {
        let (b, k, c) = (rows.b, rows.k, rows.classes);
        debug_assert_eq!(c, self.slot.len());
        if self.cfg.head_rows > 0 && self.cfg.is_dense(self.cfg.head_rows, c) {
            return Plan { dense: true, ..Default::default() };
        }
        let slots = k + 1;
        let mut pl = Plan { slots, label_slot: vec![-1; b], ..Default::default() };
        let union_of = |slot: &mut Vec<i32>, union: &mut Vec<i64>, j: i64| -> i64 {
            if slot[j as usize] < 0 {
                slot[j as usize] = union.len() as i32;
                union.push(j);
            }
            slot[j as usize] as i64
        };
        // 1. every row's own positives
        for i in 0..b {
            let ranks = &rows.idx[i * k..(i + 1) * k];
            for r in 0..k {
                pl.pos.push(ranks[r]);
                pl.active.push(true);
                pl.pos_t.push(rows.p[i * k + r]);
                pl.pos_u.push(union_of(&mut self.slot, &mut pl.union, ranks[r]));
            }
            let l = rows.label[i];
            let at = if l >= 0 { ranks.iter().position(|&j| j == l) } else { None };
            let lab = if l >= 0 && at.is_none() { l } else { ranks[0] };
            pl.pos.push(lab);
            pl.active.push(l >= 0 && at.is_none());
            pl.pos_t.push(0.0);
            pl.pos_u.push(union_of(&mut self.slot, &mut pl.union, lab));
            pl.label_slot[i] = match (l >= 0, at) {
                (false, _) => -1,
                (true, Some(r)) => r as i64,
                (true, None) => k as i64,
            };
        }
        // 2. shared columns. First stratum: the batch's positives U (every row's hard negatives are the
        // other rows' positives), all of them while they fit in (1 − reserve) of the budget, else a
        // uniform subsample. Then the clusters, restricted to the classes outside U.
        let nu = pl.union.len();
        let m = if self.cfg.head_rows == 0 {
            let by_share = ((nu as f64) / (1.0 - self.cfg.reserve)).ceil() as usize;
            by_share.max(nu + DisConfig::auto_rest(c)).min(c)
        } else {
            self.cfg.head_rows.min(c)
        };
        // dense when the columns, or the batch's own ranked classes alone, cover most classes: the
        // per-row work would then cost more than the dense product
        if self.cfg.is_dense(m.max(nu), c) {
            for &j in &pl.union {
                self.slot[j as usize] = -1;
            }
            return Plan { dense: true, ..Default::default() };
        }
        let reserve = (((m as f64) * self.cfg.reserve).ceil() as usize).min(c - nu); // only the classes outside U need it
        let m_u = nu.min(m.saturating_sub(reserve));
        let pi_u = m_u as f64 / nu.max(1) as f64;
        let picked: Vec<usize> = if m_u >= nu { (0..nu).collect() } else { sample_indices(rng, nu, m_u).into_vec() };
        for u in picked {
            let j = pl.union[u];
            self.col[j as usize] = pl.cols.len() as i32;
            pl.cols.push(j);
            pl.logw.push(-pi_u.ln());
            pl.col_u.push(u as i64);
        }
        let nclu = self.clusters.len();
        let mut free: Vec<f64> = self.clusters.members.iter().map(|m| m.len() as f64).collect();
        for &j in &pl.union {
            free[self.clusters.assign[j as usize] as usize] -= 1.0;
        }
        // the prior's strata hold classes of alike weight, so the free members' share of a stratum's
        // weight is close to their share of its members
        let scaled: Vec<f64>;
        let mass = if self.cfg.proposal == Proposal::Prior {
            scaled = (0..nclu).map(|c| self.mass[c] * free[c] / (self.clusters.members[c].len().max(1) as f64)).collect();
            &scaled
        } else {
            &self.mass
        };
        let x = allocate(&free, mass, (m - m_u) as f64, self.cfg.uniform_share);
        let mut avail = vec![];
        for cl in 0..nclu {
            if x[cl] <= 0.0 || free[cl] <= 0.0 {
                continue;
            }
            let nfree = free[cl] as usize;
            let want = (x[cl].floor() as usize + (rng.random::<f64>() < x[cl].fract()) as usize).min(nfree);
            let pi = (x[cl] / free[cl]).min(1.0);
            let mem = &self.clusters.members[cl];
            let take = |j: i64, slot: &mut Vec<i32>, col: &mut Vec<i32>, pl: &mut Plan| {
                col[j as usize] = pl.cols.len() as i32;
                pl.cols.push(j);
                pl.logw.push(-pi.ln());
                pl.col_u.push(union_of(slot, &mut pl.union, j));
            };
            if 4 * want <= nfree && 2 * nfree >= mem.len() {
                // rejection: most members are free and few are wanted
                let mut got = 0;
                while got < want {
                    let j = mem[rng.random_range(0..mem.len())] as i64;
                    if self.slot[j as usize] < 0 {
                        take(j, &mut self.slot, &mut self.col, &mut pl);
                        got += 1;
                    }
                }
            } else {
                avail.clear();
                avail.extend(mem.iter().map(|&j| j as i64).filter(|&j| self.slot[j as usize] < 0));
                for t in sample_indices(rng, avail.len(), want) {
                    take(avail[t], &mut self.slot, &mut self.col, &mut pl);
                }
            }
        }
        pl.own_col = pl.pos.iter().zip(&pl.active).map(|(&j, &a)| if a { self.col[j as usize] as i64 } else { -1 }).collect();
        let clip = self.cfg.clip;
        pl.head_scale = pl.logw.iter().map(|&lw| (clip * (-lw).exp()).min(1.0)).collect();

        for &j in &pl.union {
            self.slot[j as usize] = -1;
            self.col[j as usize] = -1;
        }
        pl
    }
}

/// Expected draws per stratum: x_c = m·a_c with a_c ∝ (1−λ)·M_c + λ·n_c/C, capped at n_c (the excess
/// goes to the uncapped strata).
fn allocate(size: &[f64], mass: &[f64], m: f64, lambda: f64) -> Vec<f64> {
    let n = size.len();
    let total: f64 = size.iter().sum();
    if total <= 0.0 || m <= 0.0 {
        return vec![0.0; n];
    }
    if m >= total {
        return size.to_vec();
    }
    let dyn_w: Vec<f64> = (0..n).map(|c| if size[c] > 0.0 { mass[c].max(0.0) } else { 0.0 }).collect();
    let dyn_sum: f64 = dyn_w.iter().sum();
    let lam = if dyn_sum > 0.0 { lambda } else { 1.0 };
    let a: Vec<f64> = (0..n).map(|c| lam * size[c] / total + if dyn_sum > 0.0 { (1.0 - lam) * dyn_w[c] / dyn_sum } else { 0.0 }).collect();
    let mut x = vec![0.0; n];
    let mut capped = vec![false; n];
    for _ in 0..n.min(64) {
        let left = m - (0..n).filter(|&c| capped[c]).map(|c| size[c]).sum::<f64>();
        let s: f64 = (0..n).filter(|&c| !capped[c]).map(|c| a[c]).sum();
        if s <= 0.0 || left <= 0.0 {
            break;
        }
        let mut changed = false;
        for c in 0..n {
            x[c] = if capped[c] { size[c] } else { left * a[c] / s };
            if !capped[c] && x[c] >= size[c] {
                capped[c] = true;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    (0..n).map(|c| x[c].min(size[c])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn clusters_move_keeps_membership_consistent() {
        let mut c = Clusters::new(100, 7, 1);
        let sizes: Vec<usize> = c.members.iter().map(|m| m.len()).collect();
        assert!(sizes.iter().all(|&s| s == 14 || s == 15), "{sizes:?}");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        for _ in 0..1000 {
            c.move_class(rng.random_range(0..100), rng.random_range(0..7));
        }
        let mut seen = [false; 100];
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
        // rows 0, 3, …: no label; 1, 4, …: label = rank 0; 2, 5, …: a label outside the ranks
        let label = (0..b)
            .map(|i| match i % 3 {
                0 => -1,
                1 => idx[i * k],
                _ => (0..c as i64).find(|j| !idx[i * k..(i + 1) * k].contains(j)).unwrap(),
            })
            .collect();
        (idx, p, label)
    }

    /// The weights make every sum over classes unbiased (E[Σ_cols f(j)·w_j] = Σ_j f(j) for an
    /// arbitrary f, with a skewed proposal), the positives are exact, and the bookkeeping is consistent.
    #[test]
    fn plans_are_unbiased_and_consistent() {
        let (b, k, c) = (12, 5, 300);
        // a power-law prior with a few classes of weight 0 (reachable through the uniform share only)
        let prior: Vec<f64> = (0..c).map(|j| if j % 50 == 7 { 0.0 } else { ((j % 97) as f64 + 1.0).powf(-1.2) }).collect();
        for proposal in [Proposal::Clusters, Proposal::Neyman, Proposal::Uniform, Proposal::Prior] {
            let cfg = DisConfig { head_rows: 40, clusters: 5, proposal, ..Default::default() };
            let mut s = Sampler::new(cfg, c, 4, Some(&prior)).unwrap();
            if s.adaptive() {
                s.mass = vec![0.5, 0.1, 0.2, 0.15, 0.05];
            }
            assert_eq!(s.adaptive(), matches!(proposal, Proposal::Clusters | Proposal::Neyman));
            unbiased_and_consistent(&mut s, b, k, c);
        }
    }

    fn unbiased_and_consistent(s: &mut Sampler, b: usize, k: usize, c: usize) {
        let (idx, p, label) = rows(b, k, c, 3);
        let view = RowsView { b, k, classes: c, idx: &idx, p: &p, label: &label };
        let f: Vec<f64> = (0..c).map(|j| 1.0 + (j % 7) as f64).collect();
        let truth: f64 = f.iter().sum();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let n = 20000;
        let (mut est, mut ncols) = (0.0, 0.0);
        for _ in 0..n {
            let pl = s.plan(&view, &mut rng);
            assert!(!pl.dense);
            let mut seen = std::collections::HashSet::new();
            for (t, &j) in pl.cols.iter().enumerate() {
                assert!(seen.insert(j), "class {j} drawn twice");
                est += f[j as usize] * pl.logw[t].exp();
                assert_eq!(pl.union[pl.col_u[t] as usize], j);
            }
            ncols += pl.cols.len() as f64;
            for i in 0..b {
                for r in 0..k {
                    let at = i * (k + 1) + r;
                    assert_eq!((pl.pos[at], pl.pos_t[at], pl.active[at]), (idx[i * k + r], p[i * k + r], true));
                }
                let ls = pl.label_slot[i];
                assert_eq!(ls >= 0, label[i] >= 0);
                if ls >= 0 {
                    assert_eq!(pl.pos[i * (k + 1) + ls as usize], label[i]);
                }
                assert_eq!(pl.active[i * (k + 1) + k], i % 3 == 2, "label slot active only for a label outside the ranks");
            }
            for (at, &j) in pl.pos.iter().enumerate() {
                assert_eq!(pl.union[pl.pos_u[at] as usize], j);
                let oc = pl.own_col[at];
                assert_eq!(oc >= 0, pl.active[at] && pl.cols.contains(&j));
                if oc >= 0 {
                    assert_eq!(pl.cols[oc as usize], j);
                }
            }
        }
        let rel = (est / n as f64 - truth).abs() / truth;
        assert!(rel < 0.005, "{}: HT sum off by {rel}", s.cfg.proposal.name());
        assert!((ncols / n as f64 - 40.0).abs() < 1.0, "mean columns {} vs 40", ncols / n as f64);
    }

    /// The prior's strata: decreasing weight, within 2× inside a stratum, zeros last, shares summing to 1;
    /// the prior proposal needs a prior of C entries.
    #[test]
    fn prior_strata_group_alike_weights() {
        let w: Vec<f64> = (0..1000).map(|j| if j % 10 == 3 { 0.0 } else { ((j * 7919 % 1000) as f64 + 1.0).powf(-1.1) }).collect();
        let (assign, mass) = prior_strata(&w);
        let n = mass.len();
        assert!((mass.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        for s in 0..n {
            let ws: Vec<f64> = (0..1000).filter(|&j| assign[j] as usize == s).map(|j| w[j]).collect();
            let (lo, hi) = (ws.iter().copied().fold(f64::INFINITY, f64::min), ws.iter().copied().fold(0.0, f64::max));
            assert!(!ws.is_empty() && (hi == 0.0 || lo > 0.0 && hi / lo <= 2.0), "stratum {s}: weights {lo}..{hi}");
        }
        assert!((0..1000).filter(|j| j % 10 == 3).all(|j| assign[j] as usize == n - 1), "zero weights form the last stratum");
        let cfg = DisConfig { proposal: Proposal::Prior, ..Default::default() };
        assert!(Sampler::new(cfg.clone(), 1000, 1, None).unwrap_err().contains("class prior"));
        assert!(Sampler::new(cfg.clone(), 1000, 1, Some(&w[..999])).unwrap_err().contains("999 entries"));
        assert!(Sampler::new(cfg, 1000, 1, Some(&vec![0.0; 1000])).is_err());
    }

    #[test]
    fn dense_when_the_budget_covers_most_classes() {
        let (b, k, c) = (8, 4, 1000);
        let (idx, p, label) = rows(b, k, c, 7);
        let view = RowsView { b, k, classes: c, idx: &idx, p: &p, label: &label };
        let mut s = Sampler::new(DisConfig { head_rows: 900, ..Default::default() }, c, 1, None).unwrap();
        assert!(s.plan(&view, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1)).dense);
        // every class drawn when the budget is C and dense mode is off: weights all 1
        let mut s = Sampler::new(DisConfig { head_rows: c, dense_above: 2.0, ..Default::default() }, c, 1, None).unwrap();
        let pl = s.plan(&view, &mut rand_chacha::ChaCha8Rng::seed_from_u64(1));
        assert_eq!(pl.cols.len(), c);
        assert!(pl.logw.iter().all(|&w| w.abs() < 1e-12));
    }
}
