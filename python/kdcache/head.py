"""The distillation head for a PyTorch training loop: `DistillHead` owns the head table (W and b, one
row per class, as `kdcache train` has it) and computes `kdcache train`'s estimators from a backbone's
features and a batch of cache rows; `RowAdam` is the row-wise (lazy) Adam `kdcache train` uses for it.

    import kdcache.torch as kt
    head = kt.DistillHead(cache.num_classes, dim=256, loss="dis", temperature=2.0)
    opt_b = torch.optim.Adam(backbone.parameters(), 1e-3)
    opt_h = kt.RowAdam(head.parameters(), lr=kt.default_head_lr("dis"))
    for b in loader:                                 # collate_fn=kt.collate; keep the batch on the CPU
        out = head(backbone(b["input"].to(dev)), b)
        opt_b.zero_grad(); opt_h.zero_grad()
        out.loss.backward()
        opt_b.step(); opt_h.step()

The mathematics (see `src/train/loss.rs`): teacher p = softmax(z/T) from the cache, student s = [h,1]·Wᵀ,
    KD_i = −Σ_j t_ij·s_ij/T + log Ẑ_i,   loss = α·T²·mean_i KD_i + (1−α)·mean_{labelled i} CE_i,
and the estimators differ in the target t and the normaliser Ẑ:
  full   t = the top-K probabilities plus the teacher's tail mass τ spread over the other C−K classes;
         Ẑ over all C classes (a [B, C] product: the reference)
  topk   t = the top-K renormalised, Ẑ over the row's own top-K (the common, biased practice)
  ghost  the top-K plus one bucket holding τ against the student's exact tail mass (dense)
  rs     τ spread over the cached tail samples by their counts (caches with tail samples; dense)
  dis    each row's K ranks and its label exactly, plus shared columns drawn by the core's sampler
         (`kdcache._kdcache.Sampler`: the same draws as `kdcache train` from the same state and seed)
         with weights 1/π (an unbiased normaliser); the spread tail exact through the running sum of all
         head rows. Cost O(B·(K + columns)·d): no [B, C] tensor is built.
CE on labels uses the same columns at T = 1.

Distributed (`torch.distributed` initialised, world size N > 1):
  data-parallel (default): each rank computes its own rows; the `dis` columns are drawn once for the
    global batch (the ranks' cache rows are gathered; the seed is shared), so every rank updates the
    same head rows; the head's gradient is averaged over the ranks on those rows (dense for the dense
    estimators), as DistributedDataParallel averages the backbone's. Do not wrap the head in DDP.
  class-sharded (`shard=True`): rank r owns classes [r·C/N, (r+1)·C/N) of the table (and their optimiser
    state); features and cache rows are all-gathered, each rank computes the logits of the classes it
    owns (for `dis`: its share of the drawn columns and of the positives), and the normaliser and the
    loss are combined with all-reduces. The loss is the global batch's (the same on every rank); the
    features' gradient is scaled by N so that DDP's averaging of the backbone's gradient gives the
    gradient of that loss.
Every rank must run every forward and optimiser step (they hold collectives).
"""

from __future__ import annotations

import math
import os
import warnings
import weakref
from collections.abc import Mapping
from typing import Any, Dict, Iterable, NamedTuple, Optional, Tuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from . import _kdcache

__all__ = ["DistillHead", "HeadOutput", "RowAdam", "default_head_lr", "save_checkpoint", "load_checkpoint", "ESTIMATORS"]

ESTIMATORS = ("full", "topk", "ghost", "rs", "dis")
# masked entries of a normaliser: a large finite negative (not −inf: a row whose entries are all masked
# keeps a finite log-sum-exp and gradient), as the Rust trainer
MASKED = -1e30
# each head by the id of its table, so RowAdam can report its updates back (dis bookkeeping)
_HEADS: "weakref.WeakValueDictionary[int, DistillHead]" = weakref.WeakValueDictionary()
# RowAdam runs the core's one-pass update on CPU float32 tables (False: torch ops everywhere, as on a GPU)
_HOST_KERNEL = True
# rows of the head table drawn per generator in the initialisation: the table depends on (seed, C, d)
# only, never on how it is sharded
_INIT_CHUNK = 65536


def default_head_lr(loss: str) -> float:
    """`kdcache train`'s default head learning rate: 5e-3 for `dis` (it moves a row only on the steps
    that compute it), 3e-3 for `full` (each the best measured on the demo and the power-law worlds),
    1e-3 for the other estimators."""
    return {"dis": 5e-3, "full": 3e-3}.get(loss, 1e-3)


class HeadOutput(NamedTuple):
    """What `DistillHead.forward` returns. `loss` is what to backpropagate; `constant` (a float, the
    teacher-entropy term α·T²·mean Σ t log t) added to it reads as a KL divergence (what `kdcache train`
    logs); `rows` the number of distinct head rows the step computed (C for the dense estimators)."""

    loss: torch.Tensor
    constant: float
    rows: int

    @property
    def value(self) -> float:
        """The reported loss: loss + constant (reads the device)."""
        return float(self.loss.detach()) + self.constant


# ---------------------------------------------------------------------------------------------------
# distributed helpers


class _Group:
    """Where the head lives: one process, or ranks of a process group (data-parallel or class-sharded)."""

    def __init__(self, group, shard: bool):
        on = dist.is_available() and dist.is_initialized()
        self.group = group if on else None
        self.world = dist.get_world_size(group) if on else 1
        self.rank = dist.get_rank(group) if on else 0
        self.shard = bool(shard) and self.world > 1
        self.dp = self.world > 1 and not self.shard
        self.backend = dist.get_backend(group) if on else None

    def comm_device(self, like: torch.device) -> torch.device:
        # NCCL moves CUDA tensors only; gloo moves CPU tensors (and CUDA ones through the host)
        return like if self.backend != "nccl" else torch.device("cuda", torch.cuda.current_device())

    def all_gather_rows(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenates every rank's x [n, …] (equal n on every rank) along dim 0, without gradient."""
        dev = x.device
        y = x.to(self.comm_device(dev)).contiguous()
        out = torch.empty((self.world * y.shape[0],) + tuple(y.shape[1:]), dtype=y.dtype, device=y.device)
        dist.all_gather_into_tensor(out, y, group=self.group)
        return out.to(dev)

    def all_reduce(self, x: torch.Tensor, op=None) -> torch.Tensor:
        dev = x.device
        y = x.to(self.comm_device(dev)).contiguous()
        dist.all_reduce(y, op=op or dist.ReduceOp.SUM, group=self.group)
        return y.to(dev)


class _ReduceSum(torch.autograd.Function):
    """Σ over ranks of a partial value; backward the identity (every rank holds the same loss graph
    above it, so each passes the gradient to its own partial)."""

    @staticmethod
    def forward(ctx, x, grp):
        return grp.all_reduce(x.detach().clone())

    @staticmethod
    def backward(ctx, g):
        return g, None


class _GatherRows(torch.autograd.Function):
    """All-gathers a rank's features [B, d]; backward sums the gradient over the ranks, keeps this
    rank's rows and scales them by N (DDP averages the backbone's gradient over the N ranks)."""

    @staticmethod
    def forward(ctx, x, grp):
        ctx.grp = grp
        ctx.n = x.shape[0]
        return grp.all_gather_rows(x.detach())

    @staticmethod
    def backward(ctx, g):
        grp = ctx.grp
        g = grp.all_reduce(g.contiguous())
        return g[grp.rank * ctx.n : (grp.rank + 1) * ctx.n] * grp.world, None


class _AverageGrad(torch.autograd.Function):
    """The identity; backward averages the gradient over the ranks (the head's data-parallel reduction,
    on the rows a step touched only)."""

    @staticmethod
    def forward(ctx, x, grp):
        ctx.grp = grp
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return ctx.grp.all_reduce(g.contiguous()) / ctx.grp.world, None


class _Rows(torch.autograd.Function):
    """table[rows] for distinct rows, with a sparse gradient on the table whose indices are `rows` in
    their order (marked coalesced: distinct, so no sort is needed; RowAdam takes any order)."""

    @staticmethod
    def forward(ctx, table, rows):
        ctx.save_for_backward(rows)
        ctx.shape = table.shape
        return F.embedding(rows, table.detach())

    @staticmethod
    def backward(ctx, g):
        (rows,) = ctx.saved_tensors
        # invariants not checked (on purpose: the rows are distinct but in the plan's order)
        with torch.sparse.check_sparse_tensor_invariants(enable=False):
            return torch.sparse_coo_tensor(rows[None], g.contiguous(), ctx.shape, is_coalesced=True), None


class _Ops:
    """The normaliser's and the loss's reductions: local sums on one device, combined over the ranks
    that own parts of the classes in a sharded head."""

    def __init__(self, grp: Optional[_Group]):
        self.grp = grp

    def lse(self, parts) -> torch.Tensor:
        """log Σ exp over the entries of every part ([n, m_p] tensors, or [n] per-row log-sums)."""
        rows = [p if p.dim() == 1 else (torch.logsumexp(p, 1) if p.shape[1] > 0 else None) for p in parts]
        rows = [r for r in rows if r is not None]
        if not rows:
            local = parts[0].new_full((parts[0].shape[0],), MASKED)
        else:
            local = rows[0] if len(rows) == 1 else torch.logsumexp(torch.stack(rows, 1), 1)
        if self.grp is None:
            return local
        m = self.grp.all_reduce(local.detach().clone(), dist.ReduceOp.MAX)
        return m + torch.log(_ReduceSum.apply(torch.exp(local - m), self.grp))

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.grp is None else _ReduceSum.apply(x, self.grp)


# ---------------------------------------------------------------------------------------------------
# targets


class _Targets:
    """The batch's cache rows at the training temperature, on the host (NumPy): idx int64 [B, K], p and
    τ (float64, from the stored log-probabilities), labels int64 [B], tail samples and their target mass."""

    __slots__ = ("b", "k", "m", "idx", "p", "tau", "label", "tail_idx", "tail_w")

    @staticmethod
    def of(batch: Mapping, classes: int, temperature: float, need_tail: bool) -> "_Targets":
        def host(name, required=True):
            v = batch.get(name) if isinstance(batch, Mapping) else getattr(batch, name, None)
            if v is None:
                if required:
                    raise ValueError(f"the batch has no {name!r}: pass the rows kdcache.torch.collate returns")
                return None
            return v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)

        t = _Targets()
        nc = host("num_classes", False)
        if nc is not None and int(nc) != classes:
            raise ValueError(f"the batch comes from a cache with {int(nc)} classes; this head has {classes}")
        bt = host("temperature", False)
        if bt is not None and abs(float(bt) - temperature) > 1e-6 * max(1.0, temperature):
            raise ValueError(f"the batch was read at temperature {float(bt):g}; this head trains at {temperature:g} (CacheDataset(..., temperature={temperature:g}))")
        idx = host("ids").astype(np.int64, copy=False)
        logp = host("logp")
        if idx.ndim != 2 or logp.shape != idx.shape:
            raise ValueError(f"ids {list(idx.shape)} and logp {list(logp.shape)} must both be [B, K]")
        t.b, t.k = idx.shape
        if t.k < 1 or t.k > classes:
            raise ValueError(f"the batch has K = {t.k} ranked classes; this head has C = {classes}")
        if t.b and (idx.min() < 0 or idx.max() >= classes):
            raise ValueError(f"a ranked class id is outside 0..{classes} (a batch from another cache?)")
        t.idx = np.ascontiguousarray(idx)
        t.p = np.exp(logp.astype(np.float64))
        lt = host("log_tail").astype(np.float64).reshape(-1)
        lab = host("label").astype(np.int64).reshape(-1)
        if lt.shape[0] != t.b or lab.shape[0] != t.b:
            raise ValueError(f"log_tail and label must have B = {t.b} entries")
        if t.b and (lab.min() < -1 or lab.max() >= classes):
            raise ValueError(f"a label is outside -1..{classes}")
        t.tau = np.exp(lt)
        t.label = np.ascontiguousarray(lab)
        ti, tc = host("tail_idx", False), host("tail_cnt", False)
        if need_tail:
            if ti is None or tc is None or ti.shape[1] == 0:
                raise ValueError("loss='rs' needs tail samples: build the cache with tail samples (kdcache cache --tail-samples M)")
            ti = ti.astype(np.int64)
            tw = host("tail_w", False)
            t.tail_idx = np.ascontiguousarray(ti)
            if tw is not None:
                # the reader's weights: the draws reweighted to this temperature where the cache allows
                t.tail_w = np.ascontiguousarray(tw.astype(np.float64, copy=False))
            else:
                cnt = tc.astype(np.float64)
                total = cnt.sum(1, keepdims=True)
                t.tail_w = np.where(total > 0, t.tau[:, None] * cnt / np.maximum(total, 1), 0.0)
            t.m = ti.shape[1]
        else:
            t.m, t.tail_idx, t.tail_w = 0, None, None
        return t

    def pack(self) -> np.ndarray:
        """One float64 matrix [B, 2K+2(+2M)] (class ids are exact in float64), for one all-gather."""
        cols = [self.idx.astype(np.float64), self.p, self.tau[:, None], self.label[:, None].astype(np.float64)]
        if self.m:
            cols += [self.tail_idx.astype(np.float64), self.tail_w]
        return np.concatenate(cols, 1)

    @staticmethod
    def unpack(a: np.ndarray, k: int, m: int) -> "_Targets":
        t = _Targets()
        t.b, t.k, t.m = a.shape[0], k, m
        t.idx = np.ascontiguousarray(a[:, :k].astype(np.int64))
        t.p = np.ascontiguousarray(a[:, k : 2 * k])
        t.tau = np.ascontiguousarray(a[:, 2 * k])
        t.label = np.ascontiguousarray(a[:, 2 * k + 1].astype(np.int64))
        if m:
            t.tail_idx = np.ascontiguousarray(a[:, 2 * k + 2 : 2 * k + 2 + m].astype(np.int64))
            t.tail_w = np.ascontiguousarray(a[:, 2 * k + 2 + m :])
        else:
            t.tail_idx = t.tail_w = None
        return t

    def constant(self, est: str, classes: int, bucket: bool) -> float:
        """Mean over rows of Σ t log t of the estimator's target (the KL reading's constant)."""
        if self.b == 0:
            return 0.0
        xlogx = lambda x: np.where(x > 0, x * np.log(np.where(x > 0, x, 1.0)), 0.0)
        p, tau = self.p, self.tau
        if est == "topk":
            q = p / p.sum(1, keepdims=True)
            ent = xlogx(q).sum(1)
        elif est == "rs":
            ent = xlogx(p).sum(1) + xlogx(self.tail_w).sum(1)
        elif est == "ghost" or (est == "dis" and bucket):
            ent = xlogx(p).sum(1) + xlogx(tau)
        else:
            rest = max(classes - self.k, 1)
            ent = xlogx(p).sum(1) + (tau * np.log(np.maximum(tau / rest, 1e-300)) if classes > self.k else 0.0)
        return float(ent.mean())


def _send(device: torch.device, ints: list, floats: list) -> Tuple[list, list]:
    """The step's host arrays in two copies to the device (one int64, one float32), split back."""
    def go(arrs, dtype):
        if not arrs:
            return []
        flat = np.concatenate([np.asarray(a, dtype=dtype).reshape(-1) for a in arrs])
        t = torch.from_numpy(flat).to(device, non_blocking=False)
        out, at = [], 0
        for a in arrs:
            a = np.asarray(a)
            out.append(t[at : at + a.size].view(a.shape))
            at += a.size
        return out

    return go(ints, np.int64), go(floats, np.float32)


# ---------------------------------------------------------------------------------------------------
# the head


class DistillHead(nn.Module):
    """The head table and `kdcache train`'s distillation estimators as an `nn.Module`.

    num_classes   C (the cache's class count); dim: d, the backbone's feature width
    loss          "full", "topk", "ghost", "rs" (caches with tail samples) or "dis"
    temperature   T (one of the cache's temperatures; the batch must be read at it)
    alpha         α: the weight of KD against CE on the labels (1 = KD only)
    candidates, clusters, reserve, uniform_share, clip, reassign, dense_above, tail, proposal
                  the `dis` sampler's settings, as `kdcache train --candidates/--dis-*` (0 = automatic)
    prior         the teacher's class prior [C] at T = 1 (the manifest's `stats.class_prior`; `from_cache`
                  passes it), which proposal="prior" draws from
    seed          the head's initialisation (W uniform in ±1/√d, b = 0) and the `dis` draws: step s
                  draws with `seed ^ s·φ`, as `kdcache train --seed`
    shard         class-sharded over the ranks of `group` (see the module's doc)
    group         the process group (default: torch.distributed's default group when initialised)
    device        where the table lives (default: CPU; `.to(device)` moves it and the `dis` state)

    `forward(features [B, d], batch)` returns a `HeadOutput`; `batch` is what `kdcache.torch.collate`
    returns (ids, logp, log_tail, label, tail samples; keep it on the CPU: `dis` plans on the host).
    In eval mode (`head.eval()`) nothing moves and no step is counted; `logits(features)` gives the
    student's logits over the classes this rank holds, `predict(features, k)` the top-k classes.
    `state_dict()` holds the table, the step count and the whole `dis` state, so a run restored from it
    (with RowAdam's state_dict) continues bit for bit on the same device.
    """

    def __init__(
        self,
        num_classes: int,
        dim: int,
        loss: str = "dis",
        temperature: float = 2.0,
        alpha: float = 0.9,
        *,
        candidates: int = 0,
        clusters: int = 0,
        reserve: float = 0.25,
        uniform_share: float = 0.2,
        clip: float = 8.0,
        reassign: int = 256,
        dense_above: float = 0.6,
        tail: str = "spread",
        proposal: str = "uniform",
        prior=None,
        seed: int = 0,
        shard: bool = False,
        group=None,
        device=None,
    ):
        super().__init__()
        if loss not in ESTIMATORS:
            raise ValueError(f"loss {loss!r}: use one of {', '.join(ESTIMATORS)}")
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not (temperature > 0 and math.isfinite(temperature)):
            raise ValueError(f"temperature must be positive, got {temperature!r}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}")
        if tail not in ("spread", "bucket"):
            raise ValueError(f"tail {tail!r}: use 'spread' or 'bucket'")
        if not isinstance(seed, int) or not 0 <= seed < 2**64:
            raise ValueError(f"seed must be an integer in 0..2^64, got {seed!r}")
        self.num_classes, self.dim, self.loss = num_classes, dim, loss
        self.temperature, self.alpha, self.seed = float(temperature), float(alpha), seed
        self.tail = tail
        self._grp = _Group(group, shard)
        g = self._grp
        self.lo, self.hi = (g.rank * num_classes // g.world, (g.rank + 1) * num_classes // g.world) if g.shard else (0, num_classes)
        if self.hi <= self.lo:
            raise ValueError(f"{num_classes} classes cannot be sharded over {g.world} ranks (a rank would own none)")
        device = torch.device(device) if device is not None else torch.device("cpu")
        self.weight = nn.Parameter(self._init_rows(self.lo, self.hi).to(device))
        _HEADS[id(self.weight)] = self
        self.register_buffer("step", torch.zeros((), dtype=torch.int64), persistent=True)
        self._dis_cfg = dict(
            candidates=candidates, reserve=reserve, clusters=clusters, uniform_share=uniform_share, clip=clip, reassign=reassign, dense_above=dense_above, tail=tail, proposal=proposal
        )
        self.sampler = None
        #: the last `dis` plan (the core's, as NumPy arrays: columns, weights, the rows it touched)
        self.last_plan = None
        self._pending = []
        self._warned_resync = False
        if loss == "dis":
            if proposal == "prior" and prior is None:
                raise ValueError("proposal='prior' needs the teacher's class prior: pass prior= (DistillHead.from_cache does)")
            pr = None if prior is None else np.ascontiguousarray(np.asarray(prior, dtype=np.float64))
            self.sampler = _kdcache.Sampler(num_classes, seed=seed, prior=pr, temperature=self.temperature, **self._dis_cfg)
            n = self.sampler.num_clusters
            for name, shape in (("dis_counts", (n,)), ("dis_sums", (n, dim + 1)), ("dis_sq", (n, dim + 1)), ("dis_total", (dim + 1,))):
                self.register_buffer(name, torch.zeros(shape, dtype=torch.float64, device=device))
            self.register_buffer("dis_cursor", torch.zeros(2, dtype=torch.int64))
            self._recompute()

    # -- construction helpers ---------------------------------------------------------------------

    @classmethod
    def from_cache(cls, cache, dim: int, loss: str = "dis", temperature: Optional[float] = None, **kw) -> "DistillHead":
        """A head for `cache` (a kdcache.Cache): its class count, and its first temperature unless told.
        Refuses `rs` on a cache without tail samples, or, for a cache written before format 3 (whose tail
        samples carry no logits), at another temperature than the first."""
        temps = list(cache.temperatures)
        t = temps[cache.temperature_index(temperature)]
        if loss == "rs":
            if not cache.manifest.get("tail_samples"):
                raise ValueError("loss='rs' needs tail samples: build the cache with tail samples (kdcache cache --tail-samples M)")
            if t != temps[0] and int(cache.manifest.get("format_version", 0)) < 3:
                raise ValueError(
                    f"loss='rs' at temperature {t:g}: this format {cache.manifest.get('format_version')} cache's tail samples were drawn at its first temperature ({temps[0]:g}) and carry no logits to reweight them; train at {temps[0]:g} or rebuild the cache"
                )
        if kw.get("proposal") == "prior" and kw.get("prior") is None:
            prior = (cache.manifest.get("stats") or {}).get("class_prior") or None
            if prior is None:
                raise ValueError("proposal='prior' needs the teacher's class prior, and this cache's manifest records none")
            kw["prior"] = prior
        return cls(cache.num_classes, dim, loss, t, **kw)

    def _init_rows(self, lo: int, hi: int) -> torch.Tensor:
        d = self.dim
        bound = 1.0 / math.sqrt(d)
        out = torch.zeros((hi - lo, d + 1), dtype=torch.float32)
        for c0 in range((lo // _INIT_CHUNK) * _INIT_CHUNK, hi, _INIT_CHUNK):
            gen = torch.Generator().manual_seed((self.seed * 1_000_003 + c0 // _INIT_CHUNK) % (2**63))
            rows = min(_INIT_CHUNK, self.num_classes - c0)
            w = torch.rand((rows, d), generator=gen) * (2 * bound) - bound
            a, b = max(lo, c0), min(hi, c0 + rows)
            out[a - lo : b - lo, :d] = w[a - c0 : b - c0]
        return out

    @property
    def world_size(self) -> int:
        return self._grp.world

    @property
    def sharded(self) -> bool:
        return self._grp.shard

    def extra_repr(self) -> str:
        s = f"num_classes={self.num_classes}, dim={self.dim}, loss={self.loss!r}, temperature={self.temperature:g}, alpha={self.alpha:g}"
        if self.sharded:
            s += f", shard=[{self.lo}, {self.hi}) of {self.world_size} ranks"
        elif self._grp.dp:
            s += f", data-parallel over {self.world_size} ranks"
        return s

    # -- evaluation ----------------------------------------------------------------------------------

    @staticmethod
    def _augment(h: torch.Tensor) -> torch.Tensor:
        return torch.cat([h, h.new_ones((h.shape[0], 1))], 1)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """The student's logits [B, hi − lo] over the classes this rank holds (all C unsharded)."""
        h = self._check_features(features)
        return self._augment(h) @ self.weight.t()

    @torch.no_grad()
    def predict(self, features: torch.Tensor, k: int = 1) -> torch.Tensor:
        """The student's top-k classes [B, k] (int64), over all C classes also when sharded (every rank
        must call it with its own features; each gets its own rows' answer)."""
        h = self._check_features(features)
        if not self.sharded:
            return torch.topk(self.logits(h), k, 1).indices
        g = self._grp
        hall = g.all_gather_rows(h.float())
        s = self._augment(hall) @ self.weight.t()
        v, i = torch.topk(s, min(k, self.hi - self.lo), 1)
        allv = g.all_gather_rows(v.t().contiguous()).view(g.world, -1, hall.shape[0])
        alli = g.all_gather_rows((i + self.lo).t().contiguous()).view(g.world, -1, hall.shape[0])
        allv = allv.permute(2, 0, 1).reshape(hall.shape[0], -1)
        alli = alli.permute(2, 0, 1).reshape(hall.shape[0], -1)
        top = torch.topk(allv, k, 1).indices
        n = h.shape[0]
        return alli.gather(1, top)[g.rank * n : (g.rank + 1) * n]

    def _check_features(self, features) -> torch.Tensor:
        if not isinstance(features, torch.Tensor):
            raise TypeError(f"features must be a torch.Tensor [B, {self.dim}], got {type(features).__name__}")
        if features.dim() != 2 or features.shape[1] != self.dim:
            raise ValueError(f"features have shape {list(features.shape)}; this head needs [B, {self.dim}]")
        if features.device != self.weight.device:
            raise ValueError(f"features are on {features.device}, the head on {self.weight.device}: move one (head.to(device))")
        return features

    # -- the step ------------------------------------------------------------------------------------

    def forward(self, features: torch.Tensor, batch: Mapping) -> HeadOutput:
        """The loss of a batch: `features` [B, d] from the backbone (any dtype; computed in float32,
        also under autocast), `batch` the cache rows (kdcache.torch.collate's dict)."""
        h = self._check_features(features)
        _HEADS[id(self.weight)] = self  # (again: a deep copy of the head has a table of its own)
        tg = _Targets.of(batch, self.num_classes, self.temperature, self.loss == "rs")
        if tg.b != h.shape[0]:
            raise ValueError(f"{h.shape[0]} feature rows for a batch of {tg.b} cache rows")
        if self._pending:
            self._resync()
        g = self._grp
        off = 0
        if g.world > 1:
            sizes = g.all_gather_rows(torch.tensor([tg.b], dtype=torch.int64))
            if int(sizes.min()) != int(sizes.max()):
                raise ValueError(f"ranks have batches of {sizes.tolist()} rows: a distributed head needs equal batches (BlockShuffleSampler pads every rank's share)")
            glob = _Targets.unpack(g.all_gather_rows(torch.from_numpy(tg.pack())).numpy(), tg.k, tg.m)
            off = g.rank * tg.b
        else:
            glob = tg
        n_lab = int((glob.label >= 0).sum())
        self._ce_div = max(n_lab, 1) / (g.world if g.dp else 1)
        with torch.autocast(device_type=h.device.type, enabled=False):
            hf = h.float()
            if g.shard:
                hf = _GatherRows.apply(hf, g)
                rows_t, lo_row = glob, 0
            else:
                rows_t, lo_row = tg, off
            ha = self._augment(hf)
            ops = _Ops(g if g.shard else None)
            est = self.loss
            bucket = self.tail == "bucket"
            if est == "dis":
                step = int(self.step)
                plan = self.sampler.plan(glob.idx, glob.p, glob.label, self.seed, step)
                self.last_plan = plan
                if plan["dense"]:
                    loss, nrows = self._dense(ha, rows_t, "ghost" if bucket else "full", ops)
                    if self.training:
                        self._pending.append(("dense", None, None))
                else:
                    if int(self.dis_cursor[1]):
                        self._resync_total()
                    loss, nrows = self._dis(ha, rows_t, plan, lo_row, ops)
                    if self.training:
                        self._pending.append(("sparse", plan, ha.detach()))
            elif est == "topk":
                loss, nrows = self._topk(ha, rows_t, glob, lo_row, ops)
            else:
                loss, nrows = self._dense(ha, rows_t, est, ops)
        if self.training:
            self.step += 1
        const = self.alpha * self.temperature**2 * rows_t.constant(est, self.num_classes, bucket)
        return HeadOutput(loss, const, nrows)

    def _combine(self, kd: torch.Tensor, ce: Optional[torch.Tensor]) -> torch.Tensor:
        """α·T²·mean KD + (1−α)·CE, `ce` summed over the labelled rows computed here and divided by the
        global batch's labelled count (over N data-parallel ranks: by that count / N, so that the ranks'
        mean, as DDP averages, is the global batch's mean)."""
        t2a = self.alpha * self.temperature**2
        kd = kd.mean() * t2a
        return kd if ce is None else kd + ce * ((1.0 - self.alpha) / self._ce_div)

    def _table(self, rows: Optional[torch.Tensor]) -> torch.Tensor:
        """The table rows a step computes (all when rows is None), with the data-parallel reduction of
        their gradient; a sparse gradient on the parameter when rows are given."""
        w = self.weight if rows is None else _Rows.apply(self.weight, rows)
        return _AverageGrad.apply(w, self._grp) if self._grp.dp else w

    def _own(self, idx: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Local index of each class this rank owns, and the mask of those it owns."""
        own = (idx >= self.lo) & (idx < self.hi)
        return np.where(own, idx - self.lo, self.hi - self.lo), own

    def _labelled(self, label: np.ndarray):
        r = np.nonzero(label >= 0)[0]
        return r

    def _dense(self, ha, tg: _Targets, est: str, ops: _Ops):
        """full, ghost, rs: every class a column (this rank's classes when sharded)."""
        dev = ha.device
        b, k, c, T = tg.b, tg.k, self.num_classes, self.temperature
        ncl = self.hi - self.lo
        loc, own = self._own(tg.idx)
        lab_rows = self._labelled(tg.label)
        lab_loc, lab_own = self._own(tg.label[lab_rows])
        fill = tg.tau / (c - k) if c > k else np.zeros_like(tg.tau)
        ints = [loc, lab_rows, lab_loc]
        floats = [tg.p * own, tg.tau, fill, lab_own.astype(np.float32)]
        if est == "rs":
            tl, town = self._own(tg.tail_idx)
            ints.append(tl)
            floats.append(tg.tail_w * town)
        (i_loc, i_lr, i_ll, *i_rest), (f_p, f_tau, f_fill, f_lo, *f_rest) = _send(dev, ints, floats)
        W = self._table(None)
        s = ha @ W.t()  # [B, C_local]
        st = s / T
        lse = ops.lse([st])
        spare = lambda x, v: torch.cat([x, x.new_full((x.shape[0], 1), v)], 1)
        if est == "ghost":
            s_top = spare(st, 0.0).gather(1, i_loc)
            lin = ops.sum((f_p * s_top).sum(1))
            tail_lse = ops.lse([spare(st, 0.0).scatter(1, i_loc, MASKED)[:, :ncl]])
            psum = torch.from_numpy(tg.p.sum(1)).to(dev, torch.float32)
            kd = -(lin - psum * lse) - f_tau * (tail_lse - lse)
        else:
            if est == "rs":
                target = st.new_zeros((b, ncl + 1)).scatter(1, i_loc, f_p).scatter_add(1, i_rest[0], f_rest[0])[:, :ncl]
            else:
                # the fill on every class, the top-K probabilities on the ranked ones (a rank's ranked
                # classes owned elsewhere go to a spare column, dropped)
                target = f_fill[:, None].expand(b, ncl + 1).contiguous().scatter(1, i_loc, f_p)[:, :ncl]
            kd = -ops.sum((target * st).sum(1)) + lse
        ce = None
        if len(lab_rows):
            lg = s.index_select(0, i_lr)
            lse1 = ops.lse([lg])
            picked = ops.sum(spare(lg, 0.0).gather(1, i_ll[:, None]).squeeze(1) * f_lo)
            ce = (lse1 - picked).sum()
        return self._combine(kd, ce), c

    def _topk(self, ha, tg: _Targets, glob: _Targets, lo_row: int, ops: _Ops):
        """topk: the global batch's ranked classes (and labels) as columns, each row normalised over its own."""
        dev = ha.device
        b, k, T = tg.b, tg.k, self.temperature
        # columns in first-seen order over the global batch (ranks, then the label, row by row)
        gk = glob.idx
        seq = np.concatenate([gk, np.where(glob.label >= 0, glob.label, gk[:, 0])[:, None]], 1).reshape(-1)
        uniq, first = np.unique(seq, return_index=True)
        order = np.argsort(first, kind="stable")
        cols = uniq[order]
        col_of = np.empty(len(uniq), dtype=np.int64)
        col_of[order] = np.arange(len(uniq))
        mine = slice(lo_row, lo_row + b)
        pos_col = col_of[np.searchsorted(uniq, seq)].reshape(glob.b, k + 1)[mine]
        s = tg.p.sum(1, keepdims=True)
        pos_t = np.concatenate([tg.p / s, np.zeros((b, 1))], 1)
        # sharded: this rank's columns only
        if self.sharded:
            keep = np.nonzero((cols >= self.lo) & (cols < self.hi))[0]
        else:
            keep = np.arange(len(cols))
        local_of = np.full(len(cols) + 1, len(keep), dtype=np.int64)
        local_of[keep] = np.arange(len(keep))
        pc = local_of[pos_col]
        owned = pc < len(keep)
        nk = len(keep)
        lab_rows = self._labelled(tg.label)
        lab_col = pc[lab_rows, k]
        (i_rows, i_pc, i_lr, i_lc), (f_pt, f_lown) = _send(dev, [cols[keep] - self.lo, pc, lab_rows, lab_col], [pos_t * owned, (lab_col < nk).astype(np.float32)])
        leaf = self._table(i_rows)
        s_u = ha @ leaf.t()  # [B, n]
        valid = torch.zeros((b, nk + 1), dtype=torch.bool, device=dev).scatter(1, i_pc, True)[:, :nk]
        invalid = ~valid
        target = s_u.new_zeros((b, nk + 1)).scatter_add(1, i_pc, f_pt)[:, :nk]
        z = (s_u / T).masked_fill(invalid, MASKED)
        lin = ops.sum((target * (s_u / T)).sum(1))
        kd = ops.lse([z]) - lin
        ce = None
        if len(lab_rows):
            lg = s_u.masked_fill(invalid, MASKED).index_select(0, i_lr)
            ext = torch.cat([lg, lg.new_zeros((lg.shape[0], 1))], 1)
            picked = ops.sum(ext.gather(1, i_lc[:, None]).squeeze(1) * f_lown)
            ce = (ops.lse([lg]) - picked).sum()
        return self._combine(kd, ce), len(cols)

    def _dis(self, ha, tg: _Targets, plan: dict, lo_row: int, ops: _Ops):
        """dis on a sparse plan (see src/train/loss.rs `dis_loss`); `tg` the rows this rank computes,
        starting at row `lo_row` of the global batch the plan was drawn for."""
        dev = ha.device
        b, k, c, T = tg.b, tg.k, self.num_classes, self.temperature
        sl = plan["slots"]
        bucket = self.tail == "bucket"
        union, cols = plan["union"], plan["cols"]
        nu, n = len(union), len(cols)
        rs = slice(lo_row * sl, (lo_row + b) * sl)
        pos_u = plan["pos_u"][rs].reshape(b, sl)
        active = plan["active"][rs].reshape(b, sl)
        pos_t = plan["pos_t"][rs].reshape(b, sl).copy()
        own_col = plan["own_col"][rs].reshape(b, sl)
        label_slot = plan["label_slot"][lo_row : lo_row + b]
        fill = tg.tau / (c - k) if (c > k and not bucket) else np.zeros(b)
        # an active label slot outside the top-K carries the spread tail's fill
        pos_t[:, sl - 1] = np.where(active[:, sl - 1], fill, pos_t[:, sl - 1])
        # this rank's share: the union rows it owns (all unsharded)
        if self.sharded:
            u_own = (union >= self.lo) & (union < self.hi)
        else:
            u_own = np.ones(nu, dtype=bool)
        u_keep = np.nonzero(u_own)[0]
        leaf_of = np.full(nu, len(u_keep), dtype=np.int64)  # union index → leaf row (spare = zeros)
        leaf_of[u_keep] = np.arange(len(u_keep))
        c_keep = np.nonzero(u_own[plan["col_u"]])[0]  # the columns this rank owns
        ncol = len(c_keep)
        col_local = np.full(n + 1, ncol, dtype=np.int64)
        col_local[c_keep] = np.arange(ncol)
        slot_owned = u_own[pos_u]
        act = active & slot_owned
        own = col_local[np.where(own_col >= 0, own_col, n)]  # col_local[n] is the spare column
        logw = plan["logw"][c_keep]
        head_scale = plan["head_scale"][c_keep]
        clipped = bool((plan["head_scale"] < 1.0).any())
        mass = tg.p.sum(1) + tg.tau
        lab_rows = self._labelled(tg.label)
        lab_slot = label_slot[lab_rows]
        ints = [union[u_keep] - self.lo, leaf_of[pos_u], leaf_of[plan["col_u"][c_keep]], own, lab_rows, lab_slot]
        floats = [logw, pos_t * slot_owned, np.where(act, 0.0, MASKED), tg.tau, fill, mass, act.astype(np.float32), head_scale]
        (i_rows, i_pu, i_cu, i_own, i_lr, i_ls), (f_lw, f_pt, f_act, f_tau, f_fill, f_mass, f_actw, f_hs) = _send(dev, ints, floats)
        leaf = self._table(i_rows)
        d = leaf.shape[1]
        leaf_x = torch.cat([leaf, leaf.new_zeros((1, d))], 0)
        pos_rows = leaf_x.index_select(0, i_pu.reshape(-1)).view(b, sl, d)
        s_pos = torch.bmm(pos_rows, ha.unsqueeze(2)).squeeze(2)  # [B, K+1]
        col_rows = leaf_x.index_select(0, i_cu)
        if clipped:
            hs = f_hs[:, None]
            col_rows = col_rows * hs + (col_rows * (1.0 - hs)).detach()
        s_col = ha @ col_rows.t()  # [B, ncol]

        def own_mask(z):
            return torch.cat([z, z.new_full((b, 1), MASKED)], 1).scatter(1, i_own, MASKED)[:, :ncol]

        z_pos = s_pos / T + f_act
        z_col = own_mask(s_col / T + f_lw[None, :])
        lse = ops.lse([z_pos, z_col])
        lin = ops.sum((f_pt * s_pos).sum(1) / T)
        if bucket:
            label_z = z_pos[:, k]
            lse_tail = ops.lse([z_col, label_z[:, None]])
            kd = lse * f_mass - lin - f_tau * lse_tail
        else:
            pos_d = pos_rows.detach()
            own_sum = torch.bmm(f_actw.unsqueeze(1), pos_d).squeeze(1)  # Σ active owned positive rows [B, D]
            total = self.dis_total.float()
            if self.sharded and self._grp.rank != 0:
                total = torch.zeros_like(total)  # the replicated Σ of all rows enters once
            exact = ops.sum((ha * (total[None, :] - own_sum)).sum(1) * f_fill / T)
            w = f_lw.exp()
            a = own_mask(f_fill[:, None] * w[None, :]).clamp_min(0.0)
            head_part = (a * s_col).sum(1) / T
            col_d = col_rows.detach()
            u = w[None, :] @ col_d  # [1, D]
            wx = torch.cat([w, w.new_zeros(1)])
            own_w = wx.index_select(0, i_own.reshape(-1)).view(b, 1, sl)
            own_cols = torch.bmm(own_w, pos_d).squeeze(1)
            ah = (u - own_cols) * f_fill[:, None]
            cancel = (ha * ah).sum(1) / T
            kd = lse - lin - exact - ops.sum(head_part - cancel)
        ce = None
        if len(lab_rows):
            lse1 = ops.lse([s_pos + f_act, own_mask(s_col + f_lw[None, :])])
            picked = ops.sum(s_pos.index_select(0, i_lr).gather(1, i_ls[:, None]).squeeze(1))
            ce = (lse1.index_select(0, i_lr) - picked).sum()
        return self._combine(kd, ce), nu

    # -- the dis state -------------------------------------------------------------------------------

    @torch.no_grad()
    def _recompute(self) -> None:
        """Every cluster statistic and Σ of all rows from the table and the clusters (O(C·d))."""
        dev = self.weight.device
        n = self.sampler.num_clusters
        assign = torch.from_numpy(self.sampler.assignment()[self.lo : self.hi]).to(dev)
        z = lambda *s: torch.zeros(s, dtype=torch.float64, device=dev)
        sums, sq, counts, total = z(n, self.dim + 1), z(n, self.dim + 1), z(n), z(self.dim + 1)
        w = self.weight.detach()
        for lo in range(0, w.shape[0], _INIT_CHUNK):  # in chunks: no float64 copy of the whole table
            h = w[lo : lo + _INIT_CHUNK].double()
            a = assign[lo : lo + _INIT_CHUNK]
            sums.index_add_(0, a, h)
            sq.index_add_(0, a, h.square())
            counts.index_add_(0, a, torch.ones(h.shape[0], dtype=torch.float64, device=dev))
            total += h.sum(0)
        if self.sharded:
            g = self._grp
            sums, sq, counts, total = (g.all_reduce(x) for x in (sums, sq, counts, total))
        self.dis_sums.copy_(sums)
        self.dis_sq.copy_(sq)
        self.dis_counts.copy_(counts)
        self.dis_total.copy_(total)

    @torch.no_grad()
    def _resync_total(self) -> None:
        w = self.weight.detach()
        total = sum(w[lo : lo + _INIT_CHUNK].double().sum(0) for lo in range(0, w.shape[0], _INIT_CHUNK))
        self.dis_total.copy_(self._grp.all_reduce(total) if self.sharded else total)
        self.dis_cursor[1] = 0

    @torch.no_grad()
    def set_table(self, table: torch.Tensor) -> None:
        """Sets the head table ([rows this rank holds, d+1]: W, then b) and recomputes the `dis` state
        from it (a head trained elsewhere; tests against the Rust trainer)."""
        if tuple(table.shape) != tuple(self.weight.shape):
            raise ValueError(f"a table of shape {list(table.shape)} for a head of shape {list(self.weight.shape)}")
        self.weight.copy_(table)
        self._pending = []
        if self.sampler is not None:
            self._recompute()
            self.dis_cursor[1] = 0

    def _resync(self) -> None:
        """The table moved without RowAdam's report (another optimiser): the statistics are recomputed
        from it (O(C·d), once per step; RowAdam keeps them current in O(rows·d))."""
        if not self._warned_resync:
            warnings.warn("DistillHead(loss='dis'): the head was updated by an optimiser other than kdcache.torch.RowAdam; its sampler statistics are recomputed over all C rows each step", stacklevel=3)
            self._warned_resync = True
        self._pending.clear()
        self._recompute()

    @torch.no_grad()
    def _mass(self, ha: torch.Tensor) -> torch.Tensor:
        """The batch mean of each row's estimated student softmax over clusters [n] (float64)."""
        T = self.temperature
        cnt = self.dis_counts[:, None]
        safe = cnt.clamp_min(1.0)
        mu = self.dis_sums / safe
        var = (self.dis_sq / safe - mu.square()).clamp_min(0.0)
        mu, var = mu.float(), var.float()
        ha = ha.float()
        lin = ha @ mu.t() / T
        quad = (ha.square() @ var.t() * (0.5 / (T * T))).clamp_max(8.0)
        logn = self.dis_counts.float().log()
        sm = torch.softmax(lin + quad + logn[None, :], 1)
        if self._dis_cfg["proposal"] == "neyman":
            # each row's share of a stratum's variance (v = 2·quad), summed over the rows
            a = (sm.square() * torch.expm1(quad * 2)).double().sum(0)
            n = ha.shape[0]
            if self._grp.dp:
                a, n = self._grp.all_reduce(a), n * self._grp.world
            a = (a / n).sqrt()
            return torch.nan_to_num(a / a.sum(), 0.0)
        if self._grp.dp:
            tot = self._grp.all_reduce(sm.double().sum(0))
            return torch.nan_to_num(tot / (ha.shape[0] * self._grp.world), 0.0)
        return torch.nan_to_num(sm.mean(0, dtype=torch.float64), 0.0)

    @torch.no_grad()
    def _after_update(self, delta: torch.Tensor) -> None:
        """Called by RowAdam after it moved the rows of the last forward by Σ(new − old) = `delta`."""
        pend, self._pending = self._pending, []
        if self.loss != "dis" or not pend:
            return
        kind, plan, ha = pend[-1]
        if kind == "dense":
            # a dense step moved every row: Σ of all rows is recomputed before the next sparse step (the
            # cluster statistics only steer the draws; they catch up with the sweep), as the trainer does
            self.dis_cursor[1] = 1
            return
        if len(pend) > 1:
            # several forwards shared one update (gradient accumulation): everything recomputed
            self._recompute()
            if self.sampler.adaptive:
                self.sampler.mass = self._mass(ha).cpu().numpy()
            return
        g = self._grp
        if self.sharded:
            delta = g.all_reduce(delta.double())
        self.dis_total += delta.to(self.dis_total.device, torch.float64)
        if not self.sampler.adaptive:
            return  # a fixed proposal: nothing else follows the student
        mass = self._mass(ha)
        c = self.num_classes
        budget = self.sampler.reassign_budget
        if budget == 0:
            self.sampler.mass = mass.cpu().numpy()
            return
        union = plan["union"]
        moved = min(len(union), -(-budget // 2))
        rows = union[:moved]
        cursor = int(self.dis_cursor[0])
        sweep_n = min(budget - moved, c)
        sweep = (cursor + np.arange(sweep_n, dtype=np.int64)) % c
        sweep = sweep[~np.isin(sweep, rows)]
        rows = np.concatenate([rows, sweep])
        wrapped = cursor + sweep_n >= c
        self.dis_cursor[0] = (cursor + sweep_n) % max(c, 1)
        cand = self._rows_of(rows)
        safe = self.dis_counts.clamp_min(1.0)[:, None]
        mu = self.dis_sums / safe
        half = mu.square().sum(1) * 0.5
        empty = self.dis_counts < 0.5
        score = (cand @ mu.t() - half[None, :]).masked_fill(empty[None, :], float("-inf"))
        best = score.argmax(1).cpu().numpy()
        self.sampler.mass = mass.cpu().numpy()
        which, frm, to = self.sampler.reassign(rows, best)
        if wrapped:
            self._recompute()
            return
        if len(which):
            dev = self.dis_sums.device
            w = cand.index_select(0, torch.from_numpy(which).to(dev))
            ids = torch.from_numpy(np.concatenate([frm, to])).to(dev)
            m = len(which)
            sq = w.square()
            self.dis_sums.index_add_(0, ids, torch.cat([-w, w]))
            self.dis_sq.index_add_(0, ids, torch.cat([-sq, sq]))
            self.dis_counts.index_add_(0, ids, torch.cat([torch.full((m,), -1.0, dtype=torch.float64, device=dev), torch.ones(m, dtype=torch.float64, device=dev)]))

    def _rows_of(self, rows: np.ndarray) -> torch.Tensor:
        """Table rows `rows` (global class ids) as float64 [n, D], gathered from their owners when sharded."""
        dev = self.weight.device
        if not self.sharded:
            return self.weight.detach().index_select(0, torch.from_numpy(rows).to(dev)).double()
        own = (rows >= self.lo) & (rows < self.hi)
        out = torch.zeros((len(rows), self.dim + 1), dtype=torch.float64, device=dev)
        at = np.nonzero(own)[0]
        if len(at):
            out[torch.from_numpy(at).to(dev)] = self.weight.detach().index_select(0, torch.from_numpy(rows[at] - self.lo).to(dev)).double()
        return self._grp.all_reduce(out)

    # -- checkpoints ---------------------------------------------------------------------------------

    def get_extra_state(self) -> Any:
        st: Dict[str, Any] = {"num_classes": self.num_classes, "dim": self.dim, "loss": self.loss, "rows": (self.lo, self.hi)}
        if self.sampler is not None:
            members, sizes = self.sampler.members()
            st.update(dis_members=torch.from_numpy(members), dis_sizes=torch.from_numpy(sizes), dis_mass=torch.from_numpy(self.sampler.mass))
        return st

    def set_extra_state(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise ValueError("not a DistillHead state")
        for key in ("num_classes", "dim", "loss"):
            if state.get(key) != getattr(self, key):
                raise ValueError(f"the saved head has {key} = {state.get(key)!r}; this one has {getattr(self, key)!r}")
        if tuple(state.get("rows", ())) != (self.lo, self.hi):
            raise ValueError(f"the saved head holds classes {tuple(state.get('rows', ()))}, this rank [{self.lo}, {self.hi}): load it with kdcache.torch.load_checkpoint, which re-shards")
        if self.sampler is not None:
            self.sampler.set_members(state["dis_members"].numpy(), state["dis_sizes"].numpy())
            self.sampler.mass = state["dis_mass"].numpy().astype(np.float64)
        self._pending = []


# ---------------------------------------------------------------------------------------------------
# the row-wise optimiser


class RowAdam(torch.optim.Optimizer):
    """`kdcache train`'s row-wise (lazy) Adam for the head table: a step updates only the rows that
    have a gradient (a sparse gradient's rows; every row for a dense one), with each row's own step
    count in the bias correction: m ← β1·m + (1−β1)·g, v ← β2·v + (1−β2)·g², w ← w − lr·m̂/(√v̂ + ε),
    m̂ = m/(1−β1^t_r), v̂ = v/(1−β2^t_r). Rows a step does not touch keep their moments undecayed
    (TensorFlow's LazyAdam). `torch.optim.SparseAdam` differs in one thing: it corrects with one global
    step count, so a row first touched late takes a first step of up to ~2.3·lr instead of lr (measured
    on the demo cache: 1.0 point of held-out top-1 lost after one epoch; see the README). Cost per step
    O(rows·D), never O(C·D) for sparse steps; on CPU float32 tensors the trainer's own one-pass update.

    With a `DistillHead` parameter it reports each update back to the head (the `dis` sampler's running
    sums), so use it, not another optimiser, for `loss='dis'` (another works but costs O(C·d) per step).
    """

    def __init__(self, params: Iterable, lr: float = 5e-3, betas: Tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr!r}")
        if not (0.0 <= betas[0] < 1.0 and 0.0 <= betas[1] < 1.0):
            raise ValueError(f"betas must lie in [0, 1), got {betas!r}")
        if not eps >= 0:
            raise ValueError(f"eps must be non-negative, got {eps!r}")
        super().__init__(list(params), dict(lr=lr, betas=betas, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                head = _HEADS.get(id(p))
                if head is not None and head.weight is not p:
                    head = None
                if p.grad is None:
                    if head is not None and head._pending:
                        head._after_update(torch.zeros(p.shape[-1], dtype=torch.float64, device=p.device))
                    continue
                st = self.state[p]
                if not st:
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.contiguous_format)
                    # each row's update count (float64 [rows]; named "step" so that load_state_dict
                    # keeps its dtype)
                    st["step"] = torch.zeros(p.shape[0] if p.dim() else 1, dtype=torch.float64, device=p.device)
                if st["step"].device != p.device:
                    st["step"] = st["step"].to(p.device)
                g = p.grad
                if g.is_sparse:
                    g = g.coalesce()
                    rows, vals = g.indices()[0], g.values()
                else:
                    rows, vals = None, g
                delta = self._update(p, st, rows, vals, lr, b1, b2, eps)
                if head is not None:
                    head._after_update(delta)
        return loss

    @staticmethod
    def _update(p, st, rows, g, lr, b1, b2, eps) -> torch.Tensor:
        m_all, v_all, t_all = st["exp_avg"], st["exp_avg_sq"], st["step"]
        if p.dim() == 1:
            p2, m2, v2, g2 = p.view(1, -1), m_all.view(1, -1), v_all.view(1, -1), g.view(1, -1)
        else:
            p2, m2, v2, g2 = p, m_all, v_all, g
        cpu32 = lambda x: x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous()
        if _HOST_KERNEL and p2.dim() == 2 and cpu32(p2) and cpu32(m2) and cpu32(v2) and g2.device.type == "cpu" and t_all.dtype == torch.float64 and t_all.is_contiguous() and t_all.device.type == "cpu":
            # the core's one-pass update on the tensors' memory (the trainer's host loop)
            idx = None if rows is None else rows.contiguous().numpy()
            delta = _kdcache.row_step(p2.detach().numpy(), m2.numpy(), v2.numpy(), t_all.numpy(), idx, g2.to(torch.float32).contiguous().numpy(), lr=lr, beta1=b1, beta2=b2, eps=eps)
            return torch.from_numpy(delta)
        if rows is None:
            w, m, v = p2, m2, v2
            t = t_all + 1.0
        else:
            w, m, v = p2.index_select(0, rows), m2.index_select(0, rows), v2.index_select(0, rows)
            t = t_all.index_select(0, rows) + 1.0
        g2 = g2.to(w.dtype)
        # the trainer's arithmetic, in its order (float32): m = g + β1·(m − g), v = g² + β2·(v − g²)
        m = g2 + b1 * (m - g2)
        gg = g2 * g2
        v = gg + b2 * (v - gg)
        tt = t.float()[:, None]
        bc1 = 1.0 - torch.pow(torch.tensor(b1, dtype=torch.float64, device=t.device), tt.double()).float()
        bc2 = 1.0 - torch.pow(torch.tensor(b2, dtype=torch.float64, device=t.device), tt.double()).float()
        step = lr / bc1
        w_new = w - step * m / ((v / bc2).sqrt() + eps)
        delta = (w_new.double() - w.double()).sum(0)
        if rows is None:
            p2.copy_(w_new)
            m2.copy_(m)
            v2.copy_(v)
            t_all.copy_(t)
        else:
            p2.index_copy_(0, rows, w_new)
            m2.index_copy_(0, rows, m)
            v2.index_copy_(0, rows, v)
            t_all.index_copy_(0, rows, t)
        return delta


# ---------------------------------------------------------------------------------------------------
# checkpoints that survive a change of world size


def save_checkpoint(path, head: DistillHead, optimizer: Optional[torch.optim.Optimizer] = None, extra: Optional[dict] = None) -> None:
    """Writes this rank's part of `head` (and of its RowAdam's state) to directory `path`, as
    `head-{rank}-of-{world}.pt` (atomically). Every rank calls it; `load_checkpoint` reads the parts back
    into a head with any number of ranks (class rows re-sharded by their global ids)."""
    os.makedirs(path, exist_ok=True)
    g = head._grp
    st = {"head": head.state_dict(), "rows": (head.lo, head.hi), "num_classes": head.num_classes, "world": g.world if head.sharded else 1, "extra": extra}
    if optimizer is not None:
        st["optimizer"] = optimizer.state_dict()
        st["optimizer_param"] = _param_index(optimizer, head.weight)
    name = os.path.join(path, f"head-{g.rank if head.sharded else 0}-of-{g.world if head.sharded else 1}.pt")
    if head.sharded or g.rank == 0:
        tmp = name + f".tmp{os.getpid()}"
        torch.save(st, tmp)
        os.replace(tmp, name)
    if g.world > 1:
        dist.barrier(group=g.group)


def _param_index(opt, p) -> int:
    i = 0
    for group in opt.param_groups:
        for q in group["params"]:
            if q is p:
                return i
            i += 1
    raise ValueError("the optimiser does not hold this head's table")


def load_checkpoint(path, head: DistillHead, optimizer: Optional[torch.optim.Optimizer] = None) -> Optional[dict]:
    """Restores what `save_checkpoint` wrote into `head` (and `optimizer`), whatever the world size
    either side: each rank assembles the rows it owns from the saved parts. Returns the saved `extra`."""
    import glob as _glob

    files = sorted(_glob.glob(os.path.join(path, "head-*-of-*.pt")))
    if not files:
        raise FileNotFoundError(f"{path}: no head-*-of-*.pt checkpoint parts")
    parts = [torch.load(f, map_location="cpu", weights_only=False, mmap=True) for f in files]
    worlds = {p["world"] for p in parts}
    if len(worlds) != 1 or len(parts) != next(iter(worlds)):
        raise ValueError(f"{path}: the checkpoint parts do not tile (found {len(parts)} files of world sizes {sorted(worlds)})")
    parts.sort(key=lambda p: p["rows"][0])
    if parts[0]["num_classes"] != head.num_classes:
        raise ValueError(f"{path}: a checkpoint of {parts[0]['num_classes']} classes; this head has {head.num_classes}")
    lo, hi = head.lo, head.hi

    def rows_of(get):
        pieces = []
        for p in parts:
            a, b = p["rows"]
            x, y = max(a, lo), min(b, hi)
            if x < y:
                pieces.append(get(p)[x - a : y - a])
        return torch.cat(pieces, 0)

    sd = dict(parts[0]["head"])
    sd["weight"] = rows_of(lambda p: p["head"]["weight"])
    extra = dict(sd["_extra_state"])
    extra["rows"] = (lo, hi)
    sd["_extra_state"] = extra
    dev = head.weight.device
    head.load_state_dict({k: (v.to(dev) if isinstance(v, torch.Tensor) and k not in ("step", "dis_cursor") else v) for k, v in sd.items()})
    if optimizer is not None:
        if "optimizer" not in parts[0]:
            raise ValueError(f"{path}: the checkpoint holds no optimiser state")
        osd = parts[0]["optimizer"]
        i = parts[0]["optimizer_param"]
        state = dict(osd["state"])
        if i in state:
            s = dict(state[i])
            for key in ("exp_avg", "exp_avg_sq", "step"):
                s[key] = rows_of(lambda p, key=key: p["optimizer"]["state"][p["optimizer_param"]][key]).to(dev)
            state[i] = s
        optimizer.load_state_dict({"state": state, "param_groups": osd["param_groups"]})
    return parts[0].get("extra")
