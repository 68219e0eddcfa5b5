"""Bad input raises the documented exception with a one-line message, and never takes the interpreter
down: every case runs in a fresh interpreter (an abort or a segfault fails the test)."""

import json

import numpy as np
import pytest

from conftest import check_error, distinct_logits, expect_error, random_labels, run_cases, run_snippet

N, C, K = 120, 20, 4

PRELUDE = """
OUT = {out!r}
CACHE = {cache!r}
W = dict(num_classes={C}, top_k={K}, temperatures=(1, 2, 4), teacher="teacher@4", dataset="dataset@4", block_rows=16, shard_rows=32)
z3 = np.random.default_rng(0).standard_normal((3, {C})).astype(np.float32)
"""


@pytest.fixture(scope="module")
def cache(cli, tmp_path_factory):
    return cli.import_(tmp_path_factory.mktemp("errors") / "c", distinct_logits(N, C, seed=71), labels=random_labels(N, C, seed=72), top_k=K, block_rows=16, shard_rows=32)


def prelude(out, cache) -> str:
    return PRELUDE.format(out=str(out), cache=str(cache), C=C, K=K)


@pytest.fixture
def check(cache, tmp_path):
    def run(code, exc, *fragments):
        return expect_error(prelude(tmp_path / "out", cache) + code, exc, *fragments, cwd=tmp_path)

    return run


# (id, code, exception, fragments of the message)
WRITER_CASES = [
    ("logits-1d", "kdcache.CacheWriter(OUT, **W).add_logits(0, np.zeros(20, np.float32))", "ValueError", ["two-dimensional"]),
    ("logits-3d", "kdcache.CacheWriter(OUT, **W).add_logits(0, np.zeros((2, 20, 1), np.float32))", "ValueError", ["two-dimensional"]),
    ("logits-wrong-C", "kdcache.CacheWriter(OUT, **W).add_logits(0, np.zeros((3, 21), np.float32))", "ValueError", ["21", "C = 20"]),
    ("logits-int", "kdcache.CacheWriter(OUT, **W).add_logits(0, np.zeros((3, 20), np.int64))", "ValueError", ["floating point"]),
    ("logits-bool", "kdcache.CacheWriter(OUT, **W).add_logits(0, np.zeros((3, 20), bool))", "ValueError", ["floating point"]),
    ("logits-torch-int", "import torch\nkdcache.CacheWriter(OUT, **W).add_logits(0, torch.zeros((3, 20), dtype=torch.int32))", "ValueError", ["floating point"]),
    ("rows-count", "kdcache.CacheWriter(OUT, **W).add_logits([0, 1], z3)", "ValueError", ["2", "3"]),
    ("rows-float", "kdcache.CacheWriter(OUT, **W).add_logits(np.array([0.0, 1.0, 2.0]), z3)", "ValueError", ["integers"]),
    ("rows-2d", "kdcache.CacheWriter(OUT, **W).add_logits(np.array([[0, 1, 2]]), z3)", "ValueError", ["one-dimensional"]),
    ("nan", "z = np.zeros((5, 20), np.float32); z[3, 7] = np.nan\nkdcache.CacheWriter(OUT, **W).add_logits(10, z)", "ValueError", ["row 13", "class 7"]),
    ("inf", "z = np.zeros((5, 20), np.float32); z[0, 19] = -np.inf\nkdcache.CacheWriter(OUT, **W).add_logits(np.arange(40, 45), z)", "ValueError", ["row 40", "class 19"]),
    ("nan-torch-cpu", "import torch\nz = torch.zeros((5, 20)); z[1, 2] = float('inf')\nkdcache.CacheWriter(OUT, **W).add_logits(torch.arange(100, 105), z)", "ValueError", ["row 101", "class 2"]),
    ("nan-torch-f16", "import torch\nz = torch.zeros((5, 20), dtype=torch.float16); z[4, 11] = float('nan')\nkdcache.CacheWriter(OUT, **W).add_logits(7, z)", "ValueError", ["row 11", "class 11"]),
    ("nan-torch-ranker", "import torch, kdcache.torch as kt\nz = torch.zeros((5, 20)); z[2, 5] = float('nan')\nkt.rank_logits(z, 4, (1.0,), rows=np.arange(50, 55))", "ValueError", ["row 52", "class 5"]),
    ("nan-rank-logits", "z = np.zeros((5, 20), np.float32); z[4, 0] = np.nan\nkdcache.rank_logits(z, 4)", "ValueError", ["row 4", "class 0"]),
    ("k-above-c", "kdcache.CacheWriter(OUT, **{**W, 'top_k': 21})", "ValueError", ["21"]),
    ("k-zero", "kdcache.CacheWriter(OUT, **{**W, 'top_k': 0})", "ValueError", ["top_k"]),
    ("rank-k-above-c", "kdcache.rank_logits(z3, 21)", "ValueError", ["21"]),
    ("torch-rank-k-above-c", "import torch, kdcache.torch as kt\nkt.rank_logits(torch.from_numpy(z3), 21)", "ValueError", ["21"]),
    ("rank-logits-int", "kdcache.rank_logits(np.zeros((3, 20), np.int32), 4)", "ValueError", ["floating point"]),
    ("rows-negative-first", "kdcache.CacheWriter(OUT, **W).add_logits(-1, z3)", "ValueError", ["-1", "negative"]),
    ("rows-negative", "kdcache.CacheWriter(OUT, **W).add_logits([-2, 0, 1], z3)", "ValueError", ["-2", "negative"]),
    ("rows-negative-torch", "import torch\nkdcache.CacheWriter(OUT, **W).add_logits(torch.tensor([0, -5, 1]), z3)", "ValueError", ["-5"]),
    ("rows-repeated", "kdcache.CacheWriter(OUT, **W).add_logits([0, 1, 1], z3)", "ValueError", ["row 1", "increase"]),
    ("rows-decreasing", "kdcache.CacheWriter(OUT, **W).add_logits([0, 5, 2], z3)", "ValueError", ["row 2", "increase"]),
    ("rows-across-calls", "w = kdcache.CacheWriter(OUT, **W)\nw.add_logits(10, z3)\nw.add_logits(12, z3)", "ValueError", ["row 12", "increase"]),
    ("rows-across-calls-ranked",
     "w = kdcache.CacheWriter(OUT, **W)\nr = kdcache.rank_logits(z3, 4, (1, 2, 4))\nw.add_ranked([3, 4, 5], *r[:4])\nw.add_ranked([5, 6, 7], *r[:4])",
     "ValueError", ["row 5", "increase"]),
    ("label-above", "kdcache.CacheWriter(OUT, **W).add_logits(0, z3, labels=[0, 20, 1])", "ValueError", ["label 20", "row 1"]),
    ("label-below", "kdcache.CacheWriter(OUT, **W).add_logits(5, z3, labels=[0, 1, -2])", "ValueError", ["label -2", "row 7"]),
    ("label-float", "kdcache.CacheWriter(OUT, **W).add_logits(0, z3, labels=np.array([0.0, 1.0, 2.0]))", "ValueError", ["labels"]),
    ("label-count", "kdcache.CacheWriter(OUT, **W).add_logits(0, z3, labels=[0, 1])", "ValueError", ["labels"]),
    ("row-beyond-examples", "kdcache.CacheWriter(OUT, num_examples=10, **W).add_logits(8, z3)", "ValueError", ["row 10", "0..10"]),
    ("row-outside-part", "kdcache.CacheWriter(OUT, part=(1, 2), num_examples=10, **W).add_logits(3, z3)", "ValueError", ["row 3", "5..10"]),
    ("part-without-examples", "kdcache.CacheWriter(OUT, part=(0, 2), **W)", "ValueError", ["num_examples"]),
    ("part-out-of-range", "kdcache.CacheWriter(OUT, part=(2, 2), num_examples=10, **W)", "ValueError", ["(2, 2)"]),
    ("part-range-bad", "kdcache.part_range(10, 3, 3)", "ValueError", ["(3, 3)"]),
    ("dtype-unknown", "kdcache.CacheWriter(OUT, dtype='f8', **W)", "ValueError", ["f8"]),
    ("format-unknown", "kdcache.CacheWriter(OUT, format='csv', **W)", "ValueError", ["csv"]),
    ("teacher-empty", "kdcache.CacheWriter(OUT, **{**W, 'teacher': ' '})", "ValueError", ["teacher"]),
    ("temperature-zero", "kdcache.CacheWriter(OUT, **{**W, 'temperatures': (1, 0)})", "ValueError", ["temperature"]),
    ("temperature-nan", "kdcache.CacheWriter(OUT, **{**W, 'temperatures': (float('nan'),)})", "ValueError", ["temperature"]),
    ("block-rows-zero", "kdcache.CacheWriter(OUT, **{**W, 'block_rows': 0})", "ValueError", ["block_rows"]),
    ("ids-float", "r = kdcache.rank_logits(z3, 4, (1, 2, 4))\nkdcache.CacheWriter(OUT, **W).add_ranked(0, r[0].astype(np.float32), *r[1:4])", "ValueError", ["ids", "integers"]),
    ("ids-out-of-range", "r = kdcache.rank_logits(z3, 4, (1, 2, 4))\nids = r[0].copy(); ids[1, 2] = 20\nkdcache.CacheWriter(OUT, **W).add_ranked(0, ids, *r[1:4])", "ValueError", ["class id 20", "row 1"]),
    ("ids-negative", "r = kdcache.rank_logits(z3, 4, (1, 2, 4))\nids = r[0].copy(); ids[2, 0] = -1\nkdcache.CacheWriter(OUT, **W).add_ranked(0, ids, *r[1:4])", "ValueError", ["-1", "row 2"]),
    ("ids-repeated", "r = kdcache.rank_logits(z3, 4, (1, 2, 4))\nids = r[0].copy(); ids[0, 1] = ids[0, 0]\nkdcache.CacheWriter(OUT, **W).add_ranked(0, ids, *r[1:4])", "ValueError", ["row 0"]),
    ("ranked-not-descending", "r = kdcache.rank_logits(z3, 4, (1, 2, 4))\nv = r[1][:, ::-1].copy()\nkdcache.CacheWriter(OUT, **W).add_ranked(0, r[0], v, r[2], r[3])", "ValueError", ["descending", "row 0"]),
    ("ranked-shapes", "r = kdcache.rank_logits(z3, 4, (1, 2))\nkdcache.CacheWriter(OUT, **W).add_ranked(0, *r[:4])", "ValueError", ["shape"]),
    ("ranked-nan-logit", "r = kdcache.rank_logits(z3, 4, (1, 2, 4))\nv = r[1].copy(); v[1, 3] = np.nan\nkdcache.CacheWriter(OUT, **W).add_ranked(0, r[0], v, r[2], r[3])", "ValueError", ["row 1"]),
    ("ranked-inconsistent", "r = kdcache.rank_logits(z3, 4, (1, 2, 4))\nkdcache.CacheWriter(OUT, **W).add_ranked(0, r[0], r[1], r[2] + 1.0, r[3])", "ValueError", ["row 0"]),
    ("prior-length", "r = kdcache.rank_logits(z3, 4, (1, 2, 4))\nkdcache.CacheWriter(OUT, **W).add_ranked(0, *r[:4], prior=np.ones(19))", "ValueError", ["prior", "19"]),
    ("closed", "w = kdcache.CacheWriter(OUT, **W)\nw.add_logits(0, z3)\nw.close()\nw.add_logits(3, z3)", "RuntimeError", ["closed"]),
]


@pytest.fixture(scope="module")
def all_cases(cache, tmp_path_factory):
    """Every case of the tables below, run in one fresh interpreter (each in its own namespace and
    directory): name -> (code, result or None when the interpreter died before finishing it)."""
    base = tmp_path_factory.mktemp("cases")
    codes = {name: prelude(base / name, cache) + code for name, code, *_ in WRITER_CASES + READER_CASES}
    done = run_cases(codes, cwd=base)
    return {name: (code, done.get(name)) for name, code in codes.items()}


def result(all_cases, name, tmp_path):
    code, res = all_cases[name]
    if res is None:  # the shared interpreter died at or before this case: run it alone
        res = run_snippet(code, cwd=tmp_path)
    return code, res


@pytest.mark.parametrize("name,exc,fragments", [(c[0], c[2], c[3]) for c in WRITER_CASES], ids=[c[0] for c in WRITER_CASES])
def test_writer_refuses(all_cases, tmp_path, name, exc, fragments):
    code, res = result(all_cases, name, tmp_path)
    check_error(res, exc, fragments, code)


READER_CASES = [
    ("row-past-end", f"kdcache.Cache(CACHE).rows([0, {N}])", ("IndexError", "ValueError"), [str(N), f"0..{N}"]),
    ("row-negative", "kdcache.Cache(CACHE).rows([3, -1])", ("IndexError", "ValueError"), ["-1"]),
    ("row-negative-torch", "import torch\nkdcache.Cache(CACHE).rows(torch.tensor([-3]))", ("IndexError", "ValueError"), ["-3"]),
    ("row-huge-uint64", "kdcache.Cache(CACHE).rows(np.array([2**63 + 5], dtype=np.uint64))", ("IndexError", "ValueError"), []),
    ("indices-float", "kdcache.Cache(CACHE).rows([0.5, 1.0])", ("ValueError",), ["integers"]),
    ("indices-2d", "kdcache.Cache(CACHE).rows(np.zeros((2, 2), np.int64))", ("ValueError",), ["one-dimensional"]),
    ("temperature-not-cached", "kdcache.Cache(CACHE).rows([0], temperature=3)", ("ValueError",), ["3", "1, 2, 4"]),
    ("temperature-not-number", "kdcache.Cache(CACHE).rows([0], temperature='two')", ("ValueError",), ["temperature"]),
    ("order-seed-negative", "kdcache.Cache(CACHE).order(-1)", ("ValueError",), ["seed"]),
    ("budget-negative", "kdcache.Cache(CACHE, block_cache_bytes=-1)", ("ValueError",), ["block_cache_bytes"]),
    ("threads-zero", "kdcache.Cache(CACHE, threads=0)", ("ValueError",), ["threads"]),
    ("missing-path", "kdcache.Cache(OUT + '/nowhere')", ("FileNotFoundError",), ["nowhere"]),
]


@pytest.mark.parametrize("name,excs,fragments", [(c[0], c[2], c[3]) for c in READER_CASES], ids=[c[0] for c in READER_CASES])
def test_reader_refuses(all_cases, tmp_path, name, excs, fragments):
    code, res = result(all_cases, name, tmp_path)
    assert res["raised"] is not None, f"expected {' or '.join(excs)}, nothing was raised by:\n{code}"
    exc = next((e for e in excs if e in res["mro"]), excs[0])
    check_error(res, exc, fragments, code)


def test_a_directory_without_a_cache(check, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a cache")
    code = f"kdcache.Cache({str(empty)!r})"
    try:
        check(code, "FileNotFoundError", "empty")
    except AssertionError:
        check(code, "CorruptCacheError", "empty")


def test_a_file_is_not_a_cache(check, cache):
    code = f"kdcache.Cache({str(cache / 'shard-00000.kds')!r})"
    res = None
    for exc in ("NotADirectoryError", "FileNotFoundError", "CorruptCacheError"):
        try:
            check(code, exc, "shard-00000.kds")
            return
        except AssertionError as e:
            res = e
    raise res


def test_truncated_manifest(check, cli, tmp_path):
    c = cli.import_(tmp_path / "t", distinct_logits(40, C, seed=73), top_k=K, block_rows=16, shard_rows=32)
    m = c / "_manifest.json"
    m.write_text(m.read_text()[:200])
    check(f"kdcache.Cache({str(c)!r})", "CorruptCacheError", "_manifest.json")


def test_a_newer_format_version(check, cli, tmp_path):
    c = cli.import_(tmp_path / "v", distinct_logits(40, C, seed=74), top_k=K, block_rows=16, shard_rows=32)
    m = json.loads((c / "_manifest.json").read_text())
    m["format_version"] = 99
    (c / "_manifest.json").write_text(json.dumps(m))
    check(f"kdcache.Cache({str(c)!r})", "CacheVersionError", "99")


# ---------------------------------------------------------------------------------------------------
# writing where another cache lives


def test_writing_over_another_cache(kd, check, cache, tmp_path):
    # a complete cache of another teacher, or another layout, is refused
    other = tmp_path / "other"
    with kd.CacheWriter(other, num_classes=C, top_k=K, temperatures=(1, 2, 4), teacher="teacher@4", dataset="dataset@4", block_rows=16, shard_rows=32) as w:
        w.add_logits(0, distinct_logits(40, C, seed=75))
    o = str(other)
    check(f"kdcache.CacheWriter({o!r}, **{{**W, 'teacher': 'teacher@5'}})", "SignatureError", "teacher")
    check(f"kdcache.CacheWriter({o!r}, **{{**W, 'dataset': 'dataset@5'}})", "SignatureError", "dataset")
    check(f"kdcache.CacheWriter({o!r}, **{{**W, 'top_k': 5}})", "SignatureError")
    check(f"kdcache.CacheWriter({o!r}, **{{**W, 'temperatures': (1, 2)}})", "SignatureError")
    check(f"kdcache.CacheWriter({o!r}, format='parquet', **W)", "SignatureError")
    # the cache `kdcache import` wrote
    check("kdcache.CacheWriter(CACHE, **W)", "SignatureError", "teacher")
    # a partial build of another cache
    part = tmp_path / "partial"
    w = kd.CacheWriter(part, num_classes=C, top_k=K, temperatures=(1, 2, 4), teacher="teacher@4", dataset="dataset@4", block_rows=16, shard_rows=32)
    w.add_logits(0, distinct_logits(40, C, seed=76))
    w.abort()
    assert (part / "_manifest.partial.json").exists() and not (part / "_manifest.json").exists()
    check(f"kdcache.CacheWriter({str(part)!r}, **{{**W, 'teacher': 'teacher@5'}})", "SignatureError", "teacher")
    # overwrite=True replaces it
    with kd.CacheWriter(other, num_classes=C, top_k=K, temperatures=(1, 2, 4), teacher="teacher@5", dataset="dataset@4",
                        block_rows=16, shard_rows=32, overwrite=True) as w:
        w.add_logits(0, distinct_logits(8, C, seed=77))
    c = kd.Cache(other)
    assert c.num_rows == 8 and c.signature["teacher"] == "teacher@5"
    c.verify()


def test_the_writer_is_usable_after_refusing_a_batch(kd, cli, tmp_path):
    """A refused batch writes nothing: the writer goes on, and the cache holds the other batches."""
    out = tmp_path / "w"
    z = distinct_logits(12, C, seed=78)
    with kd.CacheWriter(out, num_classes=C, top_k=K, temperatures=(1, 2, 4), teacher="t", dataset="d", block_rows=16, shard_rows=32) as w:
        w.add_logits(0, z[:4])
        bad = z[4:8].copy()
        bad[1, 3] = np.nan
        with pytest.raises(ValueError, match="row 5"):
            w.add_logits(4, bad)
        with pytest.raises(ValueError):
            w.add_logits([3, 4, 5, 6], z[4:8])
        w.add_logits(4, z[4:8])
        assert w.next_row == 8
    cli.verify(out)
    r = kd.Cache(out).rows(range(8), logits=True)
    np.testing.assert_array_equal(r.row, np.arange(8))
    np.testing.assert_array_equal(r.ids, kd.rank_logits(z[:8], K)[0])
