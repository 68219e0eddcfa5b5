"""Train a PyTorch student from a kdcache cache: your own nn.Module backbone and data, a DataLoader over
the cache rows paired with that data by row id, `DistillHead` (the head table and the estimator) with
`RowAdam`, Adam for the backbone. Data-parallel under torchrun; `--shard` shards the head's classes.

    make cache                                       # the demo cache (20,000 classes)
    python examples/train_student.py --cache data/default/cache/train --data data/default --loss dis
    python examples/train_student.py ... --nproc 2   # relaunches itself under torchrun (gloo on CPUs)
    torchrun --nproc_per_node 2 examples/train_student.py ... --shard

Without --cache it first writes a small demo (500 classes) into ./student-demo with kdcache.CacheWriter.
--data is a directory with train_x.npy (the inputs the cache was written for, row i = example i) and,
for the held-out top-1, test_x.npy / test_y.npy (what `kdcache synth` writes). The backbone here is the
one `kdcache train --student mlp:H` trains (Linear + ReLU layers): replace `make_backbone` with yours.
--batch-size is the global batch: each of N ranks takes batch/N rows per step.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader

import kdcache
import kdcache.torch as kt


class Rows(torch.utils.data.Dataset):
    """A .npy array as a map-style dataset (memory-mapped), with a batched __getitems__."""

    def __init__(self, path: Path):
        self.x = np.load(path, mmap_mode="r")

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.from_numpy(np.asarray(self.x[i], dtype=np.float32).reshape(-1))

    def __getitems__(self, ids) -> list:
        a = np.asarray(self.x[np.sort(ids)], dtype=np.float32).reshape(len(ids), -1)
        back = np.argsort(np.argsort(ids))  # fancy indexing wants sorted ids on a memory map
        return list(torch.from_numpy(a[back]))


def make_demo(out: Path, classes: int = 500, dim: int = 32, train: int = 4000, test: int = 1000) -> None:
    """A small world to train on: class prototypes plus noise; the teacher scores every class by its
    prototype (nearly Bayes-optimal), written with kdcache.CacheWriter."""
    if (out / "cache" / "_manifest.json").exists():
        return
    rng = np.random.default_rng(0)
    proto = rng.normal(size=(classes, dim)).astype(np.float32)
    y = rng.integers(0, classes, size=train + test)
    x = (proto[y] + 0.9 * rng.normal(size=(train + test, dim))).astype(np.float32)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "train_x.npy", x[:train])
    np.save(out / "test_x.npy", x[train:])
    np.save(out / "test_y.npy", y[train:])
    with kdcache.CacheWriter(out / "cache", num_classes=classes, top_k=16, temperatures=(1, 2), teacher="prototype-teacher", dataset="student-demo", num_examples=train, overwrite=True) as w:
        for lo in range(0, train, 1000):
            xb = torch.from_numpy(x[lo : lo + 1000])
            w.add_logits(np.arange(lo, lo + len(xb)), 2.0 * xb @ torch.from_numpy(proto).t(), labels=y[lo : lo + len(xb)])


def make_backbone(in_dim: int, hidden: list) -> nn.Module:
    layers, d = [], in_dim
    for h in hidden:
        lin = nn.Linear(d, h)
        # kdcache train's (tch's) initialisation: Kaiming-uniform weights for ReLU, bias U(±1/√fan_in)
        nn.init.kaiming_uniform_(lin.weight, nonlinearity="relu")
        layers += [lin, nn.ReLU()]
        d = h
    return nn.Sequential(*layers)


def evaluate(backbone: nn.Module, head: kt.DistillHead, x: np.ndarray, y: np.ndarray, device, chunk: int = 2048) -> float:
    """Held-out top-1 with the full softmax (all C classes, over every rank's shard when sharded)."""
    backbone.eval()
    head.eval()
    hits = 0
    with torch.no_grad():
        for lo in range(0, len(x), chunk):
            xb = torch.from_numpy(np.array(x[lo : lo + chunk], dtype=np.float32).reshape(min(chunk, len(x) - lo), -1)).to(device)
            pred = head.predict(backbone(xb), 1)[:, 0].cpu().numpy()
            hits += int((pred == np.asarray(y[lo : lo + chunk])).sum())
    backbone.train()
    head.train()
    return hits / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", default=None, help="the training cache (kdcache cache / import / CacheWriter); default: a small demo")
    ap.add_argument("--data", default=None, help="directory with train_x.npy (and test_x.npy, test_y.npy for the held-out top-1)")
    ap.add_argument("--loss", default="dis", choices=kt.ESTIMATORS)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0 = all epochs)")
    ap.add_argument("--batch-size", type=int, default=256, help="the global batch (split over the ranks)")
    ap.add_argument("--hidden", default="256", help="hidden sizes of the MLP backbone, comma-separated (kdcache train's mlp:H)")
    ap.add_argument("--lr", type=float, default=1e-3, help="the backbone's Adam learning rate")
    ap.add_argument("--head-lr", type=float, default=None, help="RowAdam's learning rate (default: 1e-2 for dis, 1e-3 otherwise, as kdcache train)")
    ap.add_argument("--head-optimizer", default="row-adam", choices=("row-adam", "sparse-adam"), help="RowAdam (each row's own step count, as kdcache train) or torch.optim.SparseAdam (one global count)")
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--candidates", type=int, default=0, help="dis: shared columns per step (0 = automatic)")
    ap.add_argument("--dis-proposal", default=None, choices=("uniform", "prior", "clusters", "neyman"), help="dis: where the sampled negatives come from (default: as kdcache train)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--nproc", type=int, default=1, help="ranks: relaunch under torchrun with this many processes")
    ap.add_argument("--shard", action="store_true", help="shard the head's classes over the ranks")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--out", default=None, help="write summary.json (held-out top-1, steps, seconds) here")
    a = ap.parse_args()

    if a.cache is None:
        if "WORLD_SIZE" not in os.environ:
            make_demo(Path("student-demo"))
        a.cache, a.data, a.epochs = "student-demo/cache", "student-demo", max(a.epochs, 3)
    elif a.data is None:
        raise SystemExit("--data is needed with --cache: the directory with the cache's train_x.npy")
    if a.nproc > 1 and "WORLD_SIZE" not in os.environ:
        # the ranks get the same options without --nproc (torchrun's own parser would take it for an
        # abbreviation of --nproc-per-node)
        args, skip = [], False
        for x in sys.argv[1:]:
            if skip or x.startswith("--nproc="):
                skip = False
                continue
            if x == "--nproc":
                skip = True
                continue
            args.append(x)
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={a.nproc}", "--standalone", sys.argv[0], *args]
        raise SystemExit(subprocess.call(cmd))

    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else ("cpu" if a.device == "auto" else a.device))
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    rank = dist.get_rank() if world > 1 else 0
    if a.batch_size % world:
        raise SystemExit(f"--batch-size {a.batch_size} does not split over {world} ranks")

    cache = kdcache.Cache(a.cache)
    data = Path(a.data)
    train_x = Rows(data / "train_x.npy")
    ds = kt.CacheDataset(cache, train_x, temperature=a.temperature)
    sampler = kt.BlockShuffleSampler(cache, seed=a.seed, batch_size=a.batch_size // world)
    loader = DataLoader(ds, batch_sampler=sampler, num_workers=a.workers, collate_fn=kt.collate, persistent_workers=a.workers > 0)

    torch.manual_seed(a.seed)
    in_dim = int(np.prod(train_x.x.shape[1:]))
    hidden = [int(h) for h in a.hidden.split(",")]
    backbone = make_backbone(in_dim, hidden).to(device)
    model = nn.parallel.DistributedDataParallel(backbone) if world > 1 else backbone
    dis = {} if a.dis_proposal is None else {"proposal": a.dis_proposal}
    head = kt.DistillHead.from_cache(cache, hidden[-1], a.loss, a.temperature, alpha=a.alpha, candidates=a.candidates, seed=a.seed, shard=a.shard, device=device, **dis)
    opt_b = torch.optim.Adam(backbone.parameters(), lr=a.lr)
    head_lr = a.head_lr or kt.default_head_lr(a.loss)
    if a.head_optimizer == "sparse-adam":
        if a.loss not in ("dis", "topk"):
            raise SystemExit("--head-optimizer sparse-adam needs a sparse head gradient (--loss dis or topk)")
        opt_h = torch.optim.SparseAdam(head.parameters(), lr=head_lr)
    else:
        opt_h = kt.RowAdam(head.parameters(), lr=head_lr)
    if rank == 0:
        print(f"{head} on {device}, {world} rank(s); {len(sampler)} steps per epoch", flush=True)

    step, t0 = 0, time.perf_counter()
    done = False
    for epoch in range(a.epochs):
        sampler.set_epoch(epoch)
        for b in loader:
            out = head(model(b["input"].to(device, non_blocking=True)), b)
            opt_b.zero_grad(set_to_none=True)
            opt_h.zero_grad(set_to_none=True)
            out.loss.backward()
            opt_b.step()
            opt_h.step()
            step += 1
            if rank == 0 and a.log_every and step % a.log_every == 0:
                print(f"epoch {epoch} step {step}: loss {out.value:.4f}, {out.rows} head rows, {(time.perf_counter() - t0) / step * 1e3:.1f} ms/step", flush=True)
            if a.max_steps and step >= a.max_steps:
                done = True
                break
        if done:
            break
    seconds = time.perf_counter() - t0
    summary = {"loss": a.loss, "head_optimizer": a.head_optimizer, "steps": step, "seconds": seconds, "ms_per_step": seconds / max(step, 1) * 1e3, "world_size": world, "sharded": bool(a.shard)}
    if (data / "test_x.npy").exists() and (data / "test_y.npy").exists():
        summary["top1"] = evaluate(backbone, head, np.load(data / "test_x.npy", mmap_mode="r"), np.load(data / "test_y.npy", mmap_mode="r"), device)
    if rank == 0:
        print(json.dumps(summary), flush=True)
        if a.out:
            Path(a.out).mkdir(parents=True, exist_ok=True)
            (Path(a.out) / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    if world > 1:
        # every rank past its last collective before any tears the group down (gloo aborts a rank whose
        # peer left while it still had a message in flight)
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
