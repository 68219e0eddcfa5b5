//! A dataset of feature rows and optional labels: `.npy` pairs, a synth directory, or `.safetensors`.
//! Features are memory-mapped, never loaded whole; row index = position in the file.
use std::path::{Path, PathBuf};

use crate::data::npy::{Npy, NpyDtype};
use crate::error::{Error, Result};

pub struct Dataset {
    pub x: Npy,
    pub y: Option<Vec<i64>>,
    /// `xxh3:…` of the features (and labels): part of a cache's signature.
    pub fingerprint: String,
    pub source: PathBuf,
}

impl Dataset {
    /// Opens `path`: a directory written by `kdcache synth` (`{split}_x.npy`, `{split}_y.npy`), a features
    /// `.npy` (labels from `labels`), or a `.safetensors` file with tensors `x` and (optionally) `y`.
    pub fn open(path: &Path, labels: Option<&Path>, split: &str) -> Result<Self> {
        let (xpath, ypath): (PathBuf, Option<PathBuf>) = if path.is_dir() {
            let y = path.join(format!("{split}_y.npy"));
            (path.join(format!("{split}_x.npy")), labels.map(Path::to_path_buf).or(y.exists().then_some(y)))
        } else {
            (path.into(), labels.map(Path::to_path_buf))
        };
        let is_st = xpath.extension().and_then(|e| e.to_str()) == Some("safetensors");
        let (x, y) = if is_st {
            let x = Npy::open_safetensors(&xpath, "x")?;
            let y = match Npy::open_safetensors(&xpath, "y") {
                Ok(y) => Some(y),
                Err(Error::Invalid(m)) if m.contains("no tensor") => None,
                Err(e) => return Err(e),
            };
            (x, y)
        } else {
            (Npy::open(&xpath)?, ypath.as_deref().map(Npy::open).transpose()?)
        };
        if !matches!(x.dtype, NpyDtype::F32 | NpyDtype::F16) || x.shape.len() < 2 || x.shape[0] == 0 {
            return Err(Error::invalid(format!("{}: features must be float32/float16 of shape [N, ...] with N >= 1, got {:?} {:?}", xpath.display(), x.dtype, x.shape)));
        }
        let n = x.shape[0];
        let mut fp = crate::fingerprint::bytes(x.data());
        let y = match y {
            Some(y) => {
                if !matches!(y.dtype, NpyDtype::I64 | NpyDtype::I32) || y.shape != [n] {
                    return Err(Error::invalid(format!("{}: labels must be int64/int32 of shape [{n}], got {:?} {:?}", y.path.display(), y.dtype, y.shape)));
                }
                fp = format!("{fp};labels:{}", crate::fingerprint::bytes(y.data()));
                Some(y.i64_values())
            }
            None => None,
        };
        Ok(Dataset { x, y, fingerprint: fp, source: xpath })
    }

    pub fn len(&self) -> usize {
        self.x.shape[0]
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Shape of one row's features.
    pub fn feature_shape(&self) -> &[usize] {
        &self.x.shape[1..]
    }
    pub fn label(&self, i: usize) -> i64 {
        self.y.as_ref().map(|y| y[i]).unwrap_or(-1)
    }
    /// Checks that labels lie in -1..classes.
    pub fn check_labels(&self, classes: u64) -> Result<()> {
        if let Some(y) = &self.y
            && let Some((i, v)) = y.iter().enumerate().find(|(_, v)| **v < -1 || **v >= classes as i64)
        {
            return Err(Error::invalid(format!("label {v} of row {i} is not in -1..{classes}")));
        }
        Ok(())
    }
}
