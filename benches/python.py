"""The Python package's throughput, beside the Rust core's, in one run (`make bench-python`).

Reading: `kdcache bench --only io` writes its cache (1M rows by default, C = 131,072, K = 64, f16, both
encodings) and measures the Rust scans and pyarrow on the Parquet files; then, on those same caches,
this script measures rows/s into torch tensors through a DataLoader (batch 256, 0 and 2 workers) with
kdcache.torch.BlockShuffleSampler and with a fully random sampler (the decoded-block LRU), and the same
loop over pyarrow -> NumPy on the Parquet encoding (a Dataset that reads row groups with pyarrow,
keeping the last one decoded).

Writing: rows/s of CacheWriter.add_logits from a CPU tensor at C = 32,768 against `kdcache import` of the
same logits, and the share of a teacher loop's wall time spent outside the teacher's forward.

    python benches/python.py [--out results] [--rows 1000000] [--write-rows 8192] [--kdcache target/release/kdcache]

Writes OUT/python.md and OUT/python.json.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler

import kdcache
import kdcache.torch as kt

BATCH = 256


class PyarrowRows(Dataset):
    """The Parquet cache read with pyarrow into NumPy, row group by row group (the last one kept)."""

    def __init__(self, path: str):
        import pyarrow.parquet as pq

        self.files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".parquet"))
        self.groups = []  # (file index, row group, first row, rows)
        first = 0
        for fi, f in enumerate(self.files):
            md = pq.ParquetFile(f).metadata
            for g in range(md.num_row_groups):
                n = md.row_group(g).num_rows
                self.groups.append((fi, g, first, n))
                first += n
        self.n = first
        self.starts = np.array([g[2] for g in self.groups] + [first])
        self._open = {}
        self._last = (None, None)

    def __len__(self):
        return self.n

    def _group(self, gi):
        if self._last[0] == gi:
            return self._last[1]
        import pyarrow.parquet as pq

        fi, g, _, _ = self.groups[gi]
        pf = self._open.get(fi) or self._open.setdefault(fi, pq.ParquetFile(self.files[fi]))
        t = pf.read_row_group(g)
        k = len(t.column("topk_idx")[0])
        cols = {
            "row": t.column("row").to_numpy(),
            "label": t.column("label").to_numpy(),
            "ids": t.column("topk_idx").combine_chunks().flatten().to_numpy().reshape(-1, k),
            "logit": t.column("topk_logit").combine_chunks().flatten().to_numpy().reshape(-1, k),
            "lse": t.column("lse").combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1),
            "log_tail": t.column("log_tail").combine_chunks().flatten().to_numpy().reshape(t.num_rows, -1),
        }
        self._last = (gi, cols)
        return cols

    def __getitems__(self, idx):
        idx = np.asarray(idx)
        gis = np.searchsorted(self.starts, idx, side="right") - 1
        out = {k: [] for k in ("row", "label", "ids", "logp", "lse", "log_tail")}
        for gi in np.unique(gis):  # in order of first use would be fairer to the LRU-of-one; same cost here
            sel = idx[gis == gi] - self.starts[gi]
            c = self._group(int(gi))
            out["row"].append(c["row"][sel])
            out["label"].append(c["label"][sel])
            out["ids"].append(c["ids"][sel])
            out["logp"].append(c["logit"][sel].astype(np.float32))  # T0 log p at T0 = 1
            out["lse"].append(c["lse"][sel, 0])
            out["log_tail"].append(c["log_tail"][sel, 0])
        return {k: np.concatenate(v) for k, v in out.items()}

    def __getitem__(self, i):
        return self.__getitems__([i])


def pyarrow_collate(d):
    return {k: torch.from_numpy(v.view(np.int64) if v.dtype == np.uint64 else v) for k, v in d.items()}


def loop(dataset, sampler, workers, collate, batch_sampler=None):
    kw = dict(persistent_workers=False, multiprocessing_context="fork") if workers else {}
    if batch_sampler is not None:
        dl = DataLoader(dataset, batch_sampler=batch_sampler, num_workers=workers, collate_fn=collate, **kw)
    else:
        dl = DataLoader(dataset, batch_size=BATCH, sampler=sampler, num_workers=workers, collate_fn=collate, **kw)
    t = time.perf_counter()
    n = 0
    for b in dl:
        n += len(b["row"])
    return n / (time.perf_counter() - t)


class Trivial(Dataset):
    """The DataLoader's own cost: batches of one tensor the size of a cache batch, made from nothing."""

    def __init__(self, n, nbytes):
        self.n, self.nbytes = n, nbytes

    def __len__(self):
        return self.n

    def __getitems__(self, idx):
        return {"row": torch.zeros(self.nbytes // 8, dtype=torch.int64)[: len(idx)]}  # one storage of a batch's size


def floor(workers, n=300_000):
    """rows/s of a DataLoader whose dataset does no work (one ~200 KB tensor per batch): the ceiling the
    DataLoader itself sets with this many workers."""
    return loop(Trivial(n, BATCH * (8 + 8 + 64 * 8 + 64 * 4 + 8)), RandomSampler(range(n)), workers, lambda d: d)


def reading(out, kd, rows):
    subprocess.run([kd, "bench", "--out", out, "--only", "io", "--io-rows", str(rows)], check=True)
    rust = {r["encoding"]: r for r in json.load(open(os.path.join(out, "bench.json")))["io"]}
    res = []
    for enc in ("kds", "parquet"):
        path = os.path.join(out, f"io_{enc}")
        def fresh():  # a cache opened anew: every measurement decodes its blocks itself
            cache = kdcache.Cache(path, block_cache_bytes=1 << 30)
            return cache, kt.CacheDataset(cache)

        for workers in (0, 2):
            cache, ds = fresh()
            block = loop(ds, kt.BlockShuffleSampler(cache, seed=1), workers, kt.collate)
            cache, ds = fresh()
            batched = loop(ds, None, workers, kt.collate, batch_sampler=kt.BlockShuffleSampler(cache, seed=1, batch_size=BATCH))
            cache, ds = fresh()
            rand = loop(ds, RandomSampler(range(len(ds)), generator=torch.Generator().manual_seed(1)), workers, kt.collate)
            pa = loop(PyarrowRows(path), kt.BlockShuffleSampler(cache, seed=1), workers, pyarrow_collate) if enc == "parquet" else None
            res.append(dict(encoding=enc, workers=workers, block_shuffled=block, block_shuffled_batches=batched, random=rand, pyarrow_block_shuffled=pa, floor=floor(workers),
                            rust_scan=rust[enc]["scan_rows_per_s"], rust_shuffled=rust[enc]["shuffled_rows_per_s"]))
            print(res[-1], flush=True)
    return res


def writing(kd, rows, classes=32768, k=64):
    tmp = tempfile.mkdtemp(prefix="kdcache-bench-")
    try:
        g = torch.Generator().manual_seed(0)
        # teacher-like logits: a few confident classes over a flat tail
        z = torch.randn(rows, classes, generator=g) * 2.0
        z[torch.arange(rows), torch.randint(0, classes, (rows,), generator=g)] += 12.0
        np.save(os.path.join(tmp, "logits.npy"), z.numpy())
        t = time.perf_counter()
        subprocess.run([kd, "import", "--logits", os.path.join(tmp, "logits.npy"), "--top-k", str(k), "--temperatures", "1,2,4",
                        "--out", os.path.join(tmp, "imported")], check=True, capture_output=True)
        imp = rows / (time.perf_counter() - t)
        t = time.perf_counter()
        with kdcache.CacheWriter(os.path.join(tmp, "python"), num_classes=classes, top_k=k, temperatures=(1, 2, 4), teacher="bench", dataset="bench") as w:
            for lo in range(0, rows, BATCH):
                w.add_logits(lo, z[lo : lo + BATCH])
        py = rows / (time.perf_counter() - t)
        # a teacher loop: the forward (a linear head onto C classes) and the cache writer
        head = torch.nn.Linear(512, classes)
        x = torch.randn(BATCH, 512, generator=g)
        fwd = 0.0
        t = time.perf_counter()
        with torch.no_grad(), kdcache.CacheWriter(os.path.join(tmp, "loop"), num_classes=classes, top_k=k, temperatures=(1, 2, 4), teacher="bench", dataset="bench") as w:
            for lo in range(0, rows, BATCH):
                f0 = time.perf_counter()
                logits = head(x) * 3.0
                fwd += time.perf_counter() - f0
                w.add_logits(lo, logits)
        wall = time.perf_counter() - t
        return dict(classes=classes, k=k, rows=rows, import_rows_per_s=imp, add_logits_rows_per_s=py,
                    teacher_loop_forward_s=fwd, teacher_loop_wall_s=wall, outside_forward_share=1 - fwd / wall)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--write-rows", type=int, default=8192)
    ap.add_argument("--kdcache", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "target", "release", "kdcache"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    read = reading(a.out, a.kdcache, a.rows)
    write = writing(a.kdcache, a.write_rows)
    print(write, flush=True)
    json.dump(dict(machine=os.cpu_count(), torch_threads=torch.get_num_threads(), reading=read, writing=write), open(os.path.join(a.out, "python.json"), "w"), indent=1, sort_keys=True)
    m = "# The Python package (rows/s, one run)\n\n"
    m += f"Reading: {a.rows:,} rows, C = 131,072, K = 64, f16; DataLoader batch {BATCH}, into torch tensors.\n\n"
    m += "| encoding | workers | BlockShuffleSampler | as batch_sampler | random (block LRU) | pyarrow → NumPy, block-shuffled | DataLoader alone | Rust scan | Rust block-shuffled | batches / pyarrow | batches / Rust scan |\n|---|---|---|---|---|---|---|---|---|---|---|\n"
    for r in read:
        pa = r["pyarrow_block_shuffled"]
        pa_s = "" if pa is None else f"{pa:,.0f}"
        ratio = "" if pa is None else f"{r['block_shuffled_batches'] / pa:.2f}×"
        m += (f"| {r['encoding']} | {r['workers']} | {r['block_shuffled']:,.0f} | {r['block_shuffled_batches']:,.0f} | {r['random']:,.0f} | {pa_s} | {r['floor']:,.0f} "
              f"| {r['rust_scan']:,.0f} | {r['rust_shuffled']:,.0f} | {ratio} | {r['block_shuffled_batches'] / r['rust_scan']:.0%} |\n")
    w = write
    m += f"\nWriting: {w['rows']:,} rows of C = {w['classes']:,} float32 logits, K = {w['k']}, T = 1, 2, 4.\n\n"
    m += "| kdcache import | CacheWriter.add_logits (CPU tensor) | import / add_logits | teacher loop: share outside the forward |\n|---|---|---|---|\n"
    m += f"| {w['import_rows_per_s']:,.0f} | {w['add_logits_rows_per_s']:,.0f} | {w['import_rows_per_s'] / w['add_logits_rows_per_s']:.2f}× | {w['outside_forward_share']:.0%} |\n"
    open(os.path.join(a.out, "python.md"), "w").write(m)
    print(m)


if __name__ == "__main__":
    sys.exit(main())
