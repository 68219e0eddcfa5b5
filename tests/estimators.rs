//! The estimators against an exact reference: a dense KD + CE loss over all C classes, with its gradient
//! written out analytically (∂L/∂s = α·T·(q − p)/B + (1−α)·(softmax(s) − onehot)/B_labelled), not taken
//! from the code under test.
#![cfg(feature = "torch")]
use kdcache::rank::rank_row;
use kdcache::sample::{ClassProposal, RankProposal};
use kdcache::train::loss::{DisState, Estimator, LossConfig, Targets, step_loss};
use rand::SeedableRng;
use tch::{Kind, Tensor};

const B: usize = 8;
const C: usize = 40;
const D: i64 = 6;

/// Teacher logits, student features and head, all deterministic.
fn setup(seed: u64) -> (Vec<Vec<f32>>, Tensor, Tensor, Vec<i64>) {
    tch::manual_seed(seed as i64);
    let z = Tensor::randn([B as i64, C as i64], (Kind::Float, tch::Device::Cpu)) * 2.5;
    let zs: Vec<Vec<f32>> = (0..B).map(|i| Vec::<f32>::try_from(&z.get(i as i64)).unwrap()).collect();
    let h = Tensor::randn([B as i64, D], (Kind::Float, tch::Device::Cpu));
    let head = Tensor::randn([C as i64, D + 1], (Kind::Float, tch::Device::Cpu)) * 0.5;
    let labels: Vec<i64> = (0..B as i64).map(|i| if i == 3 { -1 } else { (i * 7) % C as i64 }).collect();
    (zs, h, head, labels)
}

/// Cache-like targets at temperature T from dense logits (via the CPU ranker).
fn targets(zs: &[Vec<f32>], k: usize, temp: f32, labels: &[i64], tail: Option<&[Vec<(i64, u32)>]>) -> Targets {
    let m = tail.map(|t| t.iter().map(|r| r.len()).max().unwrap_or(0)).unwrap_or(0);
    let mut t = Targets { b: zs.len(), k, m, classes: C, idx: vec![], p: vec![], tau: vec![], label: labels.to_vec(), tail_idx: vec![], tail_w: vec![] };
    for (i, z) in zs.iter().enumerate() {
        let r = rank_row(z, k, &[temp], None).unwrap();
        t.idx.extend(r.idx.iter().map(|&c| c as i64));
        t.p.extend(r.logit.iter().map(|&v| ((v / temp) as f64 - r.lse[0] as f64).exp()));
        let tau = (r.log_tail[0] as f64).exp();
        t.tau.push(tau);
        if let Some(tl) = tail {
            let total: u32 = tl[i].iter().map(|x| x.1).sum();
            for j in 0..m {
                let (c, n) = tl[i].get(j).copied().unwrap_or((0, 0));
                t.tail_idx.push(c);
                t.tail_w.push(if total > 0 { tau * n as f64 / total as f64 } else { 0.0 });
            }
        }
    }
    t
}

/// The exact reference: loss and gradients w.r.t. h and head, for a dense teacher target p [B, C].
fn reference(p: &Tensor, h: &Tensor, head: &Tensor, labels: &[i64], temp: f64, alpha: f64) -> (f64, Tensor, Tensor) {
    let ha = Tensor::cat(&[h.shallow_clone(), Tensor::ones([B as i64, 1], (Kind::Float, tch::Device::Cpu))], 1).to_kind(Kind::Double);
    let w = head.to_kind(Kind::Double);
    let p = p.to_kind(Kind::Double);
    let s = ha.matmul(&w.tr());
    let logq = (&s / temp).log_softmax(1, Kind::Double);
    let q = logq.exp();
    let kd_rows = (&p * (p.clamp_min(1e-300).log() - &logq)).sum_dim_intlist([1i64].as_slice(), false, Kind::Double);
    let kd = kd_rows.mean(Kind::Double).double_value(&[]);
    let labelled: Vec<usize> = (0..B).filter(|&i| labels[i] >= 0).collect();
    let nl = labelled.len() as f64;
    let logsm = s.log_softmax(1, Kind::Double);
    let sm = logsm.exp();
    let mut ce = 0.0;
    let onehot = Tensor::zeros([B as i64, C as i64], (Kind::Double, tch::Device::Cpu));
    let lmask = Tensor::zeros([B as i64, 1], (Kind::Double, tch::Device::Cpu));
    for &i in &labelled {
        ce -= logsm.double_value(&[i as i64, labels[i]]);
        let _ = onehot.get(i as i64).get(labels[i]).fill_(1.0);
        let _ = lmask.get(i as i64).fill_(1.0);
    }
    ce /= nl;
    let loss = alpha * temp * temp * kd + (1.0 - alpha) * ce;
    let ds = (&q - &p) * (alpha * temp / B as f64) + (sm - onehot) * &lmask * ((1.0 - alpha) / nl);
    let g_head = ds.tr().matmul(&ha);
    let g_h = ds.matmul(&w).narrow(1, 0, D);
    (loss, g_h, g_head)
}

/// The estimator's loss value and gradients (head gradient scattered into [C, D+1]).
fn estimate(est: Estimator, tg: &Targets, h: &Tensor, head: &Tensor, temp: f64, alpha: f64, dis: Option<&mut DisState>, seed: u64) -> (f64, Tensor, Tensor) {
    let h = h.detach().set_requires_grad(true);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let out = step_loss(&LossConfig { estimator: est, temperature: temp, alpha }, &h, head, tg, dis, &mut rng).unwrap();
    out.loss.backward();
    let g_leaf = out.leaf.grad().to_kind(Kind::Double);
    let g_head = match &out.rows {
        Some(r) => Tensor::zeros([C as i64, D + 1], (Kind::Double, tch::Device::Cpu)).index_add(0, r, &g_leaf),
        None => g_leaf,
    };
    (out.value, h.grad().to_kind(Kind::Double), g_head)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// Dense teacher target of the cache: top-K exact plus the tail spread evenly.
fn dense_uniform_tail(tg: &Targets) -> Tensor {
    let mut p = vec![0f64; B * C];
    for i in 0..B {
        let rest = (C - tg.k) as f64;
        for j in 0..C {
            p[i * C + j] = if tg.k < C { tg.tau[i] / rest } else { 0.0 };
        }
        for r in 0..tg.k {
            p[i * C + tg.idx[i * tg.k + r] as usize] = tg.p[i * tg.k + r];
        }
    }
    Tensor::from_slice(&p).reshape([B as i64, C as i64])
}

fn dis_state(tg: &Targets, candidates: usize, budget: f64) -> DisState {
    DisState::new(RankProposal::new(&vec![0.1; tg.k], budget, 0.05, 0.0), ClassProposal::new(&vec![1.0; C], 0.2, 0.05, 0.0), candidates)
}

#[test]
fn every_estimator_equals_full_when_nothing_is_sampled() {
    let (zs, h, head, labels) = setup(1);
    let (temp, alpha) = (2.0, 0.7);
    // K = C: no tail, so top-K, ghost and DIS (S = all, π ≡ 1) must all be the exact loss
    let tg = targets(&zs, C, temp as f32, &labels, None);
    let (l_ref, gh_ref, gw_ref) = reference(&dense_uniform_tail(&tg), &h, &head, &labels, temp, alpha);
    for est in [Estimator::Full, Estimator::Topk, Estimator::Ghost, Estimator::Dis] {
        let mut st = dis_state(&tg, C, C as f64);
        let (l, gh, gw) = estimate(est, &tg, &h, &head, temp, alpha, Some(&mut st).filter(|_| est == Estimator::Dis), 0);
        assert!((l - l_ref).abs() < 1e-4 * (1.0 + l_ref.abs()), "{est:?}: loss {l} vs {l_ref}");
        assert!(max_diff(&gh, &gh_ref) < 1e-5, "{est:?}: dL/dh differs by {}", max_diff(&gh, &gh_ref));
        assert!(max_diff(&gw, &gw_ref) < 1e-5, "{est:?}: dL/dW differs by {}", max_diff(&gw, &gw_ref));
    }
    // K < C, uniform tail: full and DIS (S = all, π ≡ 1) equal the reference
    let tg = targets(&zs, 10, temp as f32, &labels, None);
    let (l_ref, gh_ref, gw_ref) = reference(&dense_uniform_tail(&tg), &h, &head, &labels, temp, alpha);
    for est in [Estimator::Full, Estimator::Dis] {
        let mut st = dis_state(&tg, C, 10.0);
        let (l, gh, gw) = estimate(est, &tg, &h, &head, temp, alpha, Some(&mut st).filter(|_| est == Estimator::Dis), 0);
        assert!((l - l_ref).abs() < 1e-4 * (1.0 + l_ref.abs()), "{est:?}: loss {l} vs {l_ref}");
        assert!(max_diff(&gh, &gh_ref) < 1e-5 && max_diff(&gw, &gw_ref) < 1e-5, "{est:?}: gradients differ");
    }
    // rs with tail samples that hit every tail class once is the uniform-tail reference too
    let tails: Vec<Vec<(i64, u32)>> = (0..B)
        .map(|i| {
            let top: Vec<i64> = tg.idx[i * 10..(i + 1) * 10].to_vec();
            (0..C as i64).filter(|c| !top.contains(c)).map(|c| (c, 1)).collect()
        })
        .collect();
    let tg_rs = targets(&zs, 10, temp as f32, &labels, Some(&tails));
    let (l, gh, gw) = estimate(Estimator::Rs, &tg_rs, &h, &head, temp, alpha, None, 0);
    assert!((l - l_ref).abs() < 1e-4 * (1.0 + l_ref.abs()), "rs: loss {l} vs {l_ref}");
    assert!(max_diff(&gh, &gh_ref) < 1e-5 && max_diff(&gw, &gw_ref) < 1e-5, "rs: gradients differ");
}

fn angle_and_ratio(g: &Tensor, r: &Tensor) -> (f64, f64) {
    let dot = (g * r).sum(Kind::Double).double_value(&[]);
    let (ng, nr) = (g.norm().double_value(&[]), r.norm().double_value(&[]));
    ((dot / (ng * nr)).clamp(-1.0, 1.0).acos().to_degrees(), ng / nr)
}

#[test]
fn sampled_gradients_converge_to_the_full_gradient() {
    let (zs, h, head, labels) = setup(2);
    let (temp, alpha) = (2.0, 1.0);
    let k = 8;
    let tg = targets(&zs, k, temp as f32, &labels, None);
    let (_, _, gw_ref) = reference(&dense_uniform_tail(&tg), &h, &head, &labels, temp, alpha);
    let draws = 1024;
    // DIS with 12 of 40 negatives and 3 of 8 ranks kept per row (no online updates: fixed proposals)
    let mut st = dis_state(&tg, 12, 3.0);
    let mut mean = Tensor::zeros([C as i64, D + 1], (Kind::Double, tch::Device::Cpu));
    let mut single = vec![];
    for s in 0..draws {
        let (_, _, gw) = estimate(Estimator::Dis, &tg, &h, &head, temp, alpha, Some(&mut st), s);
        single.push(angle_and_ratio(&gw, &gw_ref).0);
        mean += gw / draws as f64;
    }
    let (angle, ratio) = angle_and_ratio(&mean, &gw_ref);
    let single_mean = single.iter().sum::<f64>() / single.len() as f64;
    // top-K: deterministic and biased
    let (_, _, gw_top) = estimate(Estimator::Topk, &tg, &h, &head, temp, alpha, None, 0);
    let (top_angle, top_ratio) = angle_and_ratio(&gw_top, &gw_ref);
    eprintln!("dis: mean of {draws} draws {angle:.2}° (norm ratio {ratio:.3}); single draw {single_mean:.1}° on average; topk {top_angle:.1}° (ratio {top_ratio:.3})");
    assert!(angle < 6.0, "dis mean gradient is {angle:.2}° from the full gradient");
    assert!((0.9..1.1).contains(&ratio), "dis norm ratio {ratio}");
    assert!(angle < single_mean, "averaging draws must reduce the error");
    assert!(top_angle > angle, "top-K ({top_angle:.1}°) should be further from full than DIS's mean ({angle:.2}°)");
}

#[test]
fn rs_converges_to_the_true_teacher_and_topk_does_not() {
    let (zs, h, head, labels) = setup(3);
    let (temp, alpha) = (2.0, 1.0);
    let k = 6;
    // the true teacher distribution at T, dense
    let pt: Vec<f64> = zs.iter().flat_map(|z| {
        let m = z.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let e: Vec<f64> = z.iter().map(|&v| ((v as f64 - m) / temp).exp()).collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(move |x| x / s)
    }).collect();
    let p_true = Tensor::from_slice(&pt).reshape([B as i64, C as i64]);
    let (_, _, gw_ref) = reference(&p_true, &h, &head, &labels, temp, alpha);
    let base = targets(&zs, k, temp as f32, &labels, None);
    let draws = 400;
    let m = 4;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut mean = Tensor::zeros([C as i64, D + 1], (Kind::Double, tch::Device::Cpu));
    for s in 0..draws {
        // M draws from the teacher's tail distribution, as the cache phase does
        let tails: Vec<Vec<(i64, u32)>> = (0..B)
            .map(|i| {
                let top = &base.idx[i * k..(i + 1) * k];
                let w: Vec<f64> = (0..C).map(|c| if top.contains(&(c as i64)) { 0.0 } else { pt[i * C + c] }).collect();
                let dist = rand::distr::weighted::WeightedIndex::new(&w).unwrap();
                let mut cnt = std::collections::BTreeMap::new();
                for _ in 0..m {
                    *cnt.entry(rand::distr::Distribution::sample(&dist, &mut rng) as i64).or_insert(0u32) += 1;
                }
                cnt.into_iter().collect()
            })
            .collect();
        let tg = targets(&zs, k, temp as f32, &labels, Some(&tails));
        let (_, _, gw) = estimate(Estimator::Rs, &tg, &h, &head, temp, alpha, None, s);
        mean += gw / draws as f64;
    }
    let (angle, ratio) = angle_and_ratio(&mean, &gw_ref);
    let (_, _, gw_top) = estimate(Estimator::Topk, &base, &h, &head, temp, alpha, None, 0);
    let (top_angle, _) = angle_and_ratio(&gw_top, &gw_ref);
    let (_, _, gw_uni) = estimate(Estimator::Full, &base, &h, &head, temp, alpha, None, 0);
    let (uni_angle, _) = angle_and_ratio(&gw_uni, &gw_ref);
    eprintln!("vs the true teacher: rs mean of {draws} draws {angle:.2}° (ratio {ratio:.3}); topk {top_angle:.1}°; full with uniform tail {uni_angle:.1}°");
    assert!(angle < 3.0, "rs mean gradient is {angle:.2}° from the true gradient");
    assert!((0.95..1.05).contains(&ratio), "rs norm ratio {ratio}");
    assert!(top_angle > 2.0 * angle, "top-K bias ({top_angle:.1}°) should exceed rs's error ({angle:.2}°)");
}
