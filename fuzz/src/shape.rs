//! The fixed cache shape the fuzz targets read shards with, and the seeds are written in. Shared by
//! the fuzz crate (`src/lib.rs`) and the seed generator in the test suite
//! (`tests/corrupt/seeds.rs`, which includes this file by path).
use kdcache::format::{LogitDtype, RowSpec};

/// C = 50, K = 4, T = [1, 2], M = 2 tail samples, one augmentation value, f16 logits (every column of a
/// one-teacher cache is present).
pub fn spec() -> RowSpec {
    RowSpec { classes: 50, k: 4, temperatures: vec![1.0, 2.0], tail_samples: 2, aug_dim: 1, logit_dtype: LogitDtype::F16, tail_logit: true, mixture: false }
}

/// An ensemble's shape (format 4): C = 50, K = 4, T = [1, 2, 4] (two temperatures of `topk_logit_t`),
/// no tail samples, one augmentation value, f16 logits.
pub fn mixture_spec() -> RowSpec {
    RowSpec { classes: 50, k: 4, temperatures: vec![1.0, 2.0, 4.0], tail_samples: 0, aug_dim: 1, logit_dtype: LogitDtype::F16, tail_logit: true, mixture: true }
}

/// The shapes every shard input is read with: a one-teacher cache's and an ensemble's.
pub fn specs() -> [RowSpec; 2] {
    [spec(), mixture_spec()]
}
/// Rows per shard, as the manifest would declare.
pub const ROWS: u64 = 40;
/// The manifest's block_rows.
pub const BLOCK_ROWS: usize = 16;
