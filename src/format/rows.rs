//! The columnar in-memory form of cache rows, shared by every encoding.
use half::{bf16, f16};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How the top-K logits are stored on disk (and held in a [`RowBatch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogitDtype {
    #[default]
    F16,
    Bf16,
    F32,
}

impl std::str::FromStr for LogitDtype {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f16" => Ok(LogitDtype::F16),
            "bf16" => Ok(LogitDtype::Bf16),
            "f32" => Ok(LogitDtype::F32),
            _ => Err(Error::invalid(format!("unknown logit dtype {s:?}: use f16, bf16 or f32"))),
        }
    }
}

impl LogitDtype {
    pub fn width(self) -> usize {
        match self {
            LogitDtype::F16 | LogitDtype::Bf16 => 2,
            LogitDtype::F32 => 4,
        }
    }
    /// Relative rounding error of one stored value (half an ulp).
    pub fn eps(self) -> f64 {
        match self {
            LogitDtype::F16 => 2f64.powi(-11),
            LogitDtype::Bf16 => 2f64.powi(-8),
            LogitDtype::F32 => 2f64.powi(-24),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            LogitDtype::F16 => "f16",
            LogitDtype::Bf16 => "bf16",
            LogitDtype::F32 => "f32",
        }
    }
}

/// The shape of every row of a cache: what the manifest and each shard header declare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowSpec {
    pub classes: u64,
    pub k: usize,
    pub temperatures: Vec<f32>,
    pub tail_samples: usize,
    pub aug_dim: usize,
    pub logit_dtype: LogitDtype,
    /// The tail samples carry their values (`tail_logit`, format 3 on): what reweights them to another
    /// temperature than the first. Meaningless without tail samples.
    #[serde(default)]
    pub tail_logit: bool,
    /// The rows hold an ensemble's mixture of tempered distributions (format 4): one set of values per
    /// temperature (`topk_logit_t` beyond the first), `lse` 0.
    #[serde(default)]
    pub mixture: bool,
}

/// Limits that keep a hostile file from asking for absurd allocations.
pub const MAX_K: usize = 1 << 16;
pub const MAX_T: usize = 64;
pub const MAX_M: usize = 1 << 16;
pub const MAX_AUG: usize = 1 << 12;
pub const MAX_CLASSES: u64 = u32::MAX as u64;

impl RowSpec {
    pub fn t(&self) -> usize {
        self.temperatures.len()
    }

    /// Whether rows have a `tail_logit` column: tail samples, with their values.
    pub fn has_tail_logit(&self) -> bool {
        self.tail_logit && self.tail_samples > 0
    }

    /// Values per row in the `topk_logit_t` column: (T − 1)·K in a mixture's cache, else 0.
    pub fn mixture_values(&self) -> usize {
        if self.mixture { self.t().saturating_sub(1) * self.k } else { 0 }
    }

    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::invalid(m));
        if self.mixture && self.tail_samples > 0 {
            return bad("an ensemble's cache holds no tail samples (their reweighting needs one logit per class)".into());
        }
        if self.classes == 0 || self.classes > MAX_CLASSES {
            return bad(format!("class count C = {} is out of range 1..={MAX_CLASSES}", self.classes));
        }
        if self.k == 0 || self.k > MAX_K {
            return bad(format!("top-K = {} is out of range 1..={MAX_K}", self.k));
        }
        if self.k as u64 > self.classes {
            return bad(format!("top-K = {} exceeds the class count C = {}", self.k, self.classes));
        }
        if self.temperatures.is_empty() || self.temperatures.len() > MAX_T {
            return bad(format!("need 1..={MAX_T} temperatures, got {}", self.temperatures.len()));
        }
        if let Some(t) = self.temperatures.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
            return bad(format!("temperature {t} must be a finite number > 0"));
        }
        if self.tail_samples > MAX_M {
            return bad(format!("tail samples M = {} exceeds {MAX_M}", self.tail_samples));
        }
        if self.aug_dim > MAX_AUG {
            return bad(format!("aug_dim = {} exceeds {MAX_AUG}", self.aug_dim));
        }
        Ok(())
    }
}

/// What a stored top-K value is measured from (the manifest's `format_version` says which).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LogitBase {
    /// Format 1: the teacher's logit z itself. In 16 bits a logit near ±25 keeps only ~0.01 of absolute
    /// precision, so probabilities recomputed from it can exceed 1.
    Absolute,
    /// Format 2: z − T0·lse(T0) = T0·log p(T0), T0 the cache's first temperature: never above 0, and near 0
    /// where the teacher's mass is, where a 16-bit float is most precise.
    LogProb { t0: f32 },
}

/// Top-K logits in their storage dtype (converting on read would cost more than the decode).
#[derive(Debug, Clone, PartialEq)]
pub enum Logits {
    F16(Vec<f16>),
    Bf16(Vec<bf16>),
    F32(Vec<f32>),
}

impl Logits {
    pub fn new(dtype: LogitDtype) -> Self {
        match dtype {
            LogitDtype::F16 => Logits::F16(Vec::new()),
            LogitDtype::Bf16 => Logits::Bf16(Vec::new()),
            LogitDtype::F32 => Logits::F32(Vec::new()),
        }
    }
    pub fn dtype(&self) -> LogitDtype {
        match self {
            Logits::F16(_) => LogitDtype::F16,
            Logits::Bf16(_) => LogitDtype::Bf16,
            Logits::F32(_) => LogitDtype::F32,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Logits::F16(v) => v.len(),
            Logits::Bf16(v) => v.len(),
            Logits::F32(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    #[inline]
    pub fn get(&self, i: usize) -> f32 {
        match self {
            Logits::F16(v) => v[i].to_f32(),
            Logits::Bf16(v) => v[i].to_f32(),
            Logits::F32(v) => v[i],
        }
    }
    pub fn push(&mut self, x: f32) {
        match self {
            Logits::F16(v) => v.push(f16::from_f32(x)),
            Logits::Bf16(v) => v.push(bf16::from_f32(x)),
            Logits::F32(v) => v.push(x),
        }
    }
    /// All values as f32 (allocates).
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            Logits::F16(v) => {
                let mut out = vec![0f32; v.len()];
                half::slice::HalfFloatSliceExt::convert_to_f32_slice(&v[..], &mut out);
                out
            }
            Logits::Bf16(v) => v.iter().map(|x| x.to_f32()).collect(),
            Logits::F32(v) => v.clone(),
        }
    }
    /// Raw little-endian bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Logits::F16(v) => bytemuck::cast_slice(v),
            Logits::Bf16(v) => bytemuck::cast_slice(v),
            Logits::F32(v) => bytemuck::cast_slice(v),
        }
    }
    fn extend_from(&mut self, other: &Logits, range: std::ops::Range<usize>) {
        match (self, other) {
            (Logits::F16(a), Logits::F16(b)) => a.extend_from_slice(&b[range]),
            (Logits::Bf16(a), Logits::Bf16(b)) => a.extend_from_slice(&b[range]),
            (Logits::F32(a), Logits::F32(b)) => a.extend_from_slice(&b[range]),
            (a, b) => {
                for i in range {
                    a.push(b.get(i))
                }
            }
        }
    }
}

/// One row's tail samples, as a producer hands them to [`RowBatch::push_row`]: M classes, their counts
/// and the teacher's logits z of those classes (the same scale as the top-K logits).
#[derive(Debug, Clone, Copy)]
pub struct Tail<'a> {
    pub idx: &'a [u32],
    pub cnt: &'a [u32],
    pub logit: &'a [f32],
}

/// Cache rows, column by column. Row i's top-K ids are `topk_idx[i*k .. (i+1)*k]`, and so on.
#[derive(Debug, Clone, PartialEq)]
pub struct RowBatch {
    pub k: usize,
    pub t: usize,
    pub m: usize,
    pub aug_dim: usize,
    pub row: Vec<u64>,
    pub view: Vec<u32>,
    pub label: Vec<i64>,
    pub topk_idx: Vec<u32>,
    /// Stored values: see [`RowBatch::base`] and [`RowRef::logit`].
    pub topk_logit: Logits,
    pub lse: Vec<f32>,
    pub log_tail: Vec<f32>,
    pub tail_idx: Vec<u32>,
    pub tail_cnt: Vec<u32>,
    /// The tail samples' values, stored as `topk_logit` is (−inf in unused slots); empty when the cache
    /// has no `tail_logit` column ([`RowBatch::tail_values`] says which).
    pub tail_logit: Logits,
    pub tail_values: bool,
    /// A mixture's values at the temperatures after the first ((T−1)·K per row, temperature-major:
    /// `T·log p_T(r)`); empty unless [`RowBatch::mixture`].
    pub topk_logit_t: Logits,
    pub mixture: bool,
    pub aug: Vec<f32>,
    /// What `topk_logit` is measured from.
    pub base: LogitBase,
}

/// One row, borrowed from a [`RowBatch`].
#[derive(Debug, Clone, Copy)]
pub struct RowRef<'a> {
    pub batch: &'a RowBatch,
    pub i: usize,
}

impl<'a> RowRef<'a> {
    pub fn row(&self) -> u64 {
        self.batch.row[self.i]
    }
    pub fn view(&self) -> u32 {
        self.batch.view[self.i]
    }
    pub fn label(&self) -> i64 {
        self.batch.label[self.i]
    }
    pub fn topk_idx(&self) -> &'a [u32] {
        let k = self.batch.k;
        &self.batch.topk_idx[self.i * k..(self.i + 1) * k]
    }
    /// Rank r's value as stored (see [`LogitBase`]).
    pub fn stored(&self, r: usize) -> f32 {
        self.batch.topk_logit.get(self.i * self.batch.k + r)
    }
    /// The teacher's logit z at rank r.
    pub fn logit(&self, r: usize) -> f32 {
        (self.logit_f64(r)) as f32
    }
    fn logit_f64(&self, r: usize) -> f64 {
        self.value_logit(self.stored(r) as f64)
    }
    /// The logit z a stored value (top-K or tail) measures.
    fn value_logit(&self, v: f64) -> f64 {
        match self.batch.base {
            LogitBase::Absolute => v,
            LogitBase::LogProb { t0 } => v + t0 as f64 * self.batch.lse[self.i * self.batch.t] as f64,
        }
    }
    /// The log-probability a stored value (top-K or tail) measures at the `ti`-th cached temperature
    /// `temp`: z/T − lse(T), never above 0. The one place the format's formula is written.
    fn value_log_prob(&self, v: f64, ti: usize, temp: f64) -> f64 {
        let x = match self.batch.base {
            // at T0 the stored value is T0·log p itself: no cancellation
            LogitBase::LogProb { t0 } if ti == 0 => v / t0 as f64,
            _ => self.value_logit(v) / temp - self.lse()[ti] as f64,
        };
        x.min(0.0)
    }
    /// Rank r's value at the `ti`-th temperature in a mixture's cache, `T·log p_T(r)` (ti ≥ 1).
    fn mixture_stored(&self, r: usize, ti: usize) -> f32 {
        let k = self.batch.k;
        self.batch.topk_logit_t.get(self.i * (self.batch.t - 1) * k + (ti - 1) * k + r)
    }
    /// The teacher's log-probability of rank r at the `ti`-th cached temperature `temp`:
    /// z/T − lse(T), never above 0 (a mixture's: its own value at that temperature over T).
    pub fn log_prob(&self, r: usize, ti: usize, temp: f64) -> f64 {
        if self.batch.mixture && ti > 0 {
            return (self.mixture_stored(r, ti) as f64 / temp).min(0.0);
        }
        self.value_log_prob(self.stored(r) as f64, ti, temp)
    }
    /// [`RowRef::log_prob`] of all K ranks, into `out` (K values): the same formula, in one pass over the
    /// row (`scratch` holds the stored values as f32).
    pub fn log_probs(&self, ti: usize, temp: f64, scratch: &mut Vec<f32>, out: &mut [f32]) {
        let k = self.batch.k;
        let (values, range) = if self.batch.mixture && ti > 0 {
            let at = self.i * (self.batch.t - 1) * k + (ti - 1) * k;
            (&self.batch.topk_logit_t, at..at + k)
        } else {
            (&self.batch.topk_logit, self.i * k..(self.i + 1) * k)
        };
        scratch.clear();
        match values {
            Logits::F16(v) => {
                scratch.resize(k, 0.0);
                half::slice::HalfFloatSliceExt::convert_to_f32_slice(&v[range], scratch);
            }
            Logits::Bf16(v) => scratch.extend(v[range].iter().map(|x| x.to_f32())),
            Logits::F32(v) => scratch.extend_from_slice(&v[range]),
        }
        if self.batch.mixture && ti > 0 {
            for (o, &s) in out.iter_mut().zip(scratch.iter()) {
                *o = (s as f64 / temp).min(0.0) as f32;
            }
            return;
        }
        match self.batch.base {
            LogitBase::LogProb { t0 } if ti == 0 => {
                let t0 = t0 as f64;
                for (o, &s) in out.iter_mut().zip(scratch.iter()) {
                    *o = (s as f64 / t0).min(0.0) as f32;
                }
            }
            base => {
                let shift = match base {
                    LogitBase::Absolute => 0.0,
                    LogitBase::LogProb { t0 } => t0 as f64 * self.lse()[0] as f64,
                };
                let lse = self.lse()[ti] as f64;
                for (o, &s) in out.iter_mut().zip(scratch.iter()) {
                    *o = ((s as f64 + shift) / temp - lse).min(0.0) as f32;
                }
            }
        }
    }
    /// The teacher's probability of rank r at the `ti`-th cached temperature `temp`: exp of
    /// [`RowRef::log_prob`], never above 1.
    pub fn prob(&self, r: usize, ti: usize, temp: f64) -> f64 {
        self.log_prob(r, ti, temp).exp()
    }
    /// The teacher's mass outside the top-K at the `ti`-th temperature, in [0, 1].
    pub fn tail_mass(&self, ti: usize) -> f64 {
        (self.log_tail()[ti] as f64).exp().min(1.0)
    }
    pub fn lse(&self) -> &'a [f32] {
        let t = self.batch.t;
        &self.batch.lse[self.i * t..(self.i + 1) * t]
    }
    pub fn log_tail(&self) -> &'a [f32] {
        let t = self.batch.t;
        &self.batch.log_tail[self.i * t..(self.i + 1) * t]
    }
    pub fn tail_idx(&self) -> &'a [u32] {
        let m = self.batch.m;
        &self.batch.tail_idx[self.i * m..(self.i + 1) * m]
    }
    pub fn tail_cnt(&self) -> &'a [u32] {
        let m = self.batch.m;
        &self.batch.tail_cnt[self.i * m..(self.i + 1) * m]
    }
    /// Tail sample slot s's value as stored (−inf for an unused slot); None when the cache stores none.
    pub fn tail_stored(&self, s: usize) -> Option<f32> {
        self.batch.tail_values.then(|| self.batch.tail_logit.get(self.i * self.batch.m + s))
    }
    /// The teacher's logit z of tail sample slot s's class (−inf for an unused slot); None when the
    /// cache stores no tail values (before format 3).
    pub fn tail_logit(&self, s: usize) -> Option<f64> {
        Some(self.value_logit(self.tail_stored(s)? as f64))
    }
    /// The teacher's log-probability of tail sample slot s's class at the `ti`-th cached temperature
    /// `temp` (−inf for an unused slot); None when the cache stores no tail values (before format 3).
    pub fn tail_log_prob(&self, s: usize, ti: usize, temp: f64) -> Option<f64> {
        Some(self.value_log_prob(self.tail_stored(s)? as f64, ti, temp))
    }
    /// The target mass of each tail sample slot at the `ti`-th temperature `temp`, into `out` (M values):
    /// the samples were drawn from the tail distribution at T0, q0(j) = p_T0(j)/τ_T0, so slot j, drawn
    /// n_j of n times, carries τ_T·(n_j/n)·q(j)/q0(j) = (n_j/n)·τ_T0·p_T(j)/p_T0(j) (an importance
    /// weight: unbiased for the tail at T; at T0 it is τ_T0·n_j/n). 0 for unused slots. Without stored
    /// tail values (before format 3) the weights are T0's, unbiased only there (the trainer refuses
    /// another temperature on such caches).
    pub fn tail_weights(&self, ti: usize, temp: f64, out: &mut [f64]) {
        let cnt = self.tail_cnt();
        let total: u32 = cnt.iter().sum();
        let (tau, lt0) = (self.tail_mass(ti), self.log_tail()[0] as f64);
        for (s, (o, &c)) in out.iter_mut().zip(cnt).enumerate() {
            let share = if total > 0 { c as f64 / total as f64 } else { 0.0 };
            *o = match (self.tail_log_prob(s, ti, temp), self.tail_log_prob(s, 0, temp)) {
                _ if c == 0 => 0.0,
                (Some(lp), Some(lp0)) if ti != 0 => share * (lp - lp0 + lt0).exp(),
                _ => tau * share,
            };
        }
    }
    pub fn aug(&self) -> &'a [f32] {
        let a = self.batch.aug_dim;
        &self.batch.aug[self.i * a..(self.i + 1) * a]
    }
}

impl RowBatch {
    pub fn new(spec: &RowSpec) -> Self {
        RowBatch {
            k: spec.k,
            t: spec.t(),
            m: spec.tail_samples,
            aug_dim: spec.aug_dim,
            row: vec![],
            view: vec![],
            label: vec![],
            topk_idx: vec![],
            topk_logit: Logits::new(spec.logit_dtype),
            lse: vec![],
            log_tail: vec![],
            tail_idx: vec![],
            tail_cnt: vec![],
            tail_logit: Logits::new(spec.logit_dtype),
            tail_values: spec.has_tail_logit(),
            topk_logit_t: Logits::new(spec.logit_dtype),
            mixture: spec.mixture,
            aug: vec![],
            base: LogitBase::LogProb { t0: spec.temperatures.first().copied().unwrap_or(1.0) },
        }
    }

    /// Appends one ranked row: the classes `ids` by descending logit `logits` (K each), the log-normaliser
    /// and log tail mass at each temperature (T each), and the tail samples: classes, counts and logits
    /// (M each; a count of 0 marks an unused slot, whose logit is ignored; None when the cache has none).
    /// The one way a producer adds a row: the values are stored as [`RowBatch::base`] says.
    #[allow(clippy::too_many_arguments)]
    pub fn push_row(&mut self, row: u64, view: u32, label: i64, ids: &[u32], logits: &[f32], lse: &[f32], log_tail: &[f32], tail: Option<Tail<'_>>) {
        debug_assert!(ids.len() == self.k && logits.len() == self.k && lse.len() == self.t && log_tail.len() == self.t);
        self.row.push(row);
        self.view.push(view);
        self.label.push(label);
        self.topk_idx.extend_from_slice(ids);
        let shift = match self.base {
            LogitBase::Absolute => 0.0,
            LogitBase::LogProb { t0 } => t0 as f64 * lse[0] as f64,
        };
        // T0·log p is ≤ 0 by construction; rounding must not carry a value above the normaliser
        let log_prob = matches!(self.base, LogitBase::LogProb { .. });
        let store = |z: f64| (if log_prob { (z - shift).min(0.0) } else { z - shift }) as f32;
        for &z in logits {
            self.topk_logit.push(store(z as f64));
        }
        self.lse.extend_from_slice(lse);
        self.log_tail.extend_from_slice(log_tail);
        if let Some(t) = tail {
            self.tail_idx.extend_from_slice(t.idx);
            self.tail_cnt.extend_from_slice(t.cnt);
            if self.tail_values {
                for (&z, &c) in t.logit.iter().zip(t.cnt) {
                    self.tail_logit.push(if c == 0 { f32::NEG_INFINITY } else { store(z as f64) });
                }
            }
        }
    }

    /// Appends the last pushed row's values at the temperatures after the first, in a mixture's cache:
    /// (T−1)·K values `T·log p_T(r)`, temperature-major, in the order of its top-K ids.
    pub fn push_mixture_values(&mut self, values: &[f32]) {
        debug_assert!(self.mixture && values.len() == (self.t - 1) * self.k);
        for &v in values {
            self.topk_logit_t.push(v.min(0.0));
        }
    }

    /// Values per row of `topk_logit_t`.
    pub fn mixture_values(&self) -> usize {
        if self.mixture { self.t.saturating_sub(1) * self.k } else { 0 }
    }

    pub fn len(&self) -> usize {
        self.row.len()
    }
    pub fn is_empty(&self) -> bool {
        self.row.is_empty()
    }
    pub fn get(&self, i: usize) -> RowRef<'_> {
        RowRef { batch: self, i }
    }

    /// Checks that every column has the length the row count implies.
    pub fn check_lengths(&self) -> Result<()> {
        let n = self.len();
        let ok = self.view.len() == n
            && self.label.len() == n
            && self.topk_idx.len() == n * self.k
            && self.topk_logit.len() == n * self.k
            && self.lse.len() == n * self.t
            && self.log_tail.len() == n * self.t
            && self.tail_idx.len() == n * self.m
            && self.tail_cnt.len() == n * self.m
            && self.tail_logit.len() == if self.tail_values { n * self.m } else { 0 }
            && self.topk_logit_t.len() == n * self.mixture_values()
            && self.aug.len() == n * self.aug_dim;
        if ok { Ok(()) } else { Err(Error::Internal("RowBatch columns have inconsistent lengths".into())) }
    }

    /// Appends rows `range` of `other` (same spec) to this batch.
    pub fn extend_rows(&mut self, other: &RowBatch, range: std::ops::Range<usize>) {
        let (a, b) = (range.start, range.end);
        self.row.extend_from_slice(&other.row[a..b]);
        self.view.extend_from_slice(&other.view[a..b]);
        self.label.extend_from_slice(&other.label[a..b]);
        self.topk_idx.extend_from_slice(&other.topk_idx[a * self.k..b * self.k]);
        if self.base == other.base {
            self.topk_logit.extend_from(&other.topk_logit, a * self.k..b * self.k);
        } else {
            // rows read from a cache of another format version: re-express their logits
            for i in a..b {
                let r = other.get(i);
                let shift = match self.base {
                    LogitBase::Absolute => 0.0,
                    LogitBase::LogProb { t0 } => t0 as f64 * r.lse()[0] as f64,
                };
                for j in 0..self.k {
                    self.topk_logit.push((r.logit_f64(j) - shift) as f32);
                }
            }
        }
        self.lse.extend_from_slice(&other.lse[a * self.t..b * self.t]);
        self.log_tail.extend_from_slice(&other.log_tail[a * self.t..b * self.t]);
        self.tail_idx.extend_from_slice(&other.tail_idx[a * self.m..b * self.m]);
        self.tail_cnt.extend_from_slice(&other.tail_cnt[a * self.m..b * self.m]);
        if self.tail_values && other.tail_values {
            // tail values exist from format 3 on, whose base is always T0·log p: nothing to re-express
            self.tail_logit.extend_from(&other.tail_logit, a * self.m..b * self.m);
        }
        if self.mixture && other.mixture {
            let mv = self.mixture_values();
            self.topk_logit_t.extend_from(&other.topk_logit_t, a * mv..b * mv);
        }
        self.aug.extend_from_slice(&other.aug[a * self.aug_dim..b * self.aug_dim]);
    }

    pub fn slice(&self, range: std::ops::Range<usize>) -> RowBatch {
        let mut out = self.empty_like();
        out.extend_rows(self, range);
        out
    }

    pub fn empty_like(&self) -> RowBatch {
        RowBatch {
            k: self.k,
            t: self.t,
            m: self.m,
            aug_dim: self.aug_dim,
            row: vec![],
            view: vec![],
            label: vec![],
            topk_idx: vec![],
            topk_logit: Logits::new(self.topk_logit.dtype()),
            lse: vec![],
            log_tail: vec![],
            tail_idx: vec![],
            tail_cnt: vec![],
            tail_logit: Logits::new(self.tail_logit.dtype()),
            tail_values: self.tail_values,
            topk_logit_t: Logits::new(self.topk_logit_t.dtype()),
            mixture: self.mixture,
            aug: vec![],
            base: self.base,
        }
    }

    /// The rows `perm` (indices into 0..len: a permutation, or a subset in any order), column by column.
    pub fn permuted(&self, perm: &[usize]) -> RowBatch {
        fn gather<T: Copy>(v: &[T], per: usize, perm: &[usize]) -> Vec<T> {
            let mut out = Vec::with_capacity(perm.len() * per);
            for &i in perm {
                out.extend_from_slice(&v[i * per..(i + 1) * per]);
            }
            out
        }
        fn gather_logits(l: &Logits, per: usize, perm: &[usize]) -> Logits {
            match l {
                Logits::F16(v) => Logits::F16(gather(v, per, perm)),
                Logits::Bf16(v) => Logits::Bf16(gather(v, per, perm)),
                Logits::F32(v) => Logits::F32(gather(v, per, perm)),
            }
        }
        let (k, t, m, a) = (self.k, self.t, self.m, self.aug_dim);
        RowBatch {
            k,
            t,
            m,
            aug_dim: a,
            row: gather(&self.row, 1, perm),
            view: gather(&self.view, 1, perm),
            label: gather(&self.label, 1, perm),
            topk_idx: gather(&self.topk_idx, k, perm),
            topk_logit: gather_logits(&self.topk_logit, k, perm),
            lse: gather(&self.lse, t, perm),
            log_tail: gather(&self.log_tail, t, perm),
            tail_idx: gather(&self.tail_idx, m, perm),
            tail_cnt: gather(&self.tail_cnt, m, perm),
            tail_logit: gather_logits(&self.tail_logit, if self.tail_values { m } else { 0 }, perm),
            tail_values: self.tail_values,
            topk_logit_t: gather_logits(&self.topk_logit_t, self.mixture_values(), perm),
            mixture: self.mixture,
            aug: gather(&self.aug, a, perm),
            base: self.base,
        }
    }
}

/// The checks `verify` makes on one row; returns a description of the first violation. For many rows,
/// [`RowChecker`] makes the same checks without allocating per row.
pub fn check_row(r: RowRef<'_>, spec: &RowSpec) -> std::result::Result<(), String> {
    RowChecker::new(spec).check(r)
}

/// The row checks of `verify`, with scratch kept across rows: a bitset of seen classes (cleared after
/// each row, so the duplicate check is O(K)) and buffers for the mass check, whose exponentials run in
/// f32 without a libm call ([`exp_f32`]; its error is far below the check's tolerance).
pub struct RowChecker {
    spec: RowSpec,
    /// One bit per class (empty when C is too large for a bitset: then ids are sorted instead).
    seen: Vec<u64>,
    ids: Vec<u32>,
    stored: Vec<f32>,
    terms: Vec<f32>,
}

/// Classes up to which the duplicate check uses a bitset (2 MiB); above, a sort.
const BITSET_CLASSES: u64 = 1 << 24;

impl RowChecker {
    pub fn new(spec: &RowSpec) -> Self {
        let words = if spec.classes <= BITSET_CLASSES { spec.classes.div_ceil(64) as usize } else { 0 };
        RowChecker { spec: spec.clone(), seen: vec![0; words], ids: vec![], stored: vec![], terms: vec![] }
    }

    pub fn check(&mut self, r: RowRef<'_>) -> std::result::Result<(), String> {
        let spec = &self.spec;
        let k = spec.k;
        let ids = r.topk_idx();
        let mut prev = f32::INFINITY;
        let mut max_abs = 0f64;
        self.stored.clear();
        let log_prob = matches!(r.batch.base, LogitBase::LogProb { .. });
        for j in 0..k {
            let z = r.stored(j);
            if !z.is_finite() {
                return Err(format!("topk_logit[{j}] = {z} is not finite"));
            }
            if z > prev {
                return Err(format!("ranks not sorted: topk_logit[{j}] = {z} > topk_logit[{}] = {prev}", j - 1));
            }
            if log_prob && z > 0.0 {
                return Err(format!("topk_logit[{j}] = {z} is above 0 (a stored T0·log p)"));
            }
            prev = z;
            max_abs = max_abs.max(z.abs() as f64); // the stored values' rounding sets the tolerance
            self.stored.push(z);
            if ids[j] as u64 >= spec.classes {
                return Err(format!("topk_idx[{j}] = {} is not < C = {}", ids[j], spec.classes));
            }
        }
        duplicates(&mut self.seen, &mut self.ids, ids)?;
        let lse = r.lse();
        let log_tail = r.log_tail();
        // z_j = stored_j + shift (the logit the stored value measures from)
        let shift = match r.batch.base {
            LogitBase::Absolute => 0.0,
            LogitBase::LogProb { t0 } => t0 as f64 * lse[0] as f64,
        };
        for (ti, &temp) in spec.temperatures.iter().enumerate() {
            let lse = lse[ti] as f64;
            let lt = log_tail[ti] as f64;
            if !lse.is_finite() {
                return Err(format!("lse[{ti}] = {lse} is not finite"));
            }
            if spec.mixture && lse != 0.0 {
                return Err(format!("lse[{ti}] = {lse} in an ensemble's row; a mixture's values are normalised (lse 0)"));
            }
            if spec.mixture && ti > 0 {
                // the mixture's own values at this temperature, in the T0 order
                max_abs = 0.0;
                self.stored.clear();
                for j in 0..k {
                    let v = r.mixture_stored(j, ti);
                    if !(v.is_finite() && v <= 0.0) {
                        return Err(format!("topk_logit_t at temperature {ti}, rank {j} = {v} is not a finite value ≤ 0 (T·log p)"));
                    }
                    max_abs = max_abs.max(v.abs() as f64);
                    self.stored.push(v);
                }
            }
            if lt.is_nan() || lt > 1e-6 || lt == f64::INFINITY {
                return Err(format!("log_tail[{ti}] = {lt} is not a log-probability"));
            }
            let temp = temp as f64;
            // log of (top-K mass + tail mass) must be 0 within the rounding of the stored logits
            // the exponent in f32: its rounding (|c| · 6e-8) is far below the tolerance, which grows with |lse|
            let (inv_t, c) = ((1.0 / temp) as f32, (shift / temp - lse) as f32);
            self.terms.clear();
            self.terms.extend(self.stored.iter().map(|&s| exp_f32(s * inv_t + c)));
            let mass = self.terms.iter().map(|&p| p as f64).sum::<f64>() + lt.exp();
            let total = mass.ln();
            let tol = 2.0 * spec.logit_dtype.eps() * max_abs / temp + 1e-5 * (1.0 + lse.abs());
            if !(total.abs() <= tol) {
                return Err(format!("top-K mass and log_tail disagree at T = {temp}: log(Σp) = {total:.3e}, tolerance {tol:.1e}"));
            }
        }
        let ti = r.tail_idx();
        let tc = r.tail_cnt();
        for j in 0..spec.tail_samples {
            if tc[j] > 0 && ti[j] as u64 >= spec.classes {
                return Err(format!("tail_idx[{j}] = {} is not < C", ti[j]));
            }
            if let Some(v) = r.tail_stored(j) {
                // a tail class ranks below the top-K: its value is at most the K-th one, within rounding
                let last = self.stored[k - 1];
                let tol = 2.0 * spec.logit_dtype.eps() as f32 * last.abs().max(v.abs());
                if tc[j] == 0 && v != f32::NEG_INFINITY {
                    return Err(format!("tail_logit[{j}] = {v} in an unused slot (count 0); expected -inf"));
                }
                if tc[j] > 0 && !(v.is_finite() && v <= last + tol && (!log_prob || v <= 0.0)) {
                    return Err(format!("tail_logit[{j}] = {v} is not a tail value (at most topk_logit[{}] = {last}, finite)", k - 1));
                }
            }
        }
        if let Some(a) = r.aug().iter().find(|a| !a.is_finite()) {
            return Err(format!("aug value {a} is not finite"));
        }
        Ok(())
    }
}

/// Names a class that appears twice in `ids` (all < C), with a bitset of C bits (left cleared) or,
/// when `seen` is empty, by sorting a copy into `sorted`.
fn duplicates(seen: &mut [u64], sorted: &mut Vec<u32>, ids: &[u32]) -> std::result::Result<(), String> {
    let twice = |c: u32| Err(format!("class {c} appears twice in topk_idx"));
    if seen.is_empty() {
        sorted.clear();
        sorted.extend_from_slice(ids);
        sorted.sort_unstable();
        return match sorted.windows(2).find(|w| w[0] == w[1]) {
            Some(w) => twice(w[0]),
            None => Ok(()),
        };
    }
    let mut dup = None;
    for &c in ids {
        let (w, bit) = (c as usize / 64, 1u64 << (c % 64));
        if seen[w] & bit != 0 && dup.is_none() {
            dup = Some(c);
        }
        seen[w] |= bit;
    }
    for &c in ids {
        seen[c as usize / 64] = 0;
    }
    match dup {
        Some(c) => twice(c),
        None => Ok(()),
    }
}

/// e^x in f32 without a libm call, so a loop of them vectorises: x = n·ln 2 + r with |r| ≤ ln 2 / 2,
/// e^r by its Taylor polynomial of degree 7, 2^n from the exponent bits. Relative error below 3e-7 on
/// [−87, 88]; x is clamped to that range (e^−87 ≈ 1.6e−38 counts as nothing in a sum of probabilities,
/// and e^88 is far above any tolerance).
#[inline]
pub fn exp_f32(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let t = x * std::f32::consts::LOG2_E + ROUND; // n sits in the low mantissa bits of t
    let n = t - ROUND;
    // ln 2 split in two (Cody–Waite), so n · ln2_hi is exact
    let r = (x - n * 0.693_359_4) - n * -2.121_944_4e-4;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    // 2^n: n + 127 in the exponent field (integer ops only, no float-to-int conversion)
    p * f32::from_bits(t.to_bits().wrapping_sub(0x4B40_0000).wrapping_add(127) << 23)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A confident row with logits near 23: stored as raw f16 logits (format 1) its probabilities
    /// exceed 1; stored as T0·log p (format 2) they stay within the dtype's resolution of the truth.
    #[test]
    fn log_prob_storage_keeps_probabilities_in_range() {
        let temps = [1.0f32, 2.0, 4.0];
        let z: Vec<f64> = vec![23.41, 21.37, 20.02, 18.7];
        let tail_z = 12.0f64; // 996 more classes at this logit
        let lse: Vec<f64> = temps
            .iter()
            .map(|&t| {
                let t = t as f64;
                (z.iter().map(|v| (v / t).exp()).sum::<f64>() + 996.0 * (tail_z / t).exp()).ln()
            })
            .collect();
        let log_tail: Vec<f32> = temps.iter().zip(&lse).map(|(&t, l)| ((996.0f64).ln() + tail_z / t as f64 - l) as f32).collect();
        let lse32: Vec<f32> = lse.iter().map(|&l| l as f32).collect();
        let z32: Vec<f32> = z.iter().map(|&v| v as f32).collect();
        let spec = RowSpec {
            classes: 1000,
            k: 4,
            temperatures: temps.to_vec(),
            tail_samples: 0,
            aug_dim: 0,
            logit_dtype: LogitDtype::F16,
            tail_logit: true,
            mixture: false,
        };
        let truth = |j: usize, ti: usize| (z[j] / temps[ti] as f64 - lse[ti]).exp();
        let mut v2 = RowBatch::new(&spec);
        v2.push_row(0, 0, 0, &[1, 2, 3, 4], &z32, &lse32, &log_tail, None);
        let mut v1 = RowBatch::new(&spec);
        v1.base = LogitBase::Absolute;
        v1.push_row(0, 0, 0, &[1, 2, 3, 4], &z32, &lse32, &log_tail, None);
        let (r1, r2) = (v1.get(0), v2.get(0));
        assert!((0..4).any(|j| ((z32[j] as f64) - half::f16::from_f32(z32[j]).to_f64()).abs() > 1e-3), "the fixture does not stress f16");
        for ti in 0..3 {
            let t = temps[ti] as f64;
            let sum: f64 = (0..4).map(|j| r2.prob(j, ti, t)).sum::<f64>() + r2.tail_mass(ti);
            assert!((sum - 1.0).abs() < 1e-3, "T {t}: top-K + tail = {sum}");
            for j in 0..4 {
                let (p, want) = (r2.prob(j, ti, t), truth(j, ti));
                assert!(p <= 1.0);
                assert!((p - want).abs() <= 4e-3 * want, "T {t} rank {j}: {p} vs {want}");
            }
        }
        assert!(r2.prob(0, 0, 1.0) > 0.8);
        // the same row as format 1 breaks both (this is what format 2 fixes)
        let worst = (0..3)
            .flat_map(|ti| (0..4).map(move |j| (j, ti)))
            .map(|(j, ti)| ((r1.logit(j) as f64 / temps[ti] as f64 - lse[ti]).exp() - truth(j, ti)).abs() / truth(j, ti))
            .fold(0.0, f64::max);
        assert!(worst > 4e-3, "format 1 would already be precise here ({worst})");
        // a format-1 batch extended into a format-2 one keeps its logits
        let mut mixed = RowBatch::new(&spec);
        mixed.extend_rows(&v1, 0..1);
        for j in 0..4 {
            assert!((mixed.get(0).logit(j) - r1.logit(j)).abs() < 0.02, "rank {j}");
        }
        assert_eq!(check_row(r2, &spec), Ok(()));
    }

    /// A mixture's row: each temperature's own values, read back by both formulas, checked by `verify`'s
    /// checker; the checker refuses a non-zero lse, a value above 0 and a mass that does not sum to one.
    #[test]
    fn a_mixture_row_reads_and_checks_per_temperature() {
        let z1: Vec<f32> = (0..9).map(|j| j as f32 * 0.7 - 2.0).collect();
        let z2: Vec<f32> = (0..9).map(|j| ((j * 5) % 9) as f32 * 0.9).collect();
        let temps = [1.0f32, 2.0, 4.0];
        let r = crate::rank::rank_mixture_row(&[&z1, &z2], &[0.4, 0.6], 3, &temps, None).unwrap();
        for dtype in [LogitDtype::F16, LogitDtype::F32] {
            let spec =
                RowSpec { classes: 9, k: 3, temperatures: temps.to_vec(), tail_samples: 0, aug_dim: 0, logit_dtype: dtype, tail_logit: true, mixture: true };
            let mut b = RowBatch::new(&spec);
            b.push_row(0, 0, 1, &r.ranked.idx, &r.ranked.logit, &r.ranked.lse, &r.ranked.log_tail, None);
            b.push_mixture_values(&r.values);
            b.check_lengths().unwrap();
            let row = b.get(0);
            let (mut scratch, mut out) = (vec![], vec![0f32; 3]);
            for (ti, &t) in temps.iter().enumerate() {
                row.log_probs(ti, t as f64, &mut scratch, &mut out);
                let vals: Vec<f32> = if ti == 0 { r.ranked.logit.clone() } else { r.values[(ti - 1) * 3..ti * 3].to_vec() };
                for j in 0..3 {
                    let want = vals[j] as f64 / t as f64;
                    assert!((row.log_prob(j, ti, t as f64) - want).abs() <= 2.0 * dtype.eps() * want.abs() + 1e-7, "T {t} rank {j}");
                    assert_eq!(out[j], row.log_prob(j, ti, t as f64) as f32);
                }
            }
            assert_eq!(check_row(row, &spec), Ok(()));
            // a permutation and a slice keep the values with their rows
            assert_eq!(b.permuted(&[0]), b);
            assert_eq!(b.slice(0..1), b);
            let bad = |f: &dyn Fn(&mut RowBatch)| {
                let mut c = b.clone();
                f(&mut c);
                check_row(c.get(0), &spec).unwrap_err()
            };
            assert!(bad(&|c| c.lse[1] = 0.5).contains("lse[1]"));
            assert!(bad(&|c| c.topk_logit_t = Logits::F32(vec![0.5; 6])).contains("topk_logit_t"));
            let mut shifted = r.values.clone();
            shifted.iter_mut().for_each(|v| *v -= 0.5); // every probability at T = 2 and 4 smaller
            let mut c = RowBatch::new(&spec);
            c.push_row(0, 0, 1, &r.ranked.idx, &r.ranked.logit, &r.ranked.lse, &r.ranked.log_tail, None);
            c.push_mixture_values(&shifted);
            assert!(check_row(c.get(0), &spec).unwrap_err().contains("disagree at T = 2"));
        }
        // an ensemble with tail samples is not a valid layout
        let spec = RowSpec {
            classes: 9,
            k: 3,
            temperatures: temps.to_vec(),
            tail_samples: 2,
            aug_dim: 0,
            logit_dtype: LogitDtype::F16,
            tail_logit: true,
            mixture: true,
        };
        assert!(spec.validate().unwrap_err().to_string().contains("tail samples"));
    }

    /// The one-pass log-probabilities equal the per-rank formula, for every dtype, base and temperature.
    #[test]
    fn log_probs_equals_log_prob() {
        for dtype in [LogitDtype::F16, LogitDtype::Bf16, LogitDtype::F32] {
            let spec = RowSpec {
                classes: 100,
                k: 3,
                temperatures: vec![1.5, 2.0, 4.0],
                tail_samples: 0,
                aug_dim: 0,
                logit_dtype: dtype,
                tail_logit: true,
                mixture: false,
            };
            for absolute in [false, true] {
                let mut b = RowBatch::new(&spec);
                if absolute {
                    b.base = LogitBase::Absolute;
                }
                b.push_row(0, 0, 0, &[4, 9, 1], &[20.25, 19.5, 11.0], &[21.0, 11.2, 6.1], &[-3.0, -1.0, -0.5], None);
                let r = b.get(0);
                for (ti, &t) in spec.temperatures.iter().enumerate() {
                    let (mut scratch, mut out) = (vec![], vec![0f32; 3]);
                    r.log_probs(ti, t as f64, &mut scratch, &mut out);
                    let want: Vec<f32> = (0..3).map(|j| r.log_prob(j, ti, t as f64) as f32).collect();
                    assert_eq!(out, want, "{dtype:?} absolute {absolute} T {t}");
                }
            }
        }
    }

    #[test]
    fn exp_f32_is_within_3e_7_of_the_exact_exponential() {
        let mut worst = 0f64;
        for i in 0..=1_750_000 {
            let x = -87.0 + i as f32 * 1e-4; // up to 88
            let want = (x as f64).exp();
            worst = worst.max(((exp_f32(x) as f64) - want).abs() / want);
        }
        assert!(worst < 3e-7, "worst relative error {worst:e}");
        assert_eq!(exp_f32(-1000.0), exp_f32(-87.0));
        assert!(exp_f32(1000.0) > 1e38 && exp_f32(1000.0).is_finite());
    }

    /// The bitset and sorting duplicate checks agree, and the bitset is clean after every row.
    #[test]
    fn duplicate_check_by_bitset_and_by_sort() {
        let spec = RowSpec {
            classes: 1000,
            k: 4,
            temperatures: vec![1.0],
            tail_samples: 0,
            aug_dim: 0,
            logit_dtype: LogitDtype::F32,
            tail_logit: true,
            mixture: false,
        };
        let mut bits = RowChecker::new(&spec);
        let mut sort = RowChecker::new(&spec);
        sort.seen.clear();
        for ids in [[1, 2, 3, 4], [5, 999, 5, 0], [7, 8, 9, 7], [0, 63, 64, 127], [3, 3, 3, 3], [1, 2, 3, 4]] {
            let a = duplicates(&mut bits.seen, &mut bits.ids, &ids);
            assert_eq!(a, duplicates(&mut sort.seen, &mut sort.ids, &ids), "{ids:?}");
            assert_eq!(a.is_err(), ids.iter().enumerate().any(|(i, c)| ids[..i].contains(c)), "{ids:?}");
            assert!(bits.seen.iter().all(|&w| w == 0), "bitset left dirty after {ids:?}");
        }
    }

    #[test]
    fn permuted_moves_whole_rows() {
        let spec = RowSpec {
            classes: 10,
            k: 2,
            temperatures: vec![1.0],
            tail_samples: 1,
            aug_dim: 1,
            logit_dtype: LogitDtype::Bf16,
            tail_logit: true,
            mixture: false,
        };
        let mut b = RowBatch::new(&spec);
        for i in 0..4u32 {
            b.row.push(i as u64);
            b.view.push(i);
            b.label.push(i as i64);
            b.topk_idx.extend([i, i + 5]);
            b.topk_logit.push(i as f32);
            b.topk_logit.push(i as f32 - 1.0);
            b.lse.push(i as f32 * 2.0);
            b.log_tail.push(-(i as f32));
            b.tail_idx.push(9 - i);
            b.tail_cnt.push(i + 1);
            b.tail_logit.push(-(i as f32) - 3.0);
            b.aug.push(i as f32 / 2.0);
        }
        let p = b.permuted(&[2, 0, 3, 1]);
        let mut want = b.empty_like();
        for i in [2, 0, 3, 1] {
            want.extend_rows(&b, i..i + 1);
        }
        assert_eq!(p, want);
        assert_eq!(p.topk_idx, vec![2, 7, 0, 5, 3, 8, 1, 6]);
    }

    #[test]
    fn tail_values_give_the_samples_probability_at_every_temperature() {
        // C = 6 logits; K = 2; samples of classes 4 and 1 (outside the top-2)
        let z = [3.0f32, 0.5, 2.0, -1.0, 1.0, -0.5];
        let temps = [1.0f32, 2.5];
        let r = crate::rank::rank_row(&z, 2, &temps, None).unwrap();
        for dtype in [LogitDtype::F16, LogitDtype::Bf16, LogitDtype::F32] {
            let spec =
                RowSpec { classes: 6, k: 2, temperatures: temps.to_vec(), tail_samples: 3, aug_dim: 0, logit_dtype: dtype, tail_logit: true, mixture: false };
            let mut b = RowBatch::new(&spec);
            let tail = Tail { idx: &[1, 4, 0], cnt: &[2, 1, 0], logit: &[z[1], z[4], 0.0] };
            b.push_row(0, 0, -1, &r.idx, &r.logit, &r.lse, &r.log_tail, Some(tail));
            let row = b.get(0);
            for (ti, &t) in temps.iter().enumerate() {
                let lse = z.iter().map(|&v| (v as f64 / t as f64).exp()).sum::<f64>().ln();
                for (s, c) in [(0, 1), (1, 4)] {
                    let want = z[c] as f64 / t as f64 - lse;
                    let got = row.tail_log_prob(s, ti, t as f64).unwrap();
                    assert!((got - want).abs() < 4.0 * dtype.eps() * (1.0 + want.abs()), "{dtype:?} T={t} class {c}: {got} vs {want}");
                }
                assert_eq!(row.tail_log_prob(2, ti, t as f64), Some(f64::NEG_INFINITY), "an unused slot");
            }
            // at T0 the weights are the draws' shares of the tail mass; at T they are reweighted
            let mut w = [0f64; 3];
            row.tail_weights(0, 1.0, &mut w);
            let tau0 = row.tail_mass(0);
            assert!((w[0] - tau0 * 2.0 / 3.0).abs() < 1e-12 && (w[1] - tau0 / 3.0).abs() < 1e-12 && w[2] == 0.0);
            row.tail_weights(1, 2.5, &mut w);
            let p = |c: usize, t: f64| -> f64 { (z[c] as f64 / t).exp() / z.iter().map(|&v| (v as f64 / t).exp()).sum::<f64>() };
            let want = (2.0 / 3.0) * tau0 * p(1, 2.5) / p(1, 1.0);
            assert!((w[0] - want).abs() < 8.0 * dtype.eps() * want, "{dtype:?}: {} vs {want}", w[0]);
            assert_eq!(check_row(row, &spec), Ok(()));
            // a tail value above the K-th rank's, or a value in an unused slot, is refused
            let mut bad = b.clone();
            bad.tail_logit = Logits::new(dtype);
            for v in [row.stored(0), row.tail_stored(1).unwrap(), f32::NEG_INFINITY] {
                bad.tail_logit.push(v);
            }
            assert!(check_row(bad.get(0), &spec).unwrap_err().contains("tail_logit[0]"));
            let mut bad = b.clone();
            bad.tail_logit = Logits::new(dtype);
            for v in [row.tail_stored(0).unwrap(), row.tail_stored(1).unwrap(), -1.0] {
                bad.tail_logit.push(v);
            }
            assert!(check_row(bad.get(0), &spec).unwrap_err().contains("unused slot"));
        }
    }
}
