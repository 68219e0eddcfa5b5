//! The `dis` sampler's host bookkeeping for Python (`kdcache._kdcache.Sampler`): the core's
//! [`kdcache::sample::Sampler`] as it is, so a PyTorch head draws exactly the columns, inclusion
//! probabilities and masks `kdcache train` draws from the same state and seed. The device-side statistics
//! (cluster sums, the student-mass estimate) live in torch, in `kdcache.head`.
use kdcache::sample::{Clusters, DisConfig, Plan, Proposal, RowsView, Sampler, Tail};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rand::SeedableRng;

use crate::{contiguous, contiguous2, invalid};

/// The seed of a step's draws: the same mixing as `kdcache train` (`seed ^ step·φ`).
pub fn step_seed(seed: u64, step: u64) -> u64 {
    seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

type I64s<'py> = Bound<'py, PyArray1<i64>>;

#[pyclass(module = "kdcache._kdcache", name = "Sampler")]
pub struct PySampler {
    inner: Sampler,
}

fn arr<'py, T: numpy::Element>(py: Python<'py>, v: Vec<T>) -> Bound<'py, PyArray1<T>> {
    v.into_pyarray(py)
}

fn plan_dict<'py>(py: Python<'py>, pl: Plan) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("dense", pl.dense)?;
    d.set_item("slots", pl.slots)?;
    d.set_item("pos", arr(py, pl.pos))?;
    d.set_item("active", arr(py, pl.active))?;
    d.set_item("pos_t", arr(py, pl.pos_t))?;
    d.set_item("label_slot", arr(py, pl.label_slot))?;
    d.set_item("cols", arr(py, pl.cols))?;
    d.set_item("logw", arr(py, pl.logw))?;
    d.set_item("head_scale", arr(py, pl.head_scale))?;
    d.set_item("own_col", arr(py, pl.own_col))?;
    d.set_item("union", arr(py, pl.union))?;
    d.set_item("pos_u", arr(py, pl.pos_u))?;
    d.set_item("col_u", arr(py, pl.col_u))?;
    Ok(d)
}

#[pymethods]
impl PySampler {
    /// A fresh sampler for `classes` classes: balanced random clusters from `seed`, as `train` starts.
    /// `proposal` is "uniform" (the default), "clusters", "neyman" or "prior"; the prior proposal needs `prior` (float64 [C],
    /// the teacher's class prior at T = 1, as the manifest's `stats.class_prior`), tempered at
    /// `temperature` as `train` does.
    #[new]
    #[pyo3(signature = (classes, *, candidates=0, reserve=0.25, clusters=0, uniform_share=0.2, clip=8.0, reassign=256, dense_above=0.6, tail="spread", proposal="uniform", prior=None, temperature=1.0, seed=0))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        classes: usize,
        candidates: usize,
        reserve: f64,
        clusters: usize,
        uniform_share: f64,
        clip: f64,
        reassign: usize,
        dense_above: f64,
        tail: &str,
        proposal: &str,
        prior: Option<PyReadonlyArray1<'_, f64>>,
        temperature: f64,
        seed: u64,
    ) -> PyResult<Self> {
        if classes < 2 {
            return Err(invalid(format!("dis needs at least 2 classes, got {classes}")));
        }
        let tail = match tail {
            "spread" => Tail::Spread,
            "bucket" => Tail::Bucket,
            t => return Err(invalid(format!("dis tail {t:?}: use \"spread\" or \"bucket\""))),
        };
        let proposal = match proposal {
            "clusters" => Proposal::Clusters,
            "uniform" => Proposal::Uniform,
            "prior" => Proposal::Prior,
            "neyman" => Proposal::Neyman,
            p => return Err(invalid(format!("dis proposal {p:?}: use \"clusters\", \"neyman\", \"uniform\" or \"prior\""))),
        };
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(invalid(format!("temperature {temperature} must be > 0")));
        }
        let cfg = DisConfig { head_rows: candidates, reserve, clusters, uniform_share, clip, reassign, dense_above, tail, proposal };
        cfg.validate(classes).map_err(invalid)?;
        let weight = match &prior {
            Some(p) if proposal == Proposal::Prior => Some(kdcache::sample::tempered_prior(contiguous(p, "prior")?, temperature)),
            _ => None,
        };
        Ok(PySampler { inner: Sampler::new(cfg, classes, seed, weight.as_deref()).map_err(invalid)? })
    }

    /// The class count C.
    #[getter]
    fn classes(&self) -> usize {
        self.inner.classes()
    }

    /// The number of clusters (strata).
    #[getter]
    fn num_clusters(&self) -> usize {
        self.inner.clusters.len()
    }

    /// Whether the proposal follows the student (cluster statistics and re-assignment after each
    /// step); False for the fixed proposals (uniform, prior).
    #[getter]
    fn adaptive(&self) -> bool {
        self.inner.adaptive()
    }

    /// Rows re-assigned per step (the configuration's `reassign`).
    #[getter]
    fn reassign_budget(&self) -> usize {
        self.inner.cfg.reassign
    }

    /// The step's plan for B rows of K ranked classes (`ids` int64 [B, K], teacher probabilities `p`
    /// float64 [B, K] at the training temperature, `labels` int64 [B], −1 = none), drawn with the
    /// generator `train` seeds for step `step` of a run with seed `seed`. A dict of NumPy arrays (see
    /// the core's `Plan`); `dense` True means every class is a column (the exact estimator applies).
    fn plan<'py>(
        &mut self,
        py: Python<'py>,
        ids: PyReadonlyArray2<'py, i64>,
        p: PyReadonlyArray2<'py, f64>,
        labels: PyReadonlyArray1<'py, i64>,
        seed: u64,
        step: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (idx, b, k) = contiguous2(&ids, "ids")?;
        let (pv, pb, pk) = contiguous2(&p, "p")?;
        let label = contiguous(&labels, "labels")?;
        let c = self.inner.classes();
        if (pb, pk) != (b, k) || label.len() != b {
            return Err(invalid(format!("ids [{b}, {k}], p [{pb}, {pk}] and labels [{}] do not match", label.len())));
        }
        if k == 0 || k >= c {
            return Err(invalid(format!("K = {k} ranked classes: dis needs 1 <= K < C = {c}")));
        }
        if let Some(&j) = idx.iter().find(|&&j| j < 0 || j as usize >= c) {
            return Err(invalid(format!("class id {j} is out of range 0..{c}")));
        }
        if let Some(&l) = label.iter().find(|&&l| l < -1 || l >= c as i64) {
            return Err(invalid(format!("label {l} is out of range -1..{c}")));
        }
        if let Some(&x) = pv.iter().find(|&&x| !(x.is_finite() && x >= 0.0)) {
            return Err(invalid(format!("teacher probability {x} is not a finite non-negative number")));
        }
        let view = RowsView { b, k, classes: c, idx, p: pv, label };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(step_seed(seed, step));
        let sampler = &mut self.inner;
        let pl = py.detach(|| sampler.plan(&view, &mut rng));
        plan_dict(py, pl)
    }

    /// The batch-mean student mass per cluster that steers the next draws (float64 [n]).
    #[getter]
    fn get_mass<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        arr(py, self.inner.mass.clone())
    }

    #[setter]
    fn set_mass(&mut self, mass: PyReadonlyArray1<'_, f64>) -> PyResult<()> {
        let m = contiguous(&mass, "mass")?;
        if m.len() != self.inner.clusters.len() {
            return Err(invalid(format!("{} cluster masses for {} clusters", m.len(), self.inner.clusters.len())));
        }
        self.inner.mass = m.to_vec();
        Ok(())
    }

    /// The cluster of every class (int64 [C]).
    fn assignment<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        arr(py, self.inner.clusters.assign.iter().map(|&a| a as i64).collect())
    }

    /// The clusters' member lists in their current order (the draws index into them), flattened:
    /// (members int64 [C], sizes int64 [n]).
    fn members<'py>(&self, py: Python<'py>) -> (Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>) {
        let m = &self.inner.clusters.members;
        (arr(py, m.iter().flatten().map(|&j| j as i64).collect()), arr(py, m.iter().map(|x| x.len() as i64).collect()))
    }

    /// Restores member lists saved by [`PySampler::members`]; ValueError unless they hold every class
    /// once in the sampler's number of clusters.
    fn set_members(&mut self, members: PyReadonlyArray1<'_, i64>, sizes: PyReadonlyArray1<'_, i64>) -> PyResult<()> {
        let (order, sizes) = (contiguous(&members, "members")?, contiguous(&sizes, "sizes")?);
        let (c, n) = (self.inner.classes(), self.inner.clusters.len());
        let bad = || invalid(format!("the saved clusters do not hold each of the {c} classes once in {n} clusters"));
        if sizes.len() != n || order.len() != c || sizes.iter().any(|&s| s < 0) || sizes.iter().sum::<i64>() != c as i64 {
            return Err(bad());
        }
        let mut lists = Vec::with_capacity(n);
        let mut at = 0usize;
        for &s in sizes {
            let part = &order[at..at + s as usize];
            if part.iter().any(|&j| j < 0 || j as usize >= c) {
                return Err(bad());
            }
            lists.push(part.iter().map(|&j| j as u32).collect());
            at += s as usize;
        }
        self.inner.clusters = Clusters::from_members(lists, c).ok_or_else(bad)?;
        Ok(())
    }

    /// Moves each class `rows[t]` to cluster `best[t]` in order (the online k-means step of
    /// `train::dis::DisState::after_step`); returns the positions t that moved and their old and new
    /// clusters (int64 arrays), for the device-side statistics.
    fn reassign<'py>(
        &mut self,
        py: Python<'py>,
        rows: PyReadonlyArray1<'py, i64>,
        best: PyReadonlyArray1<'py, i64>,
    ) -> PyResult<(I64s<'py>, I64s<'py>, I64s<'py>)> {
        let (rows, best) = (contiguous(&rows, "rows")?, contiguous(&best, "best")?);
        let (c, n) = (self.inner.classes(), self.inner.clusters.len());
        if rows.len() != best.len() {
            return Err(invalid(format!("{} rows for {} clusters", rows.len(), best.len())));
        }
        if rows.iter().any(|&j| j < 0 || j as usize >= c) || best.iter().any(|&b| b < 0 || b as usize >= n) {
            return Err(invalid(format!("a class (0..{c}) or cluster id (0..{n}) out of range")));
        }
        let (mut which, mut from, mut to) = (vec![], vec![], vec![]);
        for (t, (&j, &b)) in rows.iter().zip(best).enumerate() {
            let a = self.inner.clusters.assign[j as usize] as i64;
            if a != b {
                self.inner.clusters.move_class(j as usize, b as u32);
                which.push(t as i64);
                from.push(a);
                to.push(b);
            }
        }
        Ok((arr(py, which), arr(py, from), arr(py, to)))
    }

    /// Replaces the clusters by a full assignment (int64 [C], ids in 0..n; members sorted), as a k-means
    /// pass over all rows produces.
    fn set_assignment(&mut self, assign: PyReadonlyArray1<'_, i64>) -> PyResult<()> {
        let a = contiguous(&assign, "assignment")?;
        let (c, n) = (self.inner.classes(), self.inner.clusters.len());
        if a.len() != c || a.iter().any(|&x| x < 0 || x as usize >= n) {
            return Err(invalid(format!("an assignment needs {c} cluster ids in 0..{n}")));
        }
        self.inner.clusters = Clusters::from_assign(a.iter().map(|&x| x as u32).collect(), n).ok_or_else(|| invalid("bad assignment"))?;
        Ok(())
    }
}

/// `train`'s per-step seed mixing, for Python code that must draw what a run draws.
#[pyfunction(name = "step_seed")]
pub fn step_seed_py(seed: u64, step: u64) -> u64 {
    step_seed(seed, step)
}
