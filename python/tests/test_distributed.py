"""DistillHead under real `torchrun` processes (gloo, CPU): a data-parallel run on 2 ranks with batch
B each equals a 1-rank run with batch 2B; a class-sharded head on 2 and 4 ranks equals the unsharded
one; a checkpoint written at one world size resumes at another. The worker is dist_head.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import distinct_logits, random_labels

HERE = Path(__file__).resolve().parent
C, N, K = 203, 96, 6  # a class count no world size divides


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(out: Path, cache: Path, nproc: int = 1, **kw) -> dict:
    args = [f"--cache={cache}", f"--out={out}"] + [f"--{k.replace('_', '-')}={v}" for k, v in kw.items()]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(HERE))
    if nproc == 1:
        cmd = [sys.executable, str(HERE / "dist_head.py"), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}", f"--master_port={_port()}", "--master_addr=127.0.0.1", str(HERE / "dist_head.py"), *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return dict(np.load(out))


@pytest.fixture(scope="module")
def cache(cli, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("dist")
    return cli.import_(d / "cache", distinct_logits(N, C, 11), labels=random_labels(N, C, 12), top_k=K, temperatures=(1.0, 2.0))


_REFS: dict = {}


def reference(tmp_path_factory, cache: Path, **kw) -> dict:
    """The 1-rank run with the whole global batch (computed once per setting)."""
    key = tuple(sorted(kw.items()))
    if key not in _REFS:
        _REFS[key] = run(tmp_path_factory.mktemp("ref") / "one.npz", cache, 1, **kw)
    return _REFS[key]


def close(a: dict, b: dict, keys=("losses", "table", "backbone"), tol=1e-5) -> None:
    for k in keys:
        x, y = np.asarray(a[k], dtype=np.float64), np.asarray(b[k], dtype=np.float64)
        assert x.shape == y.shape, k
        err = np.abs(x - y).max() / max(1.0, np.abs(y).max())
        assert err < tol, f"{k}: differs by {err:.3g}"


@pytest.mark.parametrize("loss", ["full", "dis"])
def test_data_parallel_equals_one_rank_with_the_global_batch(cache, tmp_path, tmp_path_factory, loss):
    kw = dict(loss=loss, global_batch=16, steps=3, candidates=40)
    one = reference(tmp_path_factory, cache, **kw)
    two = run(tmp_path / "two.npz", cache, 2, mode="dp", **kw)
    close(two, one)
    assert np.array_equal(two["rows"], one["rows"])
    if loss == "dis":
        # the same draws: the same clusters and proposal after every step
        assert np.array_equal(two["assign"], one["assign"])
        np.testing.assert_allclose(two["mass"], one["mass"], rtol=1e-6, atol=1e-9)
        assert (one["rows"] < C).all(), "the plans were dense: the test must exercise the sampled columns"


@pytest.mark.parametrize("loss,nproc", [("dis", 2), ("dis", 4), ("full", 4), ("topk", 2)])
def test_sharded_head_equals_the_unsharded_one(cache, tmp_path, tmp_path_factory, loss, nproc):
    kw = dict(loss=loss, global_batch=16, steps=3, candidates=40)
    one = reference(tmp_path_factory, cache, **kw)
    many = run(tmp_path / "many.npz", cache, nproc, mode="shard", **kw)
    close(many, one)
    if loss == "dis":
        assert np.array_equal(many["assign"], one["assign"])
        close(many, one, keys=("total",))  # Σ of all head rows follows the table


def test_checkpoint_resumes_at_another_world_size(cache, tmp_path):
    kw = dict(loss="dis", global_batch=16, steps=5, candidates=40)
    ref = run(tmp_path / "ref.npz", cache, 1, **kw)
    ck = tmp_path / "ck"
    run(tmp_path / "a.npz", cache, 2, mode="shard", save_at=2, ckpt=ck, **kw)
    assert sorted(p.name for p in ck.iterdir()) == ["head-0-of-2.pt", "head-1-of-2.pt"]
    # 2 sharded ranks → 4 sharded ranks, and → one process
    four = run(tmp_path / "b.npz", cache, 4, mode="shard", load=ck, **kw)
    one = run(tmp_path / "c.npz", cache, 1, load=ck, **kw)
    for r in (four, one):
        close(r, ref, keys=("table", "backbone", "total"))
        np.testing.assert_allclose(r["losses"], ref["losses"][2:], rtol=1e-5)
        assert np.array_equal(r["assign"], ref["assign"])
