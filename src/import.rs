//! `kdcache import`: a cache from dense teacher logits [N, C] computed elsewhere (.npy, f32, f16 or f64).
//! Streams the memory-mapped file in chunks, so a file larger than RAM imports. No libtorch needed.
use std::path::PathBuf;

use crate::data::array::{ArrayDtype, MappedArray};
use crate::error::{Error, IoContext, Result};
use crate::format::manifest::{Manifest, Signature};
use crate::format::rows::{LogitDtype, RowBatch, RowSpec};
use crate::format::writer::{CacheWriter, WriterOptions};

pub struct ImportOptions {
    pub logits: PathBuf,
    pub labels: Option<PathBuf>,
    /// The inputs the logits were computed from (bound into the signature, so `train` checks them).
    pub data: Option<PathBuf>,
    pub k: usize,
    pub temperatures: Vec<f32>,
    pub dtype: LogitDtype,
    pub out: PathBuf,
    pub writer: WriterOptions,
    pub progress: bool,
}

/// Rows ranked per parallel chunk.
const CHUNK: usize = 4096;

pub fn import(o: &ImportOptions) -> Result<Manifest> {
    let logits = MappedArray::open_npy(&o.logits)?;
    if !logits.dtype.is_float() || logits.shape.len() != 2 {
        return Err(Error::invalid(format!(
            "{}: logits must be a float array (float32, float16 or float64) of shape [N, C], got {} {:?}",
            o.logits.display(),
            logits.dtype.name(),
            logits.shape
        )));
    }
    if logits.dtype == ArrayDtype::F64 {
        eprintln!("note: {}: float64 logits are ranked as float32", o.logits.display());
    }
    let (n, c) = (logits.shape[0], logits.shape[1]);
    // the inputs the logits were computed from bind the cache to them, as `cache` does
    let ds = match &o.data {
        Some(d) => {
            let ds = crate::data::source::Dataset::open(d, o.labels.as_deref(), "train")?;
            if ds.len() != n {
                return Err(Error::invalid(format!("{}: {} rows, but the logits have {n}", ds.source.display(), ds.len())));
            }
            Some(ds)
        }
        None => None,
    };
    let labels: Option<Vec<i64>> = match (&ds, &o.labels) {
        (Some(ds), _) => ds.y.clone(),
        (None, Some(p)) => {
            let l = MappedArray::open_npy(p)?;
            if l.dtype.is_float() || l.shape != [n] {
                return Err(Error::invalid(format!(
                    "{}: labels must be an integer array of shape [{n}] (any width; -1 = unknown), got {} {:?}",
                    p.display(),
                    l.dtype.name(),
                    l.shape
                )));
            }
            Some(l.i64_values())
        }
        (None, None) => None,
    };
    if let Some(v) = &labels
        && let Some((i, y)) = v.iter().enumerate().find(|(_, y)| **y < -1 || **y >= c as i64)
    {
        return Err(Error::invalid(format!("label {y} of row {i} is not in -1..{c}")));
    }
    let dataset = match (&ds, &labels) {
        (Some(ds), _) => ds.signature(),
        (None, Some(v)) => format!("labels:{};rows={n}", crate::data::source::labels_fingerprint(v)),
        (None, None) => format!("rows={n}"),
    };
    let k = clamp_k(o.k, c as u64, o.progress);
    let spec = RowSpec {
        classes: c as u64,
        k,
        temperatures: o.temperatures.clone(),
        tail_samples: 0,
        aug_dim: 0,
        logit_dtype: o.dtype,
        tail_logit: true,
        mixture: false,
    };
    spec.validate()?;
    let signature =
        Signature { teacher: format!("logits:{}", crate::fingerprint::file(&o.logits)?), dataset, classes: format!("C={c}"), augmentation: "none".into() };
    std::fs::create_dir_all(&o.out).ctx(&o.out)?;
    let _lock = crate::fsio::DirLock::acquire(&o.out, "import")?;
    let mut w = CacheWriter::create(&o.out, &spec, signature, o.writer.clone(), None)?;
    let start = w.resumed_rows() as usize;
    let mut bar = crate::progress::Progress::new(n as u64, "import", "rows", o.progress);
    bar.set_position(start as u64);
    let mut buf = Vec::new();
    // chunks end on shard boundaries too: a chunk's prior (one sum) then belongs to one shard, so the
    // kept shards of an interrupted import hold the prior of exactly their rows
    let shard = o.writer.shard_rows.max(1);
    let mut lo = start;
    while lo < n {
        let hi = (lo + CHUNK).min(n).min((lo / shard + 1) * shard);
        logits.f32_rows(lo..hi, &mut buf);
        let (ranked, prior) = crate::rank::rank_block(&buf, c, k, &o.temperatures);
        let mut batch = RowBatch::new(&spec);
        for (i, r) in (lo..hi).zip(ranked) {
            let r = r.map_err(|class| Error::NonFinite { row: i as u64, class: class as u64 })?;
            batch.push_row(i as u64, 0, labels.as_ref().map(|l| l[i]).unwrap_or(-1), &r.idx, &r.logit, &r.lse, &r.log_tail, None);
        }
        w.push(&batch, Some(&prior))?;
        bar.advance_to(hi as u64, "");
        if crate::progress::interrupted() {
            return Err(Error::Interrupted);
        }
        lo = hi;
    }
    bar.finish_and_clear();
    w.finish(n as u64, 1, "kdcache import")
}

/// `--top-k` for C classes: at most C (a small problem with the default K = 64 keeps every class, noted).
pub fn clamp_k(k: usize, classes: u64, progress: bool) -> usize {
    if k as u64 > classes {
        if progress {
            eprintln!("note: --top-k {k} exceeds the class count C = {classes}: every class is cached (K = {classes})");
        }
        return classes as usize;
    }
    k
}
