"""PyTorch glue: a Dataset over a cache (paired with your own dataset by the stored row id), a collate
function that returns tensors, a block-aware sampler for DataLoader and DistributedDataParallel, and
the ranking of teacher logits on their own device.

    from torch.utils.data import DataLoader
    import kdcache, kdcache.torch as kt

    cache = kdcache.Cache("cache/train")
    ds = kt.CacheDataset(cache, images, temperature=2)      # images: your torch Dataset, indexed by row id
    sampler = kt.BlockShuffleSampler(cache, seed=0)         # rank / world_size from torch.distributed
    loader = DataLoader(ds, batch_size=256, sampler=sampler, num_workers=2, collate_fn=kt.collate)
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for b in loader:
            b["input"], b["ids"], b["logp"], b["log_tail"]   # tensors
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Iterator, Optional, Sequence as Seq, Tuple, Union

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler
from torch.utils.data._utils.collate import default_collate

from . import _kdcache
from .cache import Cache, Rows
from .head import ESTIMATORS, DistillHead, HeadOutput, RowAdam, default_head_lr, load_checkpoint, save_checkpoint

__all__ = [
    "CacheDataset",
    "CachedBatch",
    "collate",
    "BlockShuffleSampler",
    "rank_logits",
    "check_finite",
    "replay",
    "DistillHead",
    "ESTIMATORS",
    "HeadOutput",
    "RowAdam",
    "default_head_lr",
    "save_checkpoint",
    "load_checkpoint",
]

# fields of a row, as tensors
_FIELDS = ("row", "label", "ids", "logp", "lse", "log_tail")
_OPTIONAL = ("logits", "tail_idx", "tail_cnt", "tail_w", "aug")


def _tensor(a: np.ndarray) -> torch.Tensor:
    if a.dtype == np.uint64:  # torch has no general uint64: row ids fit int64
        a = a.view(np.int64)
    elif a.dtype == np.uint32:
        a = a.astype(np.int64)
    return torch.from_numpy(a)


class CachedBatch(Sequence):
    """What `CacheDataset.__getitems__` returns: the cache rows of a batch (`rows`, NumPy) and the
    matching samples of your dataset (`inputs`, or None). `collate` turns it into a dict of tensors;
    it is also a sequence of per-row dicts, so torch's default collate works too (more slowly)."""

    def __init__(self, rows: Rows, inputs: Optional[list], num_classes: Optional[int] = None):
        self.rows = rows
        self.inputs = inputs
        self.num_classes = num_classes

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        d = {k: _tensor(np.asarray(getattr(self.rows, k)[i])) for k in _FIELDS + _OPTIONAL if getattr(self.rows, k) is not None}
        if self.inputs is not None:
            d["input"] = self.inputs[i]
        return d


# the dtype each field has as a tensor (torch indexes with int64; row ids fit it)
_DTYPES = {
    "row": torch.int64,
    "label": torch.int64,
    "ids": torch.int64,
    "logp": torch.float32,
    "lse": torch.float32,
    "log_tail": torch.float32,
    "logits": torch.float32,
    "tail_idx": torch.int64,
    "tail_cnt": torch.int64,
    "tail_w": torch.float64,
    "aug": torch.float32,
}


# NumPy dtype strings of the reader's buffer fields, as torch dtypes (u8: row ids, which fit int64)
_TORCH = {"u8": torch.int64, "i8": torch.int64, "i4": torch.int32, "u4": torch.uint32, "f4": torch.float32, "f8": torch.float64}


def collate(batch: Any) -> dict:
    """Collates a `CachedBatch` into a dict of tensors: row, label (int64 [B]), ids (int64 [B, K]),
    logp (float32 [B, K]), lse, log_tail (float32 [B]), logits/tail samples when present, temperature
    and num_classes (0-dim tensors: what the rows were read at), and input (your dataset's samples through
    torch's default collate). Lists of single rows (from `__getitem__`) are
    collated by torch's default collate.

    The cache fields are views into one buffer, so a DataLoader worker hands the whole batch to the main
    process as one shared-memory block instead of one per field."""
    if not isinstance(batch, CachedBatch):
        return default_collate(batch)
    r = batch.rows
    buf = torch.from_numpy(r.buffer)  # one storage: the fields are views into it
    n = len(r)
    out = {}
    for name, dtype, off, per in r.fields:
        if name not in _DTYPES:
            continue
        dt = np.dtype(dtype)
        t = buf[off : off + n * per * dt.itemsize].view(_TORCH[dtype])
        if name not in ("row", "label", "lse", "log_tail"):
            t = t.view(n, per)
        if t.dtype != _DTYPES[name]:
            t = t.to(_DTYPES[name])  # only when the rows were read without ids_i64, or for view counts
        out[name] = t
    # what the rows were read at (0-dim tensors): DistillHead refuses a batch of another cache or temperature
    out["temperature"] = torch.tensor(float(r.temperature), dtype=torch.float64)
    if batch.num_classes is not None:
        out["num_classes"] = torch.tensor(int(batch.num_classes), dtype=torch.int64)
    if batch.inputs is not None:
        out["input"] = default_collate(batch.inputs)
    return out


class CacheDataset(Dataset):
    """The rows of a cache as a map-style Dataset, each paired with your dataset's sample.

    Cache row i holds the teacher's ranked logits for example `row` (the id stored when the cache was
    written); item i pairs it with `dataset[row]` — by that stored id, never by position or iteration
    order, so a cache stays correct when the data loader's order changes. `__getitems__` fetches a whole
    batch with one decode (use `collate_fn=kdcache.torch.collate`). Workers reopen the cache (fork and
    spawn); nothing is shared between processes but the files.

    cache        a `kdcache.Cache` or the path of one
    dataset      your map-style dataset (anything with __getitem__; __getitems__ is used when present),
                 or None for the cache rows alone
    temperature  one of the cached temperatures (default: the first)
    logits       also return the teacher's logits z
    """

    def __init__(self, cache: Union[Cache, str, os.PathLike], dataset: Any = None, temperature: Optional[float] = None, *, logits: bool = False):
        self.cache = cache if isinstance(cache, Cache) else Cache(cache)
        self.dataset = dataset
        self.temperature = self.cache.temperatures[self.cache.temperature_index(temperature)]
        self.logits = bool(logits)
        if dataset is not None and hasattr(dataset, "__len__"):
            n = len(dataset)
            top = self.cache.manifest.get("examples") or 0
            if top and n < top:
                raise ValueError(f"the dataset has {n} samples, but the cache was written for {top} examples")

    def __len__(self) -> int:
        return self.cache.num_rows

    def _inputs(self, rows: np.ndarray) -> Optional[list]:
        if self.dataset is None:
            return None
        ids = [int(r) for r in rows]
        getitems = getattr(self.dataset, "__getitems__", None)
        if getitems is not None:
            return list(getitems(ids))
        return [self.dataset[i] for i in ids]

    def __getitems__(self, indices) -> CachedBatch:
        rows = self.cache._rows(indices, self.temperature, logits=self.logits, ids_i64=True)
        return CachedBatch(rows, self._inputs(rows.row), self.cache.num_classes)

    def __getitem__(self, i: int) -> dict:
        if not isinstance(i, (int, np.integer)) or isinstance(i, bool):
            raise TypeError(f"CacheDataset index must be an integer, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"row {i} is outside the cache's 0..{n}")
        return self.__getitems__([int(i) % n])[0]


class BlockShuffleSampler(Sampler[int]):
    """Cache positions in the order `kdcache train` reads them: blocks in a seeded random order, rows
    shuffled within each block, a new order each epoch (`set_epoch`, seed + epoch). Reading block by
    block keeps each decoded block hot while its rows are used; a fully random sampler decodes a block
    for almost every row unless the block cache holds the whole cache.

    For data-parallel training, each of `world_size` processes takes a contiguous share of the epoch's
    order (so each reads its own blocks); like DistributedSampler, the order is padded with its first
    rows to a multiple of world_size (or trimmed with drop_last=True), so every rank runs the same number
    of steps. rank and world_size default to torch.distributed's when it is initialised, else 0 and 1.
    shuffle=False gives storage order.

    With `batch_size`, it is a batch sampler: each item is a NumPy array of `batch_size` positions (the
    last one shorter unless drop_last_batch), for `DataLoader(..., batch_sampler=sampler)`. That skips
    the DataLoader's per-index Python loop, the largest cost left per batch once rows come from Rust.
    """

    def __init__(
        self,
        cache: Cache,
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
        drop_last: bool = False,
        batch_size: Optional[int] = None,
        drop_last_batch: bool = False,
    ):
        if world_size is None or rank is None:
            dist = torch.distributed
            initialised = dist.is_available() and dist.is_initialized()
            if world_size is None:
                world_size = dist.get_world_size() if initialised else 1
            if rank is None:
                rank = dist.get_rank() if initialised else 0
        if not isinstance(world_size, int) or world_size < 1:
            raise ValueError(f"world_size must be a positive integer, got {world_size!r}")
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank!r} is not in 0..{world_size}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
        self.batch_size = batch_size
        self.drop_last_batch = bool(drop_last_batch)
        self.cache = cache
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.drop_last = bool(drop_last)
        self.epoch = 0
        n = cache.num_rows
        if self.drop_last:
            self.num_samples = n // world_size
        else:
            self.num_samples = -(-n // world_size)
        self.total_size = self.num_samples * world_size
        self._read_ahead()

    def _read_ahead(self) -> None:
        # the cache decodes the epoch's next blocks in the background (DataLoader workers inherit it)
        self.cache.read_ahead(self.seed + self.epoch if self.shuffle else None)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose order the next iteration gives (seed + epoch, as `kdcache train`)."""
        self.epoch = int(epoch)
        self._read_ahead()

    def indices(self) -> np.ndarray:
        """This rank's cache positions for the current epoch (int64)."""
        order = self.cache.order(self.seed + self.epoch if self.shuffle else None).astype(np.int64)
        if self.total_size > len(order):
            reps = -(-self.total_size // max(len(order), 1))
            order = np.tile(order, reps)[: self.total_size] if len(order) else order
        else:
            order = order[: self.total_size]
        return order[self.rank * self.num_samples : (self.rank + 1) * self.num_samples]

    def __iter__(self) -> Iterator:
        self._read_ahead()
        idx = self.indices()
        if self.batch_size is None:
            return iter(idx.tolist())
        b = self.batch_size
        end = len(idx) - len(idx) % b if self.drop_last_batch else len(idx)
        return (idx[lo : lo + b] for lo in range(0, end, b))

    def __len__(self) -> int:
        """Positions per epoch on this rank, or batches with `batch_size`."""
        if self.batch_size is None:
            return self.num_samples
        if self.drop_last_batch:
            return self.num_samples // self.batch_size
        return -(-self.num_samples // self.batch_size)


def replay(image: torch.Tensor, aug: Any) -> torch.Tensor:
    """The augmented view a cache row stores, re-applied to its example: what the teacher saw.

    A cache written with `kdcache cache --views V --augment SPEC` holds V rows per example, each with its
    view's parameters in `aug` ([top, left, height, width, flip]: the crop box in pixels of the source
    image, and 1 for a horizontal flip). `replay` crops that box, resizes it bilinearly back to the image's
    size (half-pixel centres, as `F.interpolate(mode="bilinear", align_corners=False)` without
    antialiasing) and flips it, with the very code `kdcache cache` ran for the teacher and `kdcache train`
    runs for its student, so the result is bit for bit the teacher's input.

    image  one image [C, H, W] or [H, W] with aug [5], or a batch [B, C, H, W] with aug [B, 5]; any real
           dtype, taken as float32 values unscaled (uint8 pixels stay 0..255, as `kdcache cache` reads
           them)
    aug    the row's (or batch's) `aug` field: tensor, NumPy array or sequence
    Returns a float32 tensor of the image's shape on the image's device.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor, got {type(image).__name__}")
    if image.is_complex() or image.dtype == torch.bool:
        raise TypeError(f"image must hold real numbers, got {image.dtype}")
    a = aug.detach().cpu().numpy() if isinstance(aug, torch.Tensor) else np.asarray(aug)
    a = np.ascontiguousarray(a, dtype=np.float32)
    shape = tuple(image.shape)
    if image.dim() == 2:
        x = image.reshape(1, 1, *shape)
    elif image.dim() == 3:
        x = image.unsqueeze(0)
    elif image.dim() == 4:
        x = image
    else:
        raise ValueError(f"image must be [H, W], [C, H, W] or [B, C, H, W], got shape {list(shape)}")
    if image.dim() < 4:
        if a.shape != (5,):
            raise ValueError(f"aug must be [5] ([top, left, height, width, flip]) for one image, got shape {list(a.shape)}")
        a = a.reshape(1, 5)
    elif a.ndim != 2:
        raise ValueError(f"aug must be [B, 5] for a batch of images, got shape {list(a.shape)}")
    host = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
    out = torch.from_numpy(_kdcache.replay(host, a)).reshape(shape)
    return out.to(image.device)


def check_finite(logits: torch.Tensor, rows: Optional[np.ndarray] = None) -> None:
    """Raises ValueError naming the first row (`rows[i]` when given) and class of a NaN or Inf logit."""
    bad = ~torch.isfinite(logits.detach())
    if bool(bad.any()):
        i, j = (int(v) for v in bad.nonzero()[0])
        row = int(rows[i]) if rows is not None else i
        raise ValueError(f"non-finite teacher logit (NaN or Inf) in row {row}, class {j}")


def rank_logits(logits: torch.Tensor, top_k: int, temperatures: Seq[float] = (1.0,), *, rows: Optional[np.ndarray] = None, chunk_bytes: int = 256 << 20) -> Tuple[np.ndarray, ...]:
    """Ranks teacher logits [B, C] with torch on their own device (a GPU, when they are there).

    Returns NumPy arrays (ids int64 [B, K], logits float32 [B, K], lse float32 [B, T], log_tail float32
    [B, T], prior float64 [C]) as `CacheWriter.add_ranked` takes them: top-K by descending logit, and at
    each temperature T the exact log-normaliser log Σ_c exp(z_c / T) and log tail mass, summed in
    float64 over rows in chunks of at most `chunk_bytes`; prior is Σ_rows softmax(z) at T = 1. Only these
    cross to the host. A NaN or Inf logit raises ValueError naming the row (`rows[i]` when given) and
    class."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise ValueError("logits must be a two-dimensional torch tensor [B, C]")
    if not logits.is_floating_point():
        raise ValueError(f"logits must be floating point, got {logits.dtype}")
    z = logits.detach()
    b, c = z.shape
    k = int(top_k)
    if not 1 <= k <= c:
        raise ValueError(f"top-K = {k} is out of range 1..={c} (the class count C)")
    check_finite(z, rows)
    z = z.float()
    vals, idx = torch.topk(z, k, dim=1, largest=True, sorted=True)
    temps = [float(t) for t in temperatures]
    lse = torch.empty((b, len(temps)), dtype=torch.float64, device=z.device)
    tail = torch.empty_like(lse)
    prior = torch.zeros(c, dtype=torch.float64, device=z.device)
    step = max(1, int(chunk_bytes) // max(1, c * 8))
    for lo in range(0, b, step):
        hi = min(b, lo + step)
        z64 = z[lo:hi].double()
        for ti, t in enumerate(temps):
            s = z64 / t
            lse[lo:hi, ti] = torch.logsumexp(s, dim=1)
            tail[lo:hi, ti] = torch.logsumexp(s.scatter(1, idx[lo:hi], float("-inf")), dim=1) - lse[lo:hi, ti]
        prior += torch.softmax(z64, dim=1).sum(0)
    return (
        idx.to(torch.int64).cpu().numpy(),
        vals.cpu().numpy(),
        lse.float().cpu().numpy(),
        tail.float().cpu().numpy(),
        prior.cpu().numpy(),
    )
