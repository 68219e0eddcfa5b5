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
    Builtin { _vs: nn::VarStore, net: Mlp },
    Script(tch::CModule),
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
                Teacher::Script(m)
            }
        };
        Ok((t, fp))
    }

    /// Logits [B, C] for a batch of inputs, without gradient.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let _g = tch::no_grad_guard();
        Ok(match self {
            Teacher::Builtin { net, .. } => net.forward(x)?,
            Teacher::Script(m) => m.forward_ts(&[x])?,
            Teacher::Identity => x.f_flatten(1, -1)?,
        })
    }
}
