"""DistillHead and RowAdam against `kdcache train`'s own step: `kdcache step` writes, for a batch of a
cache, each estimator's loss, constant and gradients and the head after each row-wise Adam step (and
for `dis` the drawn columns and the sampler's state); the Python head computes the same batch from the
same table, features and seed and must agree within 1e-5. Also: `dis` with every class a column is
`full`, a resume from state_dict continues bit for bit, AMP bf16 stays within 1e-2, and bad input
raises one-line errors."""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import kdcache
import kdcache.torch as kt

ROWS, DIM, STEPS, SEED = 24, 7, 3, 7
C = 300

_DT = {"F32": np.float32, "F64": np.float64, "I64": np.int64}


def read_safetensors(path: Path):
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n :]
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=_DT[t["dtype"]]).reshape(t["shape"])
    return out, meta


@pytest.fixture(scope="module")
def cache(cli, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("head")
    cli.run("synth", "--quiet", "--out", d / "data", "--classes", C, "--dim", 8, "--train", 600, "--test", 50)
    cli.run("cache", "--quiet", "--teacher", d / "data" / "oracle.safetensors", "--data", d / "data", "--out", d / "cache", "--top-k", 4, "--tail-samples", 4, "--temperatures", "1,2")
    return d / "cache"


def fixture(cli, cache: Path, tmp: Path, loss: str, temperature: float, *extra) -> tuple:
    out = tmp / f"{loss}.safetensors"
    cli.run("step", "--quiet", "--cache", cache, "--loss", loss, "--rows", ROWS, "--dim", DIM, "--steps", STEPS, "--seed", SEED, "--temperature", temperature, *extra, "--out", out)
    t, meta = read_safetensors(out)
    return t, json.loads(meta["config"])


def head_for(cfg: dict, cache: Path) -> kt.DistillHead:
    kw = {}
    if cfg["loss"] == "dis":
        d = cfg["dis"]
        kw = dict(
            candidates=d["candidates"],
            reserve=d["reserve"],
            clusters=d["clusters"],
            uniform_share=d["uniform_share"],
            clip=float("inf") if d["clip"] is None else d["clip"],
            reassign=d["reassign"],
            dense_above=d["dense_above"],
            tail=d["tail"],
            proposal=d["proposal"],
        )
        if d["proposal"] == "prior":
            kw["prior"] = kdcache.Cache(cache).manifest["stats"]["class_prior"]
    return kt.DistillHead(cfg["classes"], cfg["dim"], cfg["loss"], cfg["temperature"], cfg["alpha"], seed=cfg["seed"], **kw)


def batch_of(cache: Path, n: int, temperature: float) -> dict:
    ds = kt.CacheDataset(kdcache.Cache(cache), None, temperature=temperature)
    return kt.collate(ds.__getitems__(list(range(n))))


def dense(g: torch.Tensor) -> torch.Tensor:
    return g.to_dense() if g.is_sparse else g


def close(got, want, what: str, tol: float = 1e-5) -> None:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    err = np.abs(got - want).max() / max(1.0, np.abs(want).max())
    assert err < tol, f"{what}: off by {err:.3g} (relative to max(1, |want|))"


# case: (temperature, extra `kdcache step` options)
CASES = {
    "full": (2, ()),
    "topk": (2, ()),
    "ghost": (2, ()),
    # tail samples drawn at the cache's first temperature, and reweighted to the second
    "rs": (1, ()),
    "rs-t2": (2, ()),
    # the sampled path (C = 300 is small: the default would switch to the dense step)
    "dis": (2, ("--candidates", 90, "--dis-dense-above", 2)),
    "dis-bucket": (2, ("--candidates", 90, "--dis-dense-above", 2, "--dis-tail", "bucket")),
    "dis-clipped": (2, ("--candidates", 60, "--dis-dense-above", 2, "--dis-clip", 1.5, "--dis-clusters", 5, "--dis-proposal", "clusters")),
    "dis-clusters": (2, ("--candidates", 90, "--dis-dense-above", 2, "--dis-proposal", "clusters")),
    "dis-prior": (2, ("--candidates", 90, "--dis-dense-above", 2, "--dis-proposal", "prior")),
    "dis-neyman": (2, ("--candidates", 90, "--dis-dense-above", 2, "--dis-proposal", "neyman", "--dis-clusters", 6)),
    # default options: the plan is dense here, the exact full step
    "dis-dense": (2, ()),
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_estimator_equals_the_trainer(cli, cache, tmp_path, case):
    loss = case.split("-")[0]
    temperature, extra = CASES[case]
    t, cfg = fixture(cli, cache, tmp_path, loss, temperature, *extra)
    head = head_for(cfg, cache)
    head.set_table(torch.from_numpy(t["head0"].copy()))
    if loss == "dis":
        assert np.array_equal(head.sampler.assignment(), t["assign0"]), "the sampler starts from other clusters"
    opt = kt.RowAdam(head.parameters(), lr=cfg["head_lr"])
    batch = batch_of(cache, ROWS, cfg["temperature"])
    h = torch.from_numpy(t["h"].copy()).requires_grad_(True)
    sparse_steps = 0
    for s in range(cfg["steps"]):
        out = head(h, batch)
        h.grad = None
        opt.zero_grad()
        out.loss.backward()
        close(out.loss.item(), t[f"s{s}.loss"][0], f"step {s} loss")
        close(out.constant, t[f"s{s}.constant"][0], f"step {s} constant")
        close(h.grad, t[f"s{s}.grad_h"], f"step {s} features' gradient")
        close(dense(head.weight.grad), t[f"s{s}.grad_head"], f"step {s} head gradient")
        if loss == "dis":
            assert bool(head.last_plan["dense"]) == bool(t[f"s{s}.dense"][0])
            if not head.last_plan["dense"]:
                sparse_steps += 1
                assert np.array_equal(head.last_plan["cols"], t[f"s{s}.cols"]), f"step {s}: other columns drawn"
                assert np.array_equal(head.last_plan["union"], t[f"s{s}.union"])
                np.testing.assert_allclose(head.last_plan["logw"], t[f"s{s}.logw"], rtol=1e-6)
        opt.step()
        close(head.weight.detach(), t[f"s{s}.head"], f"step {s} head after the update")
        if loss == "dis":
            assert np.array_equal(head.sampler.assignment(), t[f"s{s}.assign"]), f"step {s}: other clusters"
            np.testing.assert_allclose(head.sampler.mass, t[f"s{s}.mass"], rtol=1e-5, atol=1e-9)
    if loss == "dis" and case != "dis-dense":
        assert sparse_steps == cfg["steps"], "the dis fixture must exercise the sampled path"
    if case == "dis-dense":
        assert sparse_steps == 0


def _batch(b=6, k=5, c=C, seed=0, temperature=2.0):
    rng = np.random.default_rng(seed)
    ids = np.stack([rng.choice(c, k, replace=False) for _ in range(b)])
    z = rng.normal(size=(b, c)) * 2
    lp = z / temperature - np.log(np.exp(z / temperature).sum(1, keepdims=True))
    logp = np.take_along_axis(lp, ids, 1)
    label = np.where(np.arange(b) % 3 == 0, -1, np.where(np.arange(b) % 3 == 1, ids[:, 0], (ids[:, 0] + 1) % c))
    return dict(ids=torch.tensor(ids), logp=torch.tensor(logp, dtype=torch.float32), log_tail=torch.tensor(np.log1p(-np.exp(logp).sum(1)), dtype=torch.float32), label=torch.tensor(label), temperature=torch.tensor(temperature, dtype=torch.float64), num_classes=torch.tensor(c))


def _grads(head, batch, h0):
    h = h0.clone().requires_grad_(True)
    out = head(h, batch)
    out.loss.backward()
    return out, h.grad, dense(head.weight.grad)


@pytest.mark.parametrize("tail,ref", [("spread", "full"), ("bucket", "ghost")])
def test_dis_with_every_class_a_column_is_the_exact_estimator(tail, ref):
    batch = _batch()
    h0 = torch.randn(6, DIM, generator=torch.Generator().manual_seed(1))
    a = _grads(kt.DistillHead(C, DIM, "dis", 2.0, 0.7, candidates=C, dense_above=2.0, tail=tail, seed=3), batch, h0)
    b = _grads(kt.DistillHead(C, DIM, ref, 2.0, 0.7, seed=3), batch, h0)
    close(a[0].loss.item(), b[0].loss.item(), "loss", 1e-6)
    close(a[0].constant, b[0].constant, "constant", 1e-9)
    close(a[1], b[1], "features' gradient", 1e-6)
    close(a[2], b[2], "head gradient", 1e-6)
    # and the default switch to the dense step gives it exactly
    c = _grads(kt.DistillHead(C, DIM, "dis", 2.0, 0.7, candidates=C, tail=tail, seed=3), batch, h0)
    assert c[0].loss.item() == b[0].loss.item()
    assert torch.equal(c[2], b[2])


@pytest.mark.parametrize("loss", ["dis", "full", "topk"])
def test_state_dict_resumes_bit_for_bit(loss):
    def steps(head, opt, n, start):
        out = []
        for s in range(start, start + n):
            h = torch.randn(8, DIM, generator=torch.Generator().manual_seed(100 + s))
            o = head(h, _batch(8, 5, seed=s))
            opt.zero_grad()
            o.loss.backward()
            opt.step()
            out.append(o.loss.item())
        return out

    mk = lambda: kt.DistillHead(C, DIM, loss, 2.0, 0.8, candidates=60, clusters=6, reassign=40, proposal="clusters", seed=9)
    a = mk()
    oa = kt.RowAdam(a.parameters(), lr=1e-2)
    steps(a, oa, 3, 0)
    saved = copy.deepcopy((a.state_dict(), oa.state_dict()))
    tail_a = steps(a, oa, 4, 3)
    b = mk()
    ob = kt.RowAdam(b.parameters(), lr=1e-2)
    b.load_state_dict(saved[0])
    ob.load_state_dict(saved[1])
    tail_b = steps(b, ob, 4, 3)
    assert tail_a == tail_b
    assert torch.equal(a.weight, b.weight)
    if loss == "dis":
        assert np.array_equal(a.sampler.assignment(), b.sampler.assignment())
        assert torch.equal(a.dis_total, b.dis_total)


@pytest.mark.parametrize("loss", ["dis", "full"])
def test_bf16_autocast_stays_close_to_float32(loss):
    torch.manual_seed(0)
    backbone = torch.nn.Linear(10, DIM)
    x = torch.randn(6, 10)
    batch = _batch()
    head = kt.DistillHead(C, DIM, loss, 2.0, 0.8, candidates=60, seed=1)
    head.eval()  # the same draws twice
    ref = head(backbone(x), batch).loss.item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        f = backbone(x)
        assert f.dtype == torch.bfloat16
        out = head(f, batch)
    assert out.loss.dtype == torch.float32
    assert abs(out.loss.item() - ref) < 1e-2 * max(1.0, abs(ref))
    out.loss.backward()
    assert backbone.weight.grad is not None and torch.isfinite(backbone.weight.grad).all()


def test_another_optimiser_still_keeps_the_dis_state_exact():
    head = kt.DistillHead(C, DIM, "dis", 2.0, 0.8, candidates=60, seed=1)
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    out = head(torch.randn(6, DIM), _batch(seed=0))
    opt.zero_grad()
    out.loss.backward()
    opt.step()
    with pytest.warns(UserWarning, match="RowAdam"):
        head(torch.randn(6, DIM), _batch(seed=5))
    torch.testing.assert_close(head.dis_total, head.weight.detach().double().sum(0))


def test_row_adam_counts_steps_per_row_and_differs_from_sparse_adam():
    w0 = torch.randn(5, 3)
    a = torch.nn.Parameter(w0.clone())
    b = torch.nn.Parameter(w0.clone())
    oa, ob = kt.RowAdam([a], lr=0.1), torch.optim.SparseAdam([b], lr=0.1)
    for s, rows in enumerate([[0, 1], [0], [0, 3]]):
        for p in (a, b):
            idx = torch.tensor(rows)
            g = torch.sparse_coo_tensor(idx[None], torch.ones(len(rows), 3) * (s + 1), (5, 3))
            p.grad = g
        oa.step()
        ob.step()
    assert oa.state[a]["step"].tolist() == [3.0, 1.0, 0.0, 1.0, 0.0]
    # row 3 first moves at the third step: RowAdam's bias correction is its own first step (a step of
    # lr), SparseAdam's the third's
    torch.testing.assert_close((w0[3] - a[3]).detach(), torch.full((3,), 0.1))
    assert not torch.allclose((w0[3] - b[3]).detach(), torch.full((3,), 0.1))
    assert torch.equal(a[2], w0[2]) and torch.equal(a[4], w0[4])


def test_bad_input_raises_one_line_errors():
    head = kt.DistillHead(C, DIM, "dis", 2.0, seed=1)
    h = torch.randn(6, DIM)
    cases = [
        (lambda: head(torch.randn(6, DIM + 1), _batch()), ValueError, "features have shape"),
        (lambda: head(h, _batch(c=C + 5)), ValueError, "classes"),
        (lambda: head(h, _batch(temperature=4.0)), ValueError, "temperature"),
        (lambda: head(torch.randn(5, DIM), _batch()), ValueError, "feature rows"),
        (lambda: kt.DistillHead(C, DIM, "rs")(h, _batch()), ValueError, "tail samples"),
        (lambda: kt.DistillHead(C, DIM, "nope"), ValueError, "use one of"),
        (lambda: kt.DistillHead(C, DIM, "dis", clip=0.5), ValueError, "clip"),
        (lambda: kt.DistillHead(C, DIM, "dis", candidates=C + 1), ValueError, "candidates"),
        (lambda: head(h, {"ids": torch.tensor([[C + 3] * 5] * 6), "logp": torch.zeros(6, 5), "log_tail": torch.zeros(6), "label": torch.zeros(6, dtype=torch.int64)}), ValueError, "outside"),
        (lambda: head(h, {}), ValueError, "no 'ids'"),
        (lambda: kt.RowAdam(head.parameters(), lr=-1), ValueError, "lr"),
    ]
    for f, exc, text in cases:
        with pytest.raises(exc) as e:
            f()
        msg = str(e.value)
        assert text in msg, msg
        assert "\n" not in msg, msg


def test_from_cache_refuses_rs_without_tail_samples(cli, tmp_path):
    from conftest import distinct_logits

    c = cli.import_(tmp_path / "c", distinct_logits(40, 50, 1), top_k=5, temperatures=(1.0, 2.0))
    cache = kdcache.Cache(c)
    with pytest.raises(ValueError, match="tail samples"):
        kt.DistillHead.from_cache(cache, DIM, "rs")
    head = kt.DistillHead.from_cache(cache, DIM, "dis", temperature=2.0)
    assert (head.num_classes, head.temperature) == (50, 2.0)


def test_row_adam_torch_path_equals_the_host_kernel(monkeypatch):
    """The torch-op update (what runs on a GPU) and the core's host loop (CPU tables) agree, sparse and
    dense, and both report the same Σ of the changes to a dis head."""
    import kdcache.head as kh

    def run(host: bool):
        monkeypatch.setattr(kh, "_HOST_KERNEL", host)
        head = kt.DistillHead(C, DIM, "dis", 2.0, 0.8, candidates=60, seed=4)
        opt = kt.RowAdam(head.parameters(), lr=1e-2)
        for s in range(4):
            h = torch.randn(8, DIM, generator=torch.Generator().manual_seed(s))
            out = head(h, _batch(8, 5, seed=s))
            opt.zero_grad()
            out.loss.backward()
            opt.step()
        w = torch.nn.Parameter(torch.randn(7, 3, generator=torch.Generator().manual_seed(9)))
        ow = kt.RowAdam([w], lr=0.05)
        for s in range(3):
            w.grad = torch.randn(7, 3, generator=torch.Generator().manual_seed(20 + s))
            ow.step()
        return head.weight.detach().clone(), head.dis_total.clone(), w.detach().clone()

    a, b = run(True), run(False)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
