//! `kdcache synth`: a deterministic many-class dataset with class structure a teacher can learn, and
//! its Bayes-optimal teacher (`oracle.safetensors`).
//!
//! Classes are grouped into superclasses (like CIFAR-100's 20 superclasses of 5 classes). Superclass
//! centres are drawn from N(0, I); each class centre is its superclass centre plus N(0, class_spread² I);
//! each instance is its class centre plus N(0, noise² I). Instances overlap most with the other classes of
//! their superclass, so a good teacher's soft labels carry real class-similarity structure.
use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::array::{self, ArrayDtype};
use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SynthConfig {
    pub classes: usize,
    pub dim: usize,
    pub train: usize,
    pub test: usize,
    pub seed: u64,
    /// Classes per superclass.
    pub group: usize,
    pub class_spread: f32,
    pub noise: f32,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig { classes: 1000, dim: 64, train: 100_000, test: 10_000, seed: 0, group: 10, class_spread: 0.5, noise: 1.5 }
    }
}

/// Rows generated per parallel chunk; each chunk has its own RNG stream, so output is independent of threads.
const CHUNK: usize = 8192;

/// Writes `{train,test}_x.npy` (f32 [N, dim]), `{train,test}_y.npy` (i64 [N]) and `synth.json` into `dir`.
pub fn generate(cfg: &SynthConfig, dir: &Path) -> Result<()> {
    if cfg.classes < 2 || cfg.dim == 0 || cfg.train == 0 || cfg.group == 0 {
        return Err(Error::invalid("synth needs --classes >= 2, --dim >= 1, --train >= 1"));
    }
    if !(cfg.noise > 0.0 && cfg.class_spread >= 0.0) {
        return Err(Error::invalid("synth needs noise > 0 and class spread >= 0"));
    }
    if cfg.classes.checked_mul(cfg.dim).is_none_or(|n| n > 1 << 30) {
        return Err(Error::invalid(format!("synth: classes × dim = {} × {} centres would not fit in memory (limit 2^30 values)", cfg.classes, cfg.dim)));
    }
    std::fs::create_dir_all(dir).ctx(dir)?;
    let d = cfg.dim;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let std = Normal::new(0f32, 1.0).expect("valid normal");
    let supers = cfg.classes.div_ceil(cfg.group);
    let super_c: Vec<f32> = (0..supers * d).map(|_| std.sample(&mut rng)).collect();
    let centres: Vec<f32> = (0..cfg.classes * d)
        .map(|i| {
            let (c, j) = (i / d, i % d);
            super_c[(c / cfg.group) * d + j] + cfg.class_spread * std.sample(&mut rng)
        })
        .collect();
    for (split, n, salt) in [("train", cfg.train, 1u64), ("test", cfg.test, 2u64)] {
        if n == 0 {
            continue;
        }
        let chunks: Vec<(Vec<f32>, Vec<i64>)> = (0..n.div_ceil(CHUNK))
            .into_par_iter()
            .map(|ci| {
                let mut r = ChaCha8Rng::seed_from_u64(cfg.seed ^ (salt << 56) ^ (ci as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let rows = CHUNK.min(n - ci * CHUNK);
                let cls = Uniform::new(0, cfg.classes).expect("classes >= 2");
                let mut x = Vec::with_capacity(rows * d);
                let mut y = Vec::with_capacity(rows);
                for _ in 0..rows {
                    let c = cls.sample(&mut r);
                    y.push(c as i64);
                    x.extend((0..d).map(|j| centres[c * d + j] + cfg.noise * std.sample(&mut r)));
                }
                (x, y)
            })
            .collect();
        let x: Vec<f32> = chunks.iter().flat_map(|c| c.0.iter().copied()).collect();
        let y: Vec<i64> = chunks.iter().flat_map(|c| c.1.iter().copied()).collect();
        array::write_npy(&dir.join(format!("{split}_x.npy")), ArrayDtype::F32, &[n, d], bytemuck::cast_slice(&x))?;
        array::write_npy(&dir.join(format!("{split}_y.npy")), ArrayDtype::I64, &[n], bytemuck::cast_slice(&y))?;
    }
    write_oracle(cfg, &centres, &dir.join("oracle.safetensors"))?;
    let meta = serde_json::to_vec_pretty(cfg).map_err(|e| Error::Internal(e.to_string()))?;
    crate::fsio::write_atomic(&dir.join("synth.json"), &meta)
}

/// The Bayes-optimal teacher of this generator, as a one-layer built-in MLP (`l0.weight` [C, dim],
/// `l0.bias` [C]): with equal class priors and isotropic noise σ, the log-posterior of class c is
/// x·μ_c/σ² − |μ_c|²/(2σ²) + const. A teacher that needs no training, for large class counts.
fn write_oracle(cfg: &SynthConfig, centres: &[f32], path: &Path) -> Result<()> {
    let d = cfg.dim;
    let s2 = cfg.noise * cfg.noise;
    let w: Vec<f32> = centres.iter().map(|m| m / s2).collect();
    let b: Vec<f32> = centres.chunks(d).map(|mu| -mu.iter().map(|x| x * x).sum::<f32>() / (2.0 * s2)).collect();
    let views = [
        ("l0.weight", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![cfg.classes, d], bytemuck::cast_slice(&w))),
        ("l0.bias", safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![cfg.classes], bytemuck::cast_slice(&b))),
    ];
    let mut tensors = vec![];
    for (n, v) in views {
        tensors.push((n, v.map_err(|e| Error::Internal(e.to_string()))?));
    }
    let bytes = safetensors::tensor::serialize(tensors, None).map_err(|e| Error::Internal(e.to_string()))?;
    crate::fsio::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn deterministic_for_a_seed() {
        let cfg = SynthConfig { classes: 20, dim: 4, train: 100, test: 10, group: 5, ..Default::default() };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(&cfg, a.path()).unwrap();
        generate(&cfg, b.path()).unwrap();
        for f in ["train_x.npy", "train_y.npy", "test_x.npy", "test_y.npy"] {
            assert_eq!(std::fs::read(a.path().join(f)).unwrap(), std::fs::read(b.path().join(f)).unwrap());
        }
    }
}
