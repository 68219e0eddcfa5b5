"""Every Python example in `examples/` runs to completion (exit 0) in a scratch directory."""

import os
import subprocess
import sys

import pytest

from conftest import REPO, kdcache_bin_path

EXAMPLES = sorted((REPO / "examples").glob("*.py"))


def test_there_are_examples():
    assert EXAMPLES, f"no Python examples in {REPO / 'examples'}"


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(cli, script, tmp_path):
    env = dict(os.environ, KDCACHE_BIN=str(kdcache_bin_path()), PATH=f"{kdcache_bin_path().parent}{os.pathsep}{os.environ.get('PATH', '')}")
    r = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{script.name} exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"


@pytest.mark.parametrize("args", [["--nproc", "2", "--loss", "dis"], ["--nproc", "2", "--shard", "--loss", "full"]], ids=["dp-dis", "shard-full"])
def test_train_student_under_torchrun(tmp_path, args):
    """examples/train_student.py on its demo cache under torchrun (2 gloo ranks): it learns."""
    script = REPO / "examples" / "train_student.py"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(script), *args, "--out", "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"exited {r.returncode}:\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    import json

    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["world_size"] == 2 and s["steps"] > 0
    assert s["top1"] > 0.2, s  # chance is 1/500
