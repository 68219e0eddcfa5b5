//! Held-out evaluation with the **full** softmax: top-1/top-5 accuracy, NLL, expected calibration error
//! (15 equal-width confidence bins) and top-1 agreement with the teacher (from a cache of the held-out rows).
use tch::{Device, Kind, Tensor};

use crate::data::source::Dataset;
use crate::error::Result;
use crate::nn::rows_tensor;
use crate::train::student::Student;

pub use crate::run::EvalReport;

pub const ECE_BINS: usize = 15;

/// ECE from per-row confidence (max probability) and correctness.
pub fn ece(conf: &[f64], correct: &[bool]) -> f64 {
    let mut n = [0f64; ECE_BINS];
    let mut c = [0f64; ECE_BINS];
    let mut a = [0f64; ECE_BINS];
    for (&p, &ok) in conf.iter().zip(correct) {
        let bin = ((p * ECE_BINS as f64) as usize).min(ECE_BINS - 1);
        n[bin] += 1.0;
        c[bin] += p;
        a[bin] += ok as u8 as f64;
    }
    let total: f64 = n.iter().sum();
    (0..ECE_BINS).filter(|&i| n[i] > 0.0).map(|i| (n[i] / total) * ((a[i] - c[i]) / n[i]).abs()).sum()
}

/// Training rows per class from a dataset's labels (None without labels; labels outside 0..classes are
/// not counted).
pub fn class_counts(ds: &Dataset, classes: usize) -> Option<Vec<u64>> {
    let mut n = vec![0u64; classes];
    for &y in ds.y.as_ref()? {
        if let Some(c) = usize::try_from(y).ok().filter(|&c| c < classes) {
            n[c] += 1;
        }
    }
    Some(n)
}

/// Evaluates on labelled rows of `ds`; `teacher_top1[i]` (if given) is the teacher's argmax for row i,
/// `train_counts[c]` (if given) the training rows of class c, for the top-1 by frequency band.
pub fn evaluate(s: &mut Student, ds: &Dataset, teacher_top1: Option<&[i64]>, train_counts: Option<&[u64]>, device: Device) -> Result<EvalReport> {
    let _g = tch::no_grad_guard();
    s.set_train(false);
    let mut buf = vec![];
    let (mut n, mut top1, mut top5, mut nll, mut agree, mut agree_n) = (0usize, 0usize, 0usize, 0f64, 0usize, 0usize);
    let mut conf = vec![];
    let mut correct = vec![];
    let mut banded = vec![];
    for lo in (0..ds.len()).step_by(2048) {
        let hi = (lo + 2048).min(ds.len());
        let logits = s.logits(&rows_tensor(ds, lo..hi, &mut buf, device)?)?;
        let logp = logits.f_log_softmax(-1, Kind::Float)?;
        let k5 = 5.min(s.classes);
        let (_, top) = logp.f_topk(k5, -1, true, true)?;
        let top: Vec<i64> = Vec::<i64>::try_from(&top.f_to_device(Device::Cpu)?.f_flatten(0, -1)?)?;
        let maxp: Vec<f32> = Vec::<f32>::try_from(&logp.f_max_dim(1, false)?.0.f_exp()?.f_to_device(Device::Cpu)?)?;
        let labels: Vec<i64> = (lo..hi).map(|i| ds.label(i)).collect();
        let lab_t = Tensor::f_from_slice(&labels.iter().map(|&y| y.max(0)).collect::<Vec<_>>())?.f_to_device(device)?;
        let lp: Vec<f32> = Vec::<f32>::try_from(&logp.f_gather(1, &lab_t.f_unsqueeze(1)?, false)?.f_flatten(0, -1)?.f_to_device(Device::Cpu)?)?;
        for (j, &y) in labels.iter().enumerate() {
            let row_top = &top[j * k5 as usize..(j + 1) * k5 as usize];
            if let Some(t) = teacher_top1 {
                agree_n += 1;
                agree += (t[lo + j] == row_top[0]) as usize;
            }
            if y < 0 {
                continue;
            }
            n += 1;
            top1 += (row_top[0] == y) as usize;
            top5 += row_top.contains(&y) as usize;
            nll -= lp[j] as f64;
            conf.push(maxp[j] as f64);
            correct.push(row_top[0] == y);
            if let Some(n) = train_counts {
                banded.push((n.get(y as usize).copied().unwrap_or(0), row_top[0] == y));
            }
        }
    }
    s.set_train(true);
    let nf = n.max(1) as f64;
    Ok(EvalReport {
        rows: n,
        top1: top1 as f64 / nf,
        top5: top5 as f64 / nf,
        nll: nll / nf,
        ece: ece(&conf, &correct),
        teacher_agreement: (agree_n > 0).then(|| agree as f64 / agree_n as f64),
        bands: train_counts.map(|_| crate::run::Bands::from_rows(banded)),
        retrieval: None,
    })
}

/// Rank-1 and average precision of one query: `sim` its similarity to each gallery row, `same[g]`
/// whether gallery row g has the query's class (None when no gallery row has it). Ties rank in gallery
/// order.
pub fn query_metrics(sim: &[f32], same: &[bool]) -> Option<(bool, f64)> {
    let relevant = same.iter().filter(|&&s| s).count();
    if relevant == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..sim.len()).collect();
    order.sort_by(|&a, &b| sim[b].total_cmp(&sim[a]).then(a.cmp(&b)));
    let (mut hits, mut ap) = (0usize, 0.0);
    for (rank, &g) in order.iter().enumerate() {
        if same[g] {
            hits += 1;
            ap += hits as f64 / (rank + 1) as f64;
            if hits == relevant {
                break;
            }
        }
    }
    Some((same[order[0]], ap / relevant as f64))
}

/// Retrieval on the labelled rows of `ds` from the student's features (see [`crate::run::Retrieval`]);
/// None when no class has two held-out rows.
pub fn retrieval(s: &mut Student, ds: &Dataset, train_counts: Option<&[u64]>, device: Device) -> Result<Option<crate::run::Retrieval>> {
    let _g = tch::no_grad_guard();
    let labels: Vec<i64> = (0..ds.len()).map(|i| ds.label(i)).collect();
    let mut first = std::collections::HashMap::new();
    let mut count = std::collections::HashMap::new();
    for (i, &y) in labels.iter().enumerate() {
        if y >= 0 {
            first.entry(y).or_insert(i);
            *count.entry(y).or_insert(0usize) += 1;
        }
    }
    let mut queries: Vec<usize> = first.iter().filter(|(y, _)| count[*y] >= 2).map(|(_, &i)| i).collect();
    queries.sort_unstable();
    if queries.is_empty() {
        return Ok(None);
    }
    let is_query: std::collections::HashSet<usize> = queries.iter().copied().collect();
    let gallery: Vec<usize> = (0..ds.len()).filter(|i| labels[*i] >= 0 && !is_query.contains(i)).collect();
    s.set_train(false);
    // L2-normalised features of every labelled row, in chunks
    let mut buf = vec![];
    let mut feats = vec![];
    for lo in (0..ds.len()).step_by(2048) {
        let hi = (lo + 2048).min(ds.len());
        let h = s.features(&rows_tensor(ds, lo..hi, &mut buf, device)?)?;
        let n = h.f_norm_scalaropt_dim(2, [1i64].as_slice(), true)?.f_clamp_min(1e-12)?;
        feats.push(h.f_div(&n)?);
    }
    s.set_train(true);
    let f = Tensor::f_cat(&feats, 0)?;
    let g_idx = Tensor::f_from_slice(&gallery.iter().map(|&i| i as i64).collect::<Vec<_>>())?.f_to_device(device)?;
    let gal = f.f_index_select(0, &g_idx)?;
    let g_lab: Vec<i64> = gallery.iter().map(|&i| labels[i]).collect();
    let unseen = |y: i64| train_counts.is_some_and(|n| n.get(y as usize).copied().unwrap_or(0) == 0);
    let (mut r1, mut ap, mut n) = (0usize, 0.0, 0usize);
    let (mut ur1, mut uap, mut un) = (0usize, 0.0, 0usize);
    for chunk in queries.chunks(512) {
        let q_idx = Tensor::f_from_slice(&chunk.iter().map(|&i| i as i64).collect::<Vec<_>>())?.f_to_device(device)?;
        let sim = f.f_index_select(0, &q_idx)?.f_matmul(&gal.f_tr()?)?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let sim: Vec<f32> = Vec::<f32>::try_from(&sim.f_flatten(0, -1)?)?;
        for (t, &q) in chunk.iter().enumerate() {
            let y = labels[q];
            let same: Vec<bool> = g_lab.iter().map(|&g| g == y).collect();
            if let Some((hit, a)) = query_metrics(&sim[t * gallery.len()..(t + 1) * gallery.len()], &same) {
                (r1, ap, n) = (r1 + hit as usize, ap + a, n + 1);
                if unseen(y) {
                    (ur1, uap, un) = (ur1 + hit as usize, uap + a, un + 1);
                }
            }
        }
    }
    let nf = n.max(1) as f64;
    Ok(Some(crate::run::Retrieval {
        queries: n,
        gallery: gallery.len(),
        rank1: r1 as f64 / nf,
        map: ap / nf,
        unseen_queries: un,
        unseen_rank1: (un > 0).then(|| ur1 as f64 / un as f64),
        unseen_map: (un > 0).then(|| uap / un as f64),
    }))
}

#[cfg(test)]
mod tests {
    /// Bands by hand: classes with 150, 100, 20, 19 and 0 training rows fall in many, medium, medium,
    /// few, few; top-1 is the share right within each.
    /// Rank-1 and AP by hand: gallery similarities 0.9 (other), 0.8 (same), 0.5 (other), 0.4 (same):
    /// the first match at rank 2 (precision 1/2), the second at rank 4 (2/4): AP = (1/2 + 1/2)/2 = 0.5,
    /// rank-1 miss; a query whose match ranks first has rank-1 hit and AP 1.
    #[test]
    fn retrieval_metrics_of_a_tiny_case() {
        let (hit, ap) = super::query_metrics(&[0.9, 0.8, 0.5, 0.4], &[false, true, false, true]).unwrap();
        assert!(!hit && (ap - 0.5).abs() < 1e-12);
        let (hit, ap) = super::query_metrics(&[0.1, 0.8, 0.5], &[false, true, false]).unwrap();
        assert!(hit && (ap - 1.0).abs() < 1e-12);
        // matches at ranks 1 and 3: AP = (1 + 2/3)/2
        let (_, ap) = super::query_metrics(&[0.9, 0.8, 0.7], &[true, false, true]).unwrap();
        assert!((ap - (1.0 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!(super::query_metrics(&[0.3], &[false]).is_none());
    }

    #[test]
    fn bands_of_a_tiny_case() {
        use crate::run::Bands;
        assert_eq!([150, 101, 100, 20, 19, 0].map(Bands::band), [0, 0, 1, 1, 2, 2]);
        let b = Bands::from_rows([(150, true), (150, false), (100, true), (20, true), (20, true), (19, false), (0, true), (3, false), (1, false)]);
        assert_eq!((b.many, b.medium, b.few), (Some(0.5), Some(1.0), Some(0.25)));
        assert_eq!((b.many_rows, b.medium_rows, b.few_rows), (2, 3, 4));
        let none = Bands::from_rows([(5, true)]);
        assert_eq!((none.many, none.medium, none.few), (None, None, Some(1.0)));
    }

    #[test]
    fn ece_of_a_calibrated_and_an_overconfident_model() {
        // confidence 0.75, right 3 of 4 times: calibrated
        assert!(super::ece(&[0.75; 4], &[true, true, true, false]) < 1e-12);
        // confidence 0.95, right half the time: ECE 0.45
        assert!((super::ece(&[0.95; 4], &[true, false, true, false]) - 0.45).abs() < 1e-12);
    }
}
