//! Dense teacher logits → one ranked cache row: top-K ids and logits, exact log-normalisers and exact
//! log tail masses. This is the CPU reference (used by `import` and by tests); the teacher pipeline
//! computes the same quantities on the device.
use std::cmp::Ordering;

/// Ranked summary of one row of logits.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranked {
    pub idx: Vec<u32>,
    pub logit: Vec<f32>,
    pub lse: Vec<f32>,
    pub log_tail: Vec<f32>,
}

/// e^x for x in [-87, 88], branch-free so the compiler vectorises it (Cephes' expf polynomial,
/// relative error ≈ 1e-7; rounding by the 1.5·2^23 trick, which needs no SSE4.1).
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23
    let x = x.clamp(-87.0, 88.0);
    let n = (x * LOG2E + MAGIC) - MAGIC;
    let r = x - n * 0.693_359_4 - n * -2.121_944_4e-4;
    let p = ((((1.987_569_2e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 5e-1;
    let y = p * r * r + r + 1.0;
    // 2^n from n's bits: n + 127 + 2^23 holds n + 127 in its mantissa (no float→int cast, which would not vectorise)
    y * f32::from_bits(((n + 8_388_735.0).to_bits() - 0x4B00_0000) << 23)
}

/// The `k` largest logits of `z`, best first, as (logit, class); ties go to the lower class id.
/// Quickselect finds the K-th value θ; one scan collects what beats it (and ties at θ, by id).
pub fn topk(z: &[f32], k: usize) -> Vec<(f32, u32)> {
    let k = k.min(z.len());
    if k == 0 {
        return vec![];
    }
    let desc = |a: &f32, b: &f32| b.total_cmp(a);
    let mut scratch = z.to_vec();
    let (_, &mut theta, _) = scratch.select_nth_unstable_by(k - 1, desc);
    let mut top: Vec<(f32, u32)> = Vec::with_capacity(k);
    let mut ties = vec![];
    for (j, &v) in z.iter().enumerate() {
        match v.total_cmp(&theta) {
            Ordering::Greater => top.push((v, j as u32)),
            Ordering::Equal => ties.push((v, j as u32)),
            Ordering::Less => {}
        }
    }
    let need = k - top.len();
    top.extend(ties.into_iter().take(need));
    top.sort_unstable_by(|a, b| desc(&a.0, &b.0).then(a.1.cmp(&b.1)));
    top
}

/// Ranks `z` (all C logits of one row). Ties are broken by the lower class id.
/// Returns `Err(class)` for the first non-finite logit. `prior`, when given (length C), gets the row's
/// softmax at T = 1 added to it. Sums run in f64.
pub fn rank_row(z: &[f32], k: usize, temps: &[f32], mut prior: Option<&mut [f64]>) -> Result<Ranked, usize> {
    assert!(k >= 1 && k <= z.len(), "rank_row needs 1 <= k <= C");
    // finiteness and the maximum, in lane-wise loops that vectorise
    let nonfinite = z.iter().map(|v| (v.to_bits() & 0x7F80_0000 == 0x7F80_0000) as usize).sum::<usize>();
    if nonfinite > 0 {
        return Err(z.iter().position(|v| !v.is_finite()).expect("a non-finite value"));
    }
    let mut lanes = [f32::NEG_INFINITY; 8];
    for c in z.chunks_exact(8) {
        for l in 0..8 {
            lanes[l] = if c[l] > lanes[l] { c[l] } else { lanes[l] };
        }
    }
    let m = z.chunks_exact(8).remainder().iter().chain(&lanes).fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let top = topk(z, k);
    let theta = top[k - 1].0;
    let ties_in_top = top.iter().filter(|e| e.0 == theta).count();

    let mut lse = Vec::with_capacity(temps.len());
    let mut log_tail = Vec::with_capacity(temps.len());
    let m64 = m as f64;
    let mut e1: Vec<f32> = vec![];
    for (ti, &t) in temps.iter().enumerate() {
        let inv_t = 1.0 / t;
        // e_j = exp((z_j − m)/T), vectorised in f32 (≈1e-7 relative error), summed in f64; terms below
        // e^-80 (which f32 cannot hold) are added exactly in f64
        let (mut head, mut tail, mut ties, mut tiny) = (0f64, 0f64, 0usize, 0usize);
        let keep = prior.is_some() && ti == 0 && t == 1.0;
        if keep {
            e1.resize(z.len(), 0.0);
        }
        for (ci, chunk) in z.chunks(256).enumerate() {
            // three simple loops the compiler vectorises: exp, lane-wise f64 sums, counts
            let n = chunk.len();
            let mut ebuf = [0f32; 256];
            for (e, &v) in ebuf.iter_mut().zip(chunk) {
                let x = (v - m) * inv_t;
                let y = exp_f32(x);
                *e = if x < -80.0 { 0.0 } else { y };
            }
            let (mut h, mut tl) = ([0f64; 8], [0f64; 8]);
            let full = n / 8 * 8;
            for (ev, vv) in ebuf[..full].chunks_exact(8).zip(chunk[..full].chunks_exact(8)) {
                for l in 0..8 {
                    let x = ev[l] as f64;
                    let is_tail = vv[l] < theta;
                    tl[l] += if is_tail { x } else { 0.0 };
                    h[l] += if is_tail { 0.0 } else { x };
                }
            }
            for j in full..n {
                if chunk[j] < theta { tl[0] += ebuf[j] as f64 } else { h[0] += ebuf[j] as f64 }
            }
            head += h.iter().sum::<f64>();
            tail += tl.iter().sum::<f64>();
            for &v in chunk {
                tiny += (((v - m) * inv_t) < -80.0) as usize;
                ties += (v == theta) as usize;
            }
            if keep {
                e1[ci * 256..ci * 256 + n].copy_from_slice(&ebuf[..n]);
            }
        }
        // terms below e^-80 matter only when the tail itself is that small (they bound the error by
        // tiny·e^-80); then add them exactly
        if tiny > 0 && (tiny as f64) * (-80f64).exp() > 1e-9 * tail {
            for &v in z {
                let x = (v as f64 - m64) / t as f64;
                if ((v - m) * inv_t) < -80.0 {
                    if v < theta { tail += x.exp() } else { head += x.exp() }
                }
            }
        }
        // tie elements at the K-th value that did not make the top-K belong to the tail
        let moved = (ties - ties_in_top) as f64 * ((theta as f64 - m64) / t as f64).exp();
        head -= moved;
        tail += moved;
        let total = head + tail;
        lse.push((m64 / t as f64 + total.ln()) as f32);
        log_tail.push(if tail > 0.0 { (tail.ln() - total.ln()) as f32 } else { f32::NEG_INFINITY });
        if keep && let Some(prior) = prior.as_deref_mut() {
            let inv = 1.0 / total;
            for (p, (&e, &v)) in prior.iter_mut().zip(e1.iter().zip(z)) {
                *p += if e > 0.0 { e as f64 * inv } else { (v as f64 - m64).exp() * inv };
            }
        }
    }
    if let Some(prior) = prior
        && !(temps.first() == Some(&1.0))
    {
        let lse1 = {
            let s: f64 = z.iter().map(|&v| (v as f64 - m64).exp()).sum();
            m64 + s.ln()
        };
        for (p, &v) in prior.iter_mut().zip(z) {
            *p += (v as f64 - lse1).exp();
        }
    }
    Ok(Ranked { idx: top.iter().map(|e| e.1).collect(), logit: top.iter().map(|e| e.0).collect(), lse, log_tail })
}

/// Rows ranked by one parallel task, and tasks summed in order per wave: the class prior's sum is the
/// same whatever the thread count or the scheduling (memory: one prior of C per task of a wave).
const ROWS_PER_TASK: usize = 16;
const TASKS_PER_WAVE: usize = 16;
/// One task's rows ranked, and their prior sum.
type RankedTask = (Vec<Result<Ranked, usize>>, Vec<f64>);

/// Ranks a block of dense logits (`flat` holds rows of `c` values) in parallel with [`rank_row`]:
/// returns each row's result, in row order, and the block's class-prior sum Σ_rows softmax(z) at T = 1
/// (over the finite rows), summed in an order that depends on the rows alone, so the same logits give
/// the same bits.
pub fn rank_block(flat: &[f32], c: usize, k: usize, temps: &[f32]) -> (Vec<Result<Ranked, usize>>, Vec<f64>) {
    use rayon::prelude::*;
    if c == 0 {
        return (vec![], vec![]);
    }
    let mut out = Vec::with_capacity(flat.len() / c);
    let mut prior = vec![0f64; c];
    for wave in flat.chunks(ROWS_PER_TASK * TASKS_PER_WAVE * c) {
        let parts: Vec<RankedTask> = wave
            .par_chunks(ROWS_PER_TASK * c)
            .map(|task| {
                let mut p = vec![0f64; c];
                let ranked = task.chunks_exact(c).map(|row| rank_row(row, k, temps, Some(&mut p))).collect();
                (ranked, p)
            })
            .collect();
        for (ranked, p) in parts {
            out.extend(ranked);
            prior.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
        }
    }
    (out, prior)
}

/// One row of an ensemble's cache: the weighted mixture of the members' tempered distributions,
/// p_T(j) = Σ_i w_i·softmax(z_i/T)_j at each temperature (`schemas/FORMAT.md`, Ensembles).
#[derive(Debug, Clone, PartialEq)]
pub struct MixtureRow {
    /// The mixture's top-K at T0 (ids by descending p_T0, ties to the lower id), `logit` = T0·log p_T0,
    /// `lse` 0 at every temperature (the mixture is normalised), `log_tail` the tail's log mass per
    /// temperature.
    pub ranked: Ranked,
    /// T·log p_T of the same ids at the temperatures after the first ((T−1)·K, temperature-major).
    pub values: Vec<f32>,
    /// Each member's argmax class (ties to the lower id).
    pub argmax: Vec<u32>,
}

/// log p_T of the mixture over all classes, normalised (its log-sum over the classes, ≈ 0 by
/// construction, divided out), in f64: per class a log-sum-exp over the members of
/// log w_i + z_ij/T − lse_i(T).
fn mixture_log_probs(zs: &[&[f32]], log_w: &[f64], temp: f64, max: &[f64]) -> Vec<f64> {
    let c = zs[0].len();
    let lse: Vec<f64> = zs.iter().zip(max).map(|(z, &m)| m / temp + z.iter().map(|&x| ((x as f64 - m) / temp).exp()).sum::<f64>().ln()).collect();
    let mut out = vec![0f64; c];
    for (j, o) in out.iter_mut().enumerate() {
        let mut hi = f64::NEG_INFINITY;
        for i in 0..zs.len() {
            hi = hi.max(log_w[i] + zs[i][j] as f64 / temp - lse[i]);
        }
        let s: f64 = (0..zs.len()).map(|i| (log_w[i] + zs[i][j] as f64 / temp - lse[i] - hi).exp()).sum();
        *o = hi + s.ln();
    }
    let top = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let norm = top + out.iter().map(|&x| (x - top).exp()).sum::<f64>().ln();
    out.iter_mut().for_each(|x| *x -= norm);
    out
}

/// Ranks an ensemble's row: `zs` the members' logits (C each), `weights` theirs (positive, summing to
/// 1). Returns `Err((member, class))` for the first non-finite logit. `prior`, when given (length C),
/// gets the mixture at T = 1 added to it. Sums run in f64.
pub fn rank_mixture_row(zs: &[&[f32]], weights: &[f64], k: usize, temps: &[f32], prior: Option<&mut [f64]>) -> Result<MixtureRow, (usize, usize)> {
    let c = zs[0].len();
    assert!(k >= 1 && k <= c && zs.len() == weights.len() && zs.iter().all(|z| z.len() == c), "rank_mixture_row: members of C logits, 1 <= k <= C");
    let mut max = vec![];
    let mut argmax = vec![];
    for (i, z) in zs.iter().enumerate() {
        if let Some(j) = z.iter().position(|x| !x.is_finite()) {
            return Err((i, j));
        }
        let (a, m) = z.iter().enumerate().fold((0usize, f32::NEG_INFINITY), |(a, m), (j, &x)| if x > m { (j, x) } else { (a, m) });
        max.push(m as f64);
        argmax.push(a as u32);
    }
    let log_w: Vec<f64> = weights.iter().map(|w| w.ln()).collect();
    let t0 = temps[0] as f64;
    let lp0 = mixture_log_probs(zs, &log_w, t0, &max);
    let lp0_f32: Vec<f32> = lp0.iter().map(|&x| x as f32).collect();
    let idx: Vec<u32> = topk(&lp0_f32, k).into_iter().map(|(_, j)| j).collect();
    let mut in_top = vec![false; c];
    idx.iter().for_each(|&j| in_top[j as usize] = true);
    let log_tail = |lp: &[f64]| -> f32 {
        let hi = lp.iter().zip(&in_top).filter(|(_, t)| !**t).map(|(&x, _)| x).fold(f64::NEG_INFINITY, f64::max);
        if hi == f64::NEG_INFINITY {
            return f32::NEG_INFINITY;
        }
        (hi + lp.iter().zip(&in_top).filter(|(_, t)| !**t).map(|(&x, _)| (x - hi).exp()).sum::<f64>().ln()) as f32
    };
    let mut ranked = Ranked {
        idx: idx.clone(),
        logit: idx.iter().map(|&j| (t0 * lp0[j as usize]).min(0.0) as f32).collect(),
        lse: vec![0.0; temps.len()],
        log_tail: vec![],
    };
    ranked.log_tail.push(log_tail(&lp0));
    let mut values = Vec::with_capacity((temps.len() - 1) * k);
    let mut at_one = (t0 == 1.0).then(|| lp0.clone());
    for &t in &temps[1..] {
        let t = t as f64;
        let lp = mixture_log_probs(zs, &log_w, t, &max);
        values.extend(idx.iter().map(|&j| (t * lp[j as usize]).min(0.0) as f32));
        ranked.log_tail.push(log_tail(&lp));
        if t == 1.0 && at_one.is_none() {
            at_one = Some(lp);
        }
    }
    if let Some(p) = prior {
        let lp1 = at_one.unwrap_or_else(|| mixture_log_probs(zs, &log_w, 1.0, &max));
        p.iter_mut().zip(&lp1).for_each(|(a, &x)| *a += x.exp());
    }
    Ok(MixtureRow { ranked, values, argmax })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(z: &[f32], k: usize, t: f64) -> (Vec<u32>, f64, f64) {
        let mut ids: Vec<u32> = (0..z.len() as u32).collect();
        ids.sort_by(|&a, &b| z[b as usize].partial_cmp(&z[a as usize]).unwrap().then(a.cmp(&b)));
        let p: Vec<f64> = z.iter().map(|&v| (v as f64 / t).exp()).collect();
        let total: f64 = p.iter().sum();
        let tail: f64 = ids[k..].iter().map(|&j| p[j as usize]).sum();
        (ids[..k].to_vec(), total.ln(), (tail / total).ln())
    }

    #[test]
    fn matches_full_softmax_with_ties() {
        let z = [1.0f32, 3.0, 3.0, -2.0, 3.0, 0.5, 0.5, 7.0];
        for k in 1..=z.len() {
            let r = rank_row(&z, k, &[1.0, 2.0], None).unwrap();
            for (ti, t) in [1.0, 2.0].iter().enumerate() {
                let (ids, lse, lt) = reference(&z, k, *t);
                assert_eq!(r.idx, ids, "k={k}");
                assert!((r.lse[ti] as f64 - lse).abs() < 1e-6);
                if k == z.len() {
                    assert_eq!(r.log_tail[ti], f32::NEG_INFINITY);
                } else {
                    assert!((r.log_tail[ti] as f64 - lt).abs() < 1e-5, "k={k} {} vs {lt}", r.log_tail[ti]);
                }
            }
        }
    }

    #[test]
    fn exp_f32_is_accurate() {
        let mut worst = 0f64;
        for i in 0..200_000 {
            let x = -87.0 + 175.0 * i as f32 / 200_000.0;
            let rel = ((exp_f32(x) as f64) - (x as f64).exp()).abs() / (x as f64).exp();
            worst = worst.max(rel);
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
    }

    #[test]
    fn very_small_tails_are_exact() {
        // every tail term is below e^-80 relative to the top: computed in f64, not flushed to zero
        let mut z = vec![-120.0f32; 1000];
        z[0] = 0.0;
        let r = rank_row(&z, 1, &[1.0, 2.0], None).unwrap();
        assert!((r.log_tail[0] as f64 - ((999f64).ln() - 120.0)).abs() < 1e-3, "{}", r.log_tail[0]);
        assert!((r.log_tail[1] as f64 - ((999f64).ln() - 60.0)).abs() < 1e-3, "{}", r.log_tail[1]);
    }

    #[test]
    fn tiny_tail_is_exact_not_rounding() {
        // the tail mass here is ~e^-60: 1 - Σp would give 0 (or garbage); the direct sum gives it exactly
        let mut z = vec![-60.0f32; 100];
        z[0] = 0.0;
        let r = rank_row(&z, 1, &[1.0], None).unwrap();
        let expect = (99f64).ln() - 60.0;
        assert!((r.log_tail[0] as f64 - expect).abs() < 1e-4, "{}", r.log_tail[0]);
    }

    /// The prior's bits do not depend on the thread count.
    #[test]
    fn rank_block_prior_is_deterministic() {
        let (c, rows) = (97, 700);
        let flat: Vec<f32> = (0..c * rows).map(|i| ((i * 7919 % 1009) as f32 / 97.0).sin() * 6.0).collect();
        let run = |threads| rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(|| rank_block(&flat, c, 5, &[1.0, 2.0]));
        let (r1, p1) = run(1);
        for threads in [2, 3, 8] {
            let (r, p) = run(threads);
            assert_eq!(r, r1);
            assert_eq!(p.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), p1.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), "{threads} threads");
        }
        assert!((p1.iter().sum::<f64>() - rows as f64).abs() < 1e-9);
    }

    #[test]
    fn prior_sums_to_one_and_nan_is_reported() {
        let z = [0.1f32, 0.2, 5.0];
        let mut prior = vec![0f64; 3];
        rank_row(&z, 2, &[1.0], Some(&mut prior)).unwrap();
        assert!((prior.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(rank_row(&[0.0, f32::NAN], 1, &[1.0], None), Err(1));
    }

    /// The mixture against its definition, p_T = Σ_i w_i softmax(z_i/T), computed plainly in f64.
    #[test]
    fn a_mixture_row_is_the_mixture_of_tempered_softmaxes() {
        let c = 37;
        let z1: Vec<f32> = (0..c).map(|j| ((j * 13 % 37) as f32 - 18.0) * 0.4).collect();
        let z2: Vec<f32> = (0..c).map(|j| ((j * 7 % 37) as f32 - 18.0) * 0.9 + 30.0).collect(); // a large offset: lse differs
        let z3: Vec<f32> = (0..c).map(|j| if j == 5 { 12.0 } else { 0.0 }).collect();
        let w = [0.2, 0.5, 0.3];
        let temps = [2.0f32, 1.0, 4.0];
        let k = 6;
        let mut prior = vec![0f64; c];
        let r = rank_mixture_row(&[&z1, &z2, &z3], &w, k, &temps, Some(&mut prior)).unwrap();
        let mix = |t: f64| -> Vec<f64> {
            let mut p = vec![0f64; c];
            for (z, wi) in [&z1, &z2, &z3].iter().zip(w) {
                let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                let e: Vec<f64> = z.iter().map(|&x| ((x as f64 - m) / t).exp()).collect();
                let s: f64 = e.iter().sum();
                p.iter_mut().zip(&e).for_each(|(a, b)| *a += wi * b / s);
            }
            p
        };
        // ids: the top-K of the mixture at T0, best first
        let p0 = mix(2.0);
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by(|&a, &b| p0[b].partial_cmp(&p0[a]).unwrap().then(a.cmp(&b)));
        assert_eq!(r.ranked.idx, order[..k].iter().map(|&j| j as u32).collect::<Vec<_>>());
        assert_eq!(r.ranked.lse, vec![0.0; 3]);
        let argmax = |z: &[f32]| (0..c).max_by(|&a, &b| z[a].partial_cmp(&z[b]).unwrap().then(b.cmp(&a))).unwrap() as u32;
        assert_eq!(r.argmax, vec![argmax(&z1), argmax(&z2), 5]);
        for (ti, &t) in temps.iter().enumerate() {
            let p = mix(t as f64);
            let vals: Vec<f32> = if ti == 0 { r.ranked.logit.clone() } else { r.values[(ti - 1) * k..ti * k].to_vec() };
            let mut top = 0.0;
            for (rank, &j) in r.ranked.idx.iter().enumerate() {
                let got = (vals[rank] as f64 / t as f64).exp();
                assert!((got - p[j as usize]).abs() <= 1e-6 * p[j as usize], "T = {t}, rank {rank}: {got} vs {}", p[j as usize]);
                top += p[j as usize];
            }
            let tail: f64 = (0..c).filter(|j| !r.ranked.idx.contains(&(*j as u32))).map(|j| p[j]).sum();
            assert!(((r.ranked.log_tail[ti] as f64).exp() - tail).abs() <= 1e-6 * tail, "T = {t}: tail");
            assert!((top + tail - 1.0).abs() < 1e-12);
        }
        let p1 = mix(1.0);
        assert!(prior.iter().zip(&p1).all(|(a, b)| (a - b).abs() < 1e-12));
        // one member of weight 1 is that member's softmax
        let one = rank_mixture_row(&[&z1, &z1], &[0.5, 0.5], k, &[1.0], None).unwrap();
        let plain = rank_row(&z1, k, &[1.0], None).unwrap();
        assert_eq!(one.ranked.idx, plain.idx);
        for (a, (b, &i)) in one.ranked.logit.iter().zip(plain.logit.iter().zip(&plain.idx)) {
            assert!((*a as f64 - (*b as f64 - plain.lse[0] as f64)).abs() < 1e-5, "rank of class {i}");
        }
        assert_eq!(rank_mixture_row(&[&z1, &[f32::NAN; 37]], &[0.5, 0.5], k, &[1.0], None), Err((1, 0)));
    }
}
