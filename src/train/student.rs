//! The student: a backbone giving features [B, d] (built-in MLP, or a TorchScript module trained
//! through `TrainableCModule`) and a head owned by kdcache: one table [C, d+1] holding W (first d
//! columns) and b (last column), so logits = [h, 1]·tableᵀ and a class's row is one index.
use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

use crate::error::{Error, Result};
use crate::nn::Mlp;

pub enum Backbone {
    Mlp(Mlp),
    Script(tch::TrainableCModule),
}

pub struct Student {
    pub vs: nn::VarStore,
    pub backbone: Backbone,
    pub head: Tensor,
    pub d: i64,
    pub classes: i64,
}

/// Parses `mlp:256` or `mlp:512,256` into hidden sizes.
pub fn parse_mlp(spec: &str) -> Result<Vec<i64>> {
    let dims = spec.strip_prefix("mlp:").ok_or_else(|| Error::invalid(format!("student {spec:?}: use mlp:H[,H…] or --student-ts")))?;
    let v: Vec<i64> = dims
        .split(',')
        .map(|d| d.trim().parse::<i64>().ok().filter(|&x| x > 0))
        .collect::<Option<_>>()
        .ok_or_else(|| Error::invalid(format!("student {spec:?}: hidden sizes must be positive integers")))?;
    if v.is_empty() {
        return Err(Error::invalid("student needs at least one hidden layer"));
    }
    Ok(v)
}

impl Student {
    /// `saved` is a TorchScript backbone as [`Student::script_bytes`] wrote it into a checkpoint: on a
    /// resume it replaces the file `script`, so the module's buffers (BatchNorm running statistics) carry
    /// on from where the run stopped.
    pub fn new(in_shape: &[usize], classes: i64, mlp: Option<&[i64]>, script: Option<&Path>, saved: Option<&[u8]>, device: Device, seed: u64) -> Result<Self> {
        tch::manual_seed(seed as i64);
        let mut vs = nn::VarStore::new(device);
        let in_dim: i64 = in_shape.iter().product::<usize>() as i64;
        let backbone = match (mlp, script) {
            (_, Some(p)) => {
                let loaded = match saved {
                    Some(mut b) => tch::TrainableCModule::load_data(&mut b, vs.root()),
                    None => tch::TrainableCModule::load(p, vs.root()),
                };
                let mut m = loaded.map_err(|e| Error::invalid(format!("{}: not a loadable TorchScript backbone: {e}", p.display())))?;
                m.set_train();
                if vs.trainable_variables().is_empty() {
                    return Err(Error::invalid(format!("{}: the TorchScript backbone has no trainable parameters", p.display())));
                }
                // one compute dtype: a .half() module's parameters become float32 (in place, shared with it)
                vs.float();
                Backbone::Script(m)
            }
            (Some(h), None) => {
                let mut dims = vec![in_dim];
                dims.extend(h);
                Backbone::Mlp(Mlp::new(&vs.root(), &dims, true))
            }
            (None, None) => return Err(Error::invalid("give --student mlp:H or --student-ts backbone.pt")),
        };
        let mut s = Student { vs, backbone, head: Tensor::new(), d: 0, classes };
        // probe the feature size, in eval mode: a training-mode forward would move BatchNorm statistics
        let mut shape = vec![2i64];
        shape.extend(in_shape.iter().map(|&d| d as i64));
        s.set_train(false);
        let h = tch::no_grad(|| s.features(&Tensor::zeros(&shape, (Kind::Float, device))))
            .map_err(|e| Error::invalid(format!("the student backbone rejected input of shape {shape:?}: {e}")))?;
        s.set_train(true);
        if h.dim() != 2 || h.size()[0] != 2 {
            return Err(Error::invalid(format!("the student backbone gave shape {:?}; expected features [B, d]", h.size())));
        }
        s.d = h.size()[1];
        let bound = 1.0 / (s.d as f64).sqrt();
        let w = Tensor::f_rand([classes, s.d], (Kind::Float, device))? * (2.0 * bound) - bound;
        s.head = Tensor::f_cat(&[w, Tensor::f_zeros([classes, 1], (Kind::Float, device))?], 1)?;
        Ok(s)
    }

    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        match &self.backbone {
            Backbone::Mlp(m) => m.forward(x),
            Backbone::Script(m) => Ok(m.forward_ts(&[x])?),
        }
    }

    /// [h, 1]: features with the bias column.
    pub fn augment(h: &Tensor) -> Result<Tensor> {
        let ones = Tensor::f_ones([h.size()[0], 1], (h.kind(), h.device()))?;
        Ok(Tensor::f_cat(&[h, &ones], 1)?)
    }

    /// Full logits [B, C] (evaluation, and the `full` estimator).
    pub fn logits(&self, x: &Tensor) -> Result<Tensor> {
        let h = Self::augment(&self.features(x)?)?;
        Ok(h.f_matmul(&self.head.f_tr()?)?)
    }

    /// A TorchScript backbone serialised whole (parameters and buffers), for the checkpoint; `None` for
    /// the built-in MLP, whose state is its parameters. `scratch` is a file name it may use and removes.
    pub fn script_bytes(&self, scratch: &Path) -> Result<Option<Vec<u8>>> {
        let Backbone::Script(m) = &self.backbone else { return Ok(None) };
        m.save(scratch)?;
        let bytes = std::fs::read(scratch).map_err(|e| Error::io(scratch, e))?;
        let _ = std::fs::remove_file(scratch);
        Ok(Some(bytes))
    }

    pub fn set_train(&mut self, on: bool) {
        if let Backbone::Script(m) = &mut self.backbone {
            if on { m.set_train() } else { m.set_eval() }
        }
    }
}
