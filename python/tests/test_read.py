"""`kdcache.Cache` reads what `kdcache dump --json` prints, field by field, for both encodings and every
stored dtype; and its probabilities are the teacher's exact softmax within the dtype's precision."""

import json

import numpy as np
import pytest

from conftest import TEMPS, distinct_logits, random_labels

N, C, K = 700, 301, 16
BLOCK_ROWS, SHARD_ROWS = 64, 256
LAYOUTS = [(f, d) for f in ("kds", "parquet") for d in ("f16", "bf16", "f32")]


@pytest.fixture(scope="module", params=LAYOUTS, ids=[f"{f}-{d}" for f, d in LAYOUTS])
def imported(request, cli, tmp_path_factory):
    """A cache written by `kdcache import` (3 shards, 11 blocks) and its `dump --json`."""
    fmt, dtype = request.param
    z = distinct_logits(N, C, seed=11)
    y = random_labels(N, C, seed=12)
    path = cli.import_(tmp_path_factory.mktemp("read") / f"{fmt}-{dtype}", z, labels=y, top_k=K, format=fmt, dtype=dtype, block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS)
    return fmt, dtype, path, cli.dump(path)


def random_indices(n: int, seed: int) -> np.ndarray:
    """Random cache positions in random order, with repeats, and both ends."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=500)
    idx[10:20] = idx[3]
    return np.concatenate([idx, [0, n - 1, n - 1, 0]])


def test_rows_equal_dump(kd, imported):
    fmt, dtype, path, dump = imported
    cache = kd.Cache(path)
    rows = dump["rows"]
    assert len(rows) == N
    idx = random_indices(N, seed=1)
    want = [rows[i] for i in idx]
    for ti, t in enumerate(TEMPS):
        r = cache.rows(idx, temperature=t, logits=True)
        assert len(r) == len(idx) and r.temperature == t
        assert (r.row.dtype, r.view.dtype, r.label.dtype, r.ids.dtype) == (np.uint64, np.uint32, np.int64, np.int32)
        assert (r.logp.dtype, r.lse.dtype, r.log_tail.dtype, r.logits.dtype) == (np.float32,) * 4
        assert r.ids.shape == r.logp.shape == r.logits.shape == (len(idx), K)
        np.testing.assert_array_equal(r.row, [w["row"] for w in want])
        np.testing.assert_array_equal(r.view, [w["view"] for w in want])
        np.testing.assert_array_equal(r.label, [w["label"] for w in want])
        np.testing.assert_array_equal(r.ids, [[x["class"] for x in w["ranks"]] for w in want])
        # dump prints f32 logits and lse exactly (shortest round-trip form): equal bit for bit
        np.testing.assert_array_equal(r.logits, np.array([[x["logit"] for x in w["ranks"]] for w in want], dtype=np.float32))
        np.testing.assert_array_equal(r.lse, np.array([w["lse"][ti] for w in want], dtype=np.float32))
        # dump prints p = exp(log p) in f64; the reader rounds log p to f32, which moves p by at most
        # half an f32 ulp of log p, relatively
        p = np.array([[x["p"][ti] for x in w["ranks"]] for w in want])
        lp = r.logp.astype(np.float64)
        err = np.abs(np.exp(lp) - p)
        tol = p * (0.5 * np.abs(np.spacing(r.logp)).astype(np.float64) + 1e-12)
        assert np.all(err <= tol), f"T={t}: exp(logp) differs from dump's p by up to {np.max(err / np.maximum(p, 1e-300)):.3g} (relative)"
        assert np.all(r.logp <= 0)
        tail = np.array([w["tail_mass"][ti] for w in want])
        np.testing.assert_allclose(np.exp(r.log_tail.astype(np.float64)), tail, rtol=1e-14, atol=0)
        np.testing.assert_allclose(r.p, np.exp(r.logp), rtol=1e-6)
        np.testing.assert_allclose(r.tail_mass, np.exp(r.log_tail), rtol=1e-6)
    # without logits=True there are none; the default temperature is the first
    r = cache.rows(idx[:5])
    assert r.logits is None and r.temperature == TEMPS[0]
    np.testing.assert_array_equal(r.logp, cache.rows(idx[:5], temperature=TEMPS[0]).logp)


def test_indices_of_any_integer_kind(kd, imported):
    _, _, path, _ = imported
    cache = kd.Cache(path)
    import torch

    want = cache.rows(np.array([5, 0, 699, 64], dtype=np.int64)).ids
    for idx in ([5, 0, 699, 64], np.array([5, 0, 699, 64], dtype=np.uint16), np.array([5, 0, 699, 64], dtype=np.int32), torch.tensor([5, 0, 699, 64])):
        np.testing.assert_array_equal(cache.rows(idx).ids, want)
    np.testing.assert_array_equal(cache.rows(range(60, 70)).row, np.arange(60, 70))
    empty = cache.rows([])
    assert len(empty) == 0 and empty.ids.shape == (0, K)


def test_properties_equal_manifest(kd, imported, cli):
    fmt, dtype, path, dump = imported
    cache = kd.Cache(path)
    on_disk = json.loads((path / "_manifest.json").read_text())
    summary = dump["manifest"]
    m = cache.manifest
    assert {k: v for k, v in m.items() if k != "stats"} == {k: v for k, v in on_disk.items() if k != "stats"}
    np.testing.assert_allclose(m["stats"]["class_prior"], on_disk["stats"]["class_prior"], rtol=1e-15, atol=0)
    assert cache.num_rows == len(cache) == on_disk["rows"] == summary["rows"] == N
    assert cache.num_classes == summary["classes"] == C
    assert cache.top_k == summary["top_k"] == K
    assert cache.temperatures == tuple(summary["temperatures"]) == TEMPS
    assert cache.dtype == summary["logit_dtype"] == dtype
    assert cache.encoding == summary["encoding"] == fmt
    assert cache.signature == summary["signature"]
    assert cache.block_rows == summary["block_rows"] == BLOCK_ROWS
    # blocks: each shard cut into block_rows pieces
    starts = [s["first_row"] + j for s in on_disk["shards"] for j in range(0, s["rows"], BLOCK_ROWS)] + [N]
    assert cache.block_starts.dtype == np.uint64
    np.testing.assert_array_equal(cache.block_starts, starts)
    assert cache.num_blocks == len(starts) - 1 == 11
    # the manifest is a copy
    cache.manifest["rows"] = 0
    assert cache.num_rows == N


def test_manifest_is_the_file_exactly(kd, imported):
    """`Cache.manifest` is `_manifest.json` as it is, every float to the last bit (the file holds
    shortest round-trip decimals, so reading them back must give the same doubles)."""
    _, _, path, _ = imported
    on_disk = json.loads((path / "_manifest.json").read_text())
    got = kd.Cache(path).manifest
    a, b = np.array(got["stats"]["class_prior"]), np.array(on_disk["stats"]["class_prior"])
    assert np.array_equal(a, b), f"{np.sum(a != b)} of {a.size} class_prior entries differ, e.g. {a[a != b][:2].tolist()} vs {b[a != b][:2].tolist()}"
    assert got == on_disk


def test_verify_counts(kd, imported):
    _, _, path, dump = imported
    rep = kd.Cache(path).verify()
    assert rep["shards"] == dump["manifest"]["shards"] == 3
    assert rep["blocks"] == 11 and rep["rows"] == N
    assert rep["bytes"] == dump["manifest"]["bytes"]


def test_block_cache_budget(kd, imported):
    _, _, path, _ = imported
    small = kd.Cache(path, block_cache_bytes=1)  # nothing fits: every read decodes
    big = kd.Cache(path, threads=1)
    idx = random_indices(N, seed=2)
    a, b = small.rows(idx), big.rows(idx)
    for k in ("row", "ids", "logp", "lse", "log_tail"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert small.block_cache_usage() == (0, 1)
    used, budget = big.block_cache_usage()
    assert 0 < used <= budget


def test_pickle_reopens(kd, imported):
    import pickle

    _, _, path, _ = imported
    cache = kd.Cache(path)
    again = pickle.loads(pickle.dumps(cache))
    assert again.path == cache.path and again.manifest == cache.manifest
    np.testing.assert_array_equal(again.rows([3, 1]).logp, cache.rows([3, 1]).logp)


# ---------------------------------------------------------------------------------------------------
# against the exact softmax


def logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(axis=1, keepdims=True)
    return (m + np.log(np.exp(x - m).sum(axis=1, keepdims=True)))[:, 0]


# half an ulp, relative: the rounding of a stored value (11, 8 and 24 significant bits)
EPS = {"f16": 2.0**-11, "bf16": 2.0**-8, "f32": 2.0**-24}


@pytest.mark.parametrize(
    "fmt,dtype,k,temps",
    [(f, d, k, TEMPS) for f in ("kds", "parquet") for d in ("f16", "bf16", "f32") for k in (8, 60)]
    + [("kds", d, 8, (2.0, 0.5, 1.0)) for d in ("f16", "bf16", "f32")]  # T0 = 2: values stored as 2·log p at T = 2
    + [("parquet", "f16", 1, (0.7, 3.0))],
)
def test_probabilities_equal_exact_softmax(kd, cli, tmp_path, fmt, dtype, k, temps):
    n, c = 40, 60
    z64 = np.random.default_rng(3).standard_normal((n, c)) * 4.0  # float64, as NumPy makes them
    cache = kd.Cache(cli.import_(tmp_path / "c", z64, top_k=k, temperatures=temps, format=fmt, dtype=dtype, block_rows=16, shard_rows=32))
    assert cache.temperatures == temps
    z = z64.astype(np.float32).astype(np.float64)  # import ranks float64 logits as float32
    ids = np.argsort(-z, axis=1, kind="stable")[:, :k]
    t0 = float(np.float32(temps[0]))
    lse0 = logsumexp(z / t0)
    # the stored value is T0·log p at T0, rounded to the dtype
    v = np.take_along_axis(z - t0 * lse0[:, None], ids, axis=1)
    for temp in temps:
        t = float(np.float32(temp))  # temperatures are stored, and used, as float32
        lse = logsumexp(z / t)
        logp = z / t - lse[:, None]
        r = cache.rows(np.arange(n), temperature=temp)
        np.testing.assert_array_equal(r.ids, ids)
        np.testing.assert_array_equal(r.row, np.arange(n))
        assert np.all(np.abs(r.lse - lse) <= 1e-6 * np.maximum(1, np.abs(lse))), f"T={t}: lse off by {np.max(np.abs(r.lse - lse)):.3g}"
        # the dtype's rounding of T0·log p, carried to T; then f32 lse and f32 log p
        tol = EPS[dtype] * np.abs(v) / t + 2e-6 * (1 + np.abs(lse0)[:, None] * t0 / t + np.abs(lse)[:, None])
        err = np.abs(r.logp - np.take_along_axis(logp, ids, axis=1))
        assert np.all(err <= tol), f"T={t}: log p off by {np.max(err):.3g} where {tol.ravel()[np.argmax(err - tol)]:.3g} is allowed"
        p_ref = np.exp(logp)
        tail_ref = p_ref.sum(axis=1) - np.take_along_axis(p_ref, ids, axis=1).sum(axis=1)
        if k == c:
            assert np.all(r.log_tail == -np.inf) and np.all(r.tail_mass == 0)
        else:
            lt = np.log(tail_ref)
            assert np.all(np.abs(r.log_tail - lt) <= 1e-6 * np.maximum(1, np.abs(lt))), f"T={t}: log tail off by {np.max(np.abs(r.log_tail - lt)):.3g}"
        total = r.p.astype(np.float64).sum(axis=1) + r.tail_mass.astype(np.float64)
        allowed = (r.p * tol).sum(axis=1) + 1e-6
        assert np.all(np.abs(total - 1) <= allowed), f"T={t}: Σp + tail mass = {total[np.argmax(np.abs(total - 1))]!r}"
