//! `kdcache._kdcache`: the extension module behind the `kdcache` Python package. It wraps the Rust core
//! (without libtorch) in three objects — a cache reader with a decoded-block LRU, a background cache
//! writer and the CPU ranker `import` uses — and hands data to Python as NumPy arrays it owns (no copy).
//! The GIL is released while blocks are decoded, rows are ranked and shards are encoded. Every error of
//! the core becomes a Python exception with the CLI's one-line message (see [`to_py`]); nothing from
//! Python input panics.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use kdcache::Error;
use kdcache::format::manifest::{Encoding, Signature};
use kdcache::format::reader::{CacheReader, Order};
use kdcache::format::rows::{LogitDtype, RowBatch, RowChecker, RowSpec};
use kdcache::format::writer::{CacheWriter, WriterOptions};
use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

mod rowopt;
mod sampler;

create_exception!(kdcache, KdcacheError, PyException, "Base class of kdcache's own errors.");
create_exception!(
    kdcache,
    CorruptCacheError,
    KdcacheError,
    "A cache file breaks the format: a checksum, a length, a row invariant (raised by the read that meets it)."
);
create_exception!(kdcache, CacheVersionError, CorruptCacheError, "The cache was written by a newer kdcache (a newer format version).");
create_exception!(
    kdcache,
    SignatureError,
    KdcacheError,
    "A cache does not belong to what it is used with: writing into a directory that holds another cache, or a mismatched part."
);

/// The core's error as a Python exception with the same one-line message as the CLI.
fn to_py(e: Error) -> PyErr {
    let msg = e.to_string().lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ");
    match &e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        Error::Io { .. } => PyOSError::new_err(msg),
        Error::Corrupt { .. } | Error::Parquet(_) => CorruptCacheError::new_err(msg),
        Error::Version { .. } => CacheVersionError::new_err(msg),
        Error::Invalid(_) | Error::NonFinite { .. } => PyValueError::new_err(msg),
        Error::Exists { .. } | Error::Mismatch { .. } => SignatureError::new_err(msg),
        Error::Interrupted => PyKeyboardInterrupt::new_err(msg),
        Error::Complete { .. } | Error::Arrow(_) | Error::Internal(_) => PyRuntimeError::new_err(msg),
    }
}

fn invalid(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

fn contiguous<'a, T: numpy::Element>(a: &'a PyReadonlyArray1<'_, T>, what: &str) -> PyResult<&'a [T]> {
    a.as_slice().map_err(|_| invalid(format!("{what} must be a contiguous array")))
}

/// The optional labels of `b` rows, as a slice.
fn labels_of<'a>(labels: &'a Option<PyReadonlyArray1<'_, i64>>, b: usize) -> PyResult<Option<&'a [i64]>> {
    let Some(a) = labels else { return Ok(None) };
    let s = contiguous(a, "labels")?;
    if s.len() != b {
        return Err(invalid(format!("labels has {} entries for {b} rows", s.len())));
    }
    Ok(Some(s))
}

fn contiguous2<'a, T: numpy::Element>(a: &'a PyReadonlyArray2<'_, T>, what: &str) -> PyResult<(&'a [T], usize, usize)> {
    let shape = a.shape();
    let s = a.as_slice().map_err(|_| invalid(format!("{what} must be a contiguous array")))?;
    Ok((s, shape[0], shape[1]))
}

/// Threads for decoding and encoding: the machine's cores, at most 16.
fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(16)
}

/// A private thread pool. The core's parallel loops run inside it instead of rayon's global pool, whose
/// threads do not survive a `fork` (a DataLoader worker that used a pool made before the fork would hang).
fn pool(threads: usize) -> PyResult<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build().map_err(|e| PyRuntimeError::new_err(format!("thread pool: {e}")))
}

// ---------------------------------------------------------------------------------------------------
// Reading

/// Decoded blocks, most recently used kept, within a budget of bytes.
struct Lru {
    budget: usize,
    used: usize,
    tick: u64,
    blocks: HashMap<usize, (Arc<Decoded>, usize, u64)>,
}

/// A decoded block: its rows in storage order, or permuted in the order a block-shuffled pass reads
/// them (so the rows of one batch lie side by side in memory), with where each row went.
struct Decoded {
    batch: RowBatch,
    /// `slot[i]`: the position of the block's i-th row in `batch` (None: storage order).
    slot: Option<Vec<u32>>,
}

impl Decoded {
    fn bytes(&self) -> usize {
        let b = &self.batch;
        b.len() * (8 + 4 + 8 + b.k * (4 + b.topk_logit.dtype().width()) + b.t * 8 + b.m * 8 + b.aug_dim * 4 + 4 * self.slot.is_some() as usize)
    }
}

impl Lru {
    fn get(&mut self, b: usize) -> Option<Arc<Decoded>> {
        self.tick += 1;
        let tick = self.tick;
        self.blocks.get_mut(&b).map(|e| {
            e.2 = tick;
            e.0.clone()
        })
    }
    fn put(&mut self, b: usize, batch: Arc<Decoded>) {
        let size = batch.bytes();
        if size > self.budget || self.blocks.contains_key(&b) {
            return;
        }
        while self.used + size > self.budget {
            let Some((&old, _)) = self.blocks.iter().min_by_key(|e| e.1.2) else { break };
            if let Some(e) = self.blocks.remove(&old) {
                self.used -= e.1;
            }
        }
        self.tick += 1;
        self.used += size;
        self.blocks.insert(b, (batch, size, self.tick));
    }
}

/// A block being decoded by one thread while others wait for it: `None` until done, then the block
/// (`None` inside when decoding failed: a waiter decodes it again to get its own error).
#[derive(Default)]
struct Slot {
    done: Mutex<Option<Option<Arc<Decoded>>>>,
    ready: std::sync::Condvar,
}

/// The order a sampler will read blocks in, for reading ahead.
struct Plan {
    /// The pass's seed (None: storage order).
    seed: Option<u64>,
    order: Vec<usize>,
    /// Each block's place in `order`.
    place: Vec<usize>,
}

/// Blocks ahead of the last one read that are decoded in the background when a plan is set.
const READ_AHEAD: usize = 2;

/// Decoded blocks, shared by the caller's threads and the read-ahead threads.
struct Blocks {
    reader: Arc<CacheReader>,
    lru: Mutex<Lru>,
    inflight: Mutex<HashMap<usize, Arc<Slot>>>,
    plan: Mutex<Option<Arc<Plan>>>,
}

impl Blocks {
    /// Decodes block `b`; under a shuffled plan its rows are laid out in the plan's order.
    fn decode(&self, b: usize) -> kdcache::Result<Arc<Decoded>> {
        let batch = self.reader.read_block(b)?;
        let seed = self.plan.lock().ok().and_then(|p| p.as_ref().and_then(|p| p.seed));
        Ok(Arc::new(match seed {
            Some(seed) => {
                let perm = kdcache::format::reader::block_permutation(seed, b, batch.len());
                let mut slot = vec![0u32; perm.len()];
                for (j, &i) in perm.iter().enumerate() {
                    slot[i] = j as u32;
                }
                Decoded { batch: batch.permuted(&perm), slot: Some(slot) }
            }
            None => Decoded { batch, slot: None },
        }))
    }

    /// Block `b`: from the LRU, from the thread already decoding it, or decoded here.
    fn get(&self, b: usize) -> kdcache::Result<Arc<Decoded>> {
        let poisoned = || Error::Internal("block cache lock poisoned".into());
        if let Some(hit) = self.lru.lock().map_err(|_| poisoned())?.get(b) {
            return Ok(hit);
        }
        let (slot, mine) = {
            let mut inflight = self.inflight.lock().map_err(|_| poisoned())?;
            match inflight.get(&b) {
                Some(s) => (s.clone(), false),
                None => {
                    let s = Arc::new(Slot::default());
                    inflight.insert(b, s.clone());
                    (s, true)
                }
            }
        };
        if !mine {
            let mut done = slot.done.lock().map_err(|_| poisoned())?;
            while done.is_none() {
                done = slot.ready.wait(done).map_err(|_| poisoned())?;
            }
            if let Some(Some(batch)) = done.as_ref() {
                return Ok(batch.clone());
            }
            drop(done);
            return self.decode(b);
        }
        let res = self.decode(b);
        if let Ok(batch) = &res
            && let Ok(mut lru) = self.lru.lock()
        {
            lru.put(b, batch.clone());
        }
        if let Ok(mut done) = slot.done.lock() {
            *done = Some(res.as_ref().ok().cloned());
        }
        slot.ready.notify_all();
        if let Ok(mut inflight) = self.inflight.lock() {
            inflight.remove(&b);
        }
        res
    }

    /// Starts decoding, in the background, the blocks the plan reads after the latest of `read`.
    fn read_ahead(self: &Arc<Self>, read: &[usize]) {
        let Some(plan) = self.plan.lock().ok().and_then(|p| p.clone()) else { return };
        let Some(last) = read.iter().filter_map(|&b| plan.place.get(b)).max().copied() else { return };
        for &b in plan.order.iter().skip(last + 1).take(READ_AHEAD) {
            let cached = self.lru.lock().map(|l| l.blocks.contains_key(&b)).unwrap_or(true);
            let busy = self.inflight.lock().map(|f| f.contains_key(&b)).unwrap_or(true);
            if !cached && !busy {
                let me = self.clone();
                // errors surface when the caller reads the block itself
                std::thread::spawn(move || drop(me.get(b)));
            }
        }
    }
}

/// A cache opened for reading: `kdcache.Cache` wraps it.
#[pyclass(frozen, module = "kdcache._kdcache", name = "Reader")]
struct Reader {
    reader: Arc<CacheReader>,
    /// First cache row of each block, and the total at the end.
    starts: Vec<u64>,
    blocks: Arc<Blocks>,
    threads: usize,
}

/// One field of the buffer `rows` fills: its name, NumPy dtype, byte offset and values per row.
type Field = (&'static str, &'static str, usize, usize);

/// The layout of `n` rows in one buffer: each field's values row by row, every field 8-byte aligned.
fn layout(n: usize, k: usize, m: usize, aug: usize, with_logits: bool, ids_i64: bool) -> (Vec<Field>, usize) {
    let mut fields = vec![];
    let mut off = 0;
    let mut add = |name: &'static str, dtype: &'static str, width: usize, per: usize| {
        fields.push((name, dtype, off, per));
        off += (n * per * width).div_ceil(8) * 8;
    };
    add("row", "u8", 8, 1);
    add("view", "u4", 4, 1);
    add("label", "i8", 8, 1);
    if ids_i64 {
        add("ids", "i8", 8, k);
    } else {
        add("ids", "i4", 4, k);
    }
    add("logp", "f4", 4, k);
    if with_logits {
        add("logits", "f4", 4, k);
    }
    add("lse", "f4", 4, 1);
    add("log_tail", "f4", 4, 1);
    if m > 0 {
        add("tail_idx", "i4", 4, m);
        add("tail_cnt", "u4", 4, m);
        add("tail_w", "f8", 8, m);
    }
    if aug > 0 {
        add("aug", "f4", 4, aug);
    }
    (fields, off)
}

/// The next `count` values of type T from the front of `rest` (8-byte aligned).
fn carve<'a, T: bytemuck::Pod>(rest: &mut &'a mut [u8], count: usize) -> &'a mut [T] {
    let bytes = count * std::mem::size_of::<T>();
    let (a, b) = std::mem::take(rest).split_at_mut(bytes.div_ceil(8) * 8);
    *rest = b;
    bytemuck::cast_slice_mut(&mut a[..bytes])
}

impl Reader {
    fn block(&self, b: usize) -> kdcache::Result<Arc<Decoded>> {
        self.blocks.get(b)
    }

    /// The blocks `wanted` (sorted, distinct), in that order: those in the LRU at once, the others decoded
    /// on up to `threads` threads; the first failure in block order is returned.
    fn blocks(&self, wanted: &[usize]) -> kdcache::Result<Vec<Arc<Decoded>>> {
        let mut out: Vec<Option<Arc<Decoded>>> = match self.blocks.lru.lock() {
            Ok(mut lru) => wanted.iter().map(|&b| lru.get(b)).collect(),
            Err(_) => vec![None; wanted.len()],
        };
        let missing: Vec<usize> = (0..wanted.len()).filter(|&i| out[i].is_none()).collect();
        let threads = self.threads.min(missing.len()).max(1);
        if threads == 1 {
            for &i in &missing {
                out[i] = Some(self.block(wanted[i])?);
            }
        } else {
            let next = std::sync::atomic::AtomicUsize::new(0);
            let results: Vec<Vec<(usize, kdcache::Result<Arc<Decoded>>)>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        s.spawn(|| {
                            let mut mine = vec![];
                            loop {
                                let j = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let Some(&i) = missing.get(j) else { break mine };
                                mine.push((i, self.block(wanted[i])));
                            }
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
            });
            let mut all: Vec<_> = results.into_iter().flatten().collect();
            all.sort_by_key(|x| x.0);
            for (i, r) in all {
                out[i] = Some(r?);
            }
        }
        out.into_iter().map(|b| b.ok_or_else(|| Error::Internal("a decoding thread failed".into()))).collect()
    }

    /// The rows at cache positions `idx`, at the `ti`-th temperature, packed into one buffer (8-byte
    /// words) as [`layout`] describes.
    fn gather(&self, idx: &[i64], ti: usize, with_logits: bool, ids_i64: bool) -> kdcache::Result<(Vec<u64>, Vec<Field>)> {
        let m = self.reader.manifest();
        let rows = m.rows;
        let (k, t_count) = (m.top_k, m.temperatures.len());
        let temp = m.temperatures[ti] as f64;
        let mut block_of = Vec::with_capacity(idx.len());
        for (p, &i) in idx.iter().enumerate() {
            if i < 0 || i as u64 >= rows {
                return Err(Error::invalid(format!("row index {i} (at position {p}) is outside the cache's 0..{rows}")));
            }
            block_of.push(self.starts.partition_point(|&s| s <= i as u64) - 1);
        }
        let mut wanted = block_of.clone();
        wanted.sort_unstable();
        wanted.dedup();
        self.blocks.read_ahead(&wanted);
        let blocks = self.blocks(&wanted)?;
        let n = idx.len();
        let (tm, aug) = (m.tail_samples, m.aug_dim);
        let (fields, total) = layout(n, k, tm, aug, with_logits, ids_i64);
        let mut words = vec![0u64; total / 8];
        let mut rest: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        let row_out: &mut [u64] = carve(&mut rest, n);
        let view_out: &mut [u32] = carve(&mut rest, n);
        let label_out: &mut [i64] = carve(&mut rest, n);
        let (ids64, ids32): (&mut [i64], &mut [i32]) = if ids_i64 { (carve(&mut rest, n * k), &mut []) } else { (&mut [], carve(&mut rest, n * k)) };
        let logp_out: &mut [f32] = carve(&mut rest, n * k);
        let logits_out: &mut [f32] = if with_logits { carve(&mut rest, n * k) } else { &mut [] };
        let lse_out: &mut [f32] = carve(&mut rest, n);
        let tail_out: &mut [f32] = carve(&mut rest, n);
        let (tidx_out, tcnt_out, tw_out): (&mut [i32], &mut [u32], &mut [f64]) =
            if tm > 0 { (carve(&mut rest, n * tm), carve(&mut rest, n * tm), carve(&mut rest, n * tm)) } else { (&mut [], &mut [], &mut []) };
        let aug_out: &mut [f32] = if aug > 0 { carve(&mut rest, n * aug) } else { &mut [] };
        let mut scratch = Vec::with_capacity(k);
        let mut w = 0; // the block of the previous row, by its place in `wanted`
        for (p, &i) in idx.iter().enumerate() {
            let b = block_of[p];
            if wanted[w] != b {
                w = wanted.binary_search(&b).map_err(|_| Error::Internal(format!("block {b} was not read")))?;
            }
            let d = &blocks[w];
            let local = (i as u64 - self.starts[b]) as usize;
            let at = match &d.slot {
                Some(slot) => slot.get(local).map(|&s| s as usize).unwrap_or(usize::MAX),
                None => local,
            };
            if at >= d.batch.len() || d.batch.t != t_count {
                return Err(Error::Internal(format!("block {b} holds {} rows", d.batch.len())));
            }
            let r = d.batch.get(at);
            row_out[p] = r.row();
            view_out[p] = r.view();
            label_out[p] = r.label();
            if ids_i64 {
                for (o, &c) in ids64[p * k..(p + 1) * k].iter_mut().zip(r.topk_idx()) {
                    *o = c as i64;
                }
            } else {
                for (o, &c) in ids32[p * k..(p + 1) * k].iter_mut().zip(r.topk_idx()) {
                    *o = c as i32;
                }
            }
            r.log_probs(ti, temp, &mut scratch, &mut logp_out[p * k..(p + 1) * k]);
            if with_logits {
                for (j, o) in logits_out[p * k..(p + 1) * k].iter_mut().enumerate() {
                    *o = r.logit(j);
                }
            }
            lse_out[p] = r.lse()[ti];
            tail_out[p] = r.log_tail()[ti];
            if tm > 0 {
                for (o, &c) in tidx_out[p * tm..(p + 1) * tm].iter_mut().zip(r.tail_idx()) {
                    *o = c as i32;
                }
                tcnt_out[p * tm..(p + 1) * tm].copy_from_slice(r.tail_cnt());
                r.tail_weights(ti, temp, &mut tw_out[p * tm..(p + 1) * tm]);
            }
            if aug > 0 {
                aug_out[p * aug..(p + 1) * aug].copy_from_slice(r.aug());
            }
        }
        Ok((words, fields))
    }
}

fn matrix<'py, T: numpy::Element>(py: Python<'py>, v: Vec<T>, n: usize, k: usize) -> PyResult<Bound<'py, PyAny>> {
    let a = Array2::from_shape_vec((n, k), v).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(a.into_pyarray(py).into_any())
}

#[pymethods]
impl Reader {
    /// Opens and validates the cache in `path` (manifest, shard headers and layout); `block_cache_bytes`
    /// bounds the decoded blocks kept for random access; `threads` decode the blocks one call needs.
    #[new]
    #[pyo3(signature = (path, block_cache_bytes, threads=None))]
    fn new(py: Python<'_>, path: PathBuf, block_cache_bytes: usize, threads: Option<usize>) -> PyResult<Self> {
        let reader = py.detach(|| CacheReader::open(&path)).map_err(to_py)?;
        let mut starts: Vec<u64> = reader.blocks().iter().map(|b| b.first_row).collect();
        starts.push(reader.rows());
        let reader = Arc::new(reader);
        let blocks = Arc::new(Blocks {
            reader: reader.clone(),
            lru: Mutex::new(Lru { budget: block_cache_bytes, used: 0, tick: 0, blocks: HashMap::new() }),
            inflight: Mutex::new(HashMap::new()),
            plan: Mutex::new(None),
        });
        Ok(Reader { reader, starts, blocks, threads: threads.unwrap_or_else(default_threads).max(1) })
    }

    /// The manifest as JSON text.
    fn manifest_json(&self) -> PyResult<String> {
        serde_json::to_string(self.reader.manifest()).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// First cache row of each block, then the row count (u64, length blocks + 1).
    fn block_starts<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<u64>> {
        self.starts.clone().into_pyarray(py)
    }

    /// The cache positions of one shuffled pass as `kdcache train` makes it for `seed` (blocks in a
    /// seeded order, rows permuted within each block), or in storage order when `seed` is None.
    #[pyo3(signature = (seed=None))]
    fn order<'py>(&self, py: Python<'py>, seed: Option<u64>) -> Bound<'py, PyArray1<u64>> {
        let order = match seed {
            Some(seed) => Order::Shuffled { seed },
            None => Order::Sequential,
        };
        let reader = self.reader.clone();
        py.detach(move || reader.positions(order)).into_pyarray(py)
    }

    /// Bytes of decoded blocks held now, and the budget.
    fn block_cache_usage(&self) -> (usize, usize) {
        self.blocks.lru.lock().map(|l| (l.used, l.budget)).unwrap_or((0, 0))
    }

    /// Reads ahead in the block order of `order(seed)` (the order a block-shuffled sampler reads in):
    /// each read starts decoding the next blocks of that order in the background. None stops it.
    #[pyo3(signature = (seed=None, enabled=true))]
    fn plan(&self, seed: Option<u64>, enabled: bool) {
        let plan = enabled.then(|| {
            let order = self.reader.plan(match seed {
                Some(seed) => Order::Shuffled { seed },
                None => Order::Sequential,
            });
            let mut place = vec![0; order.len()];
            for (i, &b) in order.iter().enumerate() {
                place[b] = i;
            }
            Arc::new(Plan { seed, order, place })
        });
        if let Ok(mut p) = self.blocks.plan.lock() {
            // blocks laid out for another pass's order would scatter this pass's batches: drop them
            let before = p.as_ref().and_then(|p| p.seed);
            if before != plan.as_ref().and_then(|p| p.seed)
                && let Ok(mut lru) = self.blocks.lru.lock()
            {
                lru.blocks.clear();
                lru.used = 0;
            }
            *p = plan;
        }
    }

    /// Rows at the cache positions `indices` (int64, any order, repeats allowed), probabilities at the
    /// `ti`-th cached temperature: one buffer (uint64 words, owned by NumPy) and its fields as (name,
    /// dtype, byte offset, values per row). `ids_i64` stores class ids as int64 (torch's index type).
    #[pyo3(signature = (indices, ti, with_logits=false, ids_i64=false))]
    fn rows<'py>(
        &self,
        py: Python<'py>,
        indices: PyReadonlyArray1<'py, i64>,
        ti: usize,
        with_logits: bool,
        ids_i64: bool,
    ) -> PyResult<(Bound<'py, PyArray1<u64>>, Vec<Field>)> {
        let m = self.reader.manifest();
        if ti >= m.temperatures.len() {
            return Err(invalid(format!("temperature index {ti} is outside the cache's {} temperatures", m.temperatures.len())));
        }
        let idx = contiguous(&indices, "indices")?;
        let (words, fields) = py.detach(|| self.gather(idx, ti, with_logits, ids_i64)).map_err(to_py)?;
        Ok((words.into_pyarray(py), fields))
    }

    /// Every shard checksum, block and row invariant, as `kdcache verify`; returns what was checked.
    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let pool = pool(self.threads)?;
        let reader = self.reader.clone();
        let rep = py.detach(move || pool.install(|| reader.verify(None))).map_err(to_py)?;
        let d = PyDict::new(py);
        d.set_item("shards", rep.shards)?;
        d.set_item("blocks", rep.blocks)?;
        d.set_item("rows", rep.rows)?;
        d.set_item("bytes", rep.bytes)?;
        Ok(d)
    }
}

// ---------------------------------------------------------------------------------------------------
// Writing

/// Rows (and their prior sum) on their way to the encoding thread.
type Job = (RowBatch, Option<Vec<f64>>);

/// A cache being written: `kdcache.CacheWriter` wraps it. Rows are checked on the caller's thread and
/// encoded, compressed and published by a background thread that owns the core's writer.
#[pyclass(module = "kdcache._kdcache", name = "Writer")]
struct Writer {
    spec: RowSpec,
    dir: PathBuf,
    tx: Option<SyncSender<Job>>,
    thread: Option<JoinHandle<kdcache::Result<CacheWriter>>>,
    pool: Arc<rayon::ThreadPool>,
    /// Rows below this example index were written by an earlier run and are kept: skipped when added again.
    skip_below: u64,
    /// The kept shards' class prior holds the priors of rows below this example index.
    prior_below: u64,
    resumed_rows: u64,
    /// The directory already holds this cache, complete: every add is a no-op.
    complete: Option<u64>,
    last_row: Option<u64>,
    added: u64,
    /// Rows this cache may hold: the part's range of examples, or 0..num_examples.
    allowed: Option<(u64, u64)>,
    shard_rows: usize,
    closed: bool,
    /// The directory's lock, held until the writer is closed (a second writer is refused).
    lock: Option<kdcache::fsio::DirLock>,
}

fn spawn_encoder(mut w: CacheWriter, rx: Receiver<Job>, pool: Arc<rayon::ThreadPool>) -> JoinHandle<kdcache::Result<CacheWriter>> {
    std::thread::spawn(move || {
        for (batch, prior) in rx {
            pool.install(|| w.push(&batch, prior.as_deref()))?;
        }
        Ok(w)
    })
}

impl Writer {
    /// Rows until the shard being filled is full.
    fn shard_room(&self) -> usize {
        self.shard_rows - ((self.resumed_rows + self.added) % self.shard_rows as u64) as usize
    }

    fn open(&self) -> PyResult<()> {
        if self.closed {
            return Err(PyRuntimeError::new_err(format!("the writer of {} is closed", self.dir.display())));
        }
        Ok(())
    }

    /// Which of `rows` to write: all but those an earlier run already wrote; checks their order and range.
    fn keep(&self, rows: &[u64]) -> PyResult<usize> {
        let mut prev = self.last_row;
        let mut skip = 0;
        for (i, &r) in rows.iter().enumerate() {
            if let Some(p) = prev
                && r <= p
            {
                return Err(invalid(format!("rows must increase strictly: row {r} (at position {i}) follows row {p}")));
            }
            if let Some((lo, hi)) = self.allowed
                && (r < lo || r >= hi)
            {
                return Err(invalid(format!("row {r} (at position {i}) is outside this cache's rows {lo}..{hi}")));
            }
            if r < self.skip_below {
                skip = i + 1;
            }
            prev = Some(r);
        }
        Ok(skip)
    }

    /// Sends checked rows to the encoder; an error of the encoder surfaces here.
    fn send(&mut self, py: Python<'_>, batch: RowBatch, prior: Option<Vec<f64>>) -> PyResult<()> {
        let Some(last) = batch.row.last().copied() else { return Ok(()) };
        let n = batch.len() as u64;
        let tx = self.tx.clone().ok_or_else(|| PyRuntimeError::new_err("the writer is closed"))?;
        if py.detach(move || tx.send((batch, prior)).is_err()) {
            // the encoder stopped: report why
            self.tx = None;
            let res = self.thread.take().map(|t| t.join());
            self.closed = true;
            return Err(match res {
                Some(Ok(Err(e))) => to_py(e),
                _ => PyRuntimeError::new_err("the cache's encoding thread stopped"),
            });
        }
        self.last_row = Some(last);
        self.added += n;
        Ok(())
    }

    fn check_labels(&self, rows: &[u64], labels: Option<&[i64]>) -> PyResult<()> {
        if let Some(l) = labels {
            let c = self.spec.classes as i64;
            if let Some((i, y)) = l.iter().enumerate().find(|(_, y)| **y < -1 || **y >= c) {
                return Err(invalid(format!("label {y} of row {} is not in -1..{c}", rows[i])));
            }
        }
        Ok(())
    }
}

#[pymethods]
impl Writer {
    #[new]
    #[pyo3(signature = (out, num_classes, top_k, temperatures, teacher, dataset, encoding, dtype, part, num_examples, block_rows, shard_rows, overwrite, threads=None))]
    fn new(
        py: Python<'_>,
        out: PathBuf,
        num_classes: u64,
        top_k: usize,
        temperatures: Vec<f32>,
        teacher: String,
        dataset: String,
        encoding: &str,
        dtype: &str,
        part: Option<(u64, u64)>,
        num_examples: Option<u64>,
        block_rows: usize,
        shard_rows: usize,
        overwrite: bool,
        threads: Option<usize>,
    ) -> PyResult<Self> {
        if teacher.trim().is_empty() || dataset.trim().is_empty() {
            return Err(invalid("teacher and dataset must be non-empty ids (a name and version, or a file hash): they fingerprint the cache"));
        }
        if let Some(t) = temperatures.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
            return Err(invalid(format!("temperature {t} must be finite and > 0")));
        }
        let encoding: Encoding = encoding.parse().map_err(to_py)?;
        let logit_dtype: LogitDtype = dtype.parse().map_err(to_py)?;
        let spec = RowSpec { classes: num_classes, k: top_k, temperatures, tail_samples: 0, aug_dim: 0, logit_dtype, tail_logit: true, mixture: false };
        spec.validate().map_err(to_py)?;
        let allowed = match (part, num_examples) {
            (Some((i, n)), _) if n == 0 || i >= n => return Err(invalid(format!("part ({i}, {n}): need 0 <= i < n"))),
            (Some((i, n)), Some(total)) => Some(split(total, i, n)),
            (Some(_), None) => return Err(invalid("a part needs num_examples (the whole dataset's size) to know its rows")),
            (None, Some(total)) => Some((0, total)),
            (None, None) => None,
        };
        let signature = Signature { teacher, dataset, classes: format!("C={num_classes}"), augmentation: "none".into() };
        let opts = WriterOptions { encoding, block_rows, shard_rows, overwrite };
        let part_name = part.map(|(i, n)| format!("{i}/{n}"));
        let pool = Arc::new(pool(threads.unwrap_or_else(default_threads))?);
        let lock = py
            .detach(|| -> kdcache::Result<_> {
                std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
                kdcache::fsio::DirLock::acquire(&out, "CacheWriter, from Python")
            })
            .map_err(to_py)?;
        let created = py.detach(|| CacheWriter::create(&out, &spec, signature, opts, part_name));
        let (tx, rx) = sync_channel::<Job>(2);
        let mut w = Writer {
            spec,
            dir: out.clone(),
            tx: None,
            thread: None,
            pool: pool.clone(),
            skip_below: 0,
            prior_below: 0,
            resumed_rows: 0,
            complete: None,
            last_row: None,
            added: 0,
            allowed,
            shard_rows,
            closed: false,
            lock: Some(lock),
        };
        match created {
            Ok(cw) => {
                w.resumed_rows = cw.resumed_rows();
                w.skip_below = if cw.resumed_rows() > 0 { cw.next_example().unwrap_or(0) } else { 0 };
                w.prior_below = if cw.resumed_rows() > 0 { cw.prior_end().unwrap_or(0) } else { 0 };
                w.tx = Some(tx);
                w.thread = Some(spawn_encoder(cw, rx, pool));
            }
            Err(Error::Complete { rows, .. }) => w.complete = Some(rows),
            Err(e) => return Err(to_py(e)),
        }
        Ok(w)
    }

    /// Rows an earlier, interrupted run already wrote (kept; adding them again is a no-op).
    #[getter]
    fn resumed_rows(&self) -> u64 {
        self.resumed_rows
    }

    /// The first example index not yet in the cache: a rerun may start its teacher loop there.
    #[getter]
    fn next_row(&self) -> Option<u64> {
        match self.complete {
            Some(_) => None,
            None => Some(self.last_row.map(|r| r + 1).unwrap_or(self.skip_below).max(self.skip_below)),
        }
    }

    /// Rows that still fit in the shard being filled: a batch with a prior that ends within them keeps
    /// the class prior of a resumed run exact.
    #[getter(shard_room)]
    fn shard_room_py(&self) -> usize {
        self.shard_room()
    }

    /// Rows the complete cache already in the directory holds (then nothing is written), else None.
    #[getter]
    fn complete_rows(&self) -> Option<u64> {
        self.complete
    }

    /// Adds pre-ranked rows: `ids` [B, K] classes by descending teacher logit `logits` [B, K], the
    /// log-normaliser `lse` [B, T] and log tail mass `log_tail` [B, T] at each temperature; `prior`, when
    /// given, is the sum over these rows of the teacher's softmax at T = 1 (length C).
    #[pyo3(signature = (rows, ids, logits, lse, log_tail, labels=None, prior=None))]
    fn add_ranked<'py>(
        &mut self,
        py: Python<'py>,
        rows: PyReadonlyArray1<'py, u64>,
        ids: PyReadonlyArray2<'py, i64>,
        logits: PyReadonlyArray2<'py, f32>,
        lse: PyReadonlyArray2<'py, f32>,
        log_tail: PyReadonlyArray2<'py, f32>,
        labels: Option<PyReadonlyArray1<'py, i64>>,
        prior: Option<PyReadonlyArray1<'py, f64>>,
    ) -> PyResult<()> {
        self.open()?;
        if self.complete.is_some() {
            return Ok(());
        }
        let (k, t, c) = (self.spec.k, self.spec.t(), self.spec.classes);
        let rows = contiguous(&rows, "rows")?;
        let b = rows.len();
        let (ids, ib, ik) = contiguous2(&ids, "ids")?;
        let (z, zb, zk) = contiguous2(&logits, "logits")?;
        let (l, lb, lt) = contiguous2(&lse, "lse")?;
        let (tl, tb, tt) = contiguous2(&log_tail, "log_tail")?;
        if (ib, ik) != (b, k) || (zb, zk) != (b, k) || (lb, lt) != (b, t) || (tb, tt) != (b, t) {
            return Err(invalid(format!(
                "shapes: {b} rows need ids and logits of shape ({b}, {k}) and lse and log_tail of shape ({b}, {t}); got ids ({ib}, {ik}), logits ({zb}, {zk}), lse ({lb}, {lt}), log_tail ({tb}, {tt})"
            )));
        }
        let labels = labels_of(&labels, b)?;
        let prior = match &prior {
            Some(p) => {
                let s = contiguous(p, "prior")?;
                if s.len() as u64 != c {
                    return Err(invalid(format!("prior has {} entries, the cache has C = {c} classes", s.len())));
                }
                Some(s.to_vec())
            }
            None => None,
        };
        self.check_labels(rows, labels)?;
        let skip = self.keep(rows)?;
        if skip == b {
            return Ok(());
        }
        // a prior is one sum over the batch: when the batch straddles a shard boundary or the resume point
        // it cannot be split between them, so a resumed run's class prior would not be the same
        let first_kept = rows.get(skip).copied().unwrap_or(0);
        let counted = first_kept < self.prior_below;
        if prior.is_some() && (skip > 0 || counted || b - skip > self.shard_room()) {
            PyErr::warn(
                py,
                &py.get_type::<pyo3::exceptions::PyUserWarning>(),
                c"add_ranked: this batch's prior straddles a shard boundary or the point a resumed run restarts at: a resumed cache's class prior may differ from an uninterrupted run's (give batches that end on shard boundaries: shard_rows a multiple of the batch size)",
                1,
            )?;
        }
        // rows whose prior the kept shards already hold do not give it again
        let prior = if skip > 0 || counted { None } else { prior };
        let spec = self.spec.clone();
        let batch = py
            .detach(|| -> kdcache::Result<RowBatch> {
                let mut batch = RowBatch::new(&spec);
                let mut checker = RowChecker::new(&spec);
                let mut row_ids = vec![0u32; k];
                for i in skip..b {
                    let r = rows[i];
                    for j in 0..k {
                        let id = ids[i * k + j];
                        if id < 0 || id as u64 >= c {
                            return Err(Error::invalid(format!("class id {id} of row {r} (rank {j}) is not in 0..{c}")));
                        }
                        row_ids[j] = id as u32;
                        let v = z[i * k + j];
                        if !v.is_finite() {
                            return Err(Error::NonFinite { row: r, class: id as u64 });
                        }
                        if j > 0 && v > z[i * k + j - 1] {
                            return Err(Error::invalid(format!("logits of row {r} are not in descending order at rank {j}")));
                        }
                    }
                    if let Some(x) = l[i * t..(i + 1) * t].iter().find(|x| !x.is_finite()) {
                        return Err(Error::invalid(format!("lse {x} of row {r} is not finite")));
                    }
                    let label = labels.map(|l| l[i]).unwrap_or(-1);
                    batch.push_row(r, 0, label, &row_ids, &z[i * k..(i + 1) * k], &l[i * t..(i + 1) * t], &tl[i * t..(i + 1) * t], None);
                    checker.check(batch.get(batch.len() - 1)).map_err(|what| Error::invalid(format!("row {r}: {what}")))?;
                }
                Ok(batch)
            })
            .map_err(to_py)?;
        self.send(py, batch, prior)
    }

    /// Adds rows of dense teacher logits [B, C] (float32), ranked on this machine's CPU exactly as
    /// `kdcache import` ranks them.
    #[pyo3(signature = (rows, logits, labels=None))]
    fn add_dense<'py>(
        &mut self,
        py: Python<'py>,
        rows: PyReadonlyArray1<'py, u64>,
        logits: PyReadonlyArray2<'py, f32>,
        labels: Option<PyReadonlyArray1<'py, i64>>,
    ) -> PyResult<()> {
        self.open()?;
        if self.complete.is_some() {
            return Ok(());
        }
        let (k, c) = (self.spec.k, self.spec.classes as usize);
        let rows = contiguous(&rows, "rows")?;
        let b = rows.len();
        let (z, zb, zc) = contiguous2(&logits, "logits")?;
        if zb != b || zc != c {
            return Err(invalid(format!("logits of shape ({zb}, {zc}) for {b} rows of C = {c} classes: need ({b}, {c})")));
        }
        let labels = labels_of(&labels, b)?;
        self.check_labels(rows, labels)?;
        let skip = self.keep(rows)?;
        if skip == b {
            return Ok(());
        }
        let spec = self.spec.clone();
        let pool = self.pool.clone();
        // one piece per shard the rows fall in, each with its own prior sum, so that the kept shards of
        // an interrupted run account exactly for their rows
        let mut cuts = vec![skip];
        let mut room = self.shard_room();
        while cuts[cuts.len() - 1] + room < b {
            cuts.push(cuts[cuts.len() - 1] + room);
            room = self.shard_rows;
        }
        cuts.push(b);
        // rows whose prior the kept shards hold already (an earlier run's batch ran past its last shard)
        let counted = rows.partition_point(|&r| r < self.prior_below);
        if counted > skip && counted < b && !cuts.contains(&counted) {
            cuts.push(counted);
            cuts.sort_unstable();
        }
        let pieces = py
            .detach(|| -> kdcache::Result<Vec<(RowBatch, Option<Vec<f64>>)>> {
                let mut pieces = vec![];
                for w in cuts.windows(2) {
                    let (lo, hi) = (w[0], w[1]);
                    let (ranked, prior) = pool.install(|| kdcache::rank::rank_block(&z[lo * c..hi * c], c, k, &spec.temperatures));
                    let mut batch = RowBatch::new(&spec);
                    for (i, r) in (lo..hi).zip(ranked) {
                        let r = r.map_err(|class| Error::NonFinite { row: rows[i], class: class as u64 })?;
                        batch.push_row(rows[i], 0, labels.map(|l| l[i]).unwrap_or(-1), &r.idx, &r.logit, &r.lse, &r.log_tail, None);
                    }
                    pieces.push((batch, (lo >= counted).then_some(prior)));
                }
                Ok(pieces)
            })
            .map_err(to_py)?;
        for (batch, prior) in pieces {
            self.send(py, batch, prior)?;
        }
        Ok(())
    }

    /// Writes what is pending and publishes the manifest; returns it as JSON text. Idempotent.
    fn close(&mut self, py: Python<'_>) -> PyResult<Option<String>> {
        if self.closed {
            return Ok(None);
        }
        self.closed = true;
        if self.complete.is_some() {
            self.lock = None;
            let m = kdcache::format::manifest::Manifest::load(&kdcache::format::manifest::manifest_path(&self.dir)).map_err(to_py)?;
            return serde_json::to_string(&m).map(Some).map_err(|e| PyRuntimeError::new_err(e.to_string()));
        }
        self.tx = None;
        let Some(thread) = self.thread.take() else { return Ok(None) };
        let examples = self.added + self.resumed_rows;
        let pool = self.pool.clone();
        let m = py
            .detach(move || -> kdcache::Result<_> {
                let w = thread.join().map_err(|_| Error::Internal("the cache's encoding thread panicked".into()))??;
                pool.install(|| w.finish(examples, 1, "kdcache python"))
            })
            .map_err(to_py);
        self.lock = None;
        let m = m?;
        serde_json::to_string(&m).map(Some).map_err(|e| PyRuntimeError::new_err(e.to_string()))
    }

    /// Stops without publishing: finished shards stay, so running the same writer again resumes.
    fn abort(&mut self, py: Python<'_>) {
        self.closed = true;
        self.tx = None;
        if let Some(t) = self.thread.take() {
            py.detach(move || {
                let _ = t.join();
            });
        }
        self.lock = None;
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // closing the channel ends the encoder; what it has not written into a shard is dropped (a
        // rerun rewrites it), and nothing is published
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// Ranking

/// Ranks dense logits [B, C] (float32) as `kdcache import` does: returns (ids int32 [B, K], logits
/// float32 [B, K], lse float32 [B, T], log_tail float32 [B, T], prior float64 [C] = the sum of the rows'
/// softmax at T = 1). Ties go to the lower class id.
#[pyfunction]
#[pyo3(signature = (logits, top_k, temperatures, threads=None))]
fn rank<'py>(py: Python<'py>, logits: PyReadonlyArray2<'py, f32>, top_k: usize, temperatures: Vec<f32>, threads: Option<usize>) -> PyResult<Bound<'py, PyAny>> {
    let (z, b, c) = contiguous2(&logits, "logits")?;
    let spec = RowSpec {
        classes: c as u64,
        k: top_k,
        temperatures: temperatures.clone(),
        tail_samples: 0,
        aug_dim: 0,
        logit_dtype: LogitDtype::F32,
        tail_logit: true,
        mixture: false,
    };
    spec.validate().map_err(to_py)?;
    if let Some(t) = temperatures.iter().find(|t| !(t.is_finite() && **t > 0.0)) {
        return Err(invalid(format!("temperature {t} must be finite and > 0")));
    }
    let pool = pool(threads.unwrap_or_else(default_threads))?;
    let t = temperatures.len();
    let out = py
        .detach(|| -> kdcache::Result<_> {
            let (ranked, prior) = if b == 0 { (vec![], vec![0.0; c]) } else { pool.install(|| kdcache::rank::rank_block(z, c, top_k, &temperatures)) };
            let (mut ids, mut vals, mut lse, mut tail) = (vec![], vec![], vec![], vec![]);
            for (i, r) in ranked.into_iter().enumerate() {
                let r = r.map_err(|class| Error::NonFinite { row: i as u64, class: class as u64 })?;
                ids.extend(r.idx.iter().map(|&x| x as i32));
                vals.extend(r.logit);
                lse.extend(r.lse);
                tail.extend(r.log_tail);
            }
            Ok((ids, vals, lse, tail, prior))
        })
        .map_err(to_py)?;
    let (ids, vals, lse, tail, prior) = out;
    let tuple = (matrix(py, ids, b, top_k)?, matrix(py, vals, b, top_k)?, matrix(py, lse, b, t)?, matrix(py, tail, b, t)?, prior.into_pyarray(py));
    Ok(tuple.into_pyobject(py)?.into_any())
}

/// Views re-applied from their stored parameters: `images` [B, C, H, W] float32 (contiguous), `augs`
/// [B, 5] (a cache's `aug` column); returns the transformed images [B, C, H, W], bit for bit what the
/// teacher saw (`kdcache.data.augment::apply`, the transform `kdcache cache --views` and `kdcache train`
/// use).
#[pyfunction]
fn replay<'py>(py: Python<'py>, images: numpy::PyReadonlyArrayDyn<'py, f32>, augs: PyReadonlyArray2<'py, f32>) -> PyResult<Bound<'py, PyAny>> {
    use kdcache::data::augment::{AUG_DIM, ImageShape, apply};
    let shape = images.shape().to_vec();
    let [b, c, h, w] = shape[..] else {
        return Err(invalid(format!("images must be [B, C, H, W], got shape {shape:?}")));
    };
    let (a, ab, ad) = contiguous2(&augs, "aug")?;
    if ab != b || ad != AUG_DIM {
        return Err(invalid(format!("aug must be [{b}, {AUG_DIM}] ([top, left, height, width, flip] per image), got [{ab}, {ad}]")));
    }
    let x = images.as_slice().map_err(|_| invalid("images must be a contiguous array"))?;
    let img = ImageShape { channels: c, height: h, width: w };
    let per = img.len();
    let out = py.detach(|| -> Result<Vec<f32>, String> {
        let mut out = Vec::with_capacity(b * per);
        let mut one = vec![];
        for i in 0..b {
            apply(img, &x[i * per..(i + 1) * per], &a[i * AUG_DIM..(i + 1) * AUG_DIM], &mut one).map_err(|e| format!("image {i}: {e}"))?;
            out.extend_from_slice(&one);
        }
        Ok(out)
    });
    let out = out.map_err(invalid)?;
    let arr = numpy::ndarray::Array4::from_shape_vec((b, c, h, w), out).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    Ok(arr.into_pyarray(py).into_any())
}

/// The rows part `i` of `n` covers of `num_examples` examples, as `kdcache cache --part i/N` splits them.
#[pyfunction]
fn part_range(num_examples: u64, i: u64, n: u64) -> PyResult<(u64, u64)> {
    if n == 0 || i >= n {
        return Err(invalid(format!("part ({i}, {n}): need 0 <= i < n")));
    }
    Ok(split(num_examples, i, n))
}

/// Examples lo..hi of part i of n (i < n), without overflow.
fn split(total: u64, i: u64, n: u64) -> (u64, u64) {
    let at = |j: u64| (total as u128 * j as u128 / n as u128) as u64;
    (at(i), at(i + 1))
}

/// Joins the caches written as parts 0..n of one build (`part=(i, n)`, in any order) into the cache
/// `out`, as `kdcache merge` does (under the same lock on `out`); returns the merged manifest (a dict).
/// `overwrite` replaces a cache already in `out` (otherwise that raises SignatureError).
#[pyfunction]
#[pyo3(signature = (parts, out, overwrite=false))]
fn merge<'py>(py: Python<'py>, parts: Vec<PathBuf>, out: PathBuf, overwrite: bool) -> PyResult<Bound<'py, PyAny>> {
    let m = py
        .detach(|| -> kdcache::Result<_> {
            std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
            let _lock = kdcache::fsio::DirLock::acquire(&out, "merge")?;
            kdcache::format::merge::merge(&parts, &out, overwrite)
        })
        .map_err(to_py)?;
    let text = serde_json::to_string(&m).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
    py.import("json")?.call_method1("loads", (text,))
}

/// The version of the Rust core.
#[pyfunction]
fn core_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

#[pymodule]
fn _kdcache(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Reader>()?;
    m.add_class::<Writer>()?;
    m.add_class::<sampler::PySampler>()?;
    m.add_function(wrap_pyfunction!(rowopt::row_step, m)?)?;
    m.add_function(wrap_pyfunction!(sampler::step_seed_py, m)?)?;
    m.add_function(wrap_pyfunction!(rank, m)?)?;
    m.add_function(wrap_pyfunction!(part_range, m)?)?;
    m.add_function(wrap_pyfunction!(replay, m)?)?;
    m.add_function(wrap_pyfunction!(merge, m)?)?;
    m.add_function(wrap_pyfunction!(core_version, m)?)?;
    m.add("KdcacheError", py.get_type::<KdcacheError>())?;
    m.add("CorruptCacheError", py.get_type::<CorruptCacheError>())?;
    m.add("CacheVersionError", py.get_type::<CacheVersionError>())?;
    m.add("SignatureError", py.get_type::<SignatureError>())?;
    Ok(())
}
