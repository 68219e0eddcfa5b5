//! The positives of a `dis` step on the host: each row's own B·(K+1) dot products read straight from the
//! head table, and their backward, without the [B, K+1, D] copy of the rows that a gather and a batched
//! matrix product make (and without its gradient of the same size). At K = 64 those copies, not the
//! sampled columns, set the step's cost on the CPU. Plain slices, no torch: the loss wraps them.
use rayon::prelude::*;

/// Rows handled by one task (at least).
const CHUNK: usize = 16;

/// One step's positives: `pos[i*slots + r]` is the class of row i's slot r (rows of `head`, [C, d]),
/// `ha` the rows' features [B, d].
pub struct Positives<'a> {
    pub head: &'a [f32],
    pub d: usize,
    pub ha: &'a [f32],
    pub pos: &'a [i64],
    pub slots: usize,
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // eight partial sums: the compiler vectorises the loop and the rounding does not depend on threads
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for t in 0..8 {
            acc[t] += x[t] * y[t];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

impl Positives<'_> {
    /// Checks the shapes and that every class is a row of the head (Err with the reason).
    pub fn check(&self) -> Result<(), String> {
        let d = self.d;
        if d == 0 || self.head.len() % d != 0 || self.ha.len() % d != 0 || self.slots == 0 {
            return Err(format!("positives: a head of {} and features of {} values are not rows of {d}", self.head.len(), self.ha.len()));
        }
        let (c, b) = (self.head.len() / d, self.ha.len() / d);
        if self.pos.len() != b * self.slots {
            return Err(format!("positives: {} slots for {b} rows of {}", self.pos.len(), self.slots));
        }
        match self.pos.iter().find(|&&j| j < 0 || j as usize >= c) {
            Some(j) => Err(format!("positives: class {j} is outside the head's 0..{c}")),
            None => Ok(()),
        }
    }

    fn row(&self, slot: usize) -> &[f32] {
        let j = self.pos[slot] as usize;
        &self.head[j * self.d..(j + 1) * self.d]
    }

    /// Row i's scores and (with `weights`) its two sums `out` [2, d].
    #[inline(always)]
    fn forward_row(&self, i: usize, s_row: &mut [f32], sums: Option<(&[f32], &mut [f32])>) {
        let (d, sl) = (self.d, self.slots);
        let h = &self.ha[i * d..(i + 1) * d];
        match sums {
            Some((wt, o)) => {
                let (o_a, o_w) = o.split_at_mut(d);
                for (r, s) in s_row.iter_mut().enumerate() {
                    let w = self.row(i * sl + r);
                    *s = dot(w, h);
                    let (a, b) = (wt[2 * (i * sl + r)], wt[2 * (i * sl + r) + 1]);
                    if a != 0.0 {
                        axpy(o_a, a, w);
                    }
                    if b != 0.0 {
                        axpy(o_w, b, w);
                    }
                }
            }
            None => {
                for (r, s) in s_row.iter_mut().enumerate() {
                    *s = dot(self.row(i * sl + r), h);
                }
            }
        }
    }

    /// Row i's features' gradient `o` [d].
    #[inline(always)]
    fn features_row(&self, i: usize, g: &[f32], o: &mut [f32]) {
        o.fill(0.0);
        for r in 0..self.slots {
            let gi = g[i * self.slots + r];
            if gi != 0.0 {
                axpy(o, gi, self.row(i * self.slots + r));
            }
        }
    }

    /// The scores s[i*slots + r] = head[pos]·ha[i] into `scores`, and, with `weights` (two per slot,
    /// a then w), the sums Σ_r a_ir·head[pos_ir] and Σ_r w_ir·head[pos_ir] into `sums` [B, 2, d]: one
    /// read of each positive row for both.
    pub fn forward(&self, scores: &mut [f32], weights: Option<(&[f32], &mut [f32])>) {
        let (d, sl) = (self.d, self.slots);
        match weights {
            Some((wt, sums)) => {
                sums.fill(0.0);
                scores
                    .par_chunks_mut(sl)
                    .zip(sums.par_chunks_mut(2 * d))
                    .enumerate()
                    .with_min_len(CHUNK)
                    .for_each(|(i, (s, o))| simd!(self.forward_row(i, s, Some((wt, o)))));
            }
            None => scores.par_chunks_mut(sl).enumerate().with_min_len(CHUNK).for_each(|(i, s)| simd!(self.forward_row(i, s, None))),
        }
    }

    /// The features' gradient through the scores, Σ_r g[i*slots + r]·head[pos_ir], into `out` [B, d].
    pub fn features_grad(&self, g: &[f32], out: &mut [f32]) {
        out.par_chunks_mut(self.d).enumerate().with_min_len(CHUNK).for_each(|(i, o)| simd!(self.features_row(i, g, o)));
    }
}

/// The gradient of the step's distinct head rows [nu, d]: row u = Σ over the slots s that hold it
/// (`pos_u[s] == u`) of g[s]·ha[s / slots], plus the gradient of the shared column held there
/// (`col_u[c] == u`: `col_grad` row c). Each row is written once, its terms summed in slot order.
pub struct UnionGrad<'a> {
    pub ha: &'a [f32],
    pub d: usize,
    pub slots: usize,
    pub pos_u: &'a [i64],
    pub g: &'a [f32],
    pub col_u: &'a [i64],
    pub col_grad: &'a [f32],
}

impl UnionGrad<'_> {
    pub fn write(&self, out: &mut [f32]) -> Result<(), String> {
        let d = self.d;
        if d == 0 || out.len() % d != 0 {
            return Err(format!("union gradient: {} values are not rows of {d}", out.len()));
        }
        let nu = out.len() / d;
        if self.g.len() != self.pos_u.len() || self.col_grad.len() != self.col_u.len() * d || self.ha.len() * self.slots != self.pos_u.len() * d {
            return Err("union gradient: mismatched slot, column or feature sizes".into());
        }
        if let Some(u) = self.pos_u.iter().chain(self.col_u).find(|&&u| u < 0 || u as usize >= nu) {
            return Err(format!("union gradient: row {u} is outside 0..{nu}"));
        }
        // the slots of each row, in slot order (a counting sort), and the column at each row
        let mut start = vec![0u32; nu + 1];
        for &u in self.pos_u {
            start[u as usize + 1] += 1;
        }
        for u in 0..nu {
            start[u + 1] += start[u];
        }
        let mut fill = start.clone();
        let mut order = vec![0u32; self.pos_u.len()];
        for (s, &u) in self.pos_u.iter().enumerate() {
            order[fill[u as usize] as usize] = s as u32;
            fill[u as usize] += 1;
        }
        let mut col_at = vec![u32::MAX; nu];
        for (c, &u) in self.col_u.iter().enumerate() {
            col_at[u as usize] = c as u32;
        }
        out.par_chunks_mut(d).enumerate().with_min_len(CHUNK).for_each(|(u, o)| {
            let col = match col_at[u] {
                u32::MAX => None,
                c => Some(&self.col_grad[c as usize * d..(c as usize + 1) * d]),
            };
            simd!(self.row(o, col, &order[start[u] as usize..start[u + 1] as usize]))
        });
        Ok(())
    }

    /// One row: its column's gradient (or zeros) plus its slots' terms.
    #[inline(always)]
    fn row(&self, o: &mut [f32], col: Option<&[f32]>, slots: &[u32]) {
        let d = self.d;
        match col {
            None => o.fill(0.0),
            Some(c) => o.copy_from_slice(c),
        }
        for &s in slots {
            let (s, i) = (s as usize, s as usize / self.slots);
            if self.g[s] != 0.0 {
                axpy(o, self.g[s], &self.ha[i * d..(i + 1) * d]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// f64 references by the definitions, on a small random case with repeated classes.
    #[test]
    fn the_kernels_equal_their_definitions() {
        let (c, d, b, sl) = (13usize, 11usize, 5usize, 4usize);
        let val = |k: usize| (((k * 7919) % 1000) as f32 / 500.0) - 1.0;
        let head: Vec<f32> = (0..c * d).map(val).collect();
        let ha: Vec<f32> = (0..b * d).map(|k| val(k + 31)).collect();
        let pos: Vec<i64> = (0..b * sl).map(|s| ((s * 5) % 9) as i64).collect();
        let p = Positives { head: &head, d, ha: &ha, pos: &pos, slots: sl };
        p.check().unwrap();
        let wt: Vec<f32> = (0..2 * b * sl).map(|k| if k % 3 == 0 { 0.0 } else { val(k + 7) }).collect();
        let (mut s, mut sums) = (vec![0f32; b * sl], vec![0f32; b * 2 * d]);
        p.forward(&mut s, Some((&wt, &mut sums)));
        let g: Vec<f32> = (0..b * sl).map(|k| val(k + 3)).collect();
        let mut fg = vec![0f32; b * d];
        p.features_grad(&g, &mut fg);
        for i in 0..b {
            for r in 0..sl {
                let j = pos[i * sl + r] as usize;
                let e: f64 = (0..d).map(|t| head[j * d + t] as f64 * ha[i * d + t] as f64).sum();
                assert!((s[i * sl + r] as f64 - e).abs() < 1e-5);
            }
            for t in 0..d {
                let col = |w: usize| -> f64 { (0..sl).map(|r| wt[2 * (i * sl + r) + w] as f64 * head[pos[i * sl + r] as usize * d + t] as f64).sum() };
                assert!((sums[i * 2 * d + t] as f64 - col(0)).abs() < 1e-5);
                assert!((sums[i * 2 * d + d + t] as f64 - col(1)).abs() < 1e-5);
                let e: f64 = (0..sl).map(|r| g[i * sl + r] as f64 * head[pos[i * sl + r] as usize * d + t] as f64).sum();
                assert!((fg[i * d + t] as f64 - e).abs() < 1e-5);
            }
        }
        // the union: the distinct classes in first-seen order, two columns on rows 1 and 3
        let mut union: Vec<i64> = vec![];
        for &j in &pos {
            if !union.contains(&j) {
                union.push(j);
            }
        }
        let pos_u: Vec<i64> = pos.iter().map(|j| union.iter().position(|u| u == j).unwrap() as i64).collect();
        let col_u = [3i64, 1];
        let col_grad: Vec<f32> = (0..2 * d).map(|k| val(k + 101)).collect();
        let mut out = vec![f32::NAN; union.len() * d];
        UnionGrad { ha: &ha, d, slots: sl, pos_u: &pos_u, g: &g, col_u: &col_u, col_grad: &col_grad }.write(&mut out).unwrap();
        for u in 0..union.len() {
            for t in 0..d {
                let mut e: f64 = (0..b * sl).filter(|&s| pos_u[s] == u as i64).map(|s| g[s] as f64 * ha[(s / sl) * d + t] as f64).sum();
                if let Some(c) = col_u.iter().position(|&x| x == u as i64) {
                    e += col_grad[c * d + t] as f64;
                }
                assert!((out[u * d + t] as f64 - e).abs() < 1e-5, "row {u}");
            }
        }
    }

    #[test]
    fn bad_classes_and_sizes_are_refused() {
        let head = vec![0f32; 6];
        let ha = vec![0f32; 2];
        let p = Positives { head: &head, d: 2, ha: &ha, pos: &[3], slots: 1 };
        assert!(p.check().unwrap_err().contains("outside"));
        let p = Positives { head: &head, d: 2, ha: &ha, pos: &[0, 1], slots: 1 };
        assert!(p.check().unwrap_err().contains("slots"));
        let u = UnionGrad { ha: &ha, d: 2, slots: 1, pos_u: &[2], g: &[1.0], col_u: &[], col_grad: &[] };
        assert!(u.write(&mut [0.0; 4]).unwrap_err().contains("outside"));
    }
}
