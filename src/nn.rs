//! Built-in architectures shared by teachers and students, and device selection.
use std::path::Path;

use tch::{Device, Tensor, nn};

use crate::error::{Error, Result};

/// `auto` (CUDA when visible, else CPU), `cpu`, `cuda` or `cuda:N`. Asking for CUDA where there is none
/// is an error, never a silent fallback.
pub fn parse_device(s: &str) -> Result<Device> {
    let cuda_ok = tch::Cuda::is_available();
    let count = if cuda_ok { tch::Cuda::device_count() as usize } else { 0 };
    match s {
        "auto" => Ok(if cuda_ok { Device::Cuda(0) } else { Device::Cpu }),
        "cpu" => Ok(Device::Cpu),
        _ => {
            let idx = match s.strip_prefix("cuda") {
                Some("") => 0,
                Some(r) => r
                    .strip_prefix(':')
                    .and_then(|n| n.parse::<usize>().ok())
                    .ok_or_else(|| Error::invalid(format!("bad device {s:?}: use auto, cpu, cuda or cuda:N")))?,
                None => return Err(Error::invalid(format!("bad device {s:?}: use auto, cpu, cuda or cuda:N"))),
            };
            if idx >= count {
                return Err(Error::invalid(format!(
                    "device {s} was asked for, but {} CUDA device(s) are visible to libtorch{}",
                    count,
                    if cuda_ok { "" } else { " (is this a CPU-only build or a machine without a GPU?)" }
                )));
            }
            Ok(Device::Cuda(idx))
        }
    }
}

/// A multilayer perceptron: Linear layers `l0`, `l1`, … with ReLU between them (and after the last one
/// when `final_relu`, which makes it a feature backbone).
#[derive(Debug)]
pub struct Mlp {
    layers: Vec<nn::Linear>,
    final_relu: bool,
}

impl Mlp {
    pub fn new(p: &nn::Path, dims: &[i64], final_relu: bool) -> Self {
        let layers = dims.windows(2).enumerate().map(|(i, w)| nn::linear(p / format!("l{i}"), w[0], w[1], Default::default())).collect();
        Mlp { layers, final_relu }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut h = x.f_flatten(1, -1)?;
        for (i, l) in self.layers.iter().enumerate() {
            h = h.f_linear(&l.ws, l.bs.as_ref())?;
            if i + 1 < self.layers.len() || self.final_relu {
                h = h.f_relu()?;
            }
        }
        Ok(h)
    }
}

/// Layer sizes `[in, h1, …, out]` of an MLP saved in safetensors (tensors `l{i}.weight` [out, in]).
pub fn mlp_dims(path: &Path) -> Result<Vec<i64>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| Error::corrupt(path, None, format!("not a usable .safetensors file: {e}")))?;
    let mut dims = vec![];
    for i in 0.. {
        let Some(w) = meta.info(&format!("l{i}.weight")) else { break };
        if w.shape.len() != 2 {
            return Err(Error::corrupt(path, None, format!("l{i}.weight has shape {:?}", w.shape)));
        }
        if i == 0 {
            dims.push(w.shape[1] as i64);
        } else if dims[i] != w.shape[1] as i64 {
            return Err(Error::corrupt(path, None, format!("l{i}.weight takes {} inputs, l{}.weight gives {}", w.shape[1], i - 1, dims[i])));
        }
        dims.push(w.shape[0] as i64);
    }
    if dims.len() < 2 {
        return Err(Error::invalid(format!("{}: no MLP layers (tensors l0.weight, l1.weight, …) found", path.display())));
    }
    Ok(dims)
}

/// Saves a VarStore as safetensors atomically (temp file, fsync, rename; see [`crate::fsio`]).
pub fn save_atomic(vs: &nn::VarStore, path: &Path) -> Result<()> {
    // tch picks the file format from the extension: the temporary name keeps `.safetensors`
    let tmp = path.with_extension("partial.safetensors");
    vs.save(&tmp)?;
    crate::fsio::publish(&tmp, path)
}

/// Rows `range` of a dataset's features as a float tensor [n, ...] on `device`.
pub fn rows_tensor(ds: &crate::data::source::Dataset, range: std::ops::Range<usize>, buf: &mut Vec<f32>, device: Device) -> Result<Tensor> {
    ds.x.f32_rows(range.clone(), buf);
    let mut shape = vec![range.len() as i64];
    shape.extend(ds.feature_shape().iter().map(|&d| d as i64));
    Ok(Tensor::f_from_slice(buf)?.f_reshape(&shape)?.f_to_device(device)?)
}
