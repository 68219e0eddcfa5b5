"""Reading and writing caches: `Cache`, `Rows`, `CacheWriter`, `rank_logits`."""

from __future__ import annotations

import copy
import json
import math
import os
from typing import Any, Iterable, Optional, Sequence, Tuple, Union

import numpy as np

from . import _kdcache

#: Decoded blocks a `Cache` keeps for random access, in bytes (per process: each DataLoader worker has
#: its own). A block of 65,536 rows at K = 64 in f16 decodes to about 28 MiB.
DEFAULT_BLOCK_CACHE_BYTES = 512 << 20

ArrayLike = Any


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def _torch_float32():
    import torch

    return torch.float32


def _to_numpy(x: Any) -> np.ndarray:
    if _is_torch(x):
        x = x.detach()
        if x.device.type != "cpu":
            x = x.cpu()
        return x.numpy()
    return np.asarray(x)


def _indices(indices: ArrayLike, what: str = "indices") -> np.ndarray:
    """Any integer array-like (NumPy of any integer width, a list, a range, a torch tensor) as int64."""
    if isinstance(indices, range):
        return np.arange(indices.start, indices.stop, indices.step, dtype=np.int64)
    a = _to_numpy(indices)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {tuple(a.shape)}")
    if a.size == 0:
        return np.zeros(0, dtype=np.int64)
    if a.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integers, got dtype {a.dtype}")
    if a.dtype == np.uint64 and int(a.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{what}: {int(a.max())} is out of range")
    return np.ascontiguousarray(a, dtype=np.int64)


def _rows_arg(rows: Union[int, ArrayLike], n: int) -> np.ndarray:
    """The example indices of a batch of `n` rows: an array-like of n integers, or an int (the first of n
    consecutive rows)."""
    if isinstance(rows, (int, np.integer)) and not isinstance(rows, bool):
        if rows < 0:
            raise ValueError(f"rows: the first row {rows} is negative")
        return np.arange(int(rows), int(rows) + n, dtype=np.uint64)
    a = _indices(rows, "rows")
    if a.size != n:
        raise ValueError(f"rows has {a.size} entries for {n} rows of logits")
    if a.size and int(a.min()) < 0:
        raise ValueError(f"rows: row {int(a.min())} is negative")
    return a.astype(np.uint64)


def _labels_arg(labels: Optional[ArrayLike], n: int) -> Optional[np.ndarray]:
    if labels is None:
        return None
    a = _to_numpy(labels)
    if a.ndim != 1 or a.size != n:
        raise ValueError(f"labels must have shape ({n},), got {tuple(a.shape)}")
    if a.size and a.dtype.kind not in "iu":
        raise ValueError(f"labels must be integers (-1 = unknown), got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=np.int64)


def _float_matrix(x: ArrayLike, what: str, dtype=np.float32) -> np.ndarray:
    a = _to_numpy(x)
    if a.ndim != 2:
        raise ValueError(f"{what} must be two-dimensional, got shape {tuple(a.shape)}")
    if a.dtype.kind != "f" and a.size:
        raise ValueError(f"{what} must be floating point, got dtype {a.dtype}")
    return np.ascontiguousarray(a, dtype=dtype)


class Rows:
    """Cache rows as NumPy arrays (n rows, K ranks), at one cached temperature T.

    row       uint64 [n]      the example index each row was written for (the key into your dataset)
    view      uint32 [n]      the augmented view (0 without views)
    label     int64 [n]       the label stored with the row (-1 = unknown)
    ids       int32 [n, K]    the teacher's top-K classes, best first
    logp      float32 [n, K]  the teacher's exact log-probability of each of them at T
    lse       float32 [n]     log Σ_c exp(z_c / T) over all C classes (the exact normaliser)
    log_tail  float32 [n]     log of the teacher's mass outside the top-K at T (-inf when K = C)
    logits    float32 [n, K]  the teacher's logits z (only when asked for: `rows(..., logits=True)`)
    tail_idx, tail_cnt        int32 / uint32 [n, M], the tail samples (caches written with them only):
                              classes drawn from the teacher's tail at the first temperature T0
    tail_w    float64 [n, M]  each sample slot's share of the tail mass at T (0 for unused slots): an
                              unbiased estimate of the tail is Σ_j tail_w[j]·f(tail_idx[j]); at T ≠ T0
                              the draws are reweighted by p_T/p_T0 (format 3 caches; older ones hold
                              T0's shares, unbiased at T0 only)

    p = exp(logp) and tail_mass = exp(log_tail) sum to 1 per row (within the stored dtype's rounding).
    """

    __slots__ = ("temperature", "row", "view", "label", "ids", "logp", "lse", "log_tail", "logits", "tail_idx", "tail_cnt", "tail_w", "aug", "buffer", "fields")
    _NAMES = ("row", "view", "label", "ids", "logp", "lse", "log_tail", "logits", "tail_idx", "tail_cnt", "tail_w", "aug")
    _ONE_PER_ROW = ("row", "view", "label", "lse", "log_tail")

    def __init__(self, temperature: float, buffer: np.ndarray, fields: list, n: int):
        self.temperature = temperature
        #: every field lies in this one buffer (uint8), as `fields` = [(name, dtype, offset, per row)] says
        self.buffer = buffer.view(np.uint8)
        self.fields = fields
        for k in self._NAMES:
            setattr(self, k, None)
        for name, dtype, off, per in fields:
            dt = np.dtype(dtype)
            a = self.buffer[off : off + n * per * dt.itemsize].view(dt)
            setattr(self, name, a if name in self._ONE_PER_ROW else a.reshape(n, per))

    def __len__(self) -> int:
        return len(self.row)

    @property
    def p(self) -> np.ndarray:
        """The teacher's probabilities of the top-K classes at this temperature, float32 [n, K]."""
        return np.exp(self.logp)

    @property
    def tail_mass(self) -> np.ndarray:
        """The teacher's mass outside the top-K at this temperature, float32 [n]."""
        return np.exp(self.log_tail)

    def to_dict(self) -> dict:
        """The arrays by name (those present)."""
        return {k: getattr(self, k) for k in self._NAMES if getattr(self, k) is not None}

    def __repr__(self) -> str:
        k = self.ids.shape[1] if self.ids is not None and self.ids.ndim == 2 else 0
        return f"Rows(n={len(self)}, K={k}, T={self.temperature:g})"


class Cache:
    """A kdcache cache opened for reading (either encoding, kds or Parquet).

    Opening validates the manifest and every shard's header and layout, as `kdcache train` does; each
    block's checksum is checked when the block is read, and a damaged block raises `CorruptCacheError`
    at the read that meets it. Reads are random access: the blocks a call needs are decoded (in parallel,
    without the GIL) and the most recently used are kept, up to `block_cache_bytes` of decoded data.

    A Cache can be pickled (it is reopened from its path) and is reopened in each process that uses it,
    so it works in DataLoader workers under fork and spawn alike.
    """

    def __init__(self, path: Union[str, os.PathLike], *, block_cache_bytes: int = DEFAULT_BLOCK_CACHE_BYTES, threads: Optional[int] = None):
        if not isinstance(block_cache_bytes, (int, np.integer)) or block_cache_bytes < 0:
            raise ValueError(f"block_cache_bytes must be a non-negative integer, got {block_cache_bytes!r}")
        if threads is not None and (not isinstance(threads, (int, np.integer)) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
        self._path = os.fspath(path)
        self._budget = int(block_cache_bytes)
        self._threads = None if threads is None else int(threads)
        self._ahead: Optional[Tuple[Optional[int]]] = None
        self._open()

    def _open(self) -> None:
        self._r = _kdcache.Reader(self._path, self._budget, self._threads)
        if self._ahead is not None:
            self._r.plan(self._ahead[0])
        self._pid = os.getpid()
        self._manifest = json.loads(self._r.manifest_json())
        self._starts = self._r.block_starts()

    def _reader(self) -> "_kdcache.Reader":
        if os.getpid() != self._pid:  # a forked child: no handles or locks shared with the parent
            self._open()
        return self._r

    def __getstate__(self) -> dict:
        return {"path": self._path, "block_cache_bytes": self._budget, "threads": self._threads, "read_ahead": self._ahead}

    def __setstate__(self, state: dict) -> None:
        self._path = state["path"]
        self._budget = state["block_cache_bytes"]
        self._threads = state["threads"]
        self._ahead = state.get("read_ahead")
        self._open()

    # --- what the cache holds
    @property
    def path(self) -> str:
        return self._path

    @property
    def num_rows(self) -> int:
        return int(self._manifest["rows"])

    @property
    def num_classes(self) -> int:
        return int(self._manifest["classes"])

    @property
    def top_k(self) -> int:
        return int(self._manifest["top_k"])

    @property
    def temperatures(self) -> Tuple[float, ...]:
        return tuple(float(t) for t in self._manifest["temperatures"])

    @property
    def dtype(self) -> str:
        """How the top-K values are stored: "f16", "bf16" or "f32"."""
        return str(self._manifest["logit_dtype"])

    @property
    def encoding(self) -> str:
        """"kds" or "parquet"."""
        return str(self._manifest["encoding"])

    @property
    def signature(self) -> dict:
        """The fingerprints of teacher, dataset, classes and augmentation the cache is bound to."""
        return dict(self._manifest["signature"])

    @property
    def manifest(self) -> dict:
        """The whole manifest (`_manifest.json`; a copy)."""
        return copy.deepcopy(self._manifest)

    @property
    def block_rows(self) -> int:
        return int(self._manifest["block_rows"])

    @property
    def num_blocks(self) -> int:
        return len(self._starts) - 1

    @property
    def block_starts(self) -> np.ndarray:
        """The first cache row of each block, then the row count (uint64, num_blocks + 1)."""
        return self._starts.copy()

    def __len__(self) -> int:
        return self.num_rows

    def __repr__(self) -> str:
        t = ", ".join(f"{x:g}" for x in self.temperatures)
        return f"kdcache.Cache({self._path!r}: {self.num_rows} rows, C={self.num_classes}, K={self.top_k}, T=({t}), {self.dtype}, {self.encoding})"

    def temperature_index(self, temperature: Optional[float] = None) -> int:
        """The position of `temperature` among the cached ones (None: the first). Probabilities are exact
        only at a cached temperature, so any other is refused."""
        temps = self.temperatures
        if temperature is None:
            return 0
        try:
            t = float(temperature)
        except (TypeError, ValueError):
            raise ValueError(f"temperature must be a number, got {temperature!r}") from None
        for i, c in enumerate(temps):
            if math.isclose(t, c, rel_tol=1e-6, abs_tol=0.0):
                return i
        have = ", ".join(f"{c:g}" for c in temps)
        raise ValueError(f"temperature {t:g} is not cached: the cache has T = {have}")

    # --- reading
    def rows(self, indices: ArrayLike, temperature: Optional[float] = None, *, logits: bool = False) -> Rows:
        """The rows at cache positions `indices` (0..num_rows; any order, repeats allowed; any integer
        array, list, range or torch tensor), with the teacher's log-probabilities at `temperature` (one of
        the cached temperatures; default the first). `logits=True` adds the teacher's logits z."""
        return self._rows(indices, temperature, logits=logits)

    def _rows(self, indices: ArrayLike, temperature: Optional[float] = None, *, logits: bool = False, ids_i64: bool = False) -> Rows:
        ti = self.temperature_index(temperature)
        idx = _indices(indices)
        buf, fields = self._reader().rows(idx, ti, bool(logits), bool(ids_i64))
        return Rows(self.temperatures[ti], buf, fields, len(idx))

    def order(self, seed: Optional[int] = None) -> np.ndarray:
        """The cache positions of one pass as `kdcache train --seed S` reads epoch e with seed = S + e:
        blocks in a seeded random order, rows shuffled within each block (uint64 [num_rows]). seed=None:
        storage order."""
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        return self._reader().order(None if seed is None else int(seed) % (1 << 64))

    def read_ahead(self, seed: Optional[int] = None, enabled: bool = True) -> None:
        """Reads ahead in the block order of `order(seed)`: every read starts decoding the next blocks of
        that order in the background, as `kdcache train` prefetches. BlockShuffleSampler sets this on the
        cache it is given (pass the same Cache to CacheDataset); it carries over to DataLoader workers.
        enabled=False stops it."""
        if seed is not None and (not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        self._ahead = (None if seed is None else int(seed) % (1 << 64),) if enabled else None
        self._reader().plan(None if self._ahead is None else self._ahead[0], enabled)

    def verify(self) -> dict:
        """Checks every shard checksum, every block and every row invariant, as `kdcache verify`; raises
        `CorruptCacheError` naming the first failure, or returns what was checked."""
        return self._reader().verify()

    def block_cache_usage(self) -> Tuple[int, int]:
        """(bytes of decoded blocks held now, the budget)."""
        return self._reader().block_cache_usage()


def rank_logits(logits: ArrayLike, top_k: int, temperatures: Sequence[float] = (1.0,)):
    """Ranks dense logits [B, C] on the CPU exactly as `kdcache import` does (float32; sums in float64).

    Returns (ids int32 [B, K], logits float32 [B, K], lse float32 [B, T], log_tail float32 [B, T],
    prior float64 [C]): the top-K classes by descending logit (ties to the lower class id), their
    logits, the log-normaliser and log tail mass at each temperature, and the rows' summed softmax at
    T = 1. `CacheWriter.add_ranked` takes the first four (and the prior)."""
    z = _float_matrix(logits, "logits")
    return _kdcache.rank(z, int(top_k), [float(t) for t in temperatures])


class CacheWriter:
    """Writes a kdcache cache from Python, batch by batch, as `kdcache cache` does from its teacher.

    out           the cache directory (created)
    num_classes   C, the teacher's class count
    top_k         K, the ranks kept per row (K <= C)
    temperatures  the temperatures whose exact normalisers and tail masses are stored (the first is T0)
    teacher       an id of the teacher (a name and version, a checkpoint's hash): part of the cache's
                  signature, which `kdcache train` and a rerun of this writer check
    dataset       an id of the data the rows come from (name, split, version or a hash); same role
    format        "kds" (memory-mapped, the fastest) or "parquet" (readable by pyarrow, polars, DuckDB)
    dtype         how the top-K values are stored: "f16" (default), "bf16" or "f32"
    part          (i, n): this cache is part i of n, joined by `kdcache merge`; needs num_examples
    num_examples  the dataset's size: rows must lie in 0..num_examples (in the part's share of it)
    block_rows    rows per block (the unit of shuffling and of random-access decoding)
    shard_rows    rows per shard file (the unit of resuming after a crash)
    overwrite     replace another cache in `out` (otherwise that raises SignatureError)

    add_logits(rows, logits) ranks a batch of teacher logits and queues it; encoding and compression run
    on background threads while the teacher computes its next batch. Use it as a context manager, or
    call close(): it writes the last shard and publishes `_manifest.json` atomically. A run that dies
    (even by SIGKILL) leaves its finished shards: running the same script again keeps them, skips the
    rows they hold (`next_row` says where to start, `resumed_rows` how many were kept) and writes the
    rest, giving the cache an uninterrupted run gives. Rerunning a finished cache changes nothing
    (`complete` is True and every add is a no-op).
    """

    def __init__(
        self,
        out: Union[str, os.PathLike],
        *,
        num_classes: int,
        top_k: int,
        teacher: str,
        dataset: str,
        temperatures: Sequence[float] = (1.0,),
        format: str = "kds",
        dtype: str = "f16",
        part: Optional[Tuple[int, int]] = None,
        num_examples: Optional[int] = None,
        block_rows: int = 1 << 16,
        shard_rows: int = 1 << 20,
        overwrite: bool = False,
        threads: Optional[int] = None,
    ):
        if not isinstance(teacher, str) or not isinstance(dataset, str):
            raise ValueError("teacher and dataset must be strings (ids that fingerprint the cache)")
        for name, v in (("num_classes", num_classes), ("top_k", top_k), ("block_rows", block_rows), ("shard_rows", shard_rows)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if isinstance(temperatures, (int, float)):
            temperatures = (temperatures,)
        temps = [float(t) for t in temperatures]
        if part is not None:
            if len(tuple(part)) != 2:
                raise ValueError(f"part must be (i, n), got {part!r}")
            part = (int(part[0]), int(part[1]))
            if part[0] < 0 or part[1] < 1:
                raise ValueError(f"part ({part[0]}, {part[1]}): need 0 <= i < n")
        if num_examples is not None and (not isinstance(num_examples, (int, np.integer)) or num_examples < 0):
            raise ValueError(f"num_examples must be a non-negative integer, got {num_examples!r}")
        if format not in ("kds", "parquet"):
            raise ValueError(f"unknown shard encoding {format!r}: use kds or parquet")
        self.path = os.fspath(out)
        self.num_classes = int(num_classes)
        self.top_k = int(top_k)
        self.temperatures = tuple(temps)
        self._w = _kdcache.Writer(
            self.path, self.num_classes, self.top_k, temps, teacher, dataset, format, dtype, part,
            None if num_examples is None else int(num_examples), int(block_rows), int(shard_rows), bool(overwrite), threads,
        )
        self._resume_at = self._w.next_row
        self.manifest: Optional[dict] = None

    @property
    def resumed_rows(self) -> int:
        """Rows an earlier, interrupted run of this cache wrote, kept by this one."""
        return self._w.resumed_rows

    @property
    def next_row(self) -> Optional[int]:
        """The first example index not yet written (None when the cache is complete): a resumed run may
        start its teacher loop there; rows below it are skipped when added."""
        return self._w.next_row

    @property
    def complete(self) -> bool:
        """True when `out` already held this cache, complete: nothing is written."""
        return self._w.complete_rows is not None

    def _skipped(self, rows: np.ndarray) -> bool:
        """True when every row of the batch was written by an earlier run (so the teacher's logits need
        not be ranked again)."""
        if self.complete:
            return True
        return rows.size > 0 and self._resume_at is not None and int(rows[-1]) < self._resume_at and bool(np.all(np.diff(rows.astype(np.int64)) > 0))

    def add_logits(self, rows: Union[int, ArrayLike], logits: ArrayLike, labels: Optional[ArrayLike] = None) -> None:
        """Ranks and adds a batch of the teacher's logits [B, C].

        rows    the examples' indices in the dataset (B integers, strictly increasing across calls), or
                the first of B consecutive ones
        logits  a torch tensor on any device (float32/16/bf16/64) or a NumPy array. On a GPU, top-K, the
                log-normalisers and the tail masses are computed there (sums in float64) and only the
                [B, K] results cross to the host; on the CPU the Rust ranker of `kdcache import` is used.
        labels  the examples' labels (B integers, -1 = unknown), stored with the rows

        Raises ValueError for a wrong shape or dtype, a NaN or Inf logit (naming the row and class),
        rows that do not increase or lie outside the cache's range.
        """
        if not _is_torch(logits):
            logits = np.asarray(logits)
        if logits.ndim != 2:
            raise ValueError(f"logits must be two-dimensional [B, C], got shape {tuple(logits.shape)}")
        n = int(logits.shape[0])
        r = _rows_arg(rows, n)
        lab = _labels_arg(labels, n)
        if n and int(logits.shape[1]) != self.num_classes:
            raise ValueError(f"logits of shape ({n}, {int(logits.shape[1])}): the cache has C = {self.num_classes} classes")
        if n == 0 or self._skipped(r):
            return
        if _is_torch(logits) and logits.device.type != "cpu":
            from .torch import check_finite, rank_logits as rank_torch

            if n > 1 and not bool(np.all(np.diff(r.astype(np.int64)) > 0)):
                i = int(np.argmin(np.diff(r.astype(np.int64)) > 0)) + 1
                raise ValueError(f"rows must increase strictly: row {int(r[i])} (at position {i}) follows row {int(r[i - 1])}")
            check_finite(logits, r)
            # rows an earlier run wrote are not ranked again; one piece per shard, each with its own prior
            pos = int(np.searchsorted(r, self._resume_at)) if self._resume_at else 0
            while pos < n:
                end = min(n, pos + self._w.shard_room)
                ids, vals, lse, log_tail, prior = rank_torch(logits[pos:end], self.top_k, self.temperatures, rows=r[pos:end])
                self._w.add_ranked(r[pos:end], ids, vals, lse, log_tail, None if lab is None else lab[pos:end], prior)
                pos = end
            return
        if _is_torch(logits) and logits.is_floating_point() and logits.dtype != _torch_float32():
            logits = logits.detach().float()  # NumPy has no bfloat16
        z = _to_numpy(logits)
        if z.dtype.kind != "f":
            raise ValueError(f"logits must be floating point, got dtype {z.dtype}")
        self._w.add_dense(r, np.ascontiguousarray(z, dtype=np.float32), lab)

    def add_ranked(
        self,
        rows: Union[int, ArrayLike],
        ids: ArrayLike,
        logits: ArrayLike,
        lse: ArrayLike,
        log_tail: ArrayLike,
        labels: Optional[ArrayLike] = None,
        prior: Optional[ArrayLike] = None,
    ) -> None:
        """Adds pre-ranked rows: ids [B, K] (the top-K classes, best first), logits [B, K] (their logits,
        descending), lse [B, T] (log Σ_c exp(z_c/T) at each cached temperature), log_tail [B, T] (log of
        the mass outside the top-K), and optionally prior [C] (the batch's summed softmax at T = 1, for
        the manifest's class prior). `rank_logits` returns exactly these. Each row is checked as
        `kdcache verify` checks it."""
        ids_a = _to_numpy(ids)
        if ids_a.ndim != 2:
            raise ValueError(f"ids must be two-dimensional [B, K], got shape {tuple(ids_a.shape)}")
        if ids_a.size and ids_a.dtype.kind not in "iu":
            raise ValueError(f"ids must be integers, got dtype {ids_a.dtype}")
        n = int(ids_a.shape[0])
        r = _rows_arg(rows, n)
        if self._skipped(r):
            return
        lab = _labels_arg(labels, n)
        pr = None
        if prior is not None:
            pr = np.ascontiguousarray(_to_numpy(prior), dtype=np.float64)
            if pr.ndim != 1:
                raise ValueError(f"prior must be one-dimensional [C], got shape {tuple(pr.shape)}")
        self._w.add_ranked(
            r,
            np.ascontiguousarray(ids_a, dtype=np.int64),
            _float_matrix(logits, "logits"),
            _float_matrix(lse, "lse"),
            _float_matrix(log_tail, "log_tail"),
            lab,
            pr,
        )

    def close(self) -> dict:
        """Writes the last shard and publishes the manifest (atomically); returns the manifest. A second
        call returns the same."""
        if self.manifest is None:
            text = self._w.close()
            if text is not None:
                self.manifest = json.loads(text)
        return self.manifest

    def abort(self) -> None:
        """Stops without publishing the cache: finished shards stay, so running the same writer again
        resumes after them."""
        self._w.abort()

    def __enter__(self) -> "CacheWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
