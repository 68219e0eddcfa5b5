//! Shared by the fuzz targets and the seed generator: the fixed row shape the shard targets read
//! with, a scratch file per process, and a few valid rows.
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kdcache::format::{LogitDtype, RowBatch, RowSpec};
use kdcache::{Error, ErrorKind};

/// The shape the shard targets expect: C = 50, K = 4, T = [1, 2], M = 2 tail samples, one
/// augmentation value, f16 logits (every column is present).
pub fn spec() -> RowSpec {
    RowSpec { classes: 50, k: 4, temperatures: vec![1.0, 2.0], tail_samples: 2, aug_dim: 1, logit_dtype: LogitDtype::F16 }
}
/// Rows per shard, as the manifest would declare.
pub const ROWS: u64 = 40;
/// The manifest's block_rows.
pub const BLOCK_ROWS: usize = 16;

/// Writes `data` to `name` in this process's scratch directory and returns its path.
pub fn input_file(name: &str, data: &[u8]) -> PathBuf {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    let dir = DIR.get_or_init(|| tempfile::Builder::new().prefix("kdcache-fuzz-").tempdir().expect("scratch dir"));
    let p = dir.path().join(name);
    std::fs::write(&p, data).expect("write fuzz input");
    p
}

/// The kinds a reader may answer hostile bytes with; anything else (Internal above all) is a bug.
#[track_caller]
pub fn check_kind(e: &Error, allowed: &[ErrorKind], path: &Path) {
    assert!(allowed.contains(&e.kind()), "unexpected error kind {:?} for {}: {e}", e.kind(), path.display());
}

/// Every row of `b` through `verify`'s row checks (a hostile row must give Err, not a panic).
pub fn check_rows(b: &RowBatch, spec: &RowSpec) {
    b.check_lengths().expect("a decoded block has consistent column lengths");
    for i in 0..b.len() {
        let _ = kdcache::format::rows::check_row(b.get(i), spec);
    }
}

/// `n` valid rows for `spec` from a fixed pseudo-random stream (for seeds).
pub fn rows(spec: &RowSpec, n: usize, seed: u64) -> (RowBatch, Vec<f64>) {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((s >> 33) as f64 / (1u64 << 31) as f64) as f32
    };
    let c = spec.classes as usize;
    let mut b = RowBatch::new(spec);
    let mut prior = vec![0f64; c];
    for i in 0..n {
        let z: Vec<f32> = (0..c).map(|_| next() * 8.0 - 4.0).collect();
        let r = kdcache::rank::rank_row(&z, spec.k, &spec.temperatures, Some(&mut prior)).unwrap();
        let tail_idx: Vec<u32> = (0..spec.tail_samples).map(|j| ((i * 7 + j * 3) % c) as u32).collect();
        let tail_cnt: Vec<u32> = (0..spec.tail_samples).map(|j| (j % 3) as u32).collect();
        b.push_row(i as u64, 0, (i % c) as i64, &r.idx, &r.logit, &r.lse, &r.log_tail, Some((&tail_idx, &tail_cnt)));
        for _ in 0..spec.aug_dim {
            b.aug.push(next());
        }
    }
    (b, prior)
}
