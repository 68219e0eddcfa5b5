//! Dynamic importance sampling (DIS): the two proposals the `dis` estimator draws from, and their
//! online updates from the student's feedback.
//!
//! **Rank proposal** π (one inclusion probability per cached rank r = 0..K). Each row keeps rank r with
//! probability π_r, weighting it 1/π_r (Horvitz–Thompson: unbiased). The variance of the positive term
//! Σ_r (q_r − p_r)·h is smallest when π_r ∝ E|q_r − p_r| (capped at 1), so we keep an exponential moving
//! average d_r of the per-rank teacher–student discrepancy, estimated each step from the kept ranks as
//! mean_i |p_ir − q̂_ir| / π_r, and set π by water-filling: π_r = min(1, c·d_r) with c such that
//! Σ π_r = budget, then π_r ≥ π_min so every rank stays reachable (unbiasedness).
//! Before any feedback d_r is the teacher's mean probability at rank r, so top ranks start near 1.
//!
//! **Class proposal** Q (over all C classes) for the negatives that estimate the student's normaliser
//! Z = Σ_j exp(s_j/T). The zero-variance proposal is Q_j ∝ exp(s_j/T), i.e. the student's own softmax
//! mass; we track its batch mean ū_j with an EMA updated every step for the classes whose logits were
//! computed (ū_j ← (1−β)ū_j + β·mean_i q̂_ij, q̂ the student's estimated softmax; other classes keep
//! their last value, initially the teacher prior) and mix: Q = (1−λ_p−λ_u)·ū/Σū + λ_p·prior + λ_u/C, where prior is the teacher's
//! class prior from the manifest and the uniform floor λ_u keeps every class reachable.
//! m draws with replacement give the unique set S; class j is in S with probability
//! incl_j = 1 − (1 − Q_j)^m, which the estimator divides by (logQ correction).
use rand::Rng;

/// Per-rank inclusion probabilities and their feedback state.
#[derive(Debug, Clone)]
pub struct RankProposal {
    pub d: Vec<f64>,
    pub pi: Vec<f64>,
    pub budget: f64,
    pub pi_min: f64,
    pub beta: f64,
}

impl RankProposal {
    /// `init` is the teacher's mean probability at each rank; `budget` the expected kept ranks per row.
    pub fn new(init: &[f64], budget: f64, pi_min: f64, beta: f64) -> Self {
        let mut r = RankProposal { d: init.to_vec(), pi: vec![1.0; init.len()], budget, pi_min, beta };
        r.refresh();
        r
    }

    /// π from d by water-filling to the budget, floored at π_min.
    pub fn refresh(&mut self) {
        let k = self.d.len();
        if self.budget >= k as f64 {
            self.pi.iter_mut().for_each(|p| *p = 1.0);
            return;
        }
        let d: Vec<f64> = self.d.iter().map(|&x| x.max(1e-12)).collect();
        // find c: Σ min(1, c·d_r) = budget (monotone in c): bisection on log c
        let (mut lo, mut hi) = (1e-12f64, 1e12f64);
        for _ in 0..100 {
            let c = (lo * hi).sqrt();
            let s: f64 = d.iter().map(|&x| (c * x).min(1.0)).sum();
            if s > self.budget { hi = c } else { lo = c }
        }
        for (p, &x) in self.pi.iter_mut().zip(&d) {
            *p = (lo * x).min(1.0).max(self.pi_min);
        }
    }

    /// Adds one step's feedback: `obs[r]` = the unbiased estimate of E|p_r − q_r| from this batch.
    pub fn update(&mut self, obs: &[f64]) {
        for (d, &o) in self.d.iter_mut().zip(obs) {
            *d = (1.0 - self.beta) * *d + self.beta * o;
        }
        self.refresh();
    }

    /// Draws which ranks of one row are kept.
    pub fn keep(&self, rng: &mut impl Rng, out: &mut Vec<bool>) {
        out.clear();
        out.extend(self.pi.iter().map(|&p| p >= 1.0 || rng.random::<f64>() < p));
    }
}

/// The class proposal Q and the student-mass estimate behind it.
#[derive(Debug, Clone)]
pub struct ClassProposal {
    pub mass: Vec<f64>,
    pub prior: Vec<f64>,
    pub lambda_prior: f64,
    pub lambda_uniform: f64,
    pub beta: f64,
}

impl ClassProposal {
    pub fn new(prior: &[f64], lambda_prior: f64, lambda_uniform: f64, beta: f64) -> Self {
        let c = prior.len();
        let s: f64 = prior.iter().sum();
        let prior: Vec<f64> = if s > 0.0 { prior.iter().map(|p| p / s).collect() } else { vec![1.0 / c as f64; c] };
        ClassProposal { mass: prior.clone(), prior, lambda_prior, lambda_uniform, beta }
    }

    /// Q over all classes (sums to 1).
    pub fn q(&self) -> Vec<f64> {
        let c = self.mass.len() as f64;
        let ms: f64 = self.mass.iter().sum::<f64>().max(1e-300);
        let lm = 1.0 - self.lambda_prior - self.lambda_uniform;
        self.mass.iter().zip(&self.prior).map(|(m, p)| lm * m / ms + self.lambda_prior * p + self.lambda_uniform / c).collect()
    }

    /// Feedback: the student's mean softmax mass on the observed classes this step.
    pub fn update(&mut self, classes: &[i64], observed_mass: &[f64]) {
        for (&j, &m) in classes.iter().zip(observed_mass) {
            let v = &mut self.mass[j as usize];
            *v = (1.0 - self.beta) * *v + self.beta * m;
        }
    }
}

/// Inclusion probability of a class with proposal mass `q` in the unique set of `m` draws.
pub fn inclusion(q: f64, m: usize) -> f64 {
    -((m as f64) * (-q).ln_1p()).exp_m1()
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn waterfill_meets_budget_and_floor() {
        let mut r = RankProposal::new(&[0.5, 0.2, 0.1, 0.05, 0.01, 0.001], 3.0, 0.05, 0.1);
        let s: f64 = r.pi.iter().sum();
        assert!((s - 3.0).abs() < 0.06, "{:?}", r.pi);
        assert_eq!(r.pi[0], 1.0);
        assert!(r.pi.iter().all(|&p| p >= 0.05));
        assert!(r.pi.windows(2).all(|w| w[0] >= w[1]));
        r.update(&[0.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
        assert!(r.pi[5] > 0.05);
    }
    #[test]
    fn q_is_a_distribution_and_inclusion_is_exact_for_one_draw() {
        let c = ClassProposal::new(&[1.0, 2.0, 3.0, 4.0], 0.2, 0.1, 0.5);
        let q = c.q();
        assert!((q.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!((inclusion(0.3, 1) - 0.3).abs() < 1e-12);
        assert!((inclusion(0.5, 2) - 0.75).abs() < 1e-12);
    }
}
