"""A few training steps of a linear backbone and a DistillHead on explicit global batches, run by
test_distributed.py under `torchrun` (data-parallel or class-sharded, gloo) or alone (the 1-rank
reference with the whole global batch). Rank 0 writes what the run computed to --out (.npz).

Every rank takes its contiguous part of each global batch, so N ranks with batch G/N each see exactly
the rows the 1-rank run sees with batch G.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

import kdcache
import kdcache.torch as kt

IN = 12


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--loss", default="dis")
    ap.add_argument("--mode", choices=("dp", "shard"), default="dp")
    ap.add_argument("--global-batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--dim", type=int, default=6)
    ap.add_argument("--candidates", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--save-at", type=int, default=-1, help="write a checkpoint after this many steps")
    ap.add_argument("--load", default=None, help="start from this checkpoint directory")
    ap.add_argument("--ckpt", default=None)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    torch.set_num_threads(1)

    cache = kdcache.Cache(a.cache)
    x_all = torch.from_numpy(np.random.default_rng(0).normal(size=(cache.num_rows, IN)).astype(np.float32))
    ds = kt.CacheDataset(cache, x_all, temperature=a.temperature)
    order = np.random.default_rng(1).permutation(cache.num_rows)
    g = a.global_batch
    if g % world:
        raise SystemExit(f"global batch {g} does not split over {world} ranks")
    part = g // world

    torch.manual_seed(0)
    backbone = nn.Sequential(nn.Linear(IN, a.dim), nn.Tanh())
    model = nn.parallel.DistributedDataParallel(backbone) if world > 1 else backbone
    head = kt.DistillHead(cache.num_classes, a.dim, a.loss, a.temperature, 0.8, candidates=a.candidates, clusters=4, reassign=24, proposal="clusters", seed=5, shard=a.mode == "shard")
    opt_b = torch.optim.SGD(backbone.parameters(), lr=0.5)
    opt_h = kt.RowAdam(head.parameters(), lr=3e-2)
    start = 0
    if a.load:
        extra = kt.load_checkpoint(a.load, head, opt_h)
        backbone.load_state_dict(extra["backbone"])
        opt_b.load_state_dict(extra["opt_b"])
        start = extra["step"]

    losses, rows = [], []
    for s in range(start, a.steps):
        idx = order[s * g : (s + 1) * g][rank * part : (rank + 1) * part]
        b = kt.collate(ds.__getitems__(idx))
        out = head(model(b["input"]), b)
        opt_b.zero_grad()
        opt_h.zero_grad()
        out.loss.backward()
        opt_b.step()
        opt_h.step()
        loss = out.loss.detach().double()
        if world > 1 and a.mode == "dp":
            dist.all_reduce(loss)
            loss /= world
        losses.append(float(loss))
        rows.append(out.rows)
        if s + 1 == a.save_at:
            kt.save_checkpoint(a.ckpt, head, opt_h, extra={"backbone": backbone.state_dict(), "opt_b": opt_b.state_dict(), "step": s + 1})

    w = head.weight.detach()
    if head.sharded:
        parts = [None] * world
        dist.all_gather_object(parts, w.numpy())
        table = np.concatenate(parts, 0)
    else:
        table = w.numpy()
    if rank == 0:
        res = dict(losses=np.array(losses), rows=np.array(rows), table=table, backbone=backbone[0].weight.detach().numpy())
        if head.sampler is not None:
            res.update(assign=head.sampler.assignment(), mass=head.sampler.mass, total=head.dis_total.numpy())
        np.savez(a.out, **res)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
        # gloo's worker threads can still abort the interpreter's teardown now and then (std::terminate
        # on a joinable thread, exit code -6, seen on a loaded machine); the results are written, so the
        # process leaves without that teardown
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    main()
