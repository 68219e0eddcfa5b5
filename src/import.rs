//! `kdcache import`: a cache from dense teacher logits [N, C] computed elsewhere (.npy, f32 or f16).
//! Streams the memory-mapped file in chunks, so a file larger than RAM imports. No libtorch needed.
use std::path::PathBuf;

use rayon::prelude::*;

use crate::data::npy::{Npy, NpyDtype};
use crate::error::{Error, Result};
use crate::format::manifest::{Manifest, Signature};
use crate::format::rows::{LogitDtype, RowBatch, RowSpec};
use crate::format::writer::{CacheWriter, WriterOptions};
use crate::rank::rank_row;

pub struct ImportOptions {
    pub logits: PathBuf,
    pub labels: Option<PathBuf>,
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
    let logits = Npy::open(&o.logits)?;
    if !matches!(logits.dtype, NpyDtype::F32 | NpyDtype::F16) || logits.shape.len() != 2 {
        return Err(Error::invalid(format!(
            "{}: logits must be a float32 or float16 array of shape [N, C], got {:?} {:?}",
            o.logits.display(), logits.dtype, logits.shape
        )));
    }
    let (n, c) = (logits.shape[0], logits.shape[1]);
    let labels = match &o.labels {
        Some(p) => {
            let l = Npy::open(p)?;
            if !matches!(l.dtype, NpyDtype::I64 | NpyDtype::I32) || l.shape != [n] {
                return Err(Error::invalid(format!("{}: labels must be an int64/int32 array of shape [{n}], got {:?} {:?}", p.display(), l.dtype, l.shape)));
            }
            let v = l.i64_values();
            if let Some((i, y)) = v.iter().enumerate().find(|(_, y)| **y < -1 || **y >= c as i64) {
                return Err(Error::invalid(format!("{}: label {y} of row {i} is not in -1..{c}", p.display())));
            }
            Some((v, crate::fingerprint::file(p)?))
        }
        None => None,
    };
    let spec = RowSpec { classes: c as u64, k: o.k, temperatures: o.temperatures.clone(), tail_samples: 0, aug_dim: 0, logit_dtype: o.dtype };
    spec.validate()?;
    let signature = Signature {
        teacher: format!("logits:{}", crate::fingerprint::file(&o.logits)?),
        dataset: match &labels {
            Some((_, h)) => format!("rows={n};labels:{h}"),
            None => format!("rows={n}"),
        },
        classes: format!("C={c}"),
        augmentation: "none".into(),
    };
    let mut w = CacheWriter::create(&o.out, &spec, signature, o.writer.clone(), None)?;
    let start = w.resumed_rows() as usize;
    let bar = crate::progress::bar(n as u64, "import", o.progress);
    bar.set_position(start as u64);
    let mut buf = Vec::new();
    for lo in (start..n).step_by(CHUNK) {
        let hi = (lo + CHUNK).min(n);
        logits.f32_rows(lo..hi, &mut buf);
        let (ranked, prior) = (lo..hi)
            .into_par_iter()
            .fold(
                || (Vec::new(), vec![0f64; c]),
                |(mut rows, mut prior), i| {
                    let z = &buf[(i - lo) * c..(i - lo + 1) * c];
                    rows.push((i, rank_row(z, o.k, &o.temperatures, Some(&mut prior))));
                    (rows, prior)
                },
            )
            .reduce(
                || (Vec::new(), vec![0f64; c]),
                |(mut a, mut pa), (b, pb)| {
                    a.extend(b);
                    pa.iter_mut().zip(&pb).for_each(|(x, y)| *x += y);
                    (a, pa)
                },
            );
        let mut ranked = ranked;
        ranked.sort_unstable_by_key(|(i, _)| *i);
        let mut batch = RowBatch::new(&spec);
        for (i, r) in ranked {
            let r = r.map_err(|class| Error::NonFinite { row: i as u64, class: class as u64 })?;
            batch.row.push(i as u64);
            batch.view.push(0);
            batch.label.push(labels.as_ref().map(|(l, _)| l[i]).unwrap_or(-1));
            batch.topk_idx.extend_from_slice(&r.idx);
            for &z in &r.logit {
                batch.topk_logit.push(z);
            }
            batch.lse.extend_from_slice(&r.lse);
            batch.log_tail.extend_from_slice(&r.log_tail);
        }
        w.push(&batch, Some(&prior))?;
        bar.set_position(hi as u64);
        if crate::progress::interrupted() {
            return Err(Error::Interrupted);
        }
    }
    bar.finish_and_clear();
    w.finish(n as u64, 1, "kdcache import")
}
