"""Build one kdcache cache with several teacher replicas under torchrun.

Each rank runs its own copy of the teacher (the same weights everywhere: they come from a seed, as a
checkpoint would) over its share of the dataset — the examples of part (rank, world) from
`kdcache.part_range` — and writes that share as a part cache with `CacheWriter(..., part=(rank,
world))`. After a barrier, rank 0 joins the parts into the final cache with `kdcache.merge` (what
`kdcache merge` does); the result holds the rows one process writing the whole dataset gives.

    torchrun --nproc_per_node 4 examples/cache_torchrun.py --out runs/example/cache-dist
    python examples/cache_torchrun.py                 # no torchrun: one process writes the cache itself

On a GPU machine each rank takes the GPU of its local rank (NCCL); on the CPU the ranks talk over gloo.
Every rank must see the same filesystem (the parts go to `--parts`, default OUT.parts). A rank that
dies leaves its finished shards: run the same command again and each rank resumes its part; a cache
that is already complete is left alone (`--overwrite` rebuilds it).
"""

import argparse
import datetime
import os
import shutil
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

import kdcache


class Features(Dataset):
    """A deterministic stand-in for real inputs: sample i is (i, features of i, label of i), the same in
    every process."""

    def __init__(self, n: int, dim: int, classes: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return i, self.x[i], self.y[i]


class Teacher(nn.Module):
    def __init__(self, dim: int, classes: int, hidden: int = 256):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, classes))

    def forward(self, x):
        return self.body(x) * 4.0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Cache a teacher's ranked logits with one teacher replica per torchrun rank, then merge the parts.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default="runs/example/cache-dist", help="the final cache directory")
    p.add_argument("--parts", default=None, help="where the ranks write their parts (default: OUT.parts)")
    p.add_argument("--examples", type=int, default=8192, help="dataset size")
    p.add_argument("--classes", type=int, default=1000, help="the teacher's class count C")
    p.add_argument("--dim", type=int, default=32, help="input features per example")
    p.add_argument("--top-k", type=int, default=32, help="ranks kept per row K")
    p.add_argument("--temperatures", default="1,2,4", help="cached temperatures, comma-separated")
    p.add_argument("--batch-size", type=int, default=256, help="teacher batch size")
    p.add_argument("--seed", type=int, default=0, help="seed of the teacher's weights and of the data")
    p.add_argument("--format", choices=("kds", "parquet"), default="kds", help="shard encoding")
    p.add_argument("--dtype", choices=("f16", "bf16", "f32"), default="f16", help="how the top-K logits are stored")
    p.add_argument("--block-rows", type=int, default=512, help="rows per block")
    p.add_argument("--shard-rows", type=int, default=2048, help="rows per shard file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="where the teacher runs (auto: the local rank's GPU if there is one)")
    p.add_argument("--keep-parts", action="store_true", help="keep the part caches after the merge")
    p.add_argument("--overwrite", action="store_true", help="replace caches already in OUT and the parts")
    p.add_argument("--timeout-min", type=float, default=60.0, help="how long a rank waits at the barrier for the others")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    temps = tuple(float(t) for t in a.temperatures.split(","))
    # torchrun sets these; without them this is the only process
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    tag = f"[rank {rank}/{world}]" if world > 1 else "[1 process]"
    if world > 1 and os.path.exists(os.path.join(a.out, "_manifest.json")) and not a.overwrite:
        if rank == 0:
            print(f"{a.out}: already holds a cache, nothing to do (--overwrite rebuilds it)", flush=True)
        return 0

    use_cuda = a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1:
        import torch.distributed as dist

        backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=a.timeout_min))

    torch.manual_seed(a.seed)  # the same weights on every rank
    teacher = Teacher(a.dim, a.classes).to(device).eval()
    data = Features(a.examples, a.dim, a.classes, a.seed + 1)
    lo, hi = kdcache.part_range(len(data), rank, world) if world > 1 else (0, len(data))
    out = a.out if world == 1 else os.path.join(a.parts or a.out.rstrip("/") + ".parts", f"part-{rank}")
    common = dict(
        num_classes=a.classes,
        top_k=a.top_k,
        temperatures=temps,
        teacher=f"example-teacher@seed{a.seed};dim={a.dim}",  # any id that changes when the teacher does
        dataset=f"example-features@seed{a.seed + 1};n={a.examples}",
        format=a.format,
        dtype=a.dtype,
        num_examples=len(data),
        block_rows=a.block_rows,
        shard_rows=a.shard_rows,
        overwrite=a.overwrite,
    )
    t0 = time.time()
    with kdcache.CacheWriter(out, part=(rank, world) if world > 1 else None, **common) as w:
        if w.complete:
            print(f"{tag} {out}: already complete", flush=True)
        else:
            start = max(lo, w.next_row or lo)  # after a crash: the first example not yet written
            if start > lo:
                print(f"{tag} {out}: resuming at example {start} ({w.resumed_rows} rows kept)", flush=True)
            print(f"{tag} examples {lo}..{hi} on {device} -> {out}", flush=True)
            loader = DataLoader(Subset(data, range(start, hi)), batch_size=a.batch_size, shuffle=False)
            done, every = start - lo, max(1, (hi - lo) // 4)
            with torch.no_grad():
                for idx, x, y in loader:
                    w.add_logits(idx, teacher(x.to(device, non_blocking=True)), labels=y)
                    if (done + len(idx)) // every > done // every or done + len(idx) == hi - lo:
                        print(f"{tag} {done + len(idx)}/{hi - lo} rows ({time.time() - t0:.1f} s)", flush=True)
                    done += len(idx)

    if world > 1:
        import torch.distributed as dist

        dist.barrier(device_ids=[local_rank]) if use_cuda else dist.barrier()
        if rank == 0:
            parts = [os.path.join(os.path.dirname(out), f"part-{i}") for i in range(world)]
            m = kdcache.merge(parts, a.out, overwrite=a.overwrite)
            print(f"{tag} merged {world} parts: {m['rows']} rows in {len(m['shards'])} shards at {a.out}", flush=True)
            if not a.keep_parts:  # the merged cache holds its own links to (or copies of) the shards
                for p in parts:
                    shutil.rmtree(p)
                try:
                    os.rmdir(os.path.dirname(out))
                except OSError:
                    pass  # not empty: something else lives there
        dist.destroy_process_group()
    if rank == 0:
        print(kdcache.Cache(a.out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
