//! `_manifest.json`: what a cache holds, where, its checksums, signature and statistics
//! (schema: `schemas/manifest.schema.json`).
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::format::rows::{LogitDtype, RowSpec};

/// 4: an ensemble's mixture, one set of values per temperature (`topk_logit_t`); 3: tail samples carry
/// their values (`tail_logit`); 2: top-K values stored as T0·log p(T0)
/// ([`crate::format::rows::LogitBase`]); 1: as raw logits. All four are read.
pub const FORMAT_VERSION: u64 = 4;
/// The manifest's file name. Dataset readers (pyarrow, Spark, DuckDB's directory reads) skip names that
/// start with `_`, so a Parquet cache directory opens as a dataset as it is.
pub const MANIFEST: &str = "_manifest.json";
/// The partial manifest of a build in progress.
pub const PARTIAL: &str = "_manifest.partial.json";
/// The names caches written before used; still read.
pub const LEGACY_MANIFEST: &str = "manifest.json";
pub const LEGACY_PARTIAL: &str = "manifest.partial.json";

/// The manifest of the cache in `dir`: `_manifest.json`, or `manifest.json` in a cache written before
/// the rename (the first that exists; `_manifest.json` when neither does).
pub fn manifest_path(dir: &Path) -> PathBuf {
    let p = dir.join(MANIFEST);
    if p.exists() {
        return p;
    }
    let legacy = dir.join(LEGACY_MANIFEST);
    if legacy.exists() { legacy } else { p }
}
/// The largest block a manifest may declare (rows).
pub const MAX_BLOCK_ROWS: usize = 1 << 24;
/// A manifest larger than this is refused before parsing (a class prior of 2^24 classes fits).
const MAX_MANIFEST_BYTES: u64 = 1 << 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    #[default]
    Kds,
    Parquet,
}

impl std::str::FromStr for Encoding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "kds" => Ok(Encoding::Kds),
            "parquet" => Ok(Encoding::Parquet),
            _ => Err(Error::invalid(format!("unknown shard encoding {s:?}: use kds or parquet"))),
        }
    }
}

impl Encoding {
    pub fn ext(self) -> &'static str {
        match self {
            Encoding::Kds => "kds",
            Encoding::Parquet => "parquet",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub file: String,
    pub first_row: u64,
    pub rows: u64,
    pub bytes: u64,
    pub xxh3: String,
    /// Parquet shards: XXH3-64 (hex) of each row group's bytes (its column chunks, contiguous in the
    /// file), checked by every read of the row group, since Parquet pages carry no checksum of their
    /// own here. Absent for kds shards (their blocks carry checksums) and for caches written before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub block_xxh3: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Signature {
    pub teacher: String,
    pub dataset: String,
    pub classes: String,
    pub augmentation: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Stats {
    pub class_prior: Vec<f64>,
    pub top1_agreement: Option<f64>,
    #[serde(default)]
    pub labeled_rows: u64,
    pub mean_topk_mass: f64,
}

/// A member of an ensemble whose mixture a cache holds (format 4; `schemas/FORMAT.md`, Ensembles).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleMember {
    /// The member's fingerprint.
    pub teacher: String,
    pub weight: f64,
    /// Labelled rows whose argmax (this member's) is the label.
    #[serde(default)]
    pub top1_agreement: Option<f64>,
    /// Rows where this member's argmax is the mixture's.
    #[serde(default)]
    pub mixture_agreement: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub format_version: u64,
    pub kdcache_version: String,
    pub encoding: Encoding,
    pub classes: u64,
    pub top_k: usize,
    pub logit_dtype: LogitDtype,
    pub temperatures: Vec<f32>,
    pub tail_samples: usize,
    pub aug_dim: usize,
    pub rows: u64,
    #[serde(default)]
    pub examples: u64,
    #[serde(default = "one")]
    pub views: u32,
    pub block_rows: usize,
    pub shards: Vec<ShardInfo>,
    pub signature: Signature,
    pub stats: Stats,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub part: Option<String>,
    /// The members of an ensemble whose mixture the rows hold (None: one teacher).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ensemble: Option<Vec<EnsembleMember>>,
}

fn one() -> u32 {
    1
}

impl Manifest {
    pub fn new(spec: &RowSpec, encoding: Encoding, block_rows: usize, signature: Signature) -> Self {
        Manifest {
            format: "kdcache".into(),
            format_version: FORMAT_VERSION,
            kdcache_version: env!("CARGO_PKG_VERSION").into(),
            encoding,
            classes: spec.classes,
            top_k: spec.k,
            logit_dtype: spec.logit_dtype,
            temperatures: spec.temperatures.clone(),
            tail_samples: spec.tail_samples,
            aug_dim: spec.aug_dim,
            rows: 0,
            examples: 0,
            views: 1,
            block_rows,
            shards: vec![],
            signature,
            stats: Stats::default(),
            created_by: String::new(),
            part: None,
            ensemble: spec.mixture.then(Vec::new),
        }
    }

    pub fn spec(&self) -> RowSpec {
        RowSpec {
            classes: self.classes,
            k: self.top_k,
            temperatures: self.temperatures.clone(),
            tail_samples: self.tail_samples,
            aug_dim: self.aug_dim,
            logit_dtype: self.logit_dtype,
            tail_logit: self.format_version >= 3,
            mixture: self.ensemble.is_some(),
        }
    }

    /// Reads and validates a manifest file (`DIR/_manifest.json`, see [`manifest_path`]).
    pub fn load(path: &Path) -> Result<Self> {
        let meta = std::fs::metadata(path).ctx(path)?;
        if meta.len() > MAX_MANIFEST_BYTES {
            return Err(Error::corrupt(path, None, format!("manifest of {} bytes is implausibly large", meta.len())));
        }
        let bytes = std::fs::read(path).ctx(path)?;
        // look at the version before the full parse, so a newer format gets the right message
        let v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::corrupt(path, None, format!("not valid JSON: {e}")))?;
        if v.get("format").and_then(|f| f.as_str()) != Some("kdcache") {
            return Err(Error::corrupt(path, None, "not a kdcache manifest (\"format\" is not \"kdcache\")"));
        }
        match v.get("format_version").and_then(|f| f.as_u64()) {
            Some(found) if found > FORMAT_VERSION => {
                return Err(Error::Version { path: path.into(), found, supported: FORMAT_VERSION });
            }
            Some(0) | None => return Err(Error::corrupt(path, None, "missing or invalid format_version")),
            _ => {}
        }
        let m: Manifest = serde_json::from_value(v).map_err(|e| Error::corrupt(path, None, format!("{e}")))?;
        m.validate().map_err(|e| Error::corrupt(path, None, e))?;
        Ok(m)
    }

    /// Internal consistency: spec limits, shards tiling 0..rows, file names, prior length.
    pub fn validate(&self) -> std::result::Result<(), String> {
        self.spec().validate().map_err(|e| e.to_string())?;
        if let Some(e) = &self.ensemble {
            if self.format_version < 4 {
                return Err(format!("an ensemble in a format {} manifest (ensembles are format 4)", self.format_version));
            }
            if e.len() < 2 {
                return Err(format!("an ensemble of {} members (at least 2)", e.len()));
            }
            let share = |x: Option<f64>| x.is_none_or(|x| (0.0..=1.0).contains(&x));
            if let Some(m) = e.iter().find(|m| !(m.weight > 0.0 && m.weight <= 1.0 && share(m.top1_agreement) && share(m.mixture_agreement))) {
                return Err(format!("ensemble member {:?}: weight {} or agreements out of range", m.teacher, m.weight));
            }
        }
        if self.block_rows == 0 || self.block_rows > MAX_BLOCK_ROWS {
            return Err(format!("block_rows = {} is out of range", self.block_rows));
        }
        let mut next = 0u64;
        for (i, s) in self.shards.iter().enumerate() {
            if s.file.is_empty() || s.file.starts_with('.') || !s.file.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
                return Err(format!("shard {i}: bad file name {:?}", s.file));
            }
            if s.first_row != next {
                return Err(format!("shard {i} ({}) starts at row {}, expected {next}", s.file, s.first_row));
            }
            if s.rows == 0 {
                return Err(format!("shard {i} ({}) is empty", s.file));
            }
            if s.xxh3.len() != 16 || !s.xxh3.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
                return Err(format!("shard {i} ({}): bad checksum {:?}", s.file, s.xxh3));
            }
            next = s.first_row.checked_add(s.rows).ok_or("row count overflows")?;
        }
        if next != self.rows {
            return Err(format!("shards hold {next} rows, manifest says {}", self.rows));
        }
        if !self.stats.class_prior.is_empty() && self.stats.class_prior.len() as u64 != self.classes {
            return Err(format!("class_prior has {} entries, C = {}", self.stats.class_prior.len(), self.classes));
        }
        Ok(())
    }

    /// Writes atomically: temp file, fsync, rename, fsync of the directory.
    pub fn store(&self, path: &Path) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        crate::fsio::write_atomic(path, &bytes)
    }
}

pub fn xxh3_hex(h: u64) -> String {
    format!("{h:016x}")
}
