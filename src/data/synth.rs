//! `kdcache synth`: a deterministic many-class dataset with class structure a teacher can learn, and
//! its Bayes-optimal teacher (`oracle.safetensors`).
//!
//! Classes are grouped into superclasses (like CIFAR-100's 20 superclasses of 5 classes). Superclass
//! centres are drawn from N(0, I) — or, with a coarse scale (`coarse` classes per coarse group, a
//! multiple of the superclass size), from a coarse centre drawn from N(0, I) plus N(0, coarse_spread² I),
//! so the hierarchy has two scales, as real label sets do; each class centre is its superclass centre plus N(0, class_spread² I);
//! each instance is its class centre plus N(0, noise² I). Instances overlap most with the other classes of
//! their superclass, so a good teacher's soft labels carry real class-similarity structure.
//!
//! Class frequencies are equal by default; with `zipf` = s > 0 they follow a power law, as word, product
//! and identity frequencies do: the r-th most frequent class (a seeded random class id) has probability
//! ∝ r^−s, so at C = 20,000 and s = 1.1 the most frequent classes get thousands of rows and most get a
//! few. The oracle teacher then adds each class's log prior to its logit (it stays Bayes-optimal).
use std::path::Path;

use rand::{Rng, SeedableRng};
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
    /// Exponent s of the class-frequency power law (0 = every class equally frequent).
    #[serde(default)]
    pub zipf: f64,
    /// Classes per coarse group (0 = no coarse scale).
    #[serde(default)]
    pub coarse: usize,
    #[serde(default = "default_coarse_spread")]
    pub coarse_spread: f32,
    /// The image world: rows are images [channels, height, width] (see [`generate`]); `dim` is then
    /// the template's size channels × patch².
    #[serde(default)]
    pub image: Option<[usize; 3]>,
    /// The side of a class's template in the image world.
    #[serde(default)]
    pub patch: usize,
}

fn default_coarse_spread() -> f32 {
    0.7
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            classes: 1000,
            dim: 64,
            train: 100_000,
            test: 10_000,
            seed: 0,
            group: 10,
            class_spread: 0.5,
            noise: 1.5,
            zipf: 0.0,
            coarse: 0,
            coarse_spread: 0.7,
            image: None,
            patch: 0,
        }
    }
}

/// The class prior of a power law: class `perm[r]` has probability ∝ (r+1)^−s; drawn by inverting the
/// cumulative distribution (a binary search per row).
pub struct ClassPrior {
    cdf: Vec<f64>,
    perm: Vec<usize>,
    log_p: Vec<f64>,
}

impl ClassPrior {
    pub fn new(classes: usize, s: f64, seed: u64) -> Self {
        use rand::seq::SliceRandom;
        let mut perm: Vec<usize> = (0..classes).collect();
        perm.shuffle(&mut ChaCha8Rng::seed_from_u64(seed ^ 0x21FF_0000_0000_0000));
        let w: Vec<f64> = (0..classes).map(|r| ((r + 1) as f64).powf(-s)).collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        let cdf = w.iter().map(|x| {
            acc += x / total;
            acc
        });
        let cdf: Vec<f64> = cdf.collect();
        let mut log_p = vec![0.0; classes];
        for (r, &c) in perm.iter().enumerate() {
            log_p[c] = (w[r] / total).ln();
        }
        ClassPrior { cdf, perm, log_p }
    }

    pub fn sample(&self, rng: &mut impl rand::Rng) -> usize {
        let u: f64 = rng.random();
        self.perm[self.cdf.partition_point(|&c| c < u).min(self.perm.len() - 1)]
    }

    /// log π_c of each class.
    pub fn log_prior(&self) -> &[f64] {
        &self.log_p
    }
}

/// Rows generated per parallel chunk; each chunk has its own RNG stream, so output is independent of threads.
const CHUNK: usize = 8192;

/// Parses an image shape `C×H×W` (or `CxHxW`).
pub fn parse_image(s: &str) -> std::result::Result<[usize; 3], String> {
    let v: Vec<usize> =
        s.split(['x', '×', 'X']).map(|p| p.trim().parse::<usize>().ok().filter(|&d| d > 0)).collect::<Option<_>>().ok_or("use C×H×W, e.g. 3x16x16")?;
    match v[..] {
        [c, h, w] => Ok([c, h, w]),
        _ => Err("use C×H×W, e.g. 3x16x16".into()),
    }
}

/// Writes `{train,test}_x.npy` (f32 [N, dim]), `{train,test}_y.npy` (i64 [N]) and `synth.json` into `dir`.
///
/// The image world (`image` = [c, h, w]): a class is a template of c × patch × patch values, drawn as
/// the vector world's centres are (superclasses, spread, coarse scale: `dim` = c·patch²); an image is
/// N(0, noise²) pixels plus its class's template, mirrored left–right with probability ½, at a uniformly
/// random place. The class evidence sits somewhere in the image, so a crop can keep it, cut it or
/// magnify it: views of an image carry what one view does not. Its Bayes-optimal teacher matches the
/// templates everywhere: log p(x | c) = logsumexp over places and mirrorings of ⟨x_place, t_c⟩/σ², less
/// |t_c|²/(2σ²) (`oracle.safetensors` with `template.weight` [C, c, patch, patch] = t_c/σ² and
/// `template.bias` [C]; see [`crate::teacher`]).
pub fn generate(cfg: &SynthConfig, dir: &Path) -> Result<()> {
    if let Some([c, h, w]) = cfg.image {
        if cfg.patch == 0 || cfg.patch > h.min(w) || c == 0 {
            return Err(Error::invalid(format!("synth --image {c}x{h}x{w}: --patch {} must be in 1..={}", cfg.patch, h.min(w))));
        }
        if cfg.dim != c * cfg.patch * cfg.patch {
            return Err(Error::Internal(format!("image world: dim {} is not channels × patch²", cfg.dim)));
        }
        if (cfg.train.max(cfg.test)).checked_mul(c * h * w).is_none_or(|n| n > 1 << 31) {
            return Err(Error::invalid(format!("synth --image {c}x{h}x{w}: {} images would not fit in memory (limit 2^31 pixels)", cfg.train.max(cfg.test))));
        }
    }
    if cfg.classes < 2 || cfg.dim == 0 || cfg.train == 0 || cfg.group == 0 {
        return Err(Error::invalid("synth needs --classes >= 2, --dim >= 1, --train >= 1"));
    }
    if !(cfg.noise > 0.0 && cfg.class_spread >= 0.0) {
        return Err(Error::invalid("synth needs noise > 0 and class spread >= 0"));
    }
    if !(cfg.zipf >= 0.0 && cfg.zipf.is_finite()) {
        return Err(Error::invalid(format!("synth --zipf {} must be a finite exponent >= 0 (0 = equal class frequencies)", cfg.zipf)));
    }
    if cfg.coarse > 0 && (cfg.coarse % cfg.group != 0 || cfg.coarse > cfg.classes) {
        return Err(Error::invalid(format!("synth --coarse {} must be a multiple of --group {} and at most --classes {}", cfg.coarse, cfg.group, cfg.classes)));
    }
    if !(cfg.coarse_spread >= 0.0 && cfg.coarse_spread.is_finite()) {
        return Err(Error::invalid("synth --coarse-spread must be finite and >= 0"));
    }
    let prior = (cfg.zipf > 0.0).then(|| ClassPrior::new(cfg.classes, cfg.zipf, cfg.seed));
    if cfg.classes.checked_mul(cfg.dim).is_none_or(|n| n > 1 << 30) {
        return Err(Error::invalid(format!("synth: classes × dim = {} × {} centres would not fit in memory (limit 2^30 values)", cfg.classes, cfg.dim)));
    }
    std::fs::create_dir_all(dir).ctx(dir)?;
    let d = cfg.dim;
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let std = Normal::new(0f32, 1.0).expect("valid normal");
    let supers = cfg.classes.div_ceil(cfg.group);
    let super_c: Vec<f32> = if cfg.coarse > 0 {
        let per = cfg.coarse / cfg.group; // superclasses per coarse group
        let coarse_c: Vec<f32> = (0..supers.div_ceil(per) * d).map(|_| std.sample(&mut rng)).collect();
        (0..supers * d).map(|i| coarse_c[(i / d / per) * d + i % d] + cfg.coarse_spread * std.sample(&mut rng)).collect()
    } else {
        (0..supers * d).map(|_| std.sample(&mut rng)).collect()
    };
    let centres: Vec<f32> = (0..cfg.classes * d)
        .map(|i| {
            let (c, j) = (i / d, i % d);
            super_c[(c / cfg.group) * d + j] + cfg.class_spread * std.sample(&mut rng)
        })
        .collect();
    let row_len = cfg.image.map_or(d, |[c, h, w]| c * h * w);
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
                let mut x = Vec::with_capacity(rows * row_len);
                let mut y = Vec::with_capacity(rows);
                for _ in 0..rows {
                    let c = match &prior {
                        Some(p) => p.sample(&mut r),
                        None => cls.sample(&mut r),
                    };
                    y.push(c as i64);
                    match cfg.image {
                        None => x.extend((0..d).map(|j| centres[c * d + j] + cfg.noise * std.sample(&mut r))),
                        Some([ch, h, w]) => {
                            let p = cfg.patch;
                            let (py, px) = (r.random_range(0..=h - p), r.random_range(0..=w - p));
                            let mirror = r.random::<bool>();
                            let at = x.len();
                            x.extend((0..row_len).map(|_| cfg.noise * std.sample(&mut r)));
                            let t = &centres[c * d..(c + 1) * d];
                            for k in 0..ch {
                                for yy in 0..p {
                                    for xx in 0..p {
                                        let tx = if mirror { p - 1 - xx } else { xx };
                                        x[at + k * h * w + (py + yy) * w + px + xx] += t[(k * p + yy) * p + tx];
                                    }
                                }
                            }
                        }
                    }
                }
                (x, y)
            })
            .collect();
        let x: Vec<f32> = chunks.iter().flat_map(|c| c.0.iter().copied()).collect();
        let y: Vec<i64> = chunks.iter().flat_map(|c| c.1.iter().copied()).collect();
        let shape: Vec<usize> = match cfg.image {
            Some([c, h, w]) => vec![n, c, h, w],
            None => vec![n, d],
        };
        array::write_npy(&dir.join(format!("{split}_x.npy")), ArrayDtype::F32, &shape, bytemuck::cast_slice(&x))?;
        array::write_npy(&dir.join(format!("{split}_y.npy")), ArrayDtype::I64, &[n], bytemuck::cast_slice(&y))?;
    }
    write_oracle(cfg, &centres, prior.as_ref().map(|p| p.log_prior()), &dir.join("oracle.safetensors"))?;
    let meta = serde_json::to_vec_pretty(cfg).map_err(|e| Error::Internal(e.to_string()))?;
    crate::fsio::write_atomic(&dir.join("synth.json"), &meta)
}

/// The Bayes-optimal teacher of this generator, as a one-layer built-in MLP (`l0.weight` [C, dim],
/// `l0.bias` [C]): with equal class priors and isotropic noise σ, the log-posterior of class c is
/// x·μ_c/σ² − |μ_c|²/(2σ²) + const, plus log π_c with unequal priors. A teacher that needs no
/// training, for large class counts.
/// In the image world the same weights are the templates (`template.weight` [C, c, patch, patch],
/// `template.bias` [C]).
fn write_oracle(cfg: &SynthConfig, centres: &[f32], log_prior: Option<&[f64]>, path: &Path) -> Result<()> {
    let d = cfg.dim;
    let s2 = cfg.noise * cfg.noise;
    let w: Vec<f32> = centres.iter().map(|m| m / s2).collect();
    let b: Vec<f32> =
        centres.chunks(d).enumerate().map(|(c, mu)| -mu.iter().map(|x| x * x).sum::<f32>() / (2.0 * s2) + log_prior.map_or(0.0, |lp| lp[c] as f32)).collect();
    let (wname, bname, wshape) = match cfg.image {
        Some([ch, ..]) => ("template.weight", "template.bias", vec![cfg.classes, ch, cfg.patch, cfg.patch]),
        None => ("l0.weight", "l0.bias", vec![cfg.classes, d]),
    };
    let views = [
        (wname, safetensors::tensor::TensorView::new(safetensors::Dtype::F32, wshape, bytemuck::cast_slice(&w))),
        (bname, safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![cfg.classes], bytemuck::cast_slice(&b))),
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

    /// The power law's frequencies follow it: the least-squares slope of log count against log rank
    /// over the 100 most frequent classes is −s within 0.05.
    #[test]
    fn zipf_frequencies_follow_the_law() {
        for s in [0.8, 1.1, 1.5] {
            let p = ClassPrior::new(5000, s, 3);
            let mut rng = ChaCha8Rng::seed_from_u64(4);
            let mut count = vec![0f64; 5000];
            for _ in 0..400_000 {
                count[p.sample(&mut rng)] += 1.0;
            }
            count.sort_by(|a, b| b.total_cmp(a));
            let pts: Vec<(f64, f64)> = (0..100).map(|r| (((r + 1) as f64).ln(), count[r].ln())).collect();
            let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / 100.0, pts.iter().map(|p| p.1).sum::<f64>() / 100.0);
            let slope = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / pts.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>();
            assert!((slope + s).abs() < 0.05, "s = {s}: fitted exponent {}", -slope);
            let lp = p.log_prior();
            assert!((lp.iter().map(|x| x.exp()).sum::<f64>() - 1.0).abs() < 1e-9);
        }
    }
    /// With a coarse scale, superclasses of one coarse group lie closer to each other than to those of
    /// other groups (two scales of structure), and the default output does not change.
    #[test]
    fn coarse_groups_cluster_the_superclasses() {
        let cfg = SynthConfig { classes: 400, dim: 16, train: 2000, test: 0, group: 10, coarse: 100, class_spread: 0.0, ..Default::default() };
        let t = tempfile::tempdir().unwrap();
        generate(&cfg, t.path()).unwrap();
        // the oracle's weights are the class centres / σ²: with class_spread 0 a class is its superclass
        let st = safetensors::SafeTensors::deserialize(&std::fs::read(t.path().join("oracle.safetensors")).unwrap())
            .unwrap()
            .tensor("l0.weight")
            .unwrap()
            .data()
            .to_vec();
        let w: &[f32] = bytemuck::cast_slice(&st);
        let dist = |a: usize, b: usize| (0..16).map(|j| (w[a * 16 + j] - w[b * 16 + j]).powi(2)).sum::<f32>();
        let (mut within, mut across, mut nw, mut na) = (0.0, 0.0, 0, 0);
        for a in (0..400).step_by(10) {
            for b in (0..400).step_by(10) {
                if a / 10 == b / 10 {
                    continue;
                }
                if a / 100 == b / 100 {
                    within += dist(a, b);
                    nw += 1;
                } else {
                    across += dist(a, b);
                    na += 1;
                }
            }
        }
        let (within, across) = (within / nw as f32, across / na as f32);
        assert!(within < 0.5 * across, "within a coarse group {within}, across {across}");
        let bad = SynthConfig { coarse: 15, ..cfg };
        assert!(generate(&bad, t.path()).unwrap_err().to_string().contains("multiple of --group"));
    }

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
