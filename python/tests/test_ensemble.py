"""An ensemble's cache (`kdcache cache --teacher a --teacher b --teacher-weights …`) holds the mixture of
the teachers' tempered distributions, p_T = Σ_i w_i softmax(z_i / T), at every cached temperature: its
rows, read through the Python package, against a NumPy reference built from the members' own logits
(recovered from single-teacher caches with K = C), within the stored dtype's precision; the top-K and the
tail mass summing to one; the manifest's member agreements against NumPy's."""

from __future__ import annotations

import json

import numpy as np
import pytest

C, N = 12, 300
TEMPS = (1.0, 2.0, 4.0)
W = (1.0, 3.0)


@pytest.fixture(scope="module")
def world(cli, tmp_path_factory):
    d = tmp_path_factory.mktemp("ensemble")
    # features of dim C: the identity teacher reads them as logits; the oracle is the Bayes teacher
    cli.run("synth", "--quiet", "--out", d / "data", "--classes", C, "--dim", C, "--train", N, "--test", 50, "--group", 3)
    teachers = ["identity", str(d / "data" / "oracle.safetensors")]
    logits = []
    for i, t in enumerate(teachers):
        out = d / f"member{i}"
        cli.run("cache", "--quiet", "--teacher", t, "--data", d / "data", "--out", out, "--top-k", C, "--temperatures", "1", "--dtype", "f32")
        logits.append(out)
    args = ["--teacher", teachers[0], "--teacher", teachers[1], "--teacher-weights", ",".join(f"{w:g}" for w in W)]
    caches = {}
    for dtype in ("f32", "f16"):
        out = d / f"mix-{dtype}"
        cli.run("cache", "--quiet", *args, "--data", d / "data", "--out", out, "--top-k", 4, "--temperatures", ",".join(f"{t:g}" for t in TEMPS), "--dtype", dtype)
        cli.verify(out)
        caches[dtype] = out
    labels = np.load(d / "data" / "train_y.npy")
    return d, logits, caches, labels


def member_logits(kd, path):
    """The member's logits up to a per-row shift (softmax is blind to it): log p + lse at T = 1, K = C."""
    r = kd.Cache(path).rows(np.arange(N), temperature=1.0)
    z = np.empty((N, C), dtype=np.float64)
    np.put_along_axis(z, np.asarray(r.ids, dtype=np.int64), np.asarray(r.logp, dtype=np.float64) + np.asarray(r.lse, dtype=np.float64)[:, None], axis=1)
    return z


def softmax(z, t):
    a = z / t
    a = a - a.max(axis=1, keepdims=True)
    e = np.exp(a)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("dtype", ["f32", "f16"])
def test_rows_are_the_mixture_of_tempered_distributions(kd, world, dtype):
    _, members, caches, _ = world
    zs = [member_logits(kd, m) for m in members]
    w = np.array(W) / sum(W)
    cache = kd.Cache(caches[dtype])
    assert cache.num_classes == C and cache.temperatures == TEMPS
    ids0 = None
    for t in TEMPS:
        ref = sum(wi * softmax(z, t) for wi, z in zip(w, zs))
        r = cache.rows(np.arange(N), temperature=t)
        ids = np.asarray(r.ids, dtype=np.int64)
        if ids0 is None:
            ids0 = ids
            # the ids are the mixture's top-K at the first temperature, best first
            want = np.argsort(-ref, axis=1, kind="stable")[:, :4]
            np.testing.assert_array_equal(np.take_along_axis(ref, ids, 1), np.take_along_axis(ref, want, 1))
        np.testing.assert_array_equal(ids, ids0)  # the same ids at every temperature
        logp = np.asarray(r.logp, dtype=np.float64)
        got_logp_ref = np.log(np.take_along_axis(ref, ids, 1))
        if dtype == "f32":
            np.testing.assert_allclose(logp, got_logp_ref, rtol=1e-5, atol=1e-6)
        else:
            # a 16-bit float holds T·log p within half an ulp: 2^-11 of its magnitude
            tol = 2.0**-10 * np.abs(got_logp_ref) + 1e-6
            assert np.all(np.abs(logp - got_logp_ref) <= tol), np.max(np.abs(logp - got_logp_ref) - tol)
        tail_ref = 1.0 - np.take_along_axis(ref, ids, 1).sum(axis=1)
        tail = np.exp(np.asarray(r.log_tail, dtype=np.float64))
        np.testing.assert_allclose(tail, tail_ref, rtol=1e-4, atol=1e-7)
        total = np.exp(logp).sum(axis=1) + tail
        eps = 1e-5 if dtype == "f32" else 2e-3
        assert np.all(np.abs(total - 1.0) <= eps), np.max(np.abs(total - 1.0))
        np.testing.assert_array_equal(np.asarray(r.lse), 0.0)


def test_manifest_records_the_members(kd, world):
    _, members, caches, labels = world
    m = kd.Cache(caches["f32"]).manifest
    assert m["format_version"] == 4
    ens = m["ensemble"]
    assert [e["weight"] for e in ens] == [0.25, 0.75]
    assert m["signature"]["teacher"].startswith("ensemble(0.25*identity+0.75*xxh3:")
    zs = [member_logits(kd, p) for p in members]
    top1 = np.asarray(kd.Cache(caches["f32"]).rows(np.arange(N)).ids)[:, 0]
    known = labels >= 0
    for e, z in zip(ens, zs):
        a = z.argmax(axis=1)
        assert e["top1_agreement"] == pytest.approx((a[known] == labels[known]).mean(), abs=1e-12)
        assert e["mixture_agreement"] == pytest.approx((a == top1).mean(), abs=1e-12)
    # the members' own caches fingerprint the same teachers the ensemble names
    for e, p in zip(ens, members):
        assert json.loads((p / "_manifest.json").read_text())["signature"]["teacher"].startswith(e["teacher"])
