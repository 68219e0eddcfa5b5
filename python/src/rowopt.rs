//! `kdcache._kdcache.row_step`: the core's row-wise optimiser update ([`kdcache::rowopt`]) on the memory
//! of CPU tensors (NumPy views of them), in place, without the GIL: what `kdcache.torch.RowAdam` runs
//! for a CPU float32 table, one pass per row instead of a dozen tensor ops over all touched rows.
use kdcache::rowopt::{HostTable, OptConfig, OptKind};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray1, PyReadwriteArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;

use crate::invalid;

/// Updates rows `rows` (int64, distinct; None = every row) of the table `w` [R, D] with gradients `g`
/// [n, D] by Adam (`kind="adam"`: m, v the moments, t each row's update count) or SGD with momentum
/// (`kind="sgd"`: m the buffer); returns Σ (w_new − w_old) over the rows [D] (float64).
#[pyfunction]
#[pyo3(signature = (w, m, v, t, rows, g, *, kind="adam", lr, beta1=0.9, beta2=0.999, eps=1e-8, momentum=0.9))]
pub fn row_step<'py>(
    py: Python<'py>,
    mut w: PyReadwriteArray2<'py, f32>,
    mut m: PyReadwriteArray2<'py, f32>,
    mut v: PyReadwriteArray2<'py, f32>,
    mut t: PyReadwriteArray1<'py, f64>,
    rows: Option<PyReadonlyArray1<'py, i64>>,
    g: PyReadonlyArray2<'py, f32>,
    kind: &str,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    momentum: f64,
) -> PyResult<Bound<'py, PyArray1<f64>>> {
    let kind = match kind {
        "adam" => OptKind::Adam,
        "sgd" => OptKind::Sgd,
        k => return Err(invalid(format!("optimiser kind {k:?}: use \"adam\" or \"sgd\""))),
    };
    let cfg = OptConfig { kind, lr, beta1, beta2, eps, momentum };
    let d = w.as_array().shape()[1];
    let need = |ok: bool, what: &str| if ok { Ok(()) } else { Err(invalid(format!("{what} must be a C-contiguous array"))) };
    let rows_v = match &rows {
        Some(r) => Some(r.as_slice().map_err(|_| invalid("rows must be a contiguous int64 array"))?),
        None => None,
    };
    let gs = g.as_slice().map_err(|_| invalid("the gradient must be a C-contiguous float32 array"))?;
    if g.as_array().shape()[1] != d {
        return Err(invalid(format!("a gradient of width {} for a table of width {d}", g.as_array().shape()[1])));
    }
    need(w.is_c_contiguous() && m.is_c_contiguous() && v.is_c_contiguous() && t.is_c_contiguous(), "the table and its state")?;
    let (ws, ms, vs, ts) = (w.as_slice_mut()?, m.as_slice_mut()?, v.as_slice_mut()?, t.as_slice_mut()?);
    if std::ptr::eq(ws.as_ptr(), ms.as_ptr()) || std::ptr::eq(ws.as_ptr(), vs.as_ptr()) || (kind == OptKind::Adam && std::ptr::eq(ms.as_ptr(), vs.as_ptr())) {
        return Err(invalid("the table and its moments must be distinct arrays"));
    }
    let mut tab = HostTable { w: ws, m: ms, v: vs, t: ts, d };
    let delta = py.detach(|| kdcache::rowopt::step(&cfg, &mut tab, rows_v, gs)).map_err(invalid)?;
    Ok(delta.into_pyarray(py))
}
