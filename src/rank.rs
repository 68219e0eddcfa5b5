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
pub fn rank_row(z: &[f32], k: usize, temps: &[f32], prior: Option<&mut [f64]>) -> Result<Ranked, usize> {
    assert!(k >= 1 && k <= z.len(), "rank_row needs 1 <= k <= C");
    let mut m = f32::NEG_INFINITY;
    for (j, &v) in z.iter().enumerate() {
        if !v.is_finite() {
            return Err(j);
        }
        m = m.max(v);
    }
    let top = topk(z, k);
    let theta = top[k - 1].0;
    let ties_in_top = top.iter().filter(|e| e.0 == theta).count();

    let mut lse = Vec::with_capacity(temps.len());
    let mut log_tail = Vec::with_capacity(temps.len());
    let m64 = m as f64;
    for &t in temps {
        let inv_t = 1.0 / t as f64;
        let (mut head, mut tail, mut ties) = (0f64, 0f64, 0usize);
        for &v in z {
            let e = ((v as f64 - m64) * inv_t).exp();
            if v < theta {
                tail += e;
            } else {
                head += e;
                ties += (v == theta) as usize;
            }
        }
        // tie elements at the K-th value that did not make the top-K belong to the tail
        let moved = (ties - ties_in_top) as f64 * ((theta as f64 - m64) * inv_t).exp();
        head -= moved;
        tail += moved;
        let total = head + tail;
        lse.push((m64 * inv_t + total.ln()) as f32);
        log_tail.push(if tail > 0.0 { (tail.ln() - total.ln()) as f32 } else { f32::NEG_INFINITY });
    }
    if let Some(prior) = prior {
        let lse1 = {
            let s: f64 = z.iter().map(|&v| (v as f64 - m64).exp()).sum();
            m64 + s.ln()
        };
        for (p, &v) in prior.iter_mut().zip(z) {
            *p += (v as f64 - lse1).exp();
        }
    }
    Ok(Ranked {
        idx: top.iter().map(|e| e.1).collect(),
        logit: top.iter().map(|e| e.0).collect(),
        lse,
        log_tail,
    })
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
    fn tiny_tail_is_exact_not_rounding() {
        // the tail mass here is ~e^-60: 1 - Σp would give 0 (or garbage); the direct sum gives it exactly
        let mut z = vec![-60.0f32; 100];
        z[0] = 0.0;
        let r = rank_row(&z, 1, &[1.0], None).unwrap();
        let expect = (99f64).ln() - 60.0;
        assert!((r.log_tail[0] as f64 - expect).abs() < 1e-4, "{}", r.log_tail[0]);
    }

    #[test]
    fn prior_sums_to_one_and_nan_is_reported() {
        let z = [0.1f32, 0.2, 5.0];
        let mut prior = vec![0f64; 3];
        rank_row(&z, 2, &[1.0], Some(&mut prior)).unwrap();
        assert!((prior.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(rank_row(&[0.0, f32::NAN], 1, &[1.0], None), Err(1));
    }
}
