//! The row-wise optimisers' update on host memory: one pass over each touched row's weights, moments
//! and step count, rows in parallel (rayon). Shared by the trainer (`train::optim`, for CPU tables) and
//! the Python binding (`kdcache.torch.RowAdam` on CPU tensors), so both apply the same arithmetic in the
//! same order. No torch here.
//! - SGD with momentum (PyTorch's rule, no dampening): buf ← μ·buf + g; w ← w − lr·buf.
//! - Lazy Adam: m ← g + β1·(m − g), v ← g² + β2·(v − g²), w ← w − lr/(1−β1^t)·m/(√(v/(1−β2^t)) + ε)
//!   with t the row's own update count (float32 arithmetic, as the tensor rule).

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptKind {
    Adam,
    Sgd,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct OptConfig {
    pub kind: OptKind,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub momentum: f64,
}

impl OptConfig {
    pub fn new(kind: OptKind, lr: f64) -> Self {
        OptConfig { kind, lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, momentum: 0.9 }
    }
}

/// A table of `r` rows of `d` values with its optimiser state, in host memory: weights, first and second
/// moments (`r·d` each; `v` unused by SGD) and each row's update count (`r`).
pub struct HostTable<'a> {
    pub w: &'a mut [f32],
    pub m: &'a mut [f32],
    pub v: &'a mut [f32],
    pub t: &'a mut [f64],
    pub d: usize,
}

/// Updates rows `rows` (all rows when None) of `tab` with their gradients `g` (`rows.len()·d`, row i of g
/// for `rows[i]`); returns Σ over the updated rows of (w_new − w_old) [d] in float64, summed in a fixed
/// order (the same bits whatever the threads do). Err with a message for mismatched sizes, a row out of
/// range or a row given twice (each row is written by one task).
pub fn step(cfg: &OptConfig, tab: &mut HostTable, rows: Option<&[i64]>, g: &[f32]) -> Result<Vec<f64>, String> {
    use rayon::prelude::*;
    let d = tab.d;
    if d == 0 || tab.w.len() % d != 0 {
        return Err(format!("optimiser: a table of {} values is not rows of {d}", tab.w.len()));
    }
    let r = tab.w.len() / d;
    if tab.m.len() != r * d || (cfg.kind == OptKind::Adam && tab.v.len() != r * d) || tab.t.len() != r {
        return Err(format!("optimiser: the state does not match a table of {r} rows of {d}"));
    }
    let n = rows.map_or(r, |x| x.len());
    if g.len() != n * d {
        return Err(format!("optimiser: {} gradient values for {n} rows of {d}", g.len()));
    }
    if let Some(x) = rows {
        let mut seen = vec![0u64; r.div_ceil(64)];
        for &i in x {
            if i < 0 || i as usize >= r {
                return Err(format!("optimiser: row {i} is outside the table's 0..{r}"));
            }
            let (word, bit) = (i as usize / 64, 1u64 << (i as usize % 64));
            if seen[word] & bit != 0 {
                return Err(format!("optimiser: row {i} is given twice"));
            }
            seen[word] |= bit;
        }
    }
    // SAFETY: the four buffers have the checked sizes and live for this call; the rows are distinct (checked
    // above, or all rows once), so each task writes disjoint rows.
    let (wp, mp, vp, tp) = (tab.w.as_mut_ptr() as usize, tab.m.as_mut_ptr() as usize, tab.v.as_mut_ptr() as usize, tab.t.as_mut_ptr() as usize);
    let adam = cfg.kind == OptKind::Adam;
    const CHUNK: usize = 64;
    let partials: Vec<Vec<f64>> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|ci| {
            let mut acc = vec![0f64; d];
            for i in ci * CHUNK..(ci * CHUNK + CHUNK).min(n) {
                let row = rows.map_or(i, |x| x[i] as usize);
                let (w, m, t) = unsafe {
                    (
                        std::slice::from_raw_parts_mut((wp as *mut f32).add(row * d), d),
                        std::slice::from_raw_parts_mut((mp as *mut f32).add(row * d), d),
                        &mut *((tp as *mut f64).add(row)),
                    )
                };
                let gr = &g[i * d..(i + 1) * d];
                *t += 1.0;
                if adam {
                    let v = unsafe { std::slice::from_raw_parts_mut((vp as *mut f32).add(row * d), d) };
                    let (b1, b2) = (cfg.beta1 as f32, cfg.beta2 as f32);
                    let bc1 = 1.0 - cfg.beta1.powf(*t as f32 as f64) as f32;
                    let bc2 = 1.0 - cfg.beta2.powf(*t as f32 as f64) as f32;
                    let (step, eps) = (cfg.lr as f32 / bc1, cfg.eps as f32);
                    simd!(adam_row(w, m, v, gr, &mut acc, [b1, b2, bc2, step, eps]));
                } else {
                    let (mu, lr) = (cfg.momentum as f32, cfg.lr as f32);
                    for (((w, m), &gj), a) in w.iter_mut().zip(m.iter_mut()).zip(gr).zip(acc.iter_mut()) {
                        let old = *w;
                        *m = mu * *m + gj;
                        *w -= lr * *m;
                        *a += *w as f64 - old as f64;
                    }
                }
            }
            acc
        })
        .collect();
    let mut delta = vec![0f64; d];
    for p in &partials {
        delta.iter_mut().zip(p).for_each(|(x, y)| *x += y);
    }
    Ok(delta)
}

/// One row of the Adam rule (see the module doc), adding each weight's exact change to `acc` (f64);
/// `c` = [β1, β2, 1 − β2^t, lr/(1 − β1^t), ε].
#[inline(always)]
fn adam_row(w: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], acc: &mut [f64], [b1, b2, bc2, step, eps]: [f32; 5]) {
    for ((((w, m), v), &gj), a) in w.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g).zip(acc.iter_mut()) {
        let old = *w;
        *m = gj + b1 * (*m - gj);
        *v = gj * gj + b2 * (*v - gj * gj);
        *w -= step * *m / ((*v / bc2).sqrt() + eps);
        *a += *w as f64 - old as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_repeated_and_out_of_range_rows() {
        let cfg = OptConfig::new(OptKind::Adam, 0.1);
        let (mut w, mut m, mut v, mut t) = (vec![0f32; 6], vec![0f32; 6], vec![0f32; 6], vec![0f64; 3]);
        let mut tab = HostTable { w: &mut w, m: &mut m, v: &mut v, t: &mut t, d: 2 };
        assert!(step(&cfg, &mut tab, Some(&[1, 1]), &[1.0; 4]).unwrap_err().contains("twice"));
        assert!(step(&cfg, &mut tab, Some(&[3]), &[1.0; 2]).unwrap_err().contains("outside"));
        assert!(step(&cfg, &mut tab, Some(&[0]), &[1.0; 3]).unwrap_err().contains("gradient"));
        let delta = step(&cfg, &mut tab, Some(&[2]), &[1.0, -1.0]).unwrap();
        // the first Adam step of a row moves it by lr against the gradient's sign
        assert!((delta[0] + 0.1).abs() < 1e-6 && (delta[1] - 0.1).abs() < 1e-6, "{delta:?}");
        assert_eq!(t, vec![0.0, 0.0, 1.0]);
    }
}
