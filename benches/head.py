"""DistillHead's step against `kdcache train`'s, and the class-sharded head's memory and step time.

    python benches/head.py [--classes 20000,100000,1000000] [--reps 10] [--out results]
    python benches/head.py --sharded --classes 1000000 --ranks 1,2,4

The first table times what `kdcache bench`'s speed table times, in the same setting (B = 256, d = 256,
K = 64, T = 2, a clustered top-K per row, a random head, lazy Adam): the head's forward, backward,
optimiser step and the `dis` bookkeeping, for `full`, `dis` with a fixed budget of 2,048 shared columns
and `dis` with 2% of C. It runs `kdcache bench --only speed` in the same invocation and prints the
ratio Python / Rust per row (both on the CPU, one thread pool each; a ratio within one run).

--sharded launches torchrun (gloo) with N ranks, each holding C/N head rows, and reports the head's
bytes per rank (table + RowAdam state), the peak resident memory per rank and the step time.
Results: results/head.md and results/head.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

import kdcache.torch as kt

REPO = Path(__file__).resolve().parents[1]
B, D, K, T = 256, 256, 64, 2.0


def targets(c: int, seed: int) -> dict:
    """The speed table's targets: per row K neighbouring class ids (superclass-like), p ∝ e^{−0.3 r}
    holding 97% of the mass, τ = 0.03, the label at rank 0."""
    rng = np.random.default_rng(seed)
    k = min(K, c)
    ids = np.empty((B, k), dtype=np.int64)
    for i in range(B):
        centre = rng.integers(c)
        got: list = []
        while len(got) < k:
            j = int((centre + rng.integers(-200, 200)) % c)
            if j not in got:
                got.append(j)
        ids[i] = got
    w = np.exp(-0.3 * np.arange(k))
    p = w / (w.sum() / 0.97)
    logp = np.log(np.broadcast_to(p, (B, k))).astype(np.float32)
    return dict(ids=torch.from_numpy(ids), logp=torch.from_numpy(logp.copy()), log_tail=torch.full((B,), float(np.log(0.03))), label=torch.from_numpy(ids[:, 0].copy()))


def time_head(c: int, loss: str, budget: int, reps: int, shard: bool = False) -> tuple:
    torch.manual_seed(0)
    head = kt.DistillHead(c, D, loss, T, 0.9, candidates=budget if loss == "dis" else 0, seed=1, shard=shard)
    with torch.no_grad():
        head.weight.normal_(0.0, 0.01)  # in place: no second table in memory
        if loss == "dis":
            head.set_table(head.weight.detach())
    opt = kt.RowAdam(head.parameters(), lr=1e-3)
    batch = targets(c, 7 + (dist.get_rank() if shard and dist.is_initialized() else 0))
    times, rows = [], []
    n_rep = min(reps, 3) if loss == "full" and c >= 500_000 else reps
    for rep in range(n_rep + 1):
        h = torch.randn(B, D, requires_grad=True)
        t0 = time.perf_counter()
        out = head(h, batch)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        opt.step()
        t1 = time.perf_counter()
        if rep:
            times.append((t1 - t0) * 1e3)
            rows.append(out.rows)
    state = sum(v.numel() * v.element_size() for v in opt.state[head.weight].values())
    table = head.weight.numel() * head.weight.element_size()
    return float(np.median(times)), float(np.mean(rows)), table + state


def full_fits(c: int) -> bool:
    need = c * ((D + 1) * 4 * 4 + B * 4 * 5)
    try:
        avail = next(int(l.split()[1]) * 1024 for l in open("/proc/meminfo") if l.startswith("MemAvailable:"))
    except (OSError, StopIteration):
        return True
    return need < 0.8 * avail


def python_table(classes: list, reps: int, fixed: int) -> list:
    out = []
    for c in classes:
        runs = [("full", "full", c), ("dis fixed", "dis", min(fixed, c)), ("dis 2%", "dis", -(-c // 50))]
        for name, loss, budget in runs:
            if loss == "full" and not full_fits(c):
                print(f"skipping full at C = {c}: not enough memory", file=sys.stderr)
                continue
            ms, rows, _ = time_head(c, loss, budget, reps)
            out.append(dict(classes=c, estimator=name, head_rows=rows, head_ms=ms))
            print(f"python  C={c:>8} {name:<10} {rows:>9.0f} rows {ms:9.2f} ms", flush=True)
    return out


def rust_table(classes: list, reps: int, fixed: int) -> list:
    kd = Path(os.environ.get("KDCACHE_BIN") or REPO / "target" / "release" / "kdcache")
    with tempfile.TemporaryDirectory() as d:
        cmd = [str(kd), "bench", "--only", "speed", "--classes", ",".join(map(str, classes)), "--fixed-budget", str(fixed), "--out", d]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr}")
        res = json.loads((Path(d) / "bench.json").read_text())
    return res["speed"]


def sharded_worker(a) -> None:
    dist.init_process_group("gloo")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.get_world_size()))
    c = a.classes[0]
    ms, rows, head_bytes = time_head(c, "dis", -(-c // 50), a.reps, shard=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    res = [None] * dist.get_world_size()
    dist.all_gather_object(res, dict(ms=ms, rows=rows, head_bytes=head_bytes, peak_rss=peak))
    if dist.get_rank() == 0:
        Path(a.worker_out).write_text(json.dumps(res))
    dist.destroy_process_group()


def sharded_table(a) -> list:
    out = []
    for n in a.ranks:
        with tempfile.TemporaryDirectory() as d:
            res_path = Path(d) / "r.json"
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", f"--master_port={port}", __file__, "--worker", "--worker-out", str(res_path), "--classes", str(a.classes[0]), "--reps", str(a.reps)]
            subprocess.run(cmd, check=True, env=dict(os.environ, OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 1) // n))))
            res = json.loads(res_path.read_text())
        row = dict(classes=a.classes[0], ranks=n, head_mb_per_rank=max(r["head_bytes"] for r in res) / 2**20, peak_rss_mb_per_rank=max(r["peak_rss"] for r in res) / 2**20, step_ms=max(r["ms"] for r in res), head_rows=res[0]["rows"])
        out.append(row)
        print(row, flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", type=lambda s: [int(x) for x in s.split(",")], default=[20000, 100000, 1000000])
    ap.add_argument("--reps", type=int, default=10)
    ap.add_argument("--fixed", type=int, default=2048)
    ap.add_argument("--sharded", action="store_true")
    ap.add_argument("--ranks", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    ap.add_argument("--out", default=str(REPO / "results"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return sharded_worker(a)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.sharded:
        rows = sharded_table(a)
        md = f"Class-sharded `dis` head (2% budget), C = {a.classes[0]:,}, gloo on {os.cpu_count()} CPU cores, B = {B} per rank (the global batch grows with the ranks), d = {D}, K = {K}; peak RSS includes torch itself and the head's initialisation\n\n"
        md += "| ranks | head + RowAdam state per rank (MB) | peak RSS per rank (MB) | step ms (slowest rank) | head rows |\n|---|---|---|---|---|\n"
        for r in rows:
            md += f"| {r['ranks']} | {r['head_mb_per_rank']:.0f} | {r['peak_rss_mb_per_rank']:.0f} | {r['step_ms']:.1f} | {r['head_rows']:.0f} |\n"
        (out / "head-sharded.md").write_text(md)
        (out / "head-sharded.json").write_text(json.dumps(rows, indent=1))
        print(md)
        return
    py = python_table(a.classes, a.reps, a.fixed)
    rs = {(r["classes"], r["estimator"]): r for r in rust_table(a.classes, a.reps, a.fixed)}
    md = f"DistillHead (Python, torch {torch.__version__}) vs `kdcache train`'s step (Rust, tch), CPU, {os.cpu_count()} cores, B = {B}, d = {D}, K = {K}: head + loss + backward + optimiser + dis bookkeeping, median ms\n\n"
    md += "| C | estimator | head rows | Python ms | Rust ms | Python / Rust |\n|---|---|---|---|---|---|\n"
    for r in py:
        q = rs.get((r["classes"], r["estimator"]))
        rust = q["head_ms"] if q else float("nan")
        md += f"| {r['classes']:,} | {r['estimator']} | {r['head_rows']:.0f} | {r['head_ms']:.1f} | {rust:.1f} | {r['head_ms'] / rust:.2f} |\n"
        r["rust_head_ms"] = rust
    (out / "head.md").write_text(md)
    (out / "head.json").write_text(json.dumps(py, indent=1))
    print(md)


if __name__ == "__main__":
    main()
