"""Shared fixtures of the Python package's tests: the `kdcache` binary (the reference every test compares
the package against), caches made by `kdcache import`, teacher logits, and a runner for snippets that
must not take pytest down with them if they crash the interpreter.

The binary is `$KDCACHE_BIN`, or `target/release/kdcache` in the repository (`make build`). A build
without libtorch (`cargo build --release --no-default-features`) is enough: the tests use `import`,
`dump --json`, `verify` and `merge`.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPS = (1.0, 2.0, 4.0)


def kdcache_bin_path() -> Path:
    return Path(os.environ.get("KDCACHE_BIN") or REPO / "target" / "release" / "kdcache").resolve()


class Cli:
    """The `kdcache` command-line tool."""

    def __init__(self, path: Path):
        self.path = path

    def run(self, *args, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        cmd = [str(self.path), *(str(a) for a in args)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"`kdcache {' '.join(cmd[1:])}` exited {r.returncode}:\n{r.stderr.strip()}")
        return r

    def import_(
        self,
        out: Path,
        logits: np.ndarray,
        *,
        labels: Optional[np.ndarray] = None,
        top_k: int,
        temperatures: Sequence[float] = TEMPS,
        format: str = "kds",
        dtype: str = "f16",
        block_rows: int = 64,
        shard_rows: int = 256,
    ) -> Path:
        """`kdcache import` of `logits` (saved next to `out` as .npy) into the cache `out`."""
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        lpath = out.parent / f"{out.name}.logits.npy"
        np.save(lpath, logits)
        args = ["import", "--quiet", "--logits", lpath, "--top-k", top_k, "--temperatures", ",".join(f"{t:g}" for t in temperatures)]
        args += ["--format", format, "--dtype", dtype, "--block-rows", block_rows, "--shard-rows", shard_rows, "--out", out]
        if labels is not None:
            ypath = out.parent / f"{out.name}.labels.npy"
            np.save(ypath, labels)
            args += ["--labels", ypath]
        self.run(*args)
        return out

    def dump(self, cache: Path, rows: Optional[range] = None) -> dict:
        """`kdcache dump --json` of `rows` (default: all of them)."""
        if rows is None:
            m = json.loads((Path(cache) / "_manifest.json").read_text())
            rows = range(0, int(m["rows"]))
        r = self.run("dump", "--quiet", "--json", "--rows", f"{rows.start}..{rows.stop}", cache)
        return json.loads(r.stdout)

    def verify(self, cache: Path) -> None:
        self.run("verify", "--quiet", cache)

    def merge(self, out: Path, parts: Sequence[Path]) -> Path:
        self.run("merge", "--quiet", "--out", out, *parts)
        return Path(out)


@pytest.fixture(scope="session")
def cli() -> Cli:
    p = kdcache_bin_path()
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(
            f"the kdcache binary {p} is missing: run `make build` in {REPO} (or point KDCACHE_BIN at a kdcache binary; "
            "`cargo build --release --no-default-features` gives one without libtorch)",
            pytrace=False,
        )
    return Cli(p)


# ---------------------------------------------------------------------------------------------------
# teacher logits


def distinct_logits(n: int, c: int, seed: int, scale: float = 3.0, gap: float = 1e-3) -> np.ndarray:
    """Teacher-like logits float32 [n, c] with no two equal values in a row (so the top-K is unique):
    normal draws, sorted, pushed apart by at least `gap`, shuffled back into classes."""
    rng = np.random.default_rng(seed)
    z = np.sort(rng.standard_normal((n, c)) * scale, axis=1)
    z = z[:, :1] + np.concatenate([np.zeros((n, 1)), np.cumsum(np.maximum(np.diff(z, axis=1), gap), axis=1)], axis=1)
    z -= z.mean(axis=1, keepdims=True)
    perm = np.argsort(rng.random((n, c)), axis=1)
    out = np.take_along_axis(z, perm, axis=1).astype(np.float32)
    assert all(len(np.unique(r)) == c for r in out[: min(n, 50)])
    return out


def random_labels(n: int, c: int, seed: int) -> np.ndarray:
    """Labels in 0..c, with every 7th unknown (-1)."""
    y = np.random.default_rng(seed).integers(0, c, size=n).astype(np.int64)
    y[::7] = -1
    return y


# ---------------------------------------------------------------------------------------------------
# cache files


def shard_files(cache: Path) -> list:
    return sorted(p.name for p in Path(cache).iterdir() if p.name.startswith("shard-"))


def manifest(cache: Path) -> dict:
    return json.loads((Path(cache) / "_manifest.json").read_text())


def assert_same_manifest(ma: dict, mb: dict, *, ignore: Sequence[str] = ()) -> None:
    """Equal manifests (but for the keys `ignore`), `stats.class_prior` bit for bit (it is summed in an
    order that depends on the rows alone; "class_prior" in `ignore` skips it)."""
    ma, mb = copy.deepcopy(ma), copy.deepcopy(mb)
    for k in ignore:
        ma.pop(k, None)
        mb.pop(k, None)
    pa = np.array(ma.get("stats", {}).pop("class_prior", []), dtype=np.float64)
    pb = np.array(mb.get("stats", {}).pop("class_prior", []), dtype=np.float64)
    if "class_prior" in ignore:
        pa = pb = np.zeros(0)
    diff = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
    assert not diff, f"manifests differ in {diff}: " + "; ".join(f"{k}: {_short(ma.get(k))} vs {_short(mb.get(k))}" for k in diff)
    assert pa.shape == pb.shape, f"class_prior lengths {pa.shape} vs {pb.shape}"
    if pa.size:
        rel = np.max(np.abs(pa - pb) / np.maximum(np.abs(pb), 1e-300))
        assert rel == 0, f"class_prior differs by up to {rel:.3g} (relative)"


def assert_same_cache(a: Path, b: Path, *, ignore: Sequence[str] = ()) -> None:
    """The two caches hold the same shard files byte for byte and the same manifest (but for `ignore`;
    see `assert_same_manifest`)."""
    fa, fb = shard_files(a), shard_files(b)
    assert fa == fb, f"shard files differ: {fa} vs {fb}"
    for name in fa:
        ba, bb = (Path(a) / name).read_bytes(), (Path(b) / name).read_bytes()
        if ba != bb:
            first = next((i for i, (x, y) in enumerate(zip(ba, bb)) if x != y), min(len(ba), len(bb)))
            raise AssertionError(f"{name} differs ({len(ba)} vs {len(bb)} bytes, first difference at byte {first})")
    assert_same_manifest(manifest(a), manifest(b), ignore=ignore)


def _short(v) -> str:
    s = json.dumps(v)
    return s if len(s) < 300 else s[:300] + "…"


# ---------------------------------------------------------------------------------------------------
# snippets in a fresh interpreter

_HARNESS = """
import json, sys
out = {"raised": None}
try:
    import numpy as np
    import kdcache
__BODY__
except BaseException as e:
    out = {"raised": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__], "msg": str(e)}
print("\\nRESULT " + json.dumps(out))
"""


def run_snippet(code: str, cwd: Optional[Path] = None, timeout: float = 120) -> dict:
    """Runs `code` in a fresh interpreter (so an abort or segfault fails the test rather than ending
    pytest); returns {"raised": None} or the exception's name, its classes' names and its message."""
    body = textwrap.indent(textwrap.dedent(code).strip("\n"), "    ")
    script = _HARNESS.replace("__BODY__", body)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, timeout=timeout)
    line = next((l for l in reversed(r.stdout.splitlines()) if l.startswith("RESULT ")), None)
    if r.returncode != 0 or line is None:
        raise AssertionError(f"the interpreter did not finish cleanly (exit {r.returncode}):\n{r.stderr.strip()[-3000:]}\n--- code:\n{textwrap.dedent(code)}")
    return json.loads(line[len("RESULT "):])


def check_error(res: dict, exc: str, fragments: Sequence[str], code: str = "") -> str:
    """`res` (from `run_snippet` or `run_cases`) is the exception `exc` (or a subclass) with a one-line
    message holding every one of `fragments`. Returns the message."""
    assert res["raised"] is not None, f"expected {exc}, nothing was raised by:\n{textwrap.dedent(code)}"
    assert exc in res["mro"], f"expected {exc}, got {res['raised']}: {res['msg']}"
    msg = res["msg"]
    assert msg.strip() and "\n" not in msg, f"the message is not one line: {msg!r}"
    for f in fragments:
        assert f in msg, f"{f!r} is not in the message {msg!r}"
    return msg


def expect_error(code: str, exc: str, *fragments: str, cwd: Optional[Path] = None) -> str:
    """Runs `code` in a fresh interpreter; it must raise `exc` (or a subclass) with a one-line message
    holding every one of `fragments`. Returns the message."""
    return check_error(run_snippet(code, cwd=cwd), exc, fragments, code)


_CASES = """
import json, sys, traceback
cases = json.loads(sys.stdin.read())
import numpy as np
import kdcache
for name, code in cases.items():
    print("START " + name, flush=True)
    out = {"raised": None}
    try:
        exec(code, {"np": np, "kdcache": kdcache})
    except BaseException as e:
        out = {"raised": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__], "msg": str(e)}
    print("CASE " + json.dumps([name, out]), flush=True)
"""


def run_cases(cases: dict, cwd: Optional[Path] = None, timeout: float = 300) -> dict:
    """Runs each snippet of `cases` (name -> code) in turn in one fresh interpreter; returns name -> what
    `run_snippet` returns, for the cases that finished. If the interpreter dies, the case it was running
    and those after it are missing: run them alone (`run_snippet`) to see which one kills it."""
    r = subprocess.run([sys.executable, "-c", _CASES], input=json.dumps(cases), capture_output=True, text=True, cwd=cwd, timeout=timeout)
    done = {}
    for line in r.stdout.splitlines():
        if line.startswith("CASE "):
            name, res = json.loads(line[len("CASE "):])
            done[name] = res
    return done


# ---------------------------------------------------------------------------------------------------
# the package


@pytest.fixture(scope="session")
def kd():
    try:
        import kdcache
    except ImportError as e:  # pragma: no cover - a setup problem, said plainly
        pytest.fail(f"the kdcache package does not import ({e}): build and install it with maturin (python/pyproject.toml)", pytrace=False)
    return kdcache
