#!/usr/bin/env bash
# Fuzzes the readers of hostile files (fuzz/fuzz_targets/*.rs) with cargo-fuzz, one target after the other.
#   FUZZ_S=60 bash tools/fuzz.sh [TARGET...]      (make fuzz FUZZ_S=60; default: every target)
# Installs cargo-fuzz if missing, generates the seeds (fuzz/corpus/<target>/, git-ignored), adds the
# committed seeds (fuzz/seeds/<target>/), builds every target, then runs each for FUZZ_S seconds with a 1 s
# timeout per input and a 2 GiB memory limit. Afterwards the corpus of each target is replayed once through
# its fuzz binary and the slowest input is reported; one slower than FUZZ_SLOW_MS (default 100) fails,
# as does a crash, a timeout or an out-of-memory. Crashes land in fuzz/artifacts/<target>/, logs in
# fuzz/target/fuzz-logs/<target>.log (both git-ignored).
# Works on stable: RUSTC_BOOTSTRAP=1 lets it accept the -Z flags cargo-fuzz passes. FUZZ_SANITIZER=none
# builds without AddressSanitizer (default address).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_S=${FUZZ_S:-60}
FUZZ_SLOW_MS=${FUZZ_SLOW_MS:-100}
FUZZ_SANITIZER=${FUZZ_SANITIZER:-address}
CARGO=${CARGO:-cargo}
export RUSTC_BOOTSTRAP=1
# each target writes its input to a scratch file: on tmpfs, not a disk (10-50x more executions per second)
# (the targets' scratch directories outlive them: one directory for this run, removed at the end)
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  TMPDIR=$(mktemp -d /dev/shm/kdcache-fuzz-run.XXXXXX)
  trap 'rm -rf "$TMPDIR"' EXIT
  export TMPDIR
fi
# the instrumented build lives under fuzz/target/<triple>/ (`make test`'s plain build is in target/debug);
# other sanitizers under fuzz/target/sanitizer-<name>/<triple>/, so switching does not rebuild the other
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
TDIR=fuzz/target
if [ "$FUZZ_SANITIZER" != address ]; then TDIR=fuzz/target/sanitizer-$FUZZ_SANITIZER; fi
FUZZ=("$CARGO" fuzz)
FUZZ_ARGS=(--fuzz-dir fuzz -s "$FUZZ_SANITIZER" --target "$TRIPLE" --target-dir "$TDIR")

if ! "$CARGO" fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  "$CARGO" install cargo-fuzz --locked
fi

if [ $# -gt 0 ]; then targets=("$@"); else mapfile -t targets < <("${FUZZ[@]}" list --fuzz-dir fuzz); fi

echo "== seeds"
KDCACHE_WRITE_SEEDS="$PWD/fuzz/corpus" "$CARGO" test -q --no-default-features --test corrupt -- --ignored --exact seeds::write_fuzz_seeds
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  if [ -d "fuzz/seeds/$t" ]; then cp -f fuzz/seeds/"$t"/* "fuzz/corpus/$t/"; fi
done

echo "== build (${FUZZ_SANITIZER} sanitizer)"
for t in "${targets[@]}"; do "${FUZZ[@]}" build "${FUZZ_ARGS[@]}" "$t"; done

mkdir -p fuzz/target/fuzz-logs
failed=()
summary=()
for t in "${targets[@]}"; do
  echo "== fuzz $t for ${FUZZ_S}s"
  log="fuzz/target/fuzz-logs/$t.log"
  rc=0
  "${FUZZ[@]}" run "${FUZZ_ARGS[@]}" "$t" "fuzz/corpus/$t" -- \
    -max_total_time="$FUZZ_S" -timeout=1 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  # replay the corpus once: libFuzzer prints "Executed FILE in N ms" per input
  bin="$TDIR/$TRIPLE/release/$t"
  slow_ms=0
  slow_file=-
  slowest=-
  if [ $rc -eq 0 ]; then
    while read -r ms file; do
      # re-time an input over the limit once (a busy machine may have delayed it)
      if [ "$ms" -gt "$FUZZ_SLOW_MS" ]; then
        ms=$("$bin" -runs=1 -detect_leaks=0 "$file" 2>&1 | sed -n 's/^Executed .* in \([0-9]*\) ms$/\1/p' | tail -1)
      fi
      if [ "${ms:-0}" -gt "$slow_ms" ]; then slow_ms=$ms; slow_file=$file; fi
    done < <(find "fuzz/corpus/$t" -type f -print0 | xargs -0 -r "$bin" -runs=1 -detect_leaks=0 -rss_limit_mb=2048 2>&1 |
      sed -n 's/^Executed \(.*\) in \([0-9]*\) ms$/\2 \1/p')
    slowest="$slow_ms ms"
    if [ "$slow_ms" -gt "$FUZZ_SLOW_MS" ]; then rc=1; echo "$t: slowest input $slow_file took ${slow_ms} ms (limit ${FUZZ_SLOW_MS} ms)"; fi
  fi
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  line=$(printf '%-14s executions %12s  execs/s %7s  corpus %5s  slowest %7s  %s' "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$slowest" \
    "$([ $rc -eq 0 ] && echo ok || echo "FAILED (rc $rc, see $log)")")
  echo "$line"
  summary+=("$line")
  if [ $rc -ne 0 ]; then
    failed+=("$t")
    grep -E '^(==[0-9]+==|thread .* panicked|SUMMARY|artifact_prefix|Test unit written|.*Timeout|.*out-of-memory)' "$log" | head -20 || true
  fi
done

echo
echo "== summary (${FUZZ_S}s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "failed: ${failed[*]} (inputs in fuzz/artifacts/<target>/; replay: RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz <target> FILE)"
  exit 1
fi
