"""A writer killed by SIGKILL after some shards are published, then run again, yields the cache an
uninterrupted run yields (the same shard bytes and manifest); running a finished cache again changes
nothing."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import assert_same_cache, assert_same_manifest, distinct_logits, manifest, random_labels, shard_files

N, C, K = 600, 211, 10
BLOCK_ROWS, SHARD_ROWS, BATCH = 25, 100, 48  # batches straddle shard boundaries

WRITER = """
import json, sys, time
import numpy as np
import kdcache

out, data, fmt, how, pause = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
z, y = np.load(data + ".z.npy"), np.load(data + ".y.npy")
w = kdcache.CacheWriter(out, num_classes={C}, top_k={K}, temperatures=(1, 2, 4), teacher="teacher@1", dataset="dataset@1",
                        format=fmt, dtype="f16", block_rows={BLOCK_ROWS}, shard_rows={SHARD_ROWS})
info = {{"resumed_rows": w.resumed_rows, "next_row": w.next_row, "complete": w.complete}}
print(json.dumps(info), flush=True)
with w:
    for lo in range(0, {N}, {BATCH}):
        if how == "add_logits":
            w.add_logits(lo, z[lo:lo + {BATCH}], y[lo:lo + {BATCH}])
        else:
            ids, vals, lse, log_tail, prior = kdcache.rank_logits(z[lo:lo + {BATCH}], {K}, (1, 2, 4))
            w.add_ranked(lo, ids, vals, lse, log_tail, y[lo:lo + {BATCH}], prior)
        time.sleep(pause)
print(json.dumps(w.manifest["rows"]), flush=True)
""".format(C=C, K=K, N=N, BLOCK_ROWS=BLOCK_ROWS, SHARD_ROWS=SHARD_ROWS, BATCH=BATCH)


@pytest.fixture(scope="module")
def writer(tmp_path_factory):
    """The writer script, and a function running it to completion that returns what it printed first."""
    base = tmp_path_factory.mktemp("resume")
    script = base / "writer.py"
    script.write_text(WRITER)
    data = str(base / "teacher")
    np.save(data + ".z.npy", distinct_logits(N, C, seed=31))
    np.save(data + ".y.npy", random_labels(N, C, seed=32))

    def cmd(out, layout, pause=0.0):
        fmt, how = layout
        return [sys.executable, str(script), str(out), data, fmt, how, str(pause)]

    def run(out, layout):
        r = subprocess.run(cmd(out, layout), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"the writer failed (exit {r.returncode}):\n{r.stderr.strip()}"
        return json.loads(r.stdout.splitlines()[0])

    return cmd, run


# (encoding, how the script adds its batches: ranked by the writer, or by `kdcache.rank_logits` first)
LAYOUTS = [("kds", "add_logits"), ("parquet", "add_logits"), ("kds", "add_ranked")]


@pytest.fixture(scope="module", params=LAYOUTS, ids=[f"{f}-{h}" for f, h in LAYOUTS])
def uninterrupted(request, writer, tmp_path_factory):
    layout = request.param
    out = tmp_path_factory.mktemp("clean") / "-".join(layout)
    info = writer[1](out, layout)
    assert info == {"resumed_rows": 0, "next_row": 0, "complete": False}
    return layout, out


def test_sigkill_then_rerun_equals_uninterrupted(kd, cli, writer, uninterrupted, tmp_path):
    cmd, run = writer
    layout, clean = uninterrupted
    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd(out, layout, pause=0.25), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    partial = out / "_manifest.partial.json"

    def published() -> int:
        """Shards the partial manifest lists (the ones a rerun keeps)."""
        try:
            return len(json.loads(partial.read_text())["manifest"]["shards"])
        except (OSError, ValueError, KeyError):
            return 0

    deadline = time.monotonic() + 90
    try:
        while published() < 2:
            assert proc.poll() is None, f"the writer ended before its second shard (exit {proc.returncode}): {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, "no second shard after 90 s"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "_manifest.json").exists(), "the run finished before it was killed: nothing was tested"
    kept = published()
    assert 2 <= kept < N // SHARD_ROWS

    info = run(out, layout)
    assert not info["complete"]
    assert info["resumed_rows"] == kept * SHARD_ROWS
    assert info["next_row"] == info["resumed_rows"]  # rows 0..next_row are the kept shards' rows
    assert not (out / "_manifest.partial.json").exists()
    assert_same_cache(out, clean)
    cli.verify(out)


def add(kd, w, how, z, y, lo, hi):
    if how == "add_logits":
        w.add_logits(lo, z[lo:hi], y[lo:hi])
    else:
        ids, vals, lse, log_tail, prior = kd.rank_logits(z[lo:hi], K, (1, 2, 4))
        w.add_ranked(lo, ids, vals, lse, log_tail, y[lo:hi], prior)


def open_writer(kd, out, fmt):
    return kd.CacheWriter(out, num_classes=C, top_k=K, temperatures=(1, 2, 4), teacher="teacher@1", dataset="dataset@1",
                          format=fmt, dtype="f16", block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS)


@pytest.mark.parametrize("rerun", ["from-0", "from-next_row"])
def test_abort_then_rerun_equals_uninterrupted(kd, writer, uninterrupted, tmp_path, rerun):
    """A writer left by an exception (the context manager aborts) publishes nothing; a rerun resumes,
    whether its teacher loop starts over (the rows already written are skipped) or at `next_row`."""
    _, run = writer
    layout, clean = uninterrupted
    fmt, how = layout
    out = tmp_path / "aborted"
    z = distinct_logits(N, C, seed=31)
    y = random_labels(N, C, seed=32)
    with pytest.raises(RuntimeError, match="the teacher failed"):
        with open_writer(kd, out, fmt) as w:
            for lo in range(0, 350, BATCH):
                add(kd, w, how, z, y, lo, lo + BATCH)
            raise RuntimeError("the teacher failed")
    assert not (out / "_manifest.json").exists()
    assert len(shard_files(out)) >= 3
    if rerun == "from-0":
        info = run(out, layout)
        assert info["resumed_rows"] == 3 * SHARD_ROWS
    else:
        with open_writer(kd, out, fmt) as w:
            assert w.resumed_rows == w.next_row == 3 * SHARD_ROWS
            rest = range(w.next_row, N, BATCH)
            if how == "add_ranked":
                # the rerun's first batch starts inside a batch of the first run whose prior (one sum) the
                # kept shards hold: it cannot be split, so this batch's prior is left out, and the writer
                # says so
                with pytest.warns(UserWarning, match="straddles a shard boundary"):
                    add(kd, w, how, z, y, w.next_row, w.next_row + BATCH)
                rest = range(w.next_row, N, BATCH)
            for lo in rest:
                add(kd, w, how, z, y, lo, min(N, lo + BATCH))
        if how == "add_ranked":
            # the rows are the same; the class prior misses the rows of the batch left out
            assert_same_cache(out, clean, ignore=("class_prior",))
            return
        # the rerun's batches start elsewhere than the first run's: the prior is the same sum of the same
        # rows' softmax, added in another grouping, so it agrees to rounding, not bit for bit
        assert_same_cache(out, clean, ignore=("class_prior",))
        pa, pb = (np.array(manifest(p)["stats"]["class_prior"]) for p in (out, clean))
        np.testing.assert_allclose(pa, pb, rtol=1e-12, atol=0)
        return
    assert_same_cache(out, clean)


def test_add_ranked_resumes_its_prior_exactly_on_shard_aligned_batches(kd, tmp_path):
    """With batches that end on shard boundaries (shard_rows a multiple of the batch), a caller's own
    priors resume exactly too, whichever row the rerun starts from."""
    z = distinct_logits(N, C, seed=41)
    y = random_labels(N, C, seed=42)
    batch = SHARD_ROWS // 4

    def write(out, stop=None, start=0):
        with kd.CacheWriter(out, num_classes=C, top_k=K, temperatures=(1, 2, 4), teacher="teacher@1", dataset="dataset@1",
                            block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS) as w:
            start = w.next_row if start is None else start
            for lo in range(start, N, batch):
                if stop is not None and lo >= stop:
                    raise RuntimeError("stopped")
                add(kd, w, "add_ranked", z, y, lo, min(N, lo + batch))

    clean = tmp_path / "clean"
    write(clean)
    for start in (0, None):
        out = tmp_path / f"resumed-{start}"
        with pytest.raises(RuntimeError, match="stopped"):
            write(out, stop=2 * SHARD_ROWS + batch)
        write(out, start=start)
        assert_same_cache(out, clean)


def test_rerun_of_a_complete_cache_is_a_no_op(kd, writer, uninterrupted):
    _, run = writer
    layout, clean = uninterrupted
    fmt = layout[0]
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in clean.iterdir()}
    info = run(clean, layout)
    assert info["complete"] is True and info["next_row"] is None
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in clean.iterdir()}
    assert after == before

    # in process: every add is a no-op, close returns the cache's manifest
    w = kd.CacheWriter(clean, num_classes=C, top_k=K, temperatures=(1, 2, 4), teacher="teacher@1", dataset="dataset@1",
                       format=fmt, dtype="f16", block_rows=BLOCK_ROWS, shard_rows=SHARD_ROWS)
    assert w.complete and w.next_row is None
    w.add_logits(0, distinct_logits(BATCH, C, seed=99))
    w.add_logits(0, distinct_logits(BATCH, C, seed=99))  # not even the order is checked: nothing is written
    assert_same_manifest(w.close(), manifest(clean))
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in clean.iterdir()}
    assert after == before


def test_cli_import_resumed_after_a_crash_has_the_uninterrupted_class_prior(cli, tmp_path):
    """`kdcache import` killed after its first shard and run again gives the uninterrupted cache, class
    prior included, bit for bit: its chunks of rows end on shard boundaries, so the kept shard holds the
    prior of exactly its own rows."""
    z = distinct_logits(1000, 97, seed=51)
    clean = cli.import_(tmp_path / "clean", z, top_k=5, shard_rows=300)
    lpath = tmp_path / "clean.logits.npy"
    out = tmp_path / "crashed"
    args = [str(cli.path), "import", "--quiet", "--logits", str(lpath), "--top-k", "5", "--temperatures", "1,2,4",
            "--block-rows", "64", "--shard-rows", "300", "--out", str(out)]
    r = subprocess.run(args, env={**os.environ, "KDCACHE_CRASH_AFTER_SHARDS": "1"}, capture_output=True)
    assert r.returncode != 0 and not (out / "_manifest.json").exists(), "the import did not crash after its first shard"
    assert len(shard_files(out)) == 1
    subprocess.run(args, check=True, capture_output=True)
    assert_same_cache(out, clean)
