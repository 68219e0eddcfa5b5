"""`kdcache.CacheWriter` writes the cache `kdcache import` writes from the same logits: through the CPU
ranker (NumPy arrays, CPU torch tensors), through the torch ranker (`kdcache.torch.rank_logits` then
`add_ranked`), and byte for byte when fed the import ranker's own output (`kdcache.rank_logits`)."""

import numpy as np
import os

import pytest

from conftest import TEMPS, assert_same_cache, distinct_logits, manifest, random_labels

N, C, K = 600, 257, 12
BLOCK_ROWS, SHARD_ROWS = 50, 200
BATCH = 96  # does not divide the shard size: batches straddle shards
LAYOUTS = [(f, d) for f in ("kds", "parquet") for d in ("f16", "bf16", "f32")]
LAYOUT_IDS = [f"{f}-{d}" for f, d in LAYOUTS]

# a stored value's unit in the last place: significand bits and smallest normal exponent
MANTISSA = {"f16": 10, "bf16": 7, "f32": 23}
MIN_EXP = {"f16": -14, "bf16": -126, "f32": -126}


def ulp(x: np.ndarray, dtype: str) -> np.ndarray:
    a = np.abs(np.asarray(x, dtype=np.float64))
    e = np.floor(np.log2(np.maximum(a, 2.0 ** MIN_EXP[dtype])))
    return 2.0 ** (e - MANTISSA[dtype])


@pytest.fixture(scope="module")
def teacher():
    return distinct_logits(N, C, seed=21, scale=4.0), random_labels(N, C, seed=22)


@pytest.fixture(scope="module")
def imported(cli, teacher, tmp_path_factory):
    """`kdcache import` of the teacher's logits in every layout."""
    z, y = teacher
    base = tmp_path_factory.mktemp("imported")
    return {
        (f, d): cli.import_(base / f"{f}-{d}", z, labels=y, top_k=K, format=f, dtype=d, block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS)
        for f, d in LAYOUTS
    }


def write(kd, out, z, y, *, fmt, dtype, how, signature):
    """Writes the cache of logits z and labels y batch by batch, the way `how` names."""
    import torch

    import kdcache.torch as kt

    with kd.CacheWriter(
        out, num_classes=C, top_k=K, temperatures=TEMPS, teacher=signature["teacher"], dataset=signature["dataset"],
        format=fmt, dtype=dtype, block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS,
    ) as w:
        for lo in range(0, N, BATCH):
            hi = min(N, lo + BATCH)
            if how == "numpy":
                w.add_logits(lo, z[lo:hi], y[lo:hi])  # the first row; the batch's rows follow it
            elif how == "numpy-f64":
                w.add_logits(np.arange(lo, hi), z[lo:hi].astype(np.float64), list(y[lo:hi]))
            elif how == "torch":
                w.add_logits(torch.arange(lo, hi), torch.from_numpy(z[lo:hi]), torch.from_numpy(y[lo:hi]))
            elif how == "torch-ranker":
                ids, vals, lse, log_tail, prior = kt.rank_logits(torch.from_numpy(z[lo:hi]), K, TEMPS)
                w.add_ranked(np.arange(lo, hi), ids, vals, lse, log_tail, y[lo:hi], prior)
            else:
                raise AssertionError(how)
    assert w.manifest is not None and w.manifest == manifest(out)
    return out


def read_all(kd, path):
    cache = kd.Cache(path)
    return {t: cache.rows(np.arange(cache.num_rows), temperature=t, logits=True) for t in cache.temperatures}


# every layout through both rankers; the other ways into the CPU ranker in two layouts
WRITER_CASES = [(layout, how) for layout in LAYOUTS for how in ("numpy", "torch-ranker")] + [
    (layout, how) for layout in (("kds", "f16"), ("parquet", "bf16")) for how in ("numpy-f64", "torch")
]


@pytest.mark.parametrize("layout,how", WRITER_CASES, ids=[f"{f}-{d}-{h}" for (f, d), h in WRITER_CASES])
def test_writer_agrees_with_import(kd, cli, teacher, imported, tmp_path, layout, how):
    fmt, dtype = layout
    z, y = teacher
    ref = imported[layout]
    out = write(kd, tmp_path / "w", z, y, fmt=fmt, dtype=dtype, how=how, signature=manifest(ref)["signature"])

    cli.verify(out)
    assert kd.Cache(out).verify()["rows"] == N
    m, mr = manifest(out), manifest(ref)
    for key in ("rows", "examples", "classes", "top_k", "temperatures", "logit_dtype", "encoding", "block_rows", "signature", "format_version"):
        assert m[key] == mr[key], key
    assert [s["rows"] for s in m["shards"]] == [s["rows"] for s in mr["shards"]]
    assert m["stats"]["labeled_rows"] == mr["stats"]["labeled_rows"]
    np.testing.assert_allclose(m["stats"]["class_prior"], mr["stats"]["class_prior"], rtol=1e-5, atol=1e-12)

    got, want = read_all(kd, out), read_all(kd, ref)
    t0 = TEMPS[0]
    for t in TEMPS:
        a, b = got[t], want[t]
        np.testing.assert_array_equal(a.row, b.row)
        np.testing.assert_array_equal(a.label, b.label)
        np.testing.assert_array_equal(a.ids, b.ids)  # no ties in these logits
        # lse and log tail are summed in f64 by both rankers; the CPU one uses an f32 exp (relative
        # error < 3e-7 per term, so < 3e-7 absolute on a log of a sum of positive terms, < 6e-7 on the
        # difference of two), and each result is rounded to f32 (half an ulp: 6e-8 relative). So they
        # agree within 1e-6 absolute, or 1e-6 relative once |x| > 1.
        for name in ("lse", "log_tail"):
            x, r = getattr(a, name).astype(np.float64), getattr(b, name).astype(np.float64)
            fin = np.isfinite(r)
            np.testing.assert_array_equal(np.isfinite(x), fin)
            err = np.abs(x[fin] - r[fin])
            assert np.all(err <= 1e-6 * np.maximum(1, np.abs(r[fin]))), f"{how}, T={t}: {name} differs by {err.max():.3g}"
    # the stored value is T0·log p = z - T0·lse0 at T0, which rows() returns at T0 exactly: within one
    # unit of the dtype, plus T0 times the difference of the two rankers' lse0 (bounded above)
    va, vb = got[t0].logp.astype(np.float64) * t0, want[t0].logp.astype(np.float64) * t0
    carried = t0 * np.abs(got[t0].lse.astype(np.float64) - want[t0].lse)[:, None]
    err = np.abs(va - vb)
    tol = ulp(np.maximum(np.abs(va), np.abs(vb)), dtype) + carried
    assert np.all(err <= tol), f"{how}: stored values differ by up to {err.max():.3g}, {np.max(err - tol):.3g} more than allowed"
    if how != "torch-ranker":
        # the CPU path is import's own ranker: the same rows exactly
        for t in TEMPS:
            for name in ("ids", "logp", "logits", "lse", "log_tail"):
                np.testing.assert_array_equal(getattr(got[t], name), getattr(want[t], name), err_msg=f"{how}, T={t}: {name}")


@pytest.mark.parametrize("layout", LAYOUTS, ids=LAYOUT_IDS)
def test_add_ranked_of_import_ranker_is_byte_identical(kd, cli, teacher, imported, tmp_path, layout):
    fmt, dtype = layout
    z, y = teacher
    ref = imported[layout]
    sig = manifest(ref)["signature"]  # import binds the logits file's hash and the labels' fingerprint
    assert sig["teacher"].startswith("logits:") and sig["classes"] == f"C={C}" and sig["augmentation"] == "none"
    ids, vals, lse, log_tail, prior = kd.rank_logits(z, K, TEMPS)
    assert (ids.dtype, vals.dtype, lse.dtype, log_tail.dtype, prior.dtype) == (np.int32, np.float32, np.float32, np.float32, np.float64)
    assert ids.shape == vals.shape == (N, K) and lse.shape == log_tail.shape == (N, len(TEMPS)) and prior.shape == (C,)
    out = tmp_path / "w"
    with kd.CacheWriter(out, num_classes=C, top_k=K, temperatures=TEMPS, teacher=sig["teacher"], dataset=sig["dataset"],
                        format=fmt, dtype=dtype, block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS) as w:
        # import ranks chunks that end on shard boundaries, each with its own prior: so does this
        for lo in range(0, N, SHARD_ROWS):
            hi = min(N, lo + SHARD_ROWS)
            ids, vals, lse, log_tail, prior = kd.rank_logits(z[lo:hi], K, TEMPS)
            w.add_ranked(np.arange(lo, hi), ids, vals, lse, log_tail, labels=y[lo:hi], prior=prior)
    assert_same_cache(ref, out, ignore=["created_by"])
    cli.verify(out)


def test_rankers_agree(kd, teacher):
    """`kdcache.rank_logits` (import's ranker) and `kdcache.torch.rank_logits` (torch's) against each
    other and against the float64 definition."""
    import torch

    import kdcache.torch as kt

    z, _ = teacher
    z = z[:200]
    a = kd.rank_logits(z, K, TEMPS)
    b = kt.rank_logits(torch.from_numpy(z), K, TEMPS)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    z64 = z.astype(np.float64)
    np.testing.assert_array_equal(a[0], np.argsort(-z64, axis=1, kind="stable")[:, :K])
    for ti, t in enumerate(TEMPS):
        s = z64 / t
        m = s.max(axis=1, keepdims=True)
        lse = (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True)))[:, 0]
        for r in (a, b):
            assert np.all(np.abs(r[2][:, ti] - lse) <= 1e-6 * np.maximum(1, np.abs(lse)))
            p = np.exp(s - lse[:, None])
            tail = np.log(p.sum(axis=1) - np.take_along_axis(p, a[0].astype(np.int64), axis=1).sum(axis=1))
            assert np.all(np.abs(r[3][:, ti] - tail) <= 1e-6 * np.maximum(1, np.abs(tail)))
    prior = np.exp(z64 - (z64.max(1, keepdims=True) + np.log(np.exp(z64 - z64.max(1, keepdims=True)).sum(1, keepdims=True)))).sum(0)
    np.testing.assert_allclose(a[4], prior, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(b[4], prior, rtol=1e-12, atol=1e-15)


def test_ties_go_to_the_lower_class(kd):
    z = np.array([[1.0, 3.0, 3.0, -2.0, 3.0, 0.5, 0.5, 7.0]], dtype=np.float32)
    ids = kd.rank_logits(z, 4, (1.0,))[0]
    np.testing.assert_array_equal(ids, [[7, 1, 2, 4]])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float64"])
def test_add_logits_takes_every_torch_float_dtype(kd, tmp_path, dtype):
    """A CPU tensor of any float dtype is ranked as its float32 values (as `import` ranks .npy files)."""
    import torch

    z = torch.from_numpy(distinct_logits(100, 50, seed=23)).to(getattr(torch, dtype))
    kw = dict(num_classes=50, top_k=5, temperatures=TEMPS, teacher="t", dataset="d", block_rows=16, shard_rows=48)
    with kd.CacheWriter(tmp_path / "tensor", **kw) as w:
        for lo in range(0, 100, 30):
            w.add_logits(lo, z[lo:lo + 30])
    with kd.CacheWriter(tmp_path / "f32", **kw) as w:
        for lo in range(0, 100, 30):
            w.add_logits(lo, z[lo:lo + 30].float().numpy())
    assert_same_cache(tmp_path / "tensor", tmp_path / "f32")


def test_a_second_writer_on_one_directory_is_refused_until_the_first_closes(kd, tmp_path):
    """The directory lock `kdcache cache` and `import` take: a second writer is refused with one line
    naming the holder, and the directory is free again once the first writer is closed."""
    out = tmp_path / "locked"
    z = distinct_logits(20, C, seed=61)
    kw = dict(num_classes=C, top_k=K, temperatures=TEMPS, teacher="t", dataset="d")
    first = kd.CacheWriter(out, **kw)
    with pytest.raises(ValueError) as e:
        kd.CacheWriter(out, **kw)
    msg = str(e.value)
    assert "\n" not in msg and f"pid {os.getpid()}" in msg and "in use" in msg, msg
    first.add_logits(0, z)
    first.close()
    again = kd.CacheWriter(out, **kw)
    assert again.complete
    again.close()
