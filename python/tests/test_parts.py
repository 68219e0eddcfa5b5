"""Caches written in parts (`part=(i, n)`, rows from `kdcache.part_range`) and joined by `kdcache merge`
hold the rows one unpartitioned cache holds."""

import numpy as np
import pytest

from conftest import TEMPS, distinct_logits, manifest, random_labels

N, C, K = 500, 150, 8
BLOCK_ROWS, SHARD_ROWS, BATCH = 40, 120, 64


def test_part_range_tiles():
    import kdcache

    for n, parts in ((500, 2), (10, 3), (7, 7), (0, 2), (1000003, 8)):
        ranges = [kdcache.part_range(n, i, parts) for i in range(parts)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
        assert max(hi - lo for lo, hi in ranges) - min(hi - lo for lo, hi in ranges) <= 1
    assert kdcache.part_range(10, 0, 3) == (0, 3) and kdcache.part_range(10, 2, 3) == (6, 10)


def write(kd, out, z, y, rows, fmt, **kw):
    with kd.CacheWriter(out, num_classes=C, top_k=K, temperatures=TEMPS, teacher="teacher@2", dataset="dataset@2",
                        format=fmt, dtype="f16", block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS, **kw) as w:
        for a in range(rows.start, rows.stop, BATCH):
            b = min(rows.stop, a + BATCH)
            w.add_logits(np.arange(a, b), z[a:b], y[a:b])
    return out


@pytest.mark.parametrize("fmt", ["kds", "parquet"])
def test_merged_parts_equal_one_cache(kd, cli, tmp_path, fmt):
    z, y = distinct_logits(N, C, seed=41), random_labels(N, C, seed=42)
    parts = []
    for i in range(2):
        lo, hi = kd.part_range(N, i, 2)
        out = write(kd, tmp_path / f"part{i}", z, y, range(lo, hi), fmt, part=(i, 2), num_examples=N)
        m = manifest(out)
        assert m["part"] == f"{i}/2" and m["rows"] == hi - lo and m["examples"] == hi - lo
        parts.append(out)
    merged = cli.merge(tmp_path / "merged", parts[::-1])  # any order
    whole = write(kd, tmp_path / "whole", z, y, range(N), fmt, num_examples=N)
    cli.verify(merged)

    dm, dw = cli.dump(merged), cli.dump(whole)
    assert dm["rows"] == dw["rows"]
    for key in ("rows", "examples", "classes", "top_k", "temperatures", "logit_dtype", "encoding", "signature", "labeled_rows"):
        assert dm["manifest"][key] == dw["manifest"][key], key
    assert dm["manifest"]["rows"] == dm["manifest"]["examples"] == N and dm["manifest"]["part"] is None

    a, b = kd.Cache(merged), kd.Cache(whole)
    idx = np.random.default_rng(0).permutation(N)
    for t in TEMPS:
        ra, rb = a.rows(idx, temperature=t, logits=True), b.rows(idx, temperature=t, logits=True)
        for name in ("row", "label", "ids", "logp", "logits", "lse", "log_tail"):
            np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name), err_msg=f"T={t}: {name}")
