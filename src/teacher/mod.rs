//! Teachers: a TorchScript module (`.pt`, from `torch.jit.trace`), a built-in MLP (`.safetensors`), or
//! `identity` (the data rows *are* logits — for measuring the pipeline alone). Teachers compute in
//! float32 whatever dtype their file stores. `teach` trains the
//! built-in MLP; `pipeline` runs a teacher over a dataset into a cache.
pub mod pipeline;
pub mod teach;

use std::path::Path;

use tch::{Device, Tensor, nn};

use crate::error::{Error, Result};
use crate::nn::{Mlp, mlp_dims};

pub enum Teacher {
    Builtin {
        _vs: nn::VarStore,
        net: Mlp,
    },
    /// A TorchScript module; the flag records that its output's first tensor was taken (noted once).
    Script(tch::CModule, std::sync::atomic::AtomicBool),
    /// A template matcher (the image world's teacher, from `synth --image`): logit c = logsumexp over
    /// every place, both mirrorings and every size q = p … ⌈7p/4⌉ of ⟨x_place, w_c^q⟩ + b_c^q, less the
    /// log of their count, where w_c^q is the template magnified bilinearly to q × q and b_c^q =
    /// b_c·|w_c^q|²/|w_c|² (b_c = −|t_c|²/2σ² without a prior). At size p alone this is the images'
    /// Bayes-optimal posterior; the larger sizes keep it for crops, which magnify the evidence by up to
    /// 1/√0.35 ≈ 1.7 at `--augment scale=0.35:1`.
    Template {
        /// Per size: [2C, ch, q, q] (each class's template, then its mirror image) and the bias [C].
        sizes: Vec<(Tensor, Tensor)>,
    },
    Identity,
}

/// Loads a template teacher (`template.weight` [C, ch, p, p], `template.bias` [C]).
fn load_template(path: &Path, device: Device) -> Result<Teacher> {
    let bad = |w: String| Error::corrupt(path, None, w);
    let named = Tensor::read_safetensors(path).map_err(|e| bad(format!("not a usable .safetensors file: {e}")))?;
    let get = |n: &str| named.iter().find(|(k, _)| k == n).map(|(_, t)| t.shallow_clone()).ok_or_else(|| bad(format!("missing tensor {n}")));
    let (w, b) = (get("template.weight")?, get("template.bias")?);
    if w.dim() != 4 || b.size() != [w.size()[0]] || w.size()[2] != w.size()[3] {
        return Err(bad(format!("template.weight {:?} and template.bias {:?}: expected [C, ch, p, p] and [C]", w.size(), b.size())));
    }
    let w = w.f_to_kind(tch::Kind::Float)?.f_to_device(device)?;
    let b = b.f_to_kind(tch::Kind::Float)?.f_to_device(device)?;
    let p = w.size()[2];
    let norm = w.f_square()?.f_sum_dim_intlist([1i64, 2, 3].as_slice(), false, tch::Kind::Float)?;
    let mut sizes = vec![];
    for q in p..=(7 * p + 3) / 4 {
        let wq = if q == p { w.shallow_clone() } else { w.f_upsample_bilinear2d([q, q], false, None, None)? };
        // the bias scales with the template's energy (its prior part, if any, scales along: a small distortion)
        let bq = &b * wq.f_square()?.f_sum_dim_intlist([1i64, 2, 3].as_slice(), false, tch::Kind::Float)? / norm.f_clamp_min(1e-12)?;
        sizes.push((Tensor::f_cat(&[&wq, &wq.f_flip([3])?], 0)?, bq));
    }
    Ok(Teacher::Template { sizes })
}

/// Safetensors names that mark a template teacher.
fn is_template(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else { return false };
    safetensors::SafeTensors::read_metadata(&bytes).is_ok_and(|(_, m)| m.info("template.weight").is_some())
}

impl Teacher {
    /// Loads a teacher and returns it with its fingerprint (`xxh3:` of the model file).
    pub fn load(spec: &str, device: Device) -> Result<(Teacher, String)> {
        if spec == "identity" {
            return Ok((Teacher::Identity, "identity".into()));
        }
        let path = Path::new(spec);
        let fp = crate::fingerprint::file(path)?;
        let t = match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") if is_template(path) => load_template(path, device)?,
            Some("safetensors") => {
                let dims = mlp_dims(path)?;
                let mut vs = nn::VarStore::new(device);
                let net = Mlp::new(&vs.root(), &dims, false);
                vs.load(path).map_err(|e| Error::invalid(format!("{}: cannot load as an MLP {dims:?}: {e}", path.display())))?;
                // one compute dtype whatever the file stores (f16/bf16 weights meet f32 inputs otherwise)
                vs.float();
                vs.freeze();
                Teacher::Builtin { _vs: vs, net }
            }
            _ => {
                let mut m = tch::CModule::load_on_device(path, device)
                    .map_err(|e| Error::invalid(format!("{}: not a loadable TorchScript module: {e}", path.display())))?;
                m.f_set_eval()?;
                m.to(device, tch::Kind::Float, false);
                Teacher::Script(m, Default::default())
            }
        };
        Ok((t, fp))
    }

    /// Logits [B, C] for a batch of inputs, without gradient.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _g = tch::no_grad_guard();
        Ok(match self {
            Teacher::Builtin { net, .. } => net.forward(x)?,
            Teacher::Script(m, noted) => first_tensor(m.forward_is(&[tch::IValue::Tensor(x.shallow_clone())])?, noted)?,
            Teacher::Template { sizes } => template_logits(x, sizes)?,
            Teacher::Identity => x.f_flatten(1, -1)?,
        })
    }
}

/// The template teacher's logits, in chunks of rows that keep the [rows, 2C, places] match scores
/// within 2^26 values.
fn template_logits(x: &Tensor, sizes: &[(Tensor, Tensor)]) -> Result<Tensor> {
    let ws = sizes[0].0.size();
    let (c2, ch, p) = (ws[0], ws[1], ws[2]);
    let x = if x.dim() == 3 { x.f_unsqueeze(1)? } else { x.shallow_clone() };
    let xs = x.size();
    let qmax = sizes.last().map_or(p, |s| s.0.size()[2]);
    if x.dim() != 4 || xs[1] != ch || xs[2] < qmax || xs[3] < qmax {
        return Err(Error::invalid(format!("the template teacher takes images [B, {ch}, H, W] with H, W >= {qmax}; got {:?}", xs)));
    }
    let places: i64 = sizes.iter().map(|s| 2 * (xs[2] - s.0.size()[2] + 1) * (xs[3] - s.0.size()[2] + 1)).sum();
    let chunk = ((1i64 << 26) / (c2 * places / 2)).max(1);
    let mut out = vec![];
    for lo in (0..xs[0]).step_by(chunk as usize) {
        let part = x.f_narrow(0, lo, chunk.min(xs[0] - lo))?;
        let n = part.size()[0];
        let mut scores = vec![];
        for (w, b) in sizes {
            let s = part.f_conv2d::<Tensor>(w, None, [1, 1], [0, 0], [1, 1], 1)?; // [n, 2C, H', W']
            let s = s.f_reshape([n, 2, c2 / 2, -1])?.f_permute([0, 2, 1, 3])?.f_reshape([n, c2 / 2, -1])?;
            scores.push(s + b.f_view([1, -1, 1])?);
        }
        out.push(Tensor::f_cat(&scores, 2)?.f_logsumexp([2i64], false)? - (places as f64).ln());
    }
    Ok(Tensor::f_cat(&out, 0)?)
}

/// The logits in a module's output: a tensor, or the first tensor of a tuple or list (models that also
/// return hidden states or a loss), said once on stderr.
fn first_tensor(out: tch::IValue, noted: &std::sync::atomic::AtomicBool) -> Result<Tensor> {
    let items = match out {
        tch::IValue::Tensor(t) => return Ok(t),
        tch::IValue::Tuple(v) | tch::IValue::GenericList(v) => v,
        tch::IValue::TensorList(v) => v.into_iter().map(tch::IValue::Tensor).collect(),
        other => return Err(Error::invalid(format!("the teacher's forward returned {}, not logits [B, C]", ivalue_kind(&other)))),
    };
    let n = items.len();
    match items.into_iter().next() {
        Some(tch::IValue::Tensor(t)) => {
            if !noted.swap(true, std::sync::atomic::Ordering::Relaxed) {
                eprintln!("note: the teacher's forward returned {n} values: its first, a tensor, is taken as the logits");
            }
            Ok(t)
        }
        _ => Err(Error::invalid(format!("the teacher's forward returned {n} values, the first not a tensor: make it return the logits [B, C] first"))),
    }
}

fn ivalue_kind(v: &tch::IValue) -> &'static str {
    match v {
        tch::IValue::None => "None",
        tch::IValue::Bool(_) | tch::IValue::Int(_) | tch::IValue::Double(_) => "a number",
        tch::IValue::String(_) => "a string",
        tch::IValue::GenericDict(_) => "a dict",
        _ => "a value that is no tensor",
    }
}
