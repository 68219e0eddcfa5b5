//! `kdcache step` (hidden): a fixture for re-implementations of the estimators. It runs the code path
//! of `train`'s step — [`loss::step_loss`], the head's row-wise Adam, the `dis` sampler's bookkeeping
//! — on one batch (the cache's first N rows in stored order) with random leaf features `h` [N, D] in
//! place of a backbone, for S steps, and writes what each step computed to one safetensors file.
//!
//! Tensors: `h` f32 [N, D], `head0` f32 [C, D+1] (the student's initial head), `rows` i64 [N] (cache
//! positions); per step i: `s{i}.loss` f64 [1] (without the constant), `s{i}.constant` f64 [1],
//! `s{i}.grad_h` f32 [N, D], `s{i}.grad_head` f32 [C, D+1] (dense: zero outside the rows the step
//! computed), `s{i}.head` f32 [C, D+1] (after the optimizer step); for `dis` also `assign0` i64 [C] and
//! `mass0` f64 [n] (the sampler before step 0) and per step `s{i}.cols` i64, `s{i}.logw` f64,
//! `s{i}.union` i64 (empty on a dense step), `s{i}.dense` i64 [1], and after the step `s{i}.mass` f64
//! [n], `s{i}.assign` i64 [C]. The `__metadata__` key `config` holds the options as JSON.
use std::collections::BTreeMap;
use std::path::PathBuf;

use rand::SeedableRng;
use tch::{Device, Kind, Tensor};

use crate::error::{Error, Result};
use crate::format::CacheReader;
use crate::fsio::write_atomic;
use crate::sample::DisConfig;
use crate::train::dis::DisState;
use crate::train::loss::{self, Estimator, LossConfig, Targets};
use crate::train::optim::{OptConfig, OptKind, RowOptimizer};

#[derive(Debug, Clone)]
pub struct StepOptions {
    pub cache: PathBuf,
    pub loss: Estimator,
    pub dis: DisConfig,
    /// Batch rows: cache positions 0..rows.
    pub rows: usize,
    /// Feature size D of the random features.
    pub dim: usize,
    pub steps: usize,
    pub seed: u64,
    /// None = the cache's first temperature.
    pub temperature: Option<f64>,
    pub alpha: f64,
    /// None = [`crate::train::default_head_lr`].
    pub head_lr: Option<f64>,
    pub out: PathBuf,
}

/// A tensor as `(name, dtype, shape, bytes)` for [`crate::train::safetensors_bytes`].
fn raw(name: String, t: &Tensor) -> Result<(String, &'static str, Vec<usize>, Vec<u8>)> {
    let t = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
    let shape = t.size().iter().map(|&s| s as usize).collect();
    let flat = t.f_flatten(0, -1)?;
    let (dtype, bytes) = match t.kind() {
        Kind::Float => ("F32", bytemuck::cast_slice(&Vec::<f32>::try_from(&flat)?).to_vec()),
        Kind::Double => ("F64", bytemuck::cast_slice(&Vec::<f64>::try_from(&flat)?).to_vec()),
        Kind::Int64 => ("I64", bytemuck::cast_slice(&Vec::<i64>::try_from(&flat)?).to_vec()),
        k => return Err(Error::Internal(format!("fixture: tensor {name} of kind {k:?}"))),
    };
    Ok((name, dtype, shape, bytes))
}

/// Writes the fixture of `o` to `o.out`; returns the number of tensors written.
pub fn write_fixture(o: &StepOptions) -> Result<usize> {
    if o.rows == 0 || o.dim == 0 || o.steps == 0 {
        return Err(Error::invalid("--rows, --dim and --steps must be at least 1"));
    }
    let reader = CacheReader::open(&o.cache)?;
    let man = reader.manifest();
    let (classes, n) = (man.classes as usize, o.rows as i64);
    if o.rows as u64 > man.rows {
        return Err(Error::invalid(format!("--rows {}: the cache has {} rows", o.rows, man.rows)));
    }
    let temperature = o.temperature.unwrap_or(man.temperatures[0] as f64);
    let ti = crate::train::check_estimator(man, o.loss, temperature, o.alpha, &o.dis)?;
    let head_lr = o.head_lr.unwrap_or(crate::train::default_head_lr(o.loss));
    if !(head_lr > 0.0 && head_lr.is_finite()) {
        return Err(Error::invalid(format!("--head-lr {head_lr} must be > 0")));
    }
    let batch = reader.get_rows(0..o.rows as u64)?;
    let tg = Targets::from_rows(&batch, &(0..o.rows).collect::<Vec<_>>(), ti, temperature, classes);

    // the features, then the head as Student::new draws it, from one torch generator
    let cpu = (Kind::Float, Device::Cpu);
    let d = o.dim as i64;
    tch::manual_seed(o.seed as i64);
    let h = Tensor::f_randn([n, d], cpu)?.f_requires_grad_(true)?;
    let bound = 1.0 / (d as f64).sqrt();
    let w = Tensor::f_rand([classes as i64, d], cpu)? * (2.0 * bound) - bound;
    let mut head = Tensor::f_cat(&[w, Tensor::f_zeros([classes as i64, 1], cpu)?], 1)?;
    let opt = OptConfig::new(OptKind::Adam, head_lr);
    let mut hopt = RowOptimizer::new(opt, &head)?;
    let mut dis = if o.loss == Estimator::Dis {
        Some(DisState::new(o.dis.clone(), &head, o.seed, crate::train::dis_prior(man, &o.dis, temperature).as_deref())?)
    } else {
        None
    };
    let cfg = LossConfig { estimator: o.loss, temperature, alpha: o.alpha };

    let ints = |v: &[i64]| Tensor::f_from_slice(v);
    let assign = |d: &DisState| ints(&d.sampler.clusters.assign.iter().map(|&a| a as i64).collect::<Vec<_>>());
    let mut named = vec![raw("h".into(), &h)?, raw("head0".into(), &head)?, raw("rows".into(), &Tensor::f_arange(n, (Kind::Int64, Device::Cpu))?)?];
    if let Some(d) = &dis {
        named.push(raw("assign0".into(), &assign(d)?)?);
        named.push(raw("mass0".into(), &Tensor::f_from_slice(&d.sampler.mass)?)?);
    }
    for s in 0..o.steps {
        // as train's step(): the step's seed drives the plan's draws and torch's generator
        let step_seed = o.seed ^ (s as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(step_seed);
        tch::manual_seed(step_seed as i64);
        let mut out = loss::step_loss(&cfg, &h, &head, &tg, dis.as_mut(), &mut rng)?;
        let mut gh = h.grad();
        if gh.defined() {
            let _ = gh.f_zero_()?;
        }
        out.backward()?;
        let g = out.head_grad()?;
        if !g.defined() {
            return Err(Error::Internal("fixture: the head leaf has no gradient".into()));
        }
        let grad_head = match &out.rows {
            Some(rows) => head.f_zeros_like()?.f_index_add(0, rows, &g)?,
            None => g.shallow_clone(),
        };
        let p = |k: &str| format!("s{s}.{k}");
        named.push(raw(p("loss"), &Tensor::f_from_slice(&[out.loss.f_double_value(&[])?])?)?);
        named.push(raw(p("constant"), &Tensor::f_from_slice(&[out.constant])?)?);
        named.push(raw(p("grad_h"), &h.grad())?);
        named.push(raw(p("grad_head"), &grad_head)?);
        // the update train's step makes (the sampler's bookkeeping does not move the head)
        out.update_head(&mut head, &mut hopt, dis.as_mut(), &h, temperature)?;
        named.push(raw(p("head"), &head)?);
        if let (Some(st), Some(plan)) = (dis.as_mut(), &out.plan) {
            named.push(raw(p("cols"), &ints(&plan.cols)?)?);
            named.push(raw(p("logw"), &Tensor::f_from_slice(&plan.logw)?)?);
            named.push(raw(p("union"), &ints(&plan.union)?)?);
            named.push(raw(p("dense"), &ints(&[plan.dense as i64])?)?);
            named.push(raw(p("mass"), &Tensor::f_from_slice(&st.sampler.mass)?)?);
            named.push(raw(p("assign"), &assign(st)?)?);
        }
    }
    let config = serde_json::json!({
        "loss": o.loss.name(),
        "temperature": temperature,
        "ti": ti,
        "alpha": o.alpha,
        "head_lr": head_lr,
        "opt": opt,
        "seed": o.seed,
        "steps": o.steps,
        "rows": o.rows,
        "dim": o.dim,
        "classes": classes,
        "k": man.top_k,
        "tail_samples": man.tail_samples,
        "dis": o.dis,
        "dis_clusters": o.dis.cluster_count(classes),
    });
    let meta = BTreeMap::from([("config".to_string(), config.to_string())]);
    let count = named.len();
    if let Some(dir) = o.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    write_atomic(&o.out, &crate::train::safetensors_bytes(named, &meta)?)?;
    Ok(count)
}
