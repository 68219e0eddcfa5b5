"""A cache built under torchrun (examples/cache_torchrun.py: one teacher replica per rank writing its part,
rank 0 joining the parts with `kdcache.merge`) equals the cache one process writes from the same data;
`kdcache.merge` refuses parts that do not tile one build."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, TEMPS, distinct_logits, manifest

pytest.importorskip("torch")

SCRIPT = REPO / "examples" / "cache_torchrun.py"
# 960 examples in batches of 96: each rank's share (0..480, 480..960) starts on a batch boundary of the
# one-process run, so both runs feed the teacher the same batches (float32 matmuls depend on the batch)
N, C, K, BATCH = 960, 300, 8, 96
ARGS = ["--examples", N, "--classes", C, "--top-k", K, "--batch-size", BATCH, "--temperatures", ",".join(f"{t:g}" for t in TEMPS),
        "--block-rows", 64, "--shard-rows", 200, "--device", "cpu"]
# the manifest keys that say how a cache was put together rather than what it holds (it has no
# timestamps; its only paths are the shard files' names)
PROVENANCE = ("created_by", "shards", "part")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, cwd, timeout=300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RAYON_NUM_THREADS="2")
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(str(c) for c in cmd)} exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(the torchrun-built cache, the one-process cache, torchrun's output)."""
    tmp = tmp_path_factory.mktemp("torchrun")
    dist = run([sys.executable, "-m", "torch.distributed.run", "--nnodes", 1, "--nproc_per_node", 2, "--master_addr", "127.0.0.1",
                "--master_port", free_port(), SCRIPT, "--out", tmp / "dist", *ARGS], cwd=tmp)
    run([sys.executable, SCRIPT, "--out", tmp / "single", *ARGS], cwd=tmp)
    return tmp / "dist", tmp / "single", dist.stdout + dist.stderr


def comparable(m: dict) -> dict:
    m = json.loads(json.dumps(m))
    for k in PROVENANCE:
        m.pop(k, None)
    return m


def test_torchrun_cache_equals_one_process(kd, cli, built):
    dist, single, log = built
    assert "merged 2 parts" in log, log
    for rank in (0, 1):
        assert f"[rank {rank}/2] examples" in log, log
    assert not (dist.parent / "dist.parts").exists(), "the parts were not removed after the merge"

    a, b = kd.Cache(dist), kd.Cache(single)
    assert a.num_rows == b.num_rows == N
    assert a.verify()["rows"] == N and b.verify()["rows"] == N
    cli.verify(dist)
    assert len(a.manifest["shards"]) == 6  # 480 rows per part in shards of 200: 3 per part (one-process: 5)

    idx = np.arange(N)
    for t in TEMPS:
        ra, rb = a.rows(idx, temperature=t, logits=True), b.rows(idx, temperature=t, logits=True)
        for name in ("row", "label", "ids", "logp", "logits", "lse", "log_tail"):
            np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name), err_msg=f"T={t}: {name}")
    np.testing.assert_array_equal(a.rows(idx).row, idx)

    ma, mb = comparable(manifest(dist)), comparable(manifest(single))
    assert manifest(dist)["part"] is None
    sa, sb = ma.pop("stats"), mb.pop("stats")
    assert ma == mb
    # the class prior: the parts' priors weighted by their rows, against one sum over all rows (the
    # same values, added in another order)
    pa, pb = np.array(sa.pop("class_prior")), np.array(sb.pop("class_prior"))
    assert pa.shape == pb.shape == (C,)
    np.testing.assert_allclose(pa, pb, rtol=1e-12, atol=0)
    assert abs(pa.sum() - 1) < 1e-9
    assert sa.keys() == sb.keys()
    for k in sa:
        if isinstance(sa[k], float):
            assert sa[k] == pytest.approx(sb[k], rel=1e-12), k
        else:
            assert sa[k] == sb[k], k


def test_torchrun_rerun_is_a_no_op(built, tmp_path):
    dist, _, _ = built
    before = manifest(dist)
    r = run([sys.executable, "-m", "torch.distributed.run", "--nnodes", 1, "--nproc_per_node", 2, "--master_addr", "127.0.0.1",
             "--master_port", free_port(), SCRIPT, "--out", dist, *ARGS], cwd=tmp_path)
    assert "already holds a cache" in r.stdout + r.stderr
    assert manifest(dist) == before


# ---------------------------------------------------------------------------------------------------
# kdcache.merge on its own


def write_part(kd, out, z, i, n, **kw):
    lo, hi = (0, len(z)) if n is None else kd.part_range(len(z), i, n)
    part = None if n is None else (i, n)
    with kd.CacheWriter(out, num_classes=z.shape[1], top_k=4, temperatures=(1.0,), teacher="t@1", dataset="d@1",
                        num_examples=len(z), block_rows=16, shard_rows=32, part=part, **kw) as w:
        w.add_logits(np.arange(lo, hi), z[lo:hi])
    return out


@pytest.fixture()
def parts3(kd, tmp_path):
    z = distinct_logits(90, 20, seed=7)
    return z, [write_part(kd, tmp_path / f"p{i}", z, i, 3) for i in range(3)]


def one_line(e) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def test_merge_joins_parts(kd, cli, parts3, tmp_path):
    z, parts = parts3
    m = kd.merge([str(p) for p in parts[::-1]], tmp_path / "all")  # any order, str or PathLike
    assert m["rows"] == m["examples"] == 90 and m["part"] is None
    assert m == manifest(tmp_path / "all")
    c = kd.Cache(tmp_path / "all")
    np.testing.assert_array_equal(c.rows(np.arange(90)).row, np.arange(90))
    cli.verify(tmp_path / "all")
    # a second merge into the same directory needs overwrite=True
    with pytest.raises(kd.SignatureError) as e:
        kd.merge(parts, tmp_path / "all")
    assert "already holds a cache" in one_line(e)
    assert kd.merge(parts, tmp_path / "all", overwrite=True)["rows"] == 90


def test_merge_refuses_parts_that_do_not_tile(kd, parts3, tmp_path):
    z, parts = parts3
    with pytest.raises(ValueError) as e:
        kd.merge([parts[0], parts[2]], tmp_path / "gap")
    assert "parts do not tile: expected part 1/3, found 2/3" in one_line(e)
    with pytest.raises(ValueError) as e:
        kd.merge([parts[0], parts[1], parts[1]], tmp_path / "twice")
    assert "parts do not tile" in one_line(e)
    with pytest.raises(ValueError) as e:
        kd.merge(parts[:2], tmp_path / "short")
    assert "2 parts given, the build has 3" in one_line(e)
    other = write_part(kd, tmp_path / "q1", z, 1, 2)  # a part of another split of the data
    with pytest.raises(ValueError) as e:
        kd.merge([parts[0], other], tmp_path / "mixed")
    assert "parts do not tile" in one_line(e)
    whole = write_part(kd, tmp_path / "whole", z, 0, None)
    with pytest.raises(ValueError) as e:
        kd.merge([whole], tmp_path / "notapart")
    assert "not a part cache" in one_line(e)
    with pytest.raises(ValueError) as e:
        kd.merge([], tmp_path / "none")
    assert "at least one part" in one_line(e)
    with pytest.raises(FileNotFoundError):
        kd.merge([tmp_path / "missing"], tmp_path / "nothing")
    for d in ("gap", "twice", "short", "mixed", "notapart", "none"):
        assert not (tmp_path / d / "_manifest.json").exists(), d
