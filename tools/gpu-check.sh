#!/usr/bin/env bash
# The GPU path, checked and timed in one run (under 10 minutes on one GPU). Run from the project root on a
# machine with an NVIDIA GPU and a CUDA build of torch 2.11.0, with a kdcache binary built with
# libtorch_cuda linked (on the build machine: KDCACHE_CUDA=1 cargo build --release).
#   KD=path/to/kdcache  WORK=/tmp/gpu-check  bash tools/gpu-check.sh
# It checks that the binary sees CUDA, builds a cache on the GPU and on the CPU from the same rows and
# compares them (top-K ids equal except ties, lse and log_tail within tolerances), trains each estimator
# a few hundred steps on the GPU, and prints cache rows/s, the share of cache wall time outside the
# teacher's forward, and train step times (dis vs full at C = 100,000).
set -euo pipefail
KD=${KD:-target/release/kdcache}
WORK=${WORK:-/tmp/gpu-check}
PY=${PY:-python3}
if [ -z "${LD_LIBRARY_PATH:-}" ]; then
  LD_LIBRARY_PATH="$($PY -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))'):/lib"
  export LD_LIBRARY_PATH
fi
mkdir -p "$WORK"
say() { printf '\n== %s\n' "$*"; }

say "CUDA visible to the binary"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$KD" --quiet cache --teacher identity --data /dev/null --out "$WORK/none" --device cuda 2>&1 | grep -q "CUDA device" \
  && { echo "FAIL: the binary sees no CUDA device (built without libtorch_cuda?)"; exit 1; } || echo "ok"

say "data: 100,000 classes (oracle teacher), 20,000 rows"
[ -f "$WORK/data/synth.json" ] || "$KD" --quiet synth --out "$WORK/data" --classes 100000 --dim 64 --train 20000 --test 2000 --seed 5

say "cache on the GPU and on the CPU, same rows"
for dev in cuda cpu; do
  "$KD" --quiet cache --teacher "$WORK/data/oracle.safetensors" --data "$WORK/data" --out "$WORK/cache-$dev" \
    --top-k 64 --temperatures 1,2 --device "$dev" --overwrite | tee "$WORK/cache-$dev.json"
done
"$KD" verify "$WORK/cache-cuda"
"$KD" dump "$WORK/cache-cuda" --rows 0..2000 --json > "$WORK/gpu.json"
"$KD" dump "$WORK/cache-cpu" --rows 0..2000 --json > "$WORK/cpu.json"
$PY - "$WORK/gpu.json" "$WORK/cpu.json" <<'PY'
import json, sys
g, c = (json.load(open(p))["rows"] for p in sys.argv[1:3])
ids = lse = tail = 0.0
tie_only = True
for a, b in zip(g, c):
    ia, ib = [r["class"] for r in a["ranks"]], [r["class"] for r in b["ranks"]]
    if ia != ib:
        ids += 1
        la, lb = [r["logit"] for r in a["ranks"]], [r["logit"] for r in b["ranks"]]
        tie_only &= max(abs(x - y) for x, y in zip(la, lb)) < 1e-2
    lse = max(lse, max(abs(x - y) for x, y in zip(a["lse"], b["lse"])))
    tail = max(tail, max(abs(x - y) / max(y, 1e-30) for x, y in zip(a["tail_mass"], b["tail_mass"])))
print(f"rows compared {len(g)}; rows whose top-K order differs {ids:.0f} (ties only: {tie_only}); max |lse| diff {lse:.2e}; max relative tail-mass diff {tail:.2e}")
ok = tie_only and lse < 1e-3 and tail < 1e-2
print("ok" if ok else "FAIL")
sys.exit(0 if ok else 1)
PY

say "train on the GPU: each estimator, 300 steps"
for loss in full ghost topk dis; do
  "$KD" --quiet train --cache "$WORK/cache-cuda" --data "$WORK/data" --loss "$loss" --device cuda --max-steps 300 \
    --epochs 100 --out "$WORK/run-$loss" --log-every 50 > "$WORK/run-$loss.json"
  $PY -c "import json; s=json.load(open('$WORK/run-$loss.json')); print(f\"{s['loss']:6s} top-1 {s['top1']:.4f}  {s['step_ms_median']:.2f} ms/step  {s['candidates']:.0f} head rows/step\")"
done
say "done: cache rows/s, batch size and overhead share are in $WORK/cache-*.json (printed above)"
