//! The `dis` proposals side by side: where the negatives outside the batch's ranked classes come from
//! (`--dis-proposal`), at one budget (5% of C shared columns), on two worlds — classes equally frequent
//! (the demo's) and a power law (`synth --zipf 1.1`: the teacher and the student's head carry the log
//! prior) — each with a peaked and a diffuse teacher. Per proposal: one draw's head and backbone angle
//! to the cache-based `full` gradient (the variance a step sees), the angle of the mean of the draws
//! (what is left: the ratio bias), and the head rows a step computes.
//!
//! The problem is the fidelity table's ([`crate::bench::fidelity::Problem`]); the adaptive proposals
//! (clusters, neyman) start from clusters organised by 5 k-means passes over the partly trained head,
//! with the proposal frozen over the draws. The prior proposal's prior is the teacher's mean softmax over
//! the batch at T = 1 (what a manifest records for its rows).
use serde::Serialize;
use tch::Kind;

use crate::bench::fidelity::{Problem, angle_ratio, targets_from_logits};
use crate::error::Result;
use crate::sample::{DisConfig, Proposal, tempered_prior};
use crate::train::dis::DisState;
use crate::train::loss::Estimator;

#[derive(Debug, Clone, Serialize)]
pub struct ProposalRow {
    /// `uniform` (classes equally frequent) or `zipf 1.1` (power-law class frequencies).
    pub world: String,
    pub classes: usize,
    pub k: usize,
    /// `peaked` or `diffuse`.
    pub teacher: String,
    /// The proposal (`uniform`, `prior`, `clusters`, `neyman`).
    pub proposal: String,
    /// The budget: `5%` (of C shared columns: the batch's ranked classes subsampled) or `auto` (all of
    /// them, plus the default number of sampled classes).
    pub budget: String,
    pub head_rows: f64,
    pub draws: usize,
    /// One draw's angle (mean over draws, degrees) and the mean of the draws' angle: head, backbone.
    pub head_angle_1: f64,
    pub head_angle_mean: f64,
    pub bb_angle_1: f64,
    pub bb_angle_mean: f64,
}

pub const PROPOSALS: [Proposal; 4] = [Proposal::Uniform, Proposal::Prior, Proposal::Clusters, Proposal::Neyman];

/// The table at `c` classes and `k` cached ranks, `draws` draws per proposal.
pub fn proposals(c: usize, k: usize, draws: usize, progress: bool) -> Result<Vec<ProposalRow>> {
    let mut out = vec![];
    for (world, zipf) in [("uniform", 0.0), ("zipf 1.1", 1.1)] {
        for (teacher, scale) in [("peaked", 0.6), ("diffuse", 0.3)] {
            let pb = Problem::with_prior(c, scale, zipf, 7)?;
            let labels = vec![-1i64; 256];
            let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
            let tg = targets_from_logits(&pb.z, c, k, 0, pb.temp as f32, &labels, &mut rng);
            let (gh_ref, gb_ref, _) = pb.grads(Estimator::Full, &tg, None, 0)?;
            let z = tch::Tensor::f_from_slice(&pb.z)?.f_reshape([-1, c as i64])?;
            let prior: Vec<f64> = Vec::try_from(&z.f_softmax(1, Kind::Double)?.f_mean_dim([0i64].as_slice(), false, Kind::Double)?)?;
            let weight = tempered_prior(&prior, pb.temp);
            let ha = crate::train::student::Student::augment(&pb.x.f_matmul(&pb.a)?)?;
            for (budget, proposal) in [("5%", c.div_ceil(20)), ("auto", 0)].into_iter().flat_map(|b| PROPOSALS.map(|p| (b, p))) {
                let (budget, head_rows) = budget;
                if progress {
                    eprintln!("  proposals: {world}, C = {c}, {teacher}, K = {k}, budget {budget}, {} ({draws} draws)", proposal.name());
                }
                let cfg = DisConfig { head_rows, proposal, ..Default::default() };
                let mut d = DisState::new(cfg, &pb.head, 11, Some(&weight))?;
                if d.sampler.adaptive() {
                    d.kmeans(&pb.head, 5)?;
                    d.refresh_mass(&ha, pb.temp)?;
                }
                let (mut sum_h, mut sum_b) = (gh_ref.f_zeros_like()?.f_to_kind(Kind::Double)?, gb_ref.f_zeros_like()?.f_to_kind(Kind::Double)?);
                let (mut a1h, mut a1b, mut rows) = (0.0, 0.0, 0.0);
                for s in 0..draws {
                    let (gh, gb, used) = pb.grads(Estimator::Dis, &tg, Some(&mut d), 1000 + s as u64)?;
                    a1h += angle_ratio(&gh, &gh_ref)?.0;
                    a1b += angle_ratio(&gb, &gb_ref)?.0;
                    sum_h += gh.f_to_kind(Kind::Double)?;
                    sum_b += gb.f_to_kind(Kind::Double)?;
                    rows += used as f64;
                }
                let n = draws.max(1) as f64;
                out.push(ProposalRow {
                    world: world.into(),
                    classes: c,
                    k,
                    teacher: teacher.into(),
                    proposal: proposal.name().into(),
                    budget: budget.into(),
                    head_rows: rows / n,
                    draws,
                    head_angle_1: a1h / n,
                    head_angle_mean: angle_ratio(&(&sum_h / n), &gh_ref)?.0,
                    bb_angle_1: a1b / n,
                    bb_angle_mean: angle_ratio(&(&sum_b / n), &gb_ref)?.0,
                });
            }
        }
    }
    Ok(out)
}
