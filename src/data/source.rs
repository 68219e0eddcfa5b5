//! A dataset of feature rows and optional labels: `.npy` pairs, a synth directory, or `.safetensors`.
//! Features are memory-mapped, never loaded whole; row index = position in the file.
use std::path::{Path, PathBuf};

use crate::data::array::{ArrayDtype, MappedArray};
use crate::error::{Error, Result};

pub struct Dataset {
    pub x: MappedArray,
    pub y: Option<Vec<i64>>,
    /// `xxh3:<features>[;labels:xxh3:<labels>]`: part of a cache's signature.
    pub fingerprint: String,
    /// `xxh3:…` of the feature values as read (float32; see [`MappedArray::f32_fingerprint`]).
    pub features: String,
    /// `xxh3:…` of the labels as int64 (the same labels in any integer width give the same value).
    pub labels: Option<String>,
    pub source: PathBuf,
}

/// `xxh3:…` of labels as little-endian int64.
pub fn labels_fingerprint(y: &[i64]) -> String {
    crate::fingerprint::bytes(bytemuck::cast_slice(y))
}

/// How much of a dataset a cache's signature pins down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// The features (and the labels, if both sides have them) match.
    Features,
    /// Only the labels and the row count match (an import without `--data`).
    Labels,
    /// Only the row count: rows are matched by position alone.
    RowsOnly,
}

/// The parts of a dataset signature `[xxh3:<features>][;labels:<labels>][;rows=N]`.
struct SignatureParts<'a> {
    features: Option<&'a str>,
    labels: Option<&'a str>,
    rows: Option<u64>,
}

impl<'a> SignatureParts<'a> {
    fn parse(sig: &'a str) -> Self {
        let mut p = SignatureParts { features: None, labels: None, rows: None };
        // imports before labels were fingerprinted as int64 wrote `rows=N;labels:<file hash>`: that
        // hash matches no dataset, so only the row count of such a cache is checked
        let legacy = sig.starts_with("rows=");
        for part in sig.split(';') {
            if let Some(l) = part.strip_prefix("labels:") {
                if legacy {
                    continue;
                }
                p.labels = Some(l);
            } else if let Some(r) = part.strip_prefix("rows=") {
                p.rows = r.parse().ok();
            } else if part.starts_with("xxh3:") {
                p.features = Some(part);
            }
        }
        p
    }
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
            let x = MappedArray::open_safetensors(&xpath, "x")?;
            let y = match MappedArray::open_safetensors(&xpath, "y") {
                Ok(y) => Some(y),
                Err(Error::Invalid(m)) if m.contains("no tensor") => None,
                Err(e) => return Err(e),
            };
            (x, y)
        } else {
            (MappedArray::open_npy(&xpath)?, ypath.as_deref().map(MappedArray::open_npy).transpose()?)
        };
        if x.shape.len() < 2 || x.shape[0] == 0 {
            return Err(Error::invalid(format!(
                "{}: features must be an array of shape [N, ...] with N >= 1, got {} {:?}",
                xpath.display(),
                x.dtype.name(),
                x.shape
            )));
        }
        if x.dtype == ArrayDtype::F64 {
            eprintln!("note: {}: float64 features are used as float32", xpath.display());
        } else if !x.dtype.is_float() {
            eprintln!("note: {}: {} features are used as float32 values, unscaled (uint8 pixels as 0..255)", xpath.display(), x.dtype.name());
        }
        let n = x.shape[0];
        // the values as read, so the dtype on disk does not change the dataset's identity
        let features = x.f32_fingerprint();
        let y = match y {
            Some(y) => {
                if y.dtype.is_float() || y.shape != [n] {
                    return Err(Error::invalid(format!(
                        "{}: labels must be an integer array of shape [{n}] (any width; -1 = unknown), got {} {:?}",
                        y.path.display(),
                        y.dtype.name(),
                        y.shape
                    )));
                }
                Some(y.i64_values())
            }
            None => None,
        };
        let labels_fp = y.as_deref().map(labels_fingerprint);
        let fingerprint = match &labels_fp {
            Some(l) => format!("{features};labels:{l}"),
            None => features.clone(),
        };
        Ok(Dataset { x, y, fingerprint, features, labels: labels_fp, source: xpath })
    }

    /// The dataset part of a cache signature: `xxh3:<features>[;labels:xxh3:<labels>];rows=N`.
    pub fn signature(&self) -> String {
        format!("{};rows={}", self.fingerprint, self.len())
    }

    /// Checks this dataset against a cache's dataset signature (from `cache`, or `import` with or without
    /// `--data`/`--labels`): the features must match when the cache binds them, the labels when both sides
    /// have them, the row count always. Returns what was checked.
    pub fn check_signature(&self, sig: &str) -> Result<Binding> {
        let parts = SignatureParts::parse(sig);
        let mismatch = |what: &str, cache: &str, given: &str| Error::Mismatch { what: what.into(), cache: cache.into(), given: given.into() };
        if let Some(rows) = parts.rows
            && rows != self.len() as u64
        {
            return Err(mismatch("example count", &rows.to_string(), &format!("{} rows in {}", self.len(), self.source.display())));
        }
        // caches built before the fingerprint was taken of the values as read hold the hash of the stored bytes
        if let Some(f) = parts.features
            && f != self.features
            && (self.x.dtype == ArrayDtype::F32 || f != crate::fingerprint::bytes(self.x.data()))
        {
            return Err(mismatch("dataset fingerprint (features)", f, &format!("{} ({})", self.features, self.source.display())));
        }
        if let (Some(l), Some(mine)) = (parts.labels, &self.labels)
            && l != mine
        {
            return Err(mismatch("dataset fingerprint (labels)", l, mine));
        }
        Ok(match (parts.features, parts.labels) {
            (Some(_), _) => Binding::Features,
            (None, Some(_)) if self.labels.is_some() => Binding::Labels,
            _ => Binding::RowsOnly,
        })
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
