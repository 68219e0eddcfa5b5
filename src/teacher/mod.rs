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
    Identity,
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
            Teacher::Identity => x.f_flatten(1, -1)?,
        })
    }
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
