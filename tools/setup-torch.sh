#!/usr/bin/env bash
# Creates .venv with torch 2.11.0 (the libtorch that tch 0.24.0 builds against, and the torch that the
# Python package's tests and examples import), the Python clients the tests read caches with (numpy,
# safetensors, pyarrow, polars, DuckDB), pytest and maturin.
#   TORCH_VARIANT=cpu  (default without a GPU): torch plus only the CUDA runtime libraries that
#                      `import torch` loads (it links them even on a CPU-only machine), ~2.2 GB download.
#   TORCH_VARIANT=lib  : torch without those libraries, ~550 MB download: enough for the kdcache binary
#                      (tch links libtorch_cpu), but `import torch` fails; for machines that only need
#                      the CLI.
#   TORCH_VARIANT=cuda (default when nvidia-smi works): the full CUDA build from PyPI, ~2.6 GB download.
# Idempotent: a venv that already has the right torch is left alone (a stamp file records the variant;
# the cpu variant also checks that torch imports, and adds what a venv made before lacks).
# Downloads only from the Python package index.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_VERSION=2.11.0
if [ -z "${TORCH_VARIANT:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then TORCH_VARIANT=cuda; else TORCH_VARIANT=cpu; fi
fi
case "$TORCH_VARIANT" in cpu|lib|cuda) ;; *) echo "setup-torch: TORCH_VARIANT must be cpu, lib or cuda, not '$TORCH_VARIANT'" >&2; exit 2;; esac
# the lib and cpu variants share one base install (the cpu variant adds the import libraries to it)
BASE=$TORCH_VARIANT; [ "$BASE" = lib ] && BASE=cpu
STAMP="$VENV/.kdcache-torch-$TORCH_VERSION-$BASE"
# the Python clients the tests read caches with (pinned: the versions the interoperability tests pass with)
CLIENTS="numpy safetensors pyarrow==26.0.1 polars==2.1.0 duckdb==2.0.1 pytest==9.0.1 maturin==1.16.0"
CLIENTS_STAMP="$VENV/.kdcache-clients-$(echo "$CLIENTS" | tr ' =' '_-')"
install_clients() {
  "$VENV/bin/python" -m pip --disable-pip-version-check -q install $CLIENTS
  rm -f "$VENV"/.kdcache-clients-*
  touch "$CLIENTS_STAMP"
}
# The CUDA runtime libraries libtorch_cuda.so and libtorch_python.so are linked against (DT_NEEDED), at
# the versions torch 2.11.0 requires: without any one of them `import torch` fails, even on a machine
# without a GPU (libtorch_cpu.so itself needs only cudart and cupti). Not needed: cuSOLVER, NVRTC, NVTX
# and triton (loaded lazily), cuda-bindings.
IMPORT_LIBS="nvidia-cublas==13.1.0.3 nvidia-cudnn-cu13==9.19.0.56 nvidia-cufft==12.0.0.61 nvidia-cufile==1.15.1.6
  nvidia-curand==10.4.0.35 nvidia-cusparse==12.6.3.3 nvidia-cusparselt-cu13==0.8.0 nvidia-nccl-cu13==2.28.9
  nvidia-nvjitlink==13.0.88 nvidia-nvshmem-cu13==3.4.5"
torch_imports() { "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; }
import_libs() {
  [ "$TORCH_VARIANT" = cpu ] || return 0
  torch_imports && return 0
  echo "setup-torch: adding the CUDA runtime libraries that 'import torch' needs (~1.7 GB download)"
  "$VENV/bin/python" -m pip --disable-pip-version-check -q install --no-deps $IMPORT_LIBS
  torch_imports || { echo "setup-torch: torch still does not import in $VENV:" >&2; "$VENV/bin/python" -c 'import torch' >&2; exit 1; }
}
if [ -f "$STAMP" ]; then
  [ -f "$CLIENTS_STAMP" ] || { echo "setup-torch: installing $CLIENTS into $VENV"; install_clients; }
  import_libs
  exit 0
fi

PY=${PYTHON:-python3}
if ! command -v "$PY" >/dev/null 2>&1; then
  echo "setup-torch: '$PY' not found: install Python 3.10+ (Debian: apt-get install python3 python3-venv python3-pip)" >&2; exit 2
fi
if ! "$PY" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "setup-torch: $PY lacks venv/ensurepip (Debian: apt-get install python3-venv)" >&2; exit 2
fi
echo "setup-torch: creating $VENV with torch $TORCH_VERSION ($TORCH_VARIANT)"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
$PIP install --upgrade pip >/dev/null
if [ "$BASE" = cpu ]; then
  # torch's own wheel carries a full libtorch; of its CUDA wheels the binary needs only cudart and cupti,
  # which libtorch_cpu.so links against
  $PIP install --no-deps "torch==$TORCH_VERSION" typing_extensions sympy mpmath filelock jinja2 markupsafe networkx fsspec
  $PIP install --no-deps nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
else
  $PIP install "torch==$TORCH_VERSION"
fi
install_clients
import_libs
# a stable path to libtorch for cargo (.cargo/config.toml sets LIBTORCH=.venv/torch)
ln -sfn "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torch" "$VENV/torch"
touch "$STAMP"
echo "setup-torch: done ($VENV)"
