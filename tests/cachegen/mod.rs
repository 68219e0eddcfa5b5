//! Helpers shared by the integration tests: valid random cache rows, cache building, full reads.
#![allow(dead_code)]
use std::path::Path;
use std::sync::Arc;

use kdcache::format::{CacheReader, CacheWriter, Encoding, Manifest, Order, RowBatch, RowSpec, Signature, Tail, WriterOptions};
use kdcache::rank::rank_row;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `n` valid rows for `spec` (ranked from random logits with `rank_row`, so `verify` accepts them), and
/// the sum of their softmaxes at T = 1 (the writer's class prior). Deterministic in `seed`.
pub fn random_rows(spec: &RowSpec, n: usize, seed: u64) -> (RowBatch, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let c = spec.classes as usize;
    let mut b = RowBatch::new(spec);
    let mut prior = vec![0f64; c];
    let mut z = vec![0f32; c];
    for i in 0..n {
        let scale = rng.random_range(0.5f32..6.0);
        for v in z.iter_mut() {
            *v = (rng.random::<f32>() * 2.0 - 1.0) * scale;
        }
        if rng.random_bool(0.3) {
            // a confident row
            let j = rng.random_range(0..c);
            z[j] += rng.random_range(2.0f32..12.0);
        }
        if c > 1 && rng.random_bool(0.3) {
            // a tie, possibly across the top-K boundary
            let (a, s) = (rng.random_range(0..c), rng.random_range(0..c));
            z[a] = z[s];
        }
        if spec.mixture {
            // an ensemble of two: these logits and a reshuffled, rescaled copy
            let z2: Vec<f32> = (0..c).map(|j| z[(j * 7 + 3) % c] * 0.6 + rng.random::<f32>()).collect();
            let r = kdcache::rank::rank_mixture_row(&[&z, &z2], &[0.3, 0.7], spec.k, &spec.temperatures, Some(&mut prior)).expect("finite logits");
            let (view, label) = (rng.random_range(0..3), rng.random_range(-1..c as i64));
            b.push_row(i as u64, view, label, &r.ranked.idx, &r.ranked.logit, &r.ranked.lse, &r.ranked.log_tail, None);
            if !r.values.is_empty() {
                b.push_mixture_values(&r.values);
            }
            for _ in 0..spec.aug_dim {
                b.aug.push(rng.random::<f32>() * 4.0 - 2.0);
            }
            continue;
        }
        let r = rank_row(&z, spec.k, &spec.temperatures, Some(&mut prior)).expect("finite logits");
        let view = rng.random_range(0..3);
        let label = rng.random_range(-1..c as i64);
        // tail samples: classes outside the top-K (none when K = C), with their logits
        let outside: Vec<u32> = (0..c as u32).filter(|j| !r.idx.contains(j)).collect();
        let tail_idx: Vec<u32> = (0..spec.tail_samples).map(|_| if outside.is_empty() { 0 } else { outside[rng.random_range(0..outside.len())] }).collect();
        let tail_cnt: Vec<u32> = (0..spec.tail_samples).map(|_| if outside.is_empty() { 0 } else { rng.random_range(0..4) }).collect();
        let tail_logit: Vec<f32> = tail_idx.iter().map(|&j| z[j as usize]).collect();
        b.push_row(i as u64, view, label, &r.idx, &r.logit, &r.lse, &r.log_tail, Some(Tail { idx: &tail_idx, cnt: &tail_cnt, logit: &tail_logit }));
        for _ in 0..spec.aug_dim {
            b.aug.push(rng.random::<f32>() * 4.0 - 2.0);
        }
    }
    b.check_lengths().unwrap();
    (b, prior)
}

/// Writes `batch` as a complete cache in `dir` (which must not hold one).
pub fn write_cache(dir: &Path, spec: &RowSpec, encoding: Encoding, block_rows: usize, shard_rows: usize, batch: &RowBatch, prior: Option<&[f64]>) -> Manifest {
    let opts = WriterOptions { encoding, block_rows, shard_rows, overwrite: false };
    let sig = Signature { teacher: "test-teacher".into(), dataset: "test-data".into(), classes: format!("C={}", spec.classes), augmentation: "none".into() };
    let mut w = CacheWriter::create(dir, spec, sig, opts, None).expect("create cache");
    if spec.mixture {
        w.set_members(&[("teacher-a".into(), 0.3), ("teacher-b".into(), 0.7)]);
    }
    w.push(batch, prior).expect("push rows");
    w.finish(batch.len() as u64, 1, "kdcache tests").expect("finish cache")
}

/// Where a check of a cache directory failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Open,
    Verify,
    Read,
}

/// Opens `dir`, verifies it, then reads every row (prefetched batches and `get_rows`). Returns the
/// first failure and where it happened; the rows read on success.
pub fn full_check(dir: &Path) -> Result<RowBatch, (Stage, kdcache::Error)> {
    let r = CacheReader::open(dir).map_err(|e| (Stage::Open, e))?;
    r.verify(None).map_err(|e| (Stage::Verify, e))?;
    let r = Arc::new(r);
    let spec = r.manifest().spec();
    let mut seq = RowBatch::new(&spec);
    for b in r.batches(Order::Sequential, 2) {
        let b = b.map_err(|e| (Stage::Read, e))?;
        seq.extend_rows(&b, 0..b.len());
    }
    let all = r.get_rows(0..r.rows()).map_err(|e| (Stage::Read, e))?;
    assert_eq!(seq, all, "batches() and get_rows() disagree in {}", dir.display());
    Ok(all)
}

/// Copies every file of `src` (flat) into a fresh temporary directory.
pub fn copy_dir(src: &Path) -> tempfile::TempDir {
    let dst = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), dst.path().join(e.file_name())).unwrap();
        }
    }
    dst
}
