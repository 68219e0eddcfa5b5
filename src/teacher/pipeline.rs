//! `kdcache cache`: runs a teacher once over a dataset and writes its ranked logits.
//!
//! Per batch, on the device: forward → logits [B, C] → finiteness check → top-K → logsumexp(z/T) per
//! temperature → exact log tail mass per temperature (logsumexp over the logits with the top-K masked
//! out, never 1 − Σp) → optional tail samples → class-prior sum. Only K (+M) values per row and the
//! prior sum leave the device. A writer thread compresses and writes while the device computes the next
//! batch (bounded queue of 2). Shards are published as they complete, so Ctrl-C or a crash loses at most
//! one shard of work: re-running the same command resumes and yields the same rows.
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use tch::{Device, Kind, Tensor};

use crate::data::augment::{AUG_DIM, AugmentSpec, ImageShape};
use crate::data::source::Dataset;
use crate::error::{Error, IoContext, Result};
use crate::format::manifest::{Manifest, Signature};
use crate::format::rows::{LogitDtype, RowBatch, RowSpec, Tail};
use crate::format::writer::{CacheWriter, WriterOptions};
use crate::nn::rows_tensor;
use crate::teacher::Teacher;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NanPolicy {
    /// Stop with an error naming the row.
    Fail,
    /// Leave rows with non-finite logits out of the cache (counted in the summary).
    Skip,
}

pub struct CacheOptions {
    /// The teacher, or the members of an ensemble (two or more): the cache holds their mixture.
    pub teachers: Vec<String>,
    /// The ensemble's weights, one per teacher (empty: equal); normalised to sum 1.
    pub teacher_weights: Vec<f64>,
    pub data: PathBuf,
    pub labels: Option<PathBuf>,
    pub split: String,
    pub out: PathBuf,
    pub k: usize,
    pub temperatures: Vec<f32>,
    pub tail_samples: usize,
    pub dtype: LogitDtype,
    pub writer: WriterOptions,
    pub device: Device,
    /// Rows per teacher batch; `None` picks one from the device and the class count ([`auto_batch`]).
    pub batch_size: Option<usize>,
    pub part: Option<(usize, usize)>,
    pub nan: NanPolicy,
    pub seed: u64,
    /// Augmented views per example (0 = the example as is, no `aug` column), drawn from `augment`.
    pub views: u32,
    pub augment: Option<crate::data::augment::AugmentSpec>,
    pub progress: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CacheReport {
    pub rows: u64,
    pub skipped_nonfinite: u64,
    pub resumed_from: u64,
    pub wall_s: f64,
    pub forward_s: f64,
    /// Cache rows (examples × views) written per second.
    pub rows_per_s: f64,
    /// Share of wall time spent outside the teacher's forward pass.
    pub overhead_share: f64,
    pub device: String,
    /// Rows per teacher batch (given, or picked by [`auto_batch`]).
    pub batch_size: usize,
    /// Seconds before the first batch (opening data and teacher, fingerprints) and after the last one
    /// (writing the final shard and the manifest).
    pub setup_s: f64,
    pub finish_s: f64,
}

/// One batch's ranked output, on the host.
struct Ranked {
    keep: Vec<bool>,
    idx: Vec<i32>,
    logit: Vec<f32>,
    lse: Vec<f32>,
    log_tail: Vec<f32>,
    tail: Vec<i64>,
    /// The teacher's logit of each tail sample (M per row, beside `tail`).
    tail_logit: Vec<f32>,
    prior: Vec<f64>,
    /// An ensemble's values at the temperatures after the first ((T−1)·K per row).
    mixture: Vec<f32>,
    /// An ensemble's members' argmax classes (one per member per row).
    argmax: Vec<u32>,
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Ranks one batch of logits on their device (see the module docs). The log tail mass is a logsumexp
/// over the logits with the top-K masked out; the full normaliser is its log-add with the top-K's
/// logsumexp, so each temperature costs one pass over C.
fn rank_on_device(z: &Tensor, k: i64, temps: &[f32], m: i64, seed: u64) -> Result<(Tensor, Tensor, Tensor, Tensor, Option<Tensor>)> {
    let z = z.f_to_kind(Kind::Float)?.f_contiguous()?;
    let (vals, idx) = if z.device() == Device::Cpu {
        // libtorch's CPU topk copies and introselects every row; a bounded heap per row is ~5x faster
        use rayon::prelude::*;
        let (b, c) = (z.size()[0] as usize, z.size()[1] as usize);
        let flat: Vec<f32> = Vec::<f32>::try_from(&z.f_flatten(0, -1)?)?;
        let tops: Vec<Vec<(f32, u32)>> = flat.par_chunks(c).map(|row| crate::rank::topk(row, k as usize)).collect();
        let v: Vec<f32> = tops.iter().flatten().map(|e| e.0).collect();
        let i: Vec<i64> = tops.iter().flatten().map(|e| e.1 as i64).collect();
        (Tensor::f_from_slice(&v)?.f_reshape([b as i64, k])?, Tensor::f_from_slice(&i)?.f_reshape([b as i64, k])?)
    } else {
        z.f_topk(k, -1, true, true)?
    };
    let masked = z.f_scatter_value(1, &idx, f64::NEG_INFINITY)?;
    let mut lse = vec![];
    let mut tail = vec![];
    for &t in temps {
        let inv = 1.0 / t as f64;
        let tail_lse = (&masked * inv).f_logsumexp([1i64], false)?;
        let head_lse = (&vals * inv).f_logsumexp([1i64], false)?;
        let l = tail_lse.f_logaddexp(&head_lse)?;
        tail.push(tail_lse - &l);
        lse.push(l);
    }
    let lse = Tensor::f_stack(&lse, 1)?;
    let tail = Tensor::f_stack(&tail, 1)?;
    let samples = if m > 0 {
        tch::manual_seed(seed as i64);
        let p = (&masked / temps[0] as f64).f_softmax(-1, Kind::Float)?;
        Some(p.f_multinomial(m, true)?)
    } else {
        None
    };
    Ok((vals, idx.f_to_kind(Kind::Int)?, lse, tail, samples))
}

/// The CPU path: one fused pass per row in Rust ([`crate::rank::rank_row`]: quickselect top-K, vectorised
/// exp with f64 sums, the prior accumulated on the way), rows in parallel. ~20 tensor passes fewer than
/// the device path, which matters when the logits are [B, 100k].
fn rank_on_host(z: &Tensor, b0: usize, k: usize, temps: &[f32], nan: NanPolicy) -> Result<Ranked> {
    let z = z.f_to_kind(Kind::Float)?.f_contiguous()?;
    let (b, c) = (z.size()[0] as usize, z.size()[1] as usize);
    let flat: Vec<f32> = Vec::<f32>::try_from(&z.f_flatten(0, -1)?)?;
    let (rows, prior) = crate::rank::rank_block(&flat, c, k, temps);
    let t = temps.len();
    let mut out = Ranked {
        keep: vec![],
        idx: vec![],
        logit: vec![],
        lse: vec![],
        log_tail: vec![],
        tail: vec![],
        tail_logit: vec![],
        prior,
        mixture: vec![],
        argmax: vec![],
    };
    for (r, res) in rows.into_iter().enumerate() {
        match res {
            Ok(x) => {
                out.keep.push(true);
                out.idx.extend(x.idx.iter().map(|&i| i as i32));
                out.logit.extend(x.logit);
                out.lse.extend(x.lse);
                out.log_tail.extend(x.log_tail);
            }
            Err(class) if nan == NanPolicy::Fail => return Err(Error::NonFinite { row: (b0 + r) as u64, class: class as u64 }),
            Err(_) => {
                out.keep.push(false);
                out.idx.extend(std::iter::repeat_n(0, k));
                out.logit.extend(std::iter::repeat_n(0.0, k));
                out.lse.extend(std::iter::repeat_n(0.0, t));
                out.log_tail.extend(std::iter::repeat_n(0.0, t));
            }
        }
    }
    debug_assert_eq!(out.keep.len(), b);
    Ok(out)
}

/// Sixteen rows of an ensemble ranked (or the member and class of a non-finite logit), and their prior sum.
type MixtureTask = (Vec<std::result::Result<crate::rank::MixtureRow, (usize, usize)>>, Vec<f64>);

/// An ensemble's batch, on the host ([`crate::rank::rank_mixture_row`], rows in parallel): the members'
/// logits `zs` ([B, C] each, any device) mixed with `weights`. The prior is summed over tasks of 16 rows
/// in order, so the same logits give the same bits whatever the scheduling.
fn rank_mixture_on_host(zs: &[Tensor], weights: &[f64], b0: usize, k: usize, temps: &[f32], nan: NanPolicy) -> Result<Ranked> {
    use rayon::prelude::*;
    let flats: Vec<Vec<f32>> =
        zs.iter().map(|z| Vec::<f32>::try_from(&z.f_to_kind(Kind::Float)?.f_contiguous()?.f_flatten(0, -1)?).map_err(Error::from)).collect::<Result<_>>()?;
    let (b, c) = (zs[0].size()[0] as usize, zs[0].size()[1] as usize);
    let (t, n) = (temps.len(), zs.len());
    let tasks: Vec<MixtureTask> = (0..b.div_ceil(16))
        .into_par_iter()
        .map(|task| {
            let mut p = vec![0f64; c];
            let rows = (task * 16..(task * 16 + 16).min(b))
                .map(|r| {
                    let row: Vec<&[f32]> = flats.iter().map(|f| &f[r * c..(r + 1) * c]).collect();
                    crate::rank::rank_mixture_row(&row, weights, k, temps, Some(&mut p))
                })
                .collect();
            (rows, p)
        })
        .collect();
    let mut out = Ranked {
        keep: vec![],
        idx: vec![],
        logit: vec![],
        lse: vec![],
        log_tail: vec![],
        tail: vec![],
        tail_logit: vec![],
        prior: vec![0.0; c],
        mixture: vec![],
        argmax: vec![],
    };
    let mut r = 0;
    for (rows, p) in tasks {
        out.prior.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
        for res in rows {
            match res {
                Ok(x) => {
                    out.keep.push(true);
                    out.idx.extend(x.ranked.idx.iter().map(|&i| i as i32));
                    out.logit.extend(x.ranked.logit);
                    out.lse.extend(x.ranked.lse);
                    out.log_tail.extend(x.ranked.log_tail);
                    out.mixture.extend(x.values);
                    out.argmax.extend(x.argmax);
                }
                Err((_, class)) if nan == NanPolicy::Fail => return Err(Error::NonFinite { row: (b0 + r) as u64, class: class as u64 }),
                Err(_) => {
                    out.keep.push(false);
                    out.idx.extend(std::iter::repeat_n(0, k));
                    out.logit.extend(std::iter::repeat_n(0.0, k));
                    out.lse.extend(std::iter::repeat_n(0.0, t));
                    out.log_tail.extend(std::iter::repeat_n(0.0, t));
                    out.mixture.extend(std::iter::repeat_n(0.0, (t - 1) * k));
                    out.argmax.extend(std::iter::repeat_n(0, n));
                }
            }
            r += 1;
        }
    }
    Ok(out)
}

/// The ensemble's weights: `given` (one per teacher, positive, finite) or equal ones, normalised.
fn ensemble_weights(teachers: usize, given: &[f64]) -> Result<Vec<f64>> {
    if given.is_empty() {
        return Ok(vec![1.0 / teachers as f64; teachers]);
    }
    if teachers < 2 {
        return Err(Error::invalid("--teacher-weights needs an ensemble: give --teacher two or more times"));
    }
    if given.len() != teachers {
        return Err(Error::invalid(format!("--teacher-weights has {} values for {teachers} teachers", given.len())));
    }
    if let Some(w) = given.iter().find(|w| !(w.is_finite() && **w > 0.0)) {
        return Err(Error::invalid(format!("--teacher-weights: {w} is not a positive number")));
    }
    let sum: f64 = given.iter().sum();
    Ok(given.iter().map(|w| w / sum).collect())
}

/// The device path for one batch: no host sync until its results are read, then three reads: one packed
/// [B, 2K + 2T + 2] block (top-K logits, ids, normalisers, tail masses, first non-finite class,
/// finiteness), the prior, and the tail samples when asked. A row with a non-finite logit is zeroed in
/// place (no [B, C] copy), ranked with the others and dropped on the host, or reported with `--nan fail`.
fn rank_batch(mut z: Tensor, b0: usize, k: usize, temps: &[f32], m: usize, nan: NanPolicy, seed: u64) -> Result<Ranked> {
    let b = z.size()[0] as usize;
    let t = temps.len();
    let bad = z.f_isfinite()?.f_logical_not()?.f_to_kind(Kind::Uint8)?;
    let finite = bad.f_any_dim(1, false)?.f_logical_not()?.f_to_kind(Kind::Float)?;
    let first_bad = bad.f_argmax(1, false)?.f_to_kind(Kind::Int)?.f_view_dtype(Kind::Float)?; // its class, for --nan fail
    let _ = z.f_nan_to_num_(0.0, 0.0, 0.0)?;
    let (vals, idx, lse, tail, samples) = rank_on_device(&z, k as i64, temps, m as i64, seed)?;
    let mut p = z.f_softmax(-1, Kind::Float)?;
    let _ = p.f_mul_(&finite.f_unsqueeze(1)?)?;
    let prior = p.f_sum_dim_intlist([0i64].as_slice(), false, Kind::Double)?;
    let packed = Tensor::f_cat(&[vals, idx.f_view_dtype(Kind::Float)?, lse, tail, first_bad.f_unsqueeze(1)?, finite.f_unsqueeze(1)?], 1)?;
    let packed: Vec<f32> = to_vec(&packed)?;
    let w = 2 * k + 2 * t + 2;
    let mut out = Ranked {
        keep: Vec::with_capacity(b),
        idx: vec![],
        logit: vec![],
        lse: vec![],
        log_tail: vec![],
        tail: vec![],
        tail_logit: vec![],
        prior: to_vec(&prior)?,
        mixture: vec![],
        argmax: vec![],
    };
    for (r, row) in packed.chunks_exact(w).enumerate() {
        let keep = row[w - 1] != 0.0;
        if !keep && nan == NanPolicy::Fail {
            return Err(Error::NonFinite { row: (b0 + r) as u64, class: row[w - 2].to_bits() as u64 });
        }
        out.keep.push(keep);
        out.logit.extend_from_slice(&row[..k]);
        out.idx.extend(row[k..2 * k].iter().map(|v| v.to_bits() as i32));
        out.lse.extend_from_slice(&row[2 * k..2 * k + t]);
        out.log_tail.extend_from_slice(&row[2 * k + t..2 * k + 2 * t]);
    }
    if let Some(s) = samples {
        out.tail_logit = to_vec(&z.f_gather(1, &s, false)?.f_to_kind(Kind::Float)?)?;
        out.tail = to_vec(&s)?;
    }
    Ok(out)
}

fn to_vec<T: tch::kind::Element + Copy>(t: &Tensor) -> Result<Vec<T>> {
    let t = t.f_to_device(Device::Cpu)?.f_contiguous()?.f_flatten(0, -1)?;
    Ok(Vec::<T>::try_from(&t)?)
}

/// The batch when `--batch-size` is not given: the largest power of two whose [B, C] float32 logits fit
/// 32 MiB on the CPU (16..1,024 rows; the CPU path ranks row by row, so the batch only bounds memory:
/// at C = 100k, K = 32 on 2 cores 64 and 1,024 rows run at the same rate, 620–720 rows/s) or 1 GiB on a
/// GPU (up to 4,096 rows; a few such blocks live at once — the logits, their masked copy, the softmax —
/// and small batches leave a GPU launch-bound).
pub fn auto_batch(device: Device, classes: u64) -> usize {
    let (bytes, max) = if device == Device::Cpu { (32usize << 20, 1024) } else { (1usize << 30, 4096) };
    let fit = (bytes / (4 * classes.max(1) as usize)).clamp(16, max);
    1 << fit.ilog2()
}

/// The views a cache holds: `count` per example, drawn from `spec` (see [`crate::data::augment`]).
struct Views {
    count: u32,
    spec: AugmentSpec,
    shape: ImageShape,
}

impl Views {
    fn new(o: &CacheOptions, ds: &Dataset) -> Result<Option<Self>> {
        match (o.views, &o.augment) {
            (0, None) => Ok(None),
            (0, Some(_)) => Err(Error::invalid("--augment needs --views V (how many augmented views of each example to cache)")),
            (v, _) if v > 4096 => Err(Error::invalid(format!("--views {v}: at most 4,096 views per example"))),
            (v, spec) => {
                let shape = ImageShape::of(ds.feature_shape())?;
                Ok(Some(Views { count: v, spec: spec.clone().unwrap_or_default(), shape }))
            }
        }
    }

    /// The signature's augmentation part: the transform, its spec, the view count and the seed.
    fn signature(&self, seed: u64) -> String {
        format!("rrc+flip:{};views={};seed={seed}", self.spec.canonical(), self.count)
    }

    /// Every view of the examples `range`, example-major, as the teacher's input [B·V, …]; their
    /// parameters into `augs` (AUG_DIM per row).
    fn tensor(&self, ds: &Dataset, range: std::ops::Range<usize>, seed: u64, buf: &mut Vec<f32>, augs: &mut Vec<f32>, device: Device) -> Result<Tensor> {
        let per = self.shape.len();
        let mut x = Vec::with_capacity(range.len() * self.count as usize * per);
        let mut out = vec![];
        augs.clear();
        for i in range.clone() {
            ds.x.f32_rows(i..i + 1, buf);
            for v in 0..self.count {
                let a = self.spec.draw(self.shape, seed, i as u64, v);
                crate::data::augment::apply(self.shape, buf, &a, &mut out).map_err(Error::Internal)?;
                x.extend_from_slice(&out);
                augs.extend_from_slice(&a);
            }
        }
        let mut shape = vec![(range.len() * self.count as usize) as i64];
        shape.extend(ds.feature_shape().iter().map(|&d| d as i64));
        Ok(Tensor::f_from_slice(&x)?.f_reshape(&shape)?.f_to_device(device)?)
    }
}

pub fn build_cache(o: &CacheOptions) -> Result<(Manifest, CacheReport)> {
    let t0 = Instant::now();
    let ds = Dataset::open(&o.data, o.labels.as_deref(), &o.split)?;
    if o.teachers.is_empty() {
        return Err(Error::invalid("give a teacher (--teacher), or two or more for an ensemble"));
    }
    let weights = ensemble_weights(o.teachers.len(), &o.teacher_weights)?;
    let ensemble = o.teachers.len() > 1;
    if ensemble && o.tail_samples > 0 {
        return Err(Error::invalid(
            "--tail-samples with an ensemble: a mixture's tail samples would need one logit per class to reweight; cache an ensemble without them",
        ));
    }
    let mut members = vec![];
    for t in &o.teachers {
        members.push(Teacher::load(t, o.device)?);
    }
    if o.batch_size == Some(0) {
        return Err(Error::invalid("--batch-size must be at least 1"));
    }
    let n = ds.len();
    let (lo, hi) = match o.part {
        Some((i, parts)) if parts == 0 || i >= parts => return Err(Error::invalid(format!("--part {i}/{parts}: need 0 <= i < N"))),
        Some((i, parts)) => (n * i / parts, n * (i + 1) / parts),
        None => (0, n),
    };
    // probe: the teacher must accept a data row and give logits [B, C]
    let mut buf = vec![];
    let mut classes = 0u64;
    for (i, (teacher, _)) in members.iter().enumerate() {
        let who = if ensemble { format!("teacher {}", o.teachers[i]) } else { "the teacher".into() };
        let probe = teacher
            .forward(&rows_tensor(&ds, 0..1, &mut buf, o.device)?)
            .map_err(|e| Error::invalid(format!("{who} rejected data row 0 (features of shape {:?}): {e}", ds.feature_shape())))?;
        if probe.dim() != 2 || probe.size()[0] != 1 {
            return Err(Error::invalid(format!("{who}'s output has shape {:?}; expected logits [B, C]", probe.size())));
        }
        let c = probe.size()[1] as u64;
        if i > 0 && c != classes {
            return Err(Error::invalid(format!(
                "the ensemble's teachers give different class counts: {} gives C = {classes}, {} gives C = {c}",
                o.teachers[0], o.teachers[i]
            )));
        }
        classes = c;
    }
    let batch_size = o.batch_size.unwrap_or_else(|| auto_batch(o.device, classes));
    let views = Views::new(o, &ds)?;
    // the teacher sees `vv` rows per example: a batch of `batch_size` rows holds `eb` examples
    let vv = views.as_ref().map_or(1, |v| v.count as usize);
    let eb = (batch_size / vv).max(1);
    ds.check_labels(classes)?;
    let k = crate::import::clamp_k(o.k, classes, o.progress);
    let spec = RowSpec {
        classes,
        k,
        temperatures: o.temperatures.clone(),
        tail_samples: o.tail_samples,
        aug_dim: if views.is_some() { AUG_DIM } else { 0 },
        logit_dtype: o.dtype,
        tail_logit: true,
        mixture: ensemble,
    };
    spec.validate()?;
    if o.tail_samples > 0 && k as u64 == classes {
        return Err(Error::invalid("--tail-samples needs K < C: with K = C there is no tail to sample"));
    }
    // the rows depend on the path that computed them (the CPU ranks in f64 with Rust's tie order, a
    // GPU in f32 with torch's) and on the tail samples' seed: both are part of the teacher's identity,
    // so a resume or a merge never mixes rows of two paths
    let path = if o.device == Device::Cpu { "cpu" } else { "cuda" };
    let teacher_fp = if ensemble {
        let parts: Vec<String> = members.iter().zip(&weights).map(|((_, fp), w)| format!("{w}*{fp}")).collect();
        format!("ensemble({})", parts.join("+"))
    } else {
        members[0].1.clone()
    };
    let signature = Signature {
        teacher: if o.tail_samples > 0 { format!("{teacher_fp};path={path};seed={}", o.seed) } else { format!("{teacher_fp};path={path}") },
        dataset: ds.signature(),
        classes: format!("C={classes}"),
        augmentation: views.as_ref().map_or("none".into(), |v| v.signature(o.seed)),
    };
    let part = o.part.map(|(i, p)| format!("{i}/{p}"));
    // shards hold whole batches, so a resumed run recomputes exactly the batches it lost
    let mut wopts = o.writer.clone();
    wopts.shard_rows = wopts.shard_rows.div_ceil(eb * vv) * eb * vv;
    std::fs::create_dir_all(&o.out).ctx(&o.out)?;
    let _lock = crate::fsio::DirLock::acquire(&o.out, "cache")?;
    let mut writer = CacheWriter::create(&o.out, &spec, signature, wopts, part)?;
    if ensemble {
        let m: Vec<(String, f64)> = members.iter().zip(&weights).map(|((_, fp), &w)| (fp.clone(), w)).collect();
        writer.set_members(&m);
    }
    let resumed = writer.next_example().map(|r| r as usize).unwrap_or(lo).max(lo);
    let resumed_from = writer.rows_written();
    let mut bar = crate::progress::Progress::new((hi - lo) as u64, "cache", "rows", o.progress);
    bar.set_position((resumed - lo) as u64);

    let setup_s = t0.elapsed().as_secs_f64();
    let (tx, rx) = mpsc::sync_channel::<(RowBatch, Vec<f64>, Vec<[u64; 2]>)>(2);
    let writer_thread = std::thread::spawn(move || -> Result<CacheWriter> {
        for (batch, prior, counts) in rx {
            if !counts.is_empty() {
                writer.add_member_counts(&counts);
            }
            writer.push(&batch, Some(&prior))?;
        }
        Ok(writer)
    });
    let labels: Vec<i64> = (0..n).map(|i| ds.label(i)).collect();
    let (t, m) = (o.temperatures.len(), o.tail_samples);
    let mut forward_s = 0.0;
    let mut skipped = 0u64;
    let mut result: Result<()> = Ok(());
    // batches are aligned to lo + j·B whatever the resume point, so tail samples (seeded per batch) repeat
    let first_batch = lo + (resumed - lo) / eb * eb;
    let mut augs: Vec<f32> = vec![];
    for b0 in (first_batch..hi).step_by(eb) {
        let b1 = (b0 + eb).min(hi);
        let nr = (b1 - b0) * vv; // the teacher's rows: every view of every example
        let mut step = || -> Result<Ranked> {
            let x = match &views {
                Some(v) => v.tensor(&ds, b0..b1, o.seed, &mut buf, &mut augs, o.device)?,
                None => rows_tensor(&ds, b0..b1, &mut buf, o.device)?,
            };
            sync(o.device);
            let tf = Instant::now();
            let mut zs = vec![];
            for (i, (teacher, _)) in members.iter().enumerate() {
                let who = if ensemble { format!("teacher {}", o.teachers[i]) } else { "the teacher".into() };
                let z = teacher.forward(&x).map_err(|e| Error::invalid(format!("{who} rejected rows {b0}..{b1}: {e}")))?;
                if z.size() != [nr as i64, classes as i64] {
                    return Err(Error::invalid(format!("{who} gave logits of shape {:?} for {nr} rows; expected [{nr}, {classes}]", z.size())));
                }
                zs.push(z);
            }
            sync(o.device);
            forward_s += tf.elapsed().as_secs_f64();
            if ensemble {
                return rank_mixture_on_host(&zs, &weights, b0 * vv, k, &o.temperatures, o.nan);
            }
            let z = zs.pop().expect("one teacher");
            if o.device == Device::Cpu && m == 0 {
                return rank_on_host(&z, b0 * vv, k, &o.temperatures, o.nan);
            }
            rank_batch(z, b0 * vv, k, &o.temperatures, m, o.nan, o.seed ^ b0 as u64)
        };
        // a row of the teacher's batch is view j % vv of example b0 + j / vv: errors name the example
        let r = match step().map_err(|e| match e {
            Error::NonFinite { row, class } => Error::NonFinite { row: row / vv as u64, class },
            e => e,
        }) {
            Ok(r) => r,
            Err(e) => {
                result = Err(e);
                break;
            }
        };
        let mut batch = RowBatch::new(&spec);
        let (nm, mv) = (members.len(), spec.mixture_values());
        let mut counts = vec![[0u64; 2]; if ensemble { nm } else { 0 }];
        for (j, &keep) in r.keep.iter().enumerate() {
            let i = b0 + j / vv;
            if !keep {
                skipped += 1;
                continue;
            }
            if i < resumed {
                continue; // already written before the interruption
            }
            let ids: Vec<u32> = r.idx[j * k..(j + 1) * k].iter().map(|&c| c as u32).collect();
            let (lse, log_tail) = (&r.lse[j * t..(j + 1) * t], &r.log_tail[j * t..(j + 1) * t]);
            let mut tail = None;
            if m > 0 {
                // the draws as distinct classes with counts, each with its logit
                let mut s: Vec<(i64, f32)> = r.tail[j * m..(j + 1) * m].iter().copied().zip(r.tail_logit[j * m..(j + 1) * m].iter().copied()).collect();
                s.sort_unstable_by_key(|e| e.0);
                let (mut ids, mut cnt, mut zs) = (vec![], vec![], vec![]);
                for (c, zc) in s {
                    if ids.last() == Some(&(c as u32)) {
                        *cnt.last_mut().expect("paired") += 1;
                    } else {
                        ids.push(c as u32);
                        cnt.push(1u32);
                        zs.push(zc);
                    }
                }
                ids.resize(m, 0);
                cnt.resize(m, 0);
                zs.resize(m, f32::NEG_INFINITY);
                tail = Some((ids, cnt, zs));
            }
            let tail_ref = tail.as_ref().map(|(a, b, c)| Tail { idx: a, cnt: b, logit: c });
            batch.push_row(i as u64, (j % vv) as u32, labels[i], &ids, &r.logit[j * k..(j + 1) * k], lse, log_tail, tail_ref);
            if views.is_some() {
                batch.aug.extend_from_slice(&augs[j * AUG_DIM..(j + 1) * AUG_DIM]);
            }
            if ensemble {
                if mv > 0 {
                    batch.push_mixture_values(&r.mixture[j * mv..(j + 1) * mv]);
                }
                for (c, &a) in counts.iter_mut().zip(&r.argmax[j * nm..(j + 1) * nm]) {
                    c[0] += (labels[i] >= 0 && a as i64 == labels[i]) as u64;
                    c[1] += (a as i32 == r.idx[j * k]) as u64;
                }
            }
        }
        if tx.send((batch, r.prior, counts)).is_err() {
            break; // the writer failed; its error is reported below
        }
        bar.advance_to((b1 - lo) as u64, "");
        if crate::progress::interrupted() {
            result = Err(Error::Interrupted);
            break;
        }
    }
    drop(tx);
    let t_end = Instant::now();
    let writer = writer_thread.join().map_err(|_| Error::Internal("writer thread panicked".into()))??;
    result?;
    bar.finish_and_clear();
    let m = writer.finish((hi - lo) as u64, vv as u32, &format!("kdcache cache --teacher {}", o.teachers.join(" --teacher ")))?;
    let wall_s = t0.elapsed().as_secs_f64();
    let done = ((hi - resumed) * vv) as f64; // cache rows: every view the teacher saw
    let report = CacheReport {
        rows: m.rows,
        skipped_nonfinite: skipped,
        resumed_from,
        wall_s,
        forward_s,
        rows_per_s: done / wall_s.max(1e-9),
        overhead_share: if wall_s > 0.0 { 1.0 - forward_s / wall_s } else { 0.0 },
        device: format!("{:?}", o.device),
        batch_size,
        setup_s,
        finish_s: t_end.elapsed().as_secs_f64(),
    };
    Ok((m, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_batch_fits_the_device() {
        assert_eq!(auto_batch(Device::Cpu, 20_000), 256);
        assert_eq!(auto_batch(Device::Cpu, 100_000), 64);
        assert_eq!(auto_batch(Device::Cpu, 10), 1024);
        assert_eq!(auto_batch(Device::Cpu, 100_000_000), 16);
        assert_eq!(auto_batch(Device::Cuda(0), 100_000), 2048);
        assert_eq!(auto_batch(Device::Cuda(0), 1_000_000), 256);
        assert_eq!(auto_batch(Device::Cuda(0), 1000), 4096);
    }

    /// A replayed view is the very tensor the teacher saw: the cache's stored parameters, re-applied by
    /// the trainer's gather, give the teacher's input bit for bit, for every row.
    #[test]
    fn a_replayed_view_is_the_input_the_teacher_saw() {
        let t = tempfile::tempdir().unwrap();
        let (n, shape) = (7usize, [2usize, 5, 6]);
        let per: usize = shape.iter().product();
        let x: Vec<f32> = (0..n * per).map(|i| ((i as f32) * 0.7311).sin()).collect();
        let data = t.path().join("x.npy");
        crate::data::array::write_npy(&data, crate::data::array::ArrayDtype::F32, &[n, 2, 5, 6], bytemuck::cast_slice(&x)).unwrap();
        let opts = |views: u32, out: &str| CacheOptions {
            teachers: vec!["identity".into()],
            teacher_weights: vec![],
            data: data.clone(),
            labels: None,
            split: "train".into(),
            out: t.path().join(out),
            k: 4,
            temperatures: vec![1.0],
            tail_samples: 0,
            dtype: LogitDtype::F32,
            writer: WriterOptions { block_rows: 4, ..Default::default() },
            device: Device::Cpu,
            batch_size: Some(6), // two examples of three views a batch: views of one example never split
            part: None,
            nan: NanPolicy::Fail,
            seed: 11,
            views,
            augment: Some(AugmentSpec::parse("scale=0.2:0.9,ratio=0.5:2,flip=0.5").unwrap()),
            progress: false,
        };
        let (m, _) = build_cache(&opts(3, "c")).unwrap();
        assert_eq!((m.rows, m.examples, m.views, m.aug_dim), (21, 7, 3, AUG_DIM));
        assert!(m.signature.augmentation.contains("views=3;seed=11"), "{}", m.signature.augmentation);
        let ds = Dataset::open(&data, None, "train").unwrap();
        let v = Views::new(&opts(3, "c"), &ds).unwrap().unwrap();
        let (mut buf, mut augs) = (vec![], vec![]);
        let seen: Vec<f32> = Vec::try_from(&v.tensor(&ds, 0..n, 11, &mut buf, &mut augs, Device::Cpu).unwrap().f_flatten(0, -1).unwrap()).unwrap();
        let reader = crate::format::CacheReader::open(&t.path().join("c")).unwrap();
        let rows = reader.get_rows(0..reader.rows()).unwrap();
        let replayed: Vec<f32> = Vec::try_from(&crate::train::gather(&ds, &rows, reader.dir(), Device::Cpu).unwrap().f_flatten(0, -1).unwrap()).unwrap();
        let mut flips = 0;
        for j in 0..rows.len() {
            let (e, view) = (rows.row[j] as usize, rows.view[j] as usize);
            let teacher_saw = &seen[(e * 3 + view) * per..(e * 3 + view + 1) * per];
            let student_gets = &replayed[j * per..(j + 1) * per];
            assert!(teacher_saw.iter().zip(student_gets).all(|(a, b)| a.to_bits() == b.to_bits()), "example {e} view {view}");
            // and the identity teacher ranked exactly those pixels
            let top = teacher_saw.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
            assert_eq!(rows.topk_idx[j * rows.k] as usize, top, "example {e} view {view}");
            flips += rows.aug[j * AUG_DIM + 4] as usize;
        }
        assert!(flips > 0 && flips < rows.len(), "{flips} flipped views of {}", rows.len());
        // the views differ from the untransformed example
        assert_ne!(&seen[..per], &x[..per]);
        // --views on vector rows, --augment alone: refused
        let flat = t.path().join("v.npy");
        crate::data::array::write_npy(&flat, crate::data::array::ArrayDtype::F32, &[n, per], bytemuck::cast_slice(&x)).unwrap();
        let mut o = opts(3, "d");
        o.data = flat;
        assert!(build_cache(&o).unwrap_err().to_string().contains("--views needs image rows"));
        assert!(build_cache(&opts(0, "e")).unwrap_err().to_string().contains("--augment needs --views"));
    }
}
