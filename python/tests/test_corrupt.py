"""Damaged cache files: a flipped byte inside one block's data makes the reads of that block raise
`kdcache.CorruptCacheError` (one line) while every other block still reads, and `verify()` fails; damaged
metadata fails at open. Reads of damaged files run in a fresh interpreter, so a crash fails the test."""

import json
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import distinct_logits, random_labels

N, C, K = 300, 120, 8
BLOCK_ROWS, SHARD_ROWS = 32, 128  # shard 0: blocks of rows 0..32, 32..64, 64..96, 96..128
BAD_BLOCK = 2
BAD_ROWS = range(64, 96)

PROBE = """
import json, sys
import numpy as np
import kdcache

def err(e):
    return {"raised": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__], "msg": str(e)}

path, probes = sys.argv[1], json.loads(sys.argv[2])
out = {"open": None, "probes": {}, "verify": None}
try:
    cache = kdcache.Cache(path)
except BaseException as e:
    out["open"] = err(e)
else:
    for name, idx in probes.items():
        try:
            r = cache.rows(idx, temperature=2, logits=True)
            out["probes"][name] = {"raised": None, "ids": r.ids.tolist(), "logp": r.logp.tolist(), "logits": r.logits.tolist()}
        except BaseException as e:
            out["probes"][name] = err(e)
    try:
        cache.verify()
    except BaseException as e:
        out["verify"] = err(e)
print("RESULT " + json.dumps(out))
"""


def probe(path, probes: dict) -> dict:
    r = subprocess.run([sys.executable, "-c", PROBE, str(path), json.dumps(probes)], capture_output=True, text=True, timeout=120)
    line = next((l for l in r.stdout.splitlines() if l.startswith("RESULT ")), None)
    assert r.returncode == 0 and line, f"reading the damaged cache ended the interpreter (exit {r.returncode}):\n{r.stderr.strip()[-3000:]}"
    return json.loads(line[len("RESULT "):])


def assert_corrupt(e: dict, *fragments: str) -> None:
    assert e is not None, "nothing was raised"
    assert "CorruptCacheError" in e["mro"], f"expected CorruptCacheError, got {e['raised']}: {e['msg']}"
    assert e["msg"].strip() and "\n" not in e["msg"], f"not one line: {e['msg']!r}"
    for f in fragments:
        assert f in e["msg"], f"{f!r} not in {e['msg']!r}"


def block_byte_kds(path) -> int:
    """A byte in the middle of block BAD_BLOCK's largest column chunk, from the footer."""
    data = path.read_bytes()
    assert data[-8:] == b"KDSFOOT1"
    (flen,) = struct.unpack("<Q", data[-24:-16])
    footer = json.loads(data[-24 - flen : -24])
    block = footer["blocks"][BAD_BLOCK]
    assert block["rows"] == BLOCK_ROWS
    col = max(block["columns"], key=lambda c: c["len"])
    return col["offset"] + col["len"] // 2


def block_byte_parquet(path) -> int:
    """A byte in the middle of row group BAD_BLOCK's largest column chunk."""
    import pyarrow.parquet as pq

    md = pq.ParquetFile(path).metadata
    assert md.num_row_groups == SHARD_ROWS // BLOCK_ROWS
    rg = md.row_group(BAD_BLOCK)
    assert rg.num_rows == BLOCK_ROWS
    col = max((rg.column(j) for j in range(rg.num_columns)), key=lambda c: c.total_compressed_size)
    start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
    return start + col.total_compressed_size // 2


def flip(path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.fixture(params=["kds", "parquet"])
def cache(request, cli, tmp_path):
    fmt = request.param
    return fmt, cli.import_(tmp_path / "c", distinct_logits(N, C, seed=51), labels=random_labels(N, C, seed=52), top_k=K,
                            format=fmt, block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS)


def test_flipped_block_byte(kd, cli, cache):
    fmt, path = cache
    good = {"before": list(range(0, 64)) + list(range(96, N)) + [5, 299, 0]}
    intact = probe(path, {**good, "bad": list(BAD_ROWS)})
    assert intact["open"] is None and intact["verify"] is None and intact["probes"]["bad"]["raised"] is None

    shard = path / f"shard-00000.{fmt}"
    size = shard.stat().st_size
    flip(shard, block_byte_kds(shard) if fmt == "kds" else block_byte_parquet(shard))
    assert shard.stat().st_size == size

    res = probe(path, {"good": good["before"], "bad": list(BAD_ROWS), "one_bad": [70], "mixed": [0, 300 - 1, 65], "again": [64]})
    assert res["open"] is None, f"opening failed: {res['open']}"  # opening checks headers and layout, not block data
    for name in ("bad", "one_bad", "mixed", "again"):
        assert_corrupt(res["probes"][name], "shard-00000")
    g = res["probes"]["good"]
    assert g["raised"] is None, f"rows of intact blocks no longer read: {g}"
    for k in ("ids", "logp", "logits"):
        assert g[k] == intact["probes"]["before"][k], k
    assert_corrupt(res["verify"], "shard-00000")
    r = cli.run("verify", "--quiet", path, check=False)
    assert r.returncode == 2 and "shard-00000" in r.stderr


def test_damaged_kds_footer_fails_at_open(cli, tmp_path):
    path = cli.import_(tmp_path / "c", distinct_logits(N, C, seed=53), top_k=K, block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS)
    shard = path / "shard-00001.kds"
    data = shard.read_bytes()
    (flen,) = struct.unpack("<Q", data[-24:-16])
    flip(shard, len(data) - 24 - flen // 2)
    res = probe(path, {})
    assert_corrupt(res["open"], "shard-00001")


@pytest.mark.parametrize("fmt", ["kds", "parquet"])
def test_truncated_shard_fails_at_open(cli, tmp_path, fmt):
    path = cli.import_(tmp_path / "c", distinct_logits(N, C, seed=54), top_k=K, format=fmt, block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS)
    shard = path / f"shard-00001.{fmt}"
    shard.write_bytes(shard.read_bytes()[:-100])
    assert_corrupt(probe(path, {})["open"], "shard-00001")


@pytest.mark.parametrize("damage", ["truncated", "not json", "rows", "shard missing"])
def test_damaged_manifest_fails_at_open(cli, tmp_path, damage):
    path = cli.import_(tmp_path / "c", distinct_logits(N, C, seed=55), top_k=K, block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS)
    mpath = path / "_manifest.json"
    text = mpath.read_text()
    if damage == "truncated":
        mpath.write_text(text[: len(text) // 2])
    elif damage == "not json":
        mpath.write_text("\x00garbage" + text)
    elif damage == "rows":
        m = json.loads(text)
        m["rows"] += 1
        mpath.write_text(json.dumps(m))
    else:
        (path / "shard-00001.kds").unlink()
    res = probe(path, {})
    e = res["open"]
    if damage == "shard missing":
        # a file the manifest lists is gone: not found, or corrupt; either way kdcache says which
        assert e is not None and ("FileNotFoundError" in e["mro"] or "CorruptCacheError" in e["mro"]), e
        assert "shard-00001.kds" in e["msg"] and "\n" not in e["msg"]
    else:
        assert_corrupt(e)
