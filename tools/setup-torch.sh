#!/usr/bin/env bash
# Creates .venv with torch 2.11.0 (the libtorch that tch 0.24.0 builds against) and the Python clients
# the tests read caches with (numpy, safetensors, pyarrow, polars, DuckDB).
#   TORCH_VARIANT=cpu  (default without a GPU): torch without its CUDA wheels, ~550 MB download.
#   TORCH_VARIANT=cuda (default when nvidia-smi works): the full CUDA build from PyPI, ~2.6 GB download.
# Idempotent: a venv that already has the right torch is left alone (a stamp file records the variant).
# Downloads only from the Python package index.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_VERSION=2.11.0
if [ -z "${TORCH_VARIANT:-}" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then TORCH_VARIANT=cuda; else TORCH_VARIANT=cpu; fi
fi
case "$TORCH_VARIANT" in cpu|cuda) ;; *) echo "setup-torch: TORCH_VARIANT must be cpu or cuda, not '$TORCH_VARIANT'" >&2; exit 2;; esac
STAMP="$VENV/.kdcache-torch-$TORCH_VERSION-$TORCH_VARIANT"
# the Python clients the tests read caches with (pinned: the versions the interoperability tests pass with)
CLIENTS="numpy safetensors pyarrow==26.0.1 polars==2.1.0 duckdb==2.0.1"
CLIENTS_STAMP="$VENV/.kdcache-clients-$(echo "$CLIENTS" | tr ' =' '_-')"
install_clients() {
  "$VENV/bin/python" -m pip --disable-pip-version-check -q install $CLIENTS
  rm -f "$VENV"/.kdcache-clients-*
  touch "$CLIENTS_STAMP"
}
if [ -f "$STAMP" ]; then
  [ -f "$CLIENTS_STAMP" ] || { echo "setup-torch: installing $CLIENTS into $VENV"; install_clients; }
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
if [ "$TORCH_VARIANT" = cpu ]; then
  # torch's own wheel carries a full libtorch; its CUDA wheels are not needed on CPU except cudart+cupti,
  # which libtorch_cpu.so links against.
  $PIP install --no-deps "torch==$TORCH_VERSION" typing_extensions sympy mpmath filelock jinja2 markupsafe networkx fsspec
  $PIP install --no-deps nvidia-cuda-runtime nvidia-cuda-cupti
else
  $PIP install "torch==$TORCH_VERSION"
fi
install_clients
# a stable path to libtorch for cargo (.cargo/config.toml sets LIBTORCH=.venv/torch)
ln -sfn "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/torch" "$VENV/torch"
touch "$STAMP"
echo "setup-torch: done ($VENV)"
