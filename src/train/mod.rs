//! `kdcache train`: a student from a cache, with any estimator of [`loss`], a row-wise optimizer for the
//! head ([`optim`]), full-softmax evaluation ([`eval`]), checkpoints and bit-for-bit resume.
//!
//! Run directory: `config.json` (the options), `metrics.jsonl` (one JSON object per logged step and per
//! evaluation), `checkpoint.safetensors` (written atomically at every epoch end and every
//! `--checkpoint-every` steps), `curves.svg`, and `summary.json` (see [`Summary`]).
//!
//! A step never waits for the device except where it must: the loss value is read back (and checked
//! for NaN) every `--log-every` steps, the sampler's reads happen after the optimizer has been queued.
pub mod dis;
pub mod eval;
pub mod fixture;
pub mod loss;
pub mod optim;
pub mod positives;
pub mod student;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use tch::{Device, Tensor};

use crate::data::augment;
use crate::data::source::Dataset;
use crate::error::{Error, IoContext, Result};
use crate::format::{CacheReader, Manifest, Order, RowBatch};
use crate::fsio::write_atomic;
use crate::sample::DisConfig;
use dis::DisState;
use loss::{Estimator, LossConfig, Targets};
use optim::{DenseOptimizer, OptConfig, OptKind, RowOptimizer};
use student::Student;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    /// The cache of the (final) teacher.
    pub cache: PathBuf,
    /// Route anchors: caches of the teacher's earlier checkpoints on the same data, easiest first,
    /// trained through in order before `cache` (`--cache a1,…,an,final`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anchors: Vec<PathBuf>,
    /// Epochs on each anchor, in order (`--anchor-epochs`; empty = an equal share of `--epochs` each,
    /// the final cache taking the rest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anchor_epochs: Vec<usize>,
    pub data: PathBuf,
    /// Labels for a features `.npy` (`--labels`); the cache's own labels are used for training either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
    pub eval_data: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_labels: Option<PathBuf>,
    pub eval_cache: Option<PathBuf>,
    pub student: Option<String>,
    pub student_ts: Option<PathBuf>,
    pub loss: Estimator,
    /// The `dis` sampler's settings (`head_rows` is `--candidates`); ignored by the other estimators.
    pub dis: DisConfig,
    pub temperature: f64,
    pub alpha: f64,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub head_opt: OptKind,
    pub head_lr: f64,
    pub seed: u64,
    /// As given (`auto`, `cpu`, `cuda:N`); the run records the device it resolved to.
    pub device: String,
    pub out: PathBuf,
    pub checkpoint_every: usize,
    pub log_every: usize,
    /// Stop after this many steps in total (0 = run all epochs).
    pub max_steps: usize,
    /// Also evaluate every this many steps (0 = at epoch ends only).
    #[serde(default)]
    pub eval_every: usize,
    /// Also evaluate retrieval from the student's features (see [`crate::run::Retrieval`]).
    #[serde(default)]
    pub retrieval: bool,
    #[serde(skip)]
    pub resume: bool,
    /// Start afresh in an --out that holds another run (its files are replaced).
    #[serde(skip)]
    pub overwrite: bool,
    #[serde(skip)]
    pub progress: bool,
}

use crate::run::MetricsLine;
pub use crate::run::Summary;

/// The student's inputs for a batch of cache rows: each row's example, as the teacher saw it (the
/// row's view re-applied from its stored parameters, when the cache holds views).
pub(crate) fn gather(ds: &Dataset, batch: &RowBatch, cache: &Path, device: Device) -> Result<Tensor> {
    let per: usize = ds.feature_shape().iter().product();
    let rows = &batch.row;
    let mut x = Vec::with_capacity(rows.len() * per);
    let (mut buf, mut view) = (vec![], vec![]);
    let shape = if batch.aug_dim > 0 { Some(augment::ImageShape::of(ds.feature_shape())?) } else { None };
    for (j, &r) in rows.iter().enumerate() {
        let r = r as usize;
        if r >= ds.len() {
            return Err(Error::Mismatch { what: "row index".into(), cache: format!("row {r}"), given: format!("data of {} rows", ds.len()) });
        }
        ds.x.f32_rows(r..r + 1, &mut buf);
        match shape {
            Some(shape) => {
                let aug = &batch.aug[j * batch.aug_dim..(j + 1) * batch.aug_dim];
                augment::apply(shape, &buf, aug, &mut view)
                    .map_err(|w| Error::corrupt(cache, Some(format!("example {r}, view {}", batch.view[j])), format!("its augmentation: {w}")))?;
                x.extend_from_slice(&view);
            }
            None => x.extend_from_slice(&buf),
        }
    }
    let mut shape = vec![rows.len() as i64];
    shape.extend(ds.feature_shape().iter().map(|&d| d as i64));
    Ok(Tensor::f_from_slice(&x)?.f_reshape(&shape)?.f_to_device(device)?)
}

/// The head's default learning rate, the best of those measured on the demo and the power-law worlds
/// (README, "When `dis` pays off"): 5e-3 for `dis` (it moves a head row only on the steps that compute
/// it), 3e-3 for `full`, 1e-3 for the others (not measured).
pub fn default_head_lr(loss: Estimator) -> f64 {
    match loss {
        Estimator::Dis => 5e-3,
        Estimator::Full => 3e-3,
        _ => 1e-3,
    }
}

/// A checkpoint's tensors by name.
type Checkpoint = std::collections::HashMap<String, Tensor>;

fn read_checkpoint(path: &Path) -> Result<Checkpoint> {
    let tensors = Tensor::read_safetensors(path).map_err(|e| Error::corrupt(path, None, format!("unreadable checkpoint: {e}")))?;
    Ok(tensors.into_iter().collect())
}

/// Everything trained and checkpointed.
struct State {
    student: Student,
    names: Vec<String>,
    params: Vec<Tensor>,
    bopt: DenseOptimizer,
    hopt: RowOptimizer,
    dis: Option<DisState>,
    step: u64,
    epoch: usize,
    step_in_epoch: usize,
}

impl State {
    fn save(&self, path: &Path) -> Result<()> {
        let mut named: Vec<(String, Tensor)> = vec![];
        for (n, p) in self.names.iter().zip(&self.params) {
            named.push((format!("backbone/{n}"), p.shallow_clone()));
        }
        for (i, n) in self.names.iter().enumerate() {
            named.push((format!("bopt_m/{n}"), self.bopt.m[i].shallow_clone()));
            named.push((format!("bopt_v/{n}"), self.bopt.v[i].shallow_clone()));
        }
        named.push(("head".into(), self.student.head.shallow_clone()));
        named.push(("head_m".into(), self.hopt.m.shallow_clone()));
        named.push(("head_v".into(), self.hopt.v.shallow_clone()));
        named.push(("head_t".into(), self.hopt.t.shallow_clone()));
        named.push(("state".into(), Tensor::from_slice(&[self.step as i64, self.epoch as i64, self.step_in_epoch as i64])));
        named.push(("bopt_t".into(), Tensor::from_slice(&[self.bopt.t])));
        if let Some(d) = &self.dis {
            named.extend(d.checkpoint()?);
        }
        if let Some(b) = self.student.script_bytes(&path.with_extension("partial.pt"))? {
            named.push(("backbone_ts".into(), Tensor::from_slice(&b)));
        }
        let named: Vec<(String, Tensor)> = named.into_iter().map(|(n, t)| (n, t.to_device(Device::Cpu))).collect();
        let tmp = crate::fsio::tmp_path(path);
        Tensor::write_safetensors(&named, &tmp)?;
        crate::fsio::publish(&tmp, path)?;
        Ok(())
    }

    fn load(&mut self, path: &Path, map: &Checkpoint) -> Result<()> {
        let bad = |w: String| Error::corrupt(path, None, w);
        let find = |n: &str, like: &Tensor| -> Result<Option<Tensor>> {
            let Some(t) = map.get(n) else { return Ok(None) };
            if t.size() != like.size() || t.kind() != like.kind() {
                return Err(bad(format!("tensor {n} has shape {:?} {:?}, expected {:?} {:?}", t.size(), t.kind(), like.size(), like.kind())));
            }
            Ok(Some(t.f_to_device(like.device())?))
        };
        let get = |n: &str, like: &Tensor| -> Result<Tensor> { find(n, like)?.ok_or_else(|| bad(format!("missing tensor {n}"))) };
        let _g = tch::no_grad_guard();
        for i in 0..self.names.len() {
            let n = self.names[i].clone();
            let v = get(&format!("backbone/{n}"), &self.params[i])?;
            self.params[i].f_copy_(&v)?;
            self.bopt.m[i] = get(&format!("bopt_m/{n}"), &self.bopt.m[i])?;
            self.bopt.v[i] = get(&format!("bopt_v/{n}"), &self.bopt.v[i])?;
        }
        let head = get("head", &self.student.head)?;
        self.student.head.f_copy_(&head)?;
        self.hopt.m = get("head_m", &self.hopt.m)?;
        self.hopt.v = get("head_v", &self.hopt.v)?;
        self.hopt.t = get("head_t", &self.hopt.t)?;
        let st: Vec<i64> = Vec::<i64>::try_from(&get("state", &Tensor::from_slice(&[0i64, 0, 0]))?)?;
        (self.step, self.epoch, self.step_in_epoch) = (st[0].max(0) as u64, st[1].max(0) as usize, st[2].max(0) as usize);
        self.bopt.t = get("bopt_t", &Tensor::from_slice(&[0f64]))?.f_double_value(&[0])?;
        if let Some(d) = &mut self.dis {
            d.restore(&find, &bad)?;
        }
        Ok(())
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Teacher top-1 per data row, from a cache of the eval rows.
fn teacher_top1(cache: &Path, rows: usize) -> Result<Vec<i64>> {
    let r = CacheReader::open(cache)?;
    let mut out = vec![-1i64; rows];
    for i in 0..r.blocks().len() {
        let b = r.read_block(i)?;
        for j in 0..b.len() {
            let row = b.get(j);
            if (row.row() as usize) < rows {
                out[row.row() as usize] = row.topk_idx()[0] as i64;
            }
        }
    }
    Ok(out)
}

/// The checked inputs of a run.
struct Inputs {
    device: Device,
    reader: Arc<CacheReader>,
    man: Manifest,
    /// Index of the training temperature among the cache's.
    ti: usize,
    /// The route anchors before `reader`, each with its index of the training temperature and the epoch
    /// (0-based) where it stops training.
    anchors: Vec<Anchor>,
    ds: Dataset,
    eval_ds: Option<Dataset>,
    teacher_eval: Option<Vec<i64>>,
}

/// Checks an estimator's options against the cache (shared by `train` and `step`); returns the index of
/// the training temperature among the cache's. Every failure is one line naming the option.
pub(crate) fn check_estimator(man: &Manifest, loss: Estimator, temperature: f64, alpha: f64, dis: &DisConfig) -> Result<usize> {
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(Error::invalid(format!("--temperature {temperature} must be > 0")));
    }
    if !(0.0..=1.0).contains(&alpha) {
        return Err(Error::invalid(format!("--alpha {alpha} must be in [0, 1]")));
    }
    let ti = man
        .temperatures
        .iter()
        .position(|&t| (t as f64 - temperature).abs() < 1e-6)
        .ok_or_else(|| Error::invalid(format!("--temperature {temperature} is not in the cache (it holds {:?}); pick one of those", man.temperatures)))?;
    if loss == Estimator::Dis {
        dis.validate(man.classes as usize).map_err(Error::invalid)?;
    }
    if loss == Estimator::Rs {
        if man.tail_samples == 0 {
            return Err(Error::invalid("--loss rs needs tail samples: build the cache with --tail-samples M"));
        }
        if ti != 0 && !man.spec().has_tail_logit() {
            return Err(Error::invalid(format!(
                "--loss rs at --temperature {temperature}: the cache's tail samples were drawn at its first temperature {} and, in a format {} cache, carry no logits to reweight them to another; train at {} or rebuild the cache",
                man.temperatures[0], man.format_version, man.temperatures[0]
            )));
        }
    }
    Ok(ti)
}

/// A route anchor: a cache of an earlier checkpoint of the teacher, trained through before the next.
struct Anchor {
    reader: Arc<CacheReader>,
    ti: usize,
    /// The first epoch (0-based) after this anchor's.
    until: usize,
}

impl Inputs {
    /// The cache that trains epoch `epoch` (0-based), its temperature index, and its place on the route
    /// (0 = the first anchor; the number of anchors = the final cache).
    fn source(&self, epoch: usize) -> (&Arc<CacheReader>, usize, usize) {
        match self.anchors.iter().position(|a| epoch < a.until) {
            Some(i) => (&self.anchors[i].reader, self.anchors[i].ti, i),
            None => (&self.reader, self.ti, self.anchors.len()),
        }
    }
}

/// The route anchors of `o` checked against the final cache `man`: the same dataset (signature, rows,
/// classes), a valid estimator at the training temperature, and epochs that leave the final cache at
/// least one.
fn open_anchors(o: &TrainOptions, man: &Manifest) -> Result<Vec<Anchor>> {
    let n = o.anchors.len();
    if n == 0 {
        if !o.anchor_epochs.is_empty() {
            return Err(Error::invalid("--anchor-epochs needs route anchors: --cache ANCHOR1,…,FINAL"));
        }
        return Ok(vec![]);
    }
    let epochs: Vec<usize> = if o.anchor_epochs.is_empty() { vec![o.epochs / (n + 1); n] } else { o.anchor_epochs.clone() };
    if epochs.len() != n {
        return Err(Error::invalid(format!("--anchor-epochs gives {} values for {n} route anchor(s) (one per cache before the last)", epochs.len())));
    }
    let total: usize = epochs.iter().sum();
    if epochs.contains(&0) || total >= o.epochs {
        return Err(Error::invalid(format!(
            "--anchor-epochs {epochs:?} with --epochs {}: each anchor needs at least one epoch and the final cache too (raise --epochs to {} or more)",
            o.epochs,
            total.max(n) + 1
        )));
    }
    let mut out = vec![];
    let mut until = 0;
    for (p, e) in o.anchors.iter().zip(epochs) {
        let reader = Arc::new(CacheReader::open(p)?);
        let m = reader.manifest();
        let what = |w: &str| format!("{w} of route anchor {}", p.display());
        if m.signature.dataset != man.signature.dataset || m.examples != man.examples || m.rows != man.rows {
            return Err(Error::Mismatch {
                what: what("dataset"),
                cache: format!("{} ({} rows)", m.signature.dataset, m.rows),
                given: format!("{} ({} rows) in the final cache {}", man.signature.dataset, man.rows, o.cache.display()),
            });
        }
        if m.classes != man.classes || m.signature.classes != man.signature.classes {
            return Err(Error::Mismatch {
                what: what("classes"),
                cache: format!("C = {}", m.classes),
                given: format!("C = {} in the final cache", man.classes),
            });
        }
        let ti = check_estimator(m, o.loss, o.temperature, o.alpha, &o.dis).map_err(|e| Error::invalid(format!("route anchor {}: {e}", p.display())))?;
        until += e;
        out.push(Anchor { reader, ti, until });
    }
    Ok(out)
}

/// Checks the options against the cache and the data; every failure is one line naming the option.
fn validate(o: &TrainOptions) -> Result<Inputs> {
    if o.batch_size == 0 || o.epochs == 0 {
        return Err(Error::invalid("--batch-size and --epochs must be at least 1"));
    }
    let device = crate::nn::parse_device(&o.device)?;
    let reader = Arc::new(CacheReader::open(&o.cache)?);
    let man = reader.manifest().clone();
    let classes = man.classes as usize;
    let ti = check_estimator(&man, o.loss, o.temperature, o.alpha, &o.dis)?;
    let anchors = open_anchors(o, &man)?;
    // the cache must belong to the data
    let ds = Dataset::open(&o.data, o.labels.as_deref(), "train")?;
    if man.examples != ds.len() as u64 {
        return Err(Error::Mismatch {
            what: "example count".into(),
            cache: man.examples.to_string(),
            given: format!("{} rows in {}", ds.len(), ds.source.display()),
        });
    }
    for m in std::iter::once(&man).chain(anchors.iter().map(|a| a.reader.manifest())) {
        if m.aug_dim > 0 && m.aug_dim != augment::AUG_DIM {
            return Err(Error::invalid(format!(
                "the cache's views carry {} augmentation values each; this kdcache replays views of {} [top, left, height, width, flip]",
                m.aug_dim,
                augment::AUG_DIM
            )));
        }
        if m.aug_dim > 0 {
            augment::ImageShape::of(ds.feature_shape())?;
        }
    }
    if ds.check_signature(&man.signature.dataset)? == crate::data::source::Binding::RowsOnly && o.progress {
        eprintln!("note: {} binds no dataset (imported without --data): its rows are matched to {} by position only", o.cache.display(), ds.source.display());
    }
    let eval_path = o.eval_data.clone().or_else(|| (o.data.is_dir() && o.data.join("test_x.npy").exists()).then(|| o.data.clone()));
    let eval_ds = eval_path.as_deref().map(|p| Dataset::open(p, o.eval_labels.as_deref(), "test")).transpose()?;
    if let Some(e) = &eval_ds {
        if e.feature_shape() != ds.feature_shape() {
            return Err(Error::invalid(format!("eval features {:?} differ from training features {:?}", e.feature_shape(), ds.feature_shape())));
        }
        match &e.y {
            None => return Err(Error::invalid(format!("the held-out data {} has no labels: pass --eval-labels", e.source.display()))),
            Some(y) if y.iter().all(|&l| l < 0) => return Err(Error::invalid(format!("the held-out data {} has no known label (all -1)", e.source.display()))),
            Some(y) => {
                // checked before the first step: a label the student has no class for cannot be evaluated
                let outside = |l: i64| l < -1 || l >= classes as i64;
                if let Some((i, &l)) = y.iter().enumerate().find(|(_, l)| outside(**l)) {
                    return Err(Error::invalid(format!(
                        "{}: label {l} of held-out row {i} is not a class of the cache (C = {classes}; {} held-out rows have such labels): \
                         build the teacher for the whole label space (teach --classes N), or mark those labels -1 (not evaluated)",
                        e.source.display(),
                        y.iter().filter(|&&l| outside(l)).count()
                    )));
                }
            }
        }
    } else if o.eval_labels.is_some() {
        return Err(Error::invalid("--eval-labels needs --eval-data"));
    } else if o.progress {
        eprintln!("note: no held-out set (pass --eval-data and --eval-labels): the run reports no accuracy");
    }
    let teacher_eval = match (&o.eval_cache, &eval_ds) {
        (Some(c), Some(e)) => Some(teacher_top1(c, e.len())?),
        _ => None,
    };
    Ok(Inputs { device, reader, man, ti, anchors, ds, eval_ds, teacher_eval })
}

/// The options that differ between a run's recorded configuration and a resume's, as `--flag old (now
/// new)`; `--epochs` and `--max-steps` may change on a resume.
fn config_diff(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let flag = |k: &str| -> String {
        match k {
            "dis.candidates" => "--candidates".into(),
            "dis.tail" => "--dis-tail".into(),
            "dis.clusters" => "--dis-clusters".into(),
            "dis.clip" => "--dis-clip".into(),
            "device" => "--device (resolved)".into(),
            k => format!("--{}", k.replace('_', "-")),
        }
    };
    let show = |v: Option<&serde_json::Value>| v.map(|v| v.to_string()).unwrap_or("(none)".into());
    let mut out = vec![];
    let empty = serde_json::Map::new();
    let (a, b) = (old.as_object().unwrap_or(&empty), new.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        if k == "epochs" || k == "max_steps" || k == "eval_every" || k == "retrieval" {
            continue;
        }
        match (a.get(k), b.get(k)) {
            (Some(serde_json::Value::Object(x)), Some(serde_json::Value::Object(y))) => {
                let mut inner: Vec<&String> = x.keys().chain(y.keys()).collect();
                inner.sort();
                inner.dedup();
                for i in inner {
                    if x.get(i) != y.get(i) {
                        out.push(format!("{} {} (now {})", flag(&format!("{k}.{i}")), show(x.get(i)), show(y.get(i))));
                    }
                }
            }
            (x, y) if x != y => out.push(format!("{} {} (now {})", flag(k), show(x), show(y))),
            _ => {}
        }
    }
    out
}

fn device_name(d: Device) -> String {
    match d {
        Device::Cuda(i) => format!("cuda:{i}"),
        _ => "cpu".into(),
    }
}

/// Creates the run directory and the state, or reopens it with `--resume` (same options, same device).
fn open_run(o: &TrainOptions, inp: &Inputs) -> Result<State> {
    std::fs::create_dir_all(&o.out).ctx(&o.out)?;
    let mut rec = o.clone();
    rec.device = device_name(inp.device);
    let cfg_json = serde_json::to_string_pretty(&rec).map_err(|e| Error::Internal(e.to_string()))?;
    let cfg_path = o.out.join("config.json");
    let ckpt = o.out.join("checkpoint.safetensors");
    // `--resume` is safe to pass always: with no checkpoint yet (a first launch, or a run killed before
    // its first checkpoint) the run starts from scratch
    let resume = o.resume && ckpt.exists();
    if o.resume && !resume && o.progress {
        eprintln!("nothing to resume in {}: starting the run", o.out.display());
    }
    if resume {
        let old = std::fs::read_to_string(&cfg_path).ctx(&cfg_path)?;
        let old: serde_json::Value = serde_json::from_str(&old).map_err(|e| Error::corrupt(&cfg_path, None, e.to_string()))?;
        // through the options type, so that an option added since the run started reads as the value
        // that run used (its serde default), not as a difference
        let old = serde_json::from_value::<TrainOptions>(old.clone()).ok().and_then(|o| serde_json::to_value(o).ok()).unwrap_or(old);
        let new: serde_json::Value = serde_json::from_str(&cfg_json).map_err(|e| Error::Internal(e.to_string()))?;
        let diff = config_diff(&old, &new);
        if !diff.is_empty() {
            return Err(Error::invalid(format!(
                "--resume: the run in {} was started with other options: {}; pass the same ones, or --overwrite to start afresh",
                o.out.display(),
                diff.join(", ")
            )));
        }
    } else if ckpt.exists() && !o.overwrite {
        return Err(Error::invalid(format!(
            "{} holds a training run: pass --resume to continue it, --overwrite to replace it, or choose another --out",
            o.out.display()
        )));
    }
    if !resume {
        // a run killed before its first checkpoint may have left files behind; --overwrite replaces a run
        for f in ["metrics.jsonl", "checkpoint.safetensors", "summary.json", "curves.svg"] {
            let p = o.out.join(f);
            if p.exists() {
                std::fs::remove_file(&p).ctx(&p)?;
            }
        }
    }
    write_atomic(&cfg_path, cfg_json.as_bytes())?;

    let classes = inp.man.classes as usize;
    let mlp = o.student.as_deref().map(student::parse_mlp).transpose()?;
    let saved = if resume { Some(read_checkpoint(&ckpt)?) } else { None };
    // a TorchScript backbone resumes from its checkpointed module: parameters and buffers
    let script_state: Option<Vec<u8>> = match saved.as_ref().and_then(|m| m.get("backbone_ts")) {
        Some(t) => Some(Vec::<u8>::try_from(t).map_err(|e| Error::corrupt(&ckpt, None, format!("backbone_ts: {e}")))?),
        None => None,
    };
    let student = Student::new(inp.ds.feature_shape(), classes as i64, mlp.as_deref(), o.student_ts.as_deref(), script_state.as_deref(), inp.device, o.seed)?;
    let vars = student.vs.variables();
    let mut names: Vec<String> = vars.keys().cloned().collect();
    names.sort();
    let params: Vec<Tensor> = names.iter().map(|n| vars[n].shallow_clone()).collect();
    let bopt = DenseOptimizer::new(OptConfig::new(OptKind::Adam, o.lr), &params)?;
    let hopt = RowOptimizer::new(OptConfig::new(o.head_opt, o.head_lr), &student.head)?;
    let dis = if o.loss == Estimator::Dis {
        Some(DisState::new(o.dis.clone(), &student.head, o.seed, dis_prior(&inp.man, &o.dis, o.temperature).as_deref())?)
    } else {
        None
    };
    let mut st = State { student, names, params, bopt, hopt, dis, step: 0, epoch: 0, step_in_epoch: 0 };
    if let Some(map) = &saved {
        st.load(&ckpt, map)?;
    }
    Ok(st)
}

/// The prior proposal's weights (the manifest's class prior at the training temperature), when it is the proposal.
pub(crate) fn dis_prior(man: &Manifest, dis: &DisConfig, temperature: f64) -> Option<Vec<f64>> {
    (dis.proposal == crate::sample::Proposal::Prior && !man.stats.class_prior.is_empty())
        .then(|| crate::sample::tempered_prior(&man.stats.class_prior, temperature))
}

/// Batches of B rows from the cache's block stream in the epoch's shuffled order (the last may be short).
/// In a cache with several views per example, only the view [`augment::epoch_view`] picks for the
/// epoch passes: an epoch visits every example once.
struct Batches {
    stream: crate::format::reader::Prefetch,
    carry: Option<RowBatch>,
    spec: crate::format::RowSpec,
    size: usize,
    done: bool,
    /// (views per example, seed, epoch) when the cache holds several views.
    views: Option<(u32, u64, usize)>,
}

impl Batches {
    fn new(reader: &Arc<CacheReader>, seed: u64, epoch: usize, size: usize) -> Self {
        let stream = reader.batches(Order::Shuffled { seed: seed.wrapping_add(epoch as u64) }, 1);
        let v = reader.manifest().views;
        Batches { stream, carry: None, spec: reader.manifest().spec(), size, done: false, views: (v > 1).then_some((v, seed, epoch)) }
    }

    fn next_batch(&mut self) -> Result<Option<RowBatch>> {
        let mut batch = self.carry.take().unwrap_or_else(|| RowBatch::new(&self.spec));
        while batch.len() < self.size && !self.done {
            match self.stream.next() {
                Some(b) => {
                    let mut b = b?;
                    if let Some((v, seed, epoch)) = self.views {
                        let pick: Vec<usize> = (0..b.len()).filter(|&i| b.view[i] == augment::epoch_view(seed, epoch, b.row[i], v)).collect();
                        b = b.permuted(&pick);
                    }
                    batch.extend_rows(&b, 0..b.len());
                }
                None => self.done = true,
            }
        }
        if batch.is_empty() {
            return Ok(None);
        }
        if batch.len() > self.size {
            self.carry = Some(batch.slice(self.size..batch.len()));
            batch = batch.slice(0..self.size);
        }
        Ok(Some(batch))
    }
}

/// One optimisation step on `batch`; returns the step's output (nothing read back from the device).
fn step(st: &mut State, o: &TrainOptions, inp: &Inputs, batch: &RowBatch, cache: &Path, ti: usize) -> Result<loss::StepOut> {
    let rows: Vec<usize> = (0..batch.len()).collect();
    let tg = Targets::from_rows(batch, &rows, ti, o.temperature, inp.man.classes as usize);
    let x = gather(&inp.ds, batch, cache, inp.device)?;
    let step_seed = o.seed ^ st.step.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(step_seed);
    // torch's own generator (dropout in a TorchScript backbone) restarts from the step too, so a
    // resumed run draws what the uninterrupted one drew
    tch::manual_seed(step_seed as i64);
    let cfg = LossConfig { estimator: o.loss, temperature: o.temperature, alpha: o.alpha };
    let h = st.student.features(&x)?;
    let mut out = loss::step_loss(&cfg, &h, &st.student.head, &tg, st.dis.as_mut(), &mut rng)?;
    for p in st.params.iter_mut() {
        let mut g = p.grad();
        if g.defined() {
            let _ = g.f_zero_()?;
        }
    }
    out.backward()?;
    out.update_head(&mut st.student.head, &mut st.hopt, st.dis.as_mut(), &h, o.temperature)?;
    st.bopt.step(&mut st.params)?;
    Ok(out)
}

/// Trains and returns the run's summary.
pub fn train(o: &TrainOptions) -> Result<Summary> {
    let t0 = Instant::now();
    let inp = validate(o)?;
    // one process at a time in a run directory: a second would write the same files from another state
    std::fs::create_dir_all(&o.out).ctx(&o.out)?;
    let _lock = crate::fsio::DirLock::acquire(&o.out, "train")?;
    let mut st = open_run(o, &inp)?;
    let ckpt = o.out.join("checkpoint.safetensors");
    let metrics_path = o.out.join("metrics.jsonl");
    let mut metrics = std::fs::OpenOptions::new().create(true).append(true).open(&metrics_path).ctx(&metrics_path)?;
    let mut step_ms = vec![];
    let mut computed = vec![];
    let mut rows_done = 0u64;
    let train_t0 = Instant::now();
    // an epoch of a cache with views visits each example once, in one of its views
    let per_epoch = if inp.man.views > 1 { inp.man.examples } else { inp.man.rows };
    let steps_per_epoch = (per_epoch as usize).div_ceil(o.batch_size) as u64;
    let total_steps = if o.max_steps > 0 { (o.max_steps as u64).min(steps_per_epoch * o.epochs as u64) } else { steps_per_epoch * o.epochs as u64 };
    let mut bar = crate::progress::Progress::new(total_steps, &format!("train {}", o.loss.name()), "steps", o.progress);
    bar.set_position(st.step);
    let mut last_eval = None;
    let mut last_loss = None;
    let log_every = o.log_every.max(1) as u64;
    let mut noted_dense = false;
    let counts = inp.eval_ds.as_ref().and_then(|_| eval::class_counts(&inp.ds, inp.man.classes as usize));
    // seconds of training so far (steps and data loading, not evaluation), carried over a resume
    let mut train_s = crate::run::read_metrics(&o.out).ok().and_then(|m| m.iter().rev().find_map(|l| l.train_s)).unwrap_or(0.0);
    let mut since = Instant::now();
    // the held-out metrics (and retrieval when asked) of the student as it is now
    let measure = |st: &mut State, e: &Dataset| -> Result<crate::run::EvalReport> {
        let mut r = eval::evaluate(&mut st.student, e, inp.teacher_eval.as_deref(), counts.as_deref(), inp.device)?;
        if o.retrieval {
            r.retrieval = eval::retrieval(&mut st.student, e, counts.as_deref(), inp.device)?;
        }
        Ok(r)
    };
    // the last evaluation within an epoch: an epoch ending at that step reuses it
    let mut within: Option<(u64, crate::run::EvalReport)> = None;
    let mut evaluate = |st: &mut State, train_s: f64, within_epoch: bool, metrics: &mut std::fs::File| -> Result<crate::run::EvalReport> {
        let e = inp.eval_ds.as_ref().expect("called with a held-out set");
        let r = match within.take() {
            Some((step, r)) if !within_epoch && step == st.step => r,
            _ => measure(st, e)?,
        };
        if within_epoch {
            within = Some((st.step, r.clone()));
        }
        let epoch = if within_epoch { st.epoch + 1 } else { st.epoch };
        let line = MetricsLine { step: st.step, epoch, eval: Some(r.clone()), train_s: Some(train_s), within_epoch, ..Default::default() };
        writeln!(metrics, "{}", serde_json::to_string(&line).map_err(|e| Error::Internal(e.to_string()))?).ctx(&metrics_path)?;
        Ok(r)
    };
    'epochs: while st.epoch < o.epochs {
        bar.set_message(format!("epoch {}/{}", st.epoch + 1, o.epochs));
        let (reader, ti, place) = inp.source(st.epoch);
        if !inp.anchors.is_empty() && st.step_in_epoch == 0 && (st.epoch == 0 || inp.source(st.epoch - 1).2 != place) {
            // the route moves on to the next cache here (its first epoch)
            let line = MetricsLine {
                step: st.step,
                epoch: st.epoch,
                train_s: Some(train_s + since.elapsed().as_secs_f64()),
                cache: Some(reader.dir().display().to_string()),
                anchor: Some(place),
                ..Default::default()
            };
            writeln!(metrics, "{}", serde_json::to_string(&line).map_err(|e| Error::Internal(e.to_string()))?).ctx(&metrics_path)?;
            if o.progress && st.epoch > 0 {
                bar.println(format!("epoch {}: the route moves on to {}", st.epoch + 1, reader.dir().display()));
            }
        }
        let mut batches = Batches::new(reader, o.seed, st.epoch, o.batch_size);
        let mut skip = st.step_in_epoch;
        while let Some(batch) = batches.next_batch()? {
            if skip > 0 {
                skip -= 1; // resumed: this batch was trained before the checkpoint
                continue;
            }
            if o.max_steps > 0 && st.step >= o.max_steps as u64 {
                break 'epochs;
            }
            let ts = Instant::now();
            let out = step(&mut st, o, &inp, &batch, reader.dir(), ti)?;
            if o.progress && !noted_dense && out.plan.as_ref().is_some_and(|p| p.dense) {
                noted_dense = true;
                let dense = if o.dis.tail == crate::sample::Tail::Bucket { "ghost" } else { "full" };
                bar.println(format!(
                    "note: dis: a step's shared columns cover {:.0}% of the C = {} classes or more, so it runs {dense}, exactly (dis pays off at many classes; see --candidates)",
                    100.0 * o.dis.dense_above,
                    inp.man.classes
                ));
            }
            if let Device::Cuda(i) = inp.device {
                tch::Cuda::synchronize(i as i64);
            }
            let ms = ts.elapsed().as_secs_f64() * 1e3;
            step_ms.push(ms);
            computed.push(out.computed_rows as f64);
            st.step += 1;
            st.step_in_epoch += 1;
            rows_done += batch.len() as u64;
            if o.eval_every > 0 && st.step % o.eval_every as u64 == 0 && inp.eval_ds.is_some() {
                train_s += since.elapsed().as_secs_f64();
                let r = evaluate(&mut st, train_s, true, &mut metrics)?;
                if o.progress {
                    bar.println(format!("step {}: held-out top-1 {:.4}", st.step, r.top1));
                }
                since = Instant::now();
            }
            if st.step % log_every == 0 {
                let value = out.value()?;
                if !value.is_finite() {
                    return Err(Error::Internal(format!("the loss became {value} by step {}; lower --lr or --head-lr", st.step)));
                }
                last_loss = Some(value);
                let line = MetricsLine {
                    step: st.step,
                    epoch: st.epoch,
                    loss: Some(value),
                    step_ms: Some(ms),
                    head_rows: Some(out.computed_rows as f64),
                    train_s: Some(train_s + since.elapsed().as_secs_f64()),
                    ..Default::default()
                };
                writeln!(metrics, "{}", serde_json::to_string(&line).map_err(|e| Error::Internal(e.to_string()))?).ctx(&metrics_path)?;
            }
            bar.inc(1, &last_loss.map(|l| format!(", loss {l:.4}")).unwrap_or_default());
            if o.checkpoint_every > 0 && st.step % o.checkpoint_every as u64 == 0 {
                st.save(&ckpt)?;
            }
            if crate::progress::interrupted() {
                st.save(&ckpt)?;
                return Err(Error::Interrupted);
            }
        }
        st.epoch += 1;
        st.step_in_epoch = 0;
        bar.line(&last_loss.map(|l| format!(", loss {l:.4}")).unwrap_or_default());
        if inp.eval_ds.is_some() {
            train_s += since.elapsed().as_secs_f64();
            let r = evaluate(&mut st, train_s, false, &mut metrics)?;
            since = Instant::now();
            if o.progress {
                bar.println(format!("epoch {}/{}: held-out top-1 {:.4}, ECE {:.4}", st.epoch, o.epochs, r.top1, r.ece));
            }
            last_eval = Some(r);
        }
        st.save(&ckpt)?;
    }
    bar.finish_and_clear();
    if last_eval.is_none()
        && let Some(e) = &inp.eval_ds
    {
        last_eval = Some(measure(&mut st, e)?);
    }
    st.save(&ckpt)?;
    drop(metrics);
    // the best epoch-end evaluation, over every process of a resumed run
    let lines = crate::run::read_metrics(&o.out)?;
    let route = crate::run::route(&lines);
    let evals: Vec<(usize, f64)> = lines.into_iter().filter(|m| !m.within_epoch).filter_map(|m| m.eval.map(|e| (m.epoch, e.top1))).collect();
    let best = evals.iter().copied().fold(None, |b: Option<(usize, f64)>, (e, t)| if b.is_none_or(|b| t > b.1) { Some((e, t)) } else { b });
    let ev = last_eval.as_ref();
    let wall = train_t0.elapsed().as_secs_f64();
    let summary = Summary {
        loss: o.loss.name().into(),
        top1: ev.map(|e| e.top1),
        top5: ev.map(|e| e.top5),
        ece: ev.map(|e| e.ece),
        nll: ev.map(|e| e.nll),
        teacher_agreement: ev.and_then(|e| e.teacher_agreement),
        best_top1: best.map(|b| b.1),
        best_epoch: best.map(|b| b.0),
        steps: st.step,
        step_ms_median: median(&mut step_ms),
        rows_per_s: rows_done as f64 / wall.max(1e-9),
        classes: inp.man.classes,
        head_rows: if computed.is_empty() { 0.0 } else { computed.iter().sum::<f64>() / computed.len() as f64 },
        temperature: o.temperature,
        alpha: o.alpha,
        epochs: st.step as f64 / steps_per_epoch.max(1) as f64,
        wall_s: t0.elapsed().as_secs_f64(),
        eval_rows: ev.map(|e| e.rows).unwrap_or(0),
        bands: ev.and_then(|e| e.bands),
        retrieval: ev.and_then(|e| e.retrieval),
        route,
    };
    write_atomic(&o.out.join("summary.json"), serde_json::to_string_pretty(&summary).map_err(|e| Error::Internal(e.to_string()))?.as_bytes())?;
    crate::report::plot::training_curves(std::slice::from_ref(&o.out), &o.out.join("curves.svg"))?;
    Ok(summary)
}

/// `kdcache export`: the student as safetensors for Python — `backbone.<name>` (the backbone's own
/// parameter names, e.g. `backbone.l0.weight`, or `backbone.0.weight` in a TorchScript `Sequential`),
/// `head.weight` [C, d], `head.bias` [C] — with its architecture in the file's metadata (see
/// [`export_metadata`]), so it can be rebuilt without guessing. A TorchScript backbone is also written
/// whole, with its buffers, to [`backbone_module_path`]; that path is returned. The folder of `out` is
/// created, and the same run always exports the same bytes.
pub fn export(run: &Path, out: &Path) -> Result<Option<PathBuf>> {
    let ckpt = run.join("checkpoint.safetensors");
    if !ckpt.exists() {
        return Err(Error::invalid(format!("{}: no training run there (no checkpoint.safetensors)", run.display())));
    }
    let cfg_path = run.join("config.json");
    let cfg: TrainOptions = serde_json::from_str(&std::fs::read_to_string(&cfg_path).ctx(&cfg_path)?)
        .map_err(|e| Error::corrupt(&cfg_path, None, format!("not a run configuration: {e}")))?;
    let map = read_checkpoint(&ckpt)?;
    let mut named: Vec<(String, Tensor)> = vec![];
    // a TorchScript backbone: the trained module itself (its parameters and every buffer, e.g. BatchNorm
    // running statistics) beside the file, and its parameters under the module's own names (the
    // checkpoint's variable names have `.` replaced by `_`)
    let module = match map.get("backbone_ts") {
        Some(ts) => {
            let bytes = Vec::<u8>::try_from(ts).map_err(|e| Error::corrupt(&ckpt, None, format!("backbone_ts: {e}")))?;
            let m = tch::CModule::load_data(&mut bytes.as_slice())
                .map_err(|e| Error::corrupt(&ckpt, None, format!("backbone_ts: not a TorchScript module: {e}")))?;
            for (n, t) in m.named_parameters()? {
                named.push((format!("backbone.{n}"), t));
            }
            Some((backbone_module_path(out), bytes))
        }
        None => {
            for (n, t) in &map {
                if let Some(b) = n.strip_prefix("backbone/") {
                    named.push((format!("backbone.{b}"), t.shallow_clone()));
                }
            }
            None
        }
    };
    let head = map.get("head").ok_or_else(|| Error::corrupt(&ckpt, None, "no head in the checkpoint"))?;
    if head.dim() != 2 || head.size()[1] < 2 {
        return Err(Error::corrupt(&ckpt, None, format!("head of shape {:?}", head.size())));
    }
    let (classes, d) = (head.size()[0], head.size()[1] - 1);
    named.push(("head.weight".to_string(), head.f_narrow(1, 0, d)?.f_contiguous()?));
    named.push(("head.bias".to_string(), head.f_narrow(1, d, 1)?.f_squeeze_dim(1)?.f_contiguous()?));
    let mut meta = export_metadata(&cfg, &map, classes, d);
    let mut data = vec![];
    for (n, t) in &named {
        let v: Vec<f32> = Vec::<f32>::try_from(&t.f_to_kind(tch::Kind::Float)?.f_flatten(0, -1)?)?;
        data.push((n.clone(), t.size().iter().map(|&s| s as usize).collect::<Vec<_>>(), bytemuck::cast_slice::<f32, u8>(&v).to_vec()));
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).ctx(dir)?;
    }
    if let Some((path, bytes)) = &module {
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        meta.insert("kdcache.backbone_module".into(), name);
        write_atomic(path, bytes)?;
    }
    write_atomic(out, &safetensors_f32(data, &meta)?)?;
    Ok(module.map(|m| m.0))
}

/// Where `export --out X.safetensors` writes a TorchScript student's trained backbone module: `X.backbone.pt`.
pub fn backbone_module_path(out: &Path) -> PathBuf {
    out.with_extension("backbone.pt")
}

/// A safetensors file of float32 tensors `(name, shape, little-endian bytes)`; see [`safetensors_bytes`].
fn safetensors_f32(tensors: Vec<(String, Vec<usize>, Vec<u8>)>, meta: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    safetensors_bytes(tensors.into_iter().map(|(n, s, b)| (n, "F32", s, b)).collect(), meta)
}

/// A safetensors file of tensors `(name, dtype, shape, little-endian bytes)` (dtype `F32`, `F64` or
/// `I64`) with `meta` as its `__metadata__`, byte-reproducible: the header's keys are sorted and the
/// tensors lie in name order (the safetensors crate writes its metadata map in hash order, different
/// in every process).
pub(crate) fn safetensors_bytes(mut tensors: Vec<(String, &'static str, Vec<usize>, Vec<u8>)>, meta: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let mut header: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    header.insert("__metadata__".into(), serde_json::json!(meta));
    let mut offset = 0usize;
    for (name, dtype, shape, bytes) in &tensors {
        let width = match *dtype {
            "F32" => 4,
            "F64" | "I64" => 8,
            _ => 0,
        };
        let n: usize = shape.iter().product();
        if width == 0 || bytes.len() != width * n || header.contains_key(name) {
            return Err(Error::Internal(format!("safetensors: tensor {name} of {dtype} shape {shape:?} has {} bytes", bytes.len())));
        }
        header.insert(name.clone(), serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.len()]}));
        offset += bytes.len();
    }
    let mut head = serde_json::to_vec(&header).map_err(|e| Error::Internal(e.to_string()))?;
    head.resize(head.len().next_multiple_of(8), b' ');
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for (_, _, _, bytes) in &tensors {
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

/// The exported student's architecture, as safetensors metadata (strings):
/// `kdcache.backbone` `mlp` (with `kdcache.layers` `[in, h1, …, d]` and `kdcache.activation` `relu`,
/// applied after every layer: the features are the last hidden layer's activations) or `torchscript`
/// (with `kdcache.torchscript`, the module file the run started from, and `kdcache.backbone_module`, the
/// trained module that `export` writes beside the file, see [`backbone_module_path`]); `kdcache.features` d,
/// `kdcache.classes` C, `kdcache.temperature` (the distillation temperature), `kdcache.logits`
/// (the formula), `kdcache.loss` (the estimator).
pub fn export_metadata(cfg: &TrainOptions, ckpt: &Checkpoint, classes: i64, d: i64) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    m.insert("kdcache.classes".into(), classes.to_string());
    m.insert("kdcache.features".into(), d.to_string());
    m.insert("kdcache.temperature".into(), cfg.temperature.to_string());
    m.insert("kdcache.loss".into(), cfg.loss.name().into());
    m.insert("kdcache.logits".into(), "features @ head.weight.T + head.bias".into());
    match &cfg.student_ts {
        Some(p) => {
            m.insert("kdcache.backbone".into(), "torchscript".into());
            m.insert("kdcache.torchscript".into(), p.display().to_string());
        }
        None => {
            m.insert("kdcache.backbone".into(), "mlp".into());
            let mut layers = vec![];
            for i in 0.. {
                let Some(w) = ckpt.get(&format!("backbone/l{i}.weight")) else { break };
                if i == 0 {
                    layers.push(w.size()[1]);
                }
                layers.push(w.size()[0]);
            }
            m.insert("kdcache.layers".into(), format!("{layers:?}"));
            m.insert("kdcache.activation".into(), "relu".into());
        }
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::manifest::{Encoding, Signature};
    use crate::format::rows::{LogitDtype, RowSpec};

    #[test]
    fn rs_away_from_the_first_temperature_needs_tail_values() {
        let spec = RowSpec {
            classes: 10,
            k: 2,
            temperatures: vec![1.0, 2.0],
            tail_samples: 3,
            aug_dim: 0,
            logit_dtype: LogitDtype::F16,
            tail_logit: true,
            mixture: false,
        };
        let mut man = Manifest::new(&spec, Encoding::Kds, 8, Signature::default());
        let dis = DisConfig::default();
        assert_eq!(check_estimator(&man, Estimator::Rs, 2.0, 0.5, &dis).unwrap(), 1);
        man.format_version = 2; // samples without their logits
        assert_eq!(check_estimator(&man, Estimator::Rs, 1.0, 0.5, &dis).unwrap(), 0);
        let e = check_estimator(&man, Estimator::Rs, 2.0, 0.5, &dis).unwrap_err().to_string();
        assert!(e.contains("first temperature 1") && e.contains("format 2"), "{e}");
        man.tail_samples = 0;
        assert!(check_estimator(&man, Estimator::Rs, 1.0, 0.5, &dis).unwrap_err().to_string().contains("--tail-samples"));
    }
}
