# kdcache — everything goes through these targets. On a fresh clone:  make demo   and   make test
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
KD := target/release/kdcache
SCALE ?= default
RAYON_NUM_THREADS ?= $(shell nproc)
export RAYON_NUM_THREADS
# the CPU-only venv carries libtorch_cuda.so without the CUDA libraries: say so to build.rs (no link,
# no warning); with the CUDA variant, build.rs finds the libraries and links libtorch_cuda
ifneq ($(wildcard .venv/.kdcache-torch-*-cpu),)
  KDCACHE_CUDA ?= 0
  export KDCACHE_CUDA
endif

# Both scales are sparse: many classes, a teacher whose ranked logits say more than the labels (the
# generator's Bayes-optimal teacher, oracle.safetensors), and students that train from the cache alone.
ifeq ($(SCALE),large)
  CLASSES := 100000
  TRAIN_ROWS := 1000000
  TEST_ROWS := 10000
  TOPK := 32
  EPOCHS ?= 1
else
  # 20,000 classes, 10 training rows per class: the regime where a full softmax is the cost
  CLASSES := 20000
  TRAIN_ROWS := 200000
  TEST_ROWS := 10000
  TOPK := 12
  EPOCHS ?= 1
endif
TEACHER = $(DATA)/oracle.safetensors
DATA := data/$(SCALE)
CACHE := $(DATA)/cache
RUNS := $(if $(filter default,$(SCALE)),runs,runs/$(SCALE))

.PHONY: setup build python test demo cache train bench clean help
help:
	@echo "make demo    set up, then synth -> cache (20,000 classes) -> train (dis, full, ghost, topk) and print a summary table"
	@echo "make test    set up, then run the whole test suite"
	@echo "make cache   build the demo cache (SCALE=large: 100,000 classes);  make train: train a dis student on it"
	@echo "make bench   criterion benchmarks, then kdcache bench (results/bench.md, results/bench.json)"
	@echo "make bench-python   the Python package's DataLoader and writer throughput beside the Rust core's (results/python.md)"
	@echo "make bench-head     DistillHead's step beside kdcache train's, and the class-sharded head on 1/2/4 ranks (results/head.md)"
	@echo "make fuzz    cargo-fuzz every reader of hostile files for FUZZ_S seconds each (default 60; tools/fuzz.sh)"

# torch venv (idempotent; CPU-only torch unless a GPU is visible), the release build and the Python package
setup: .venv/.kdcache-setup build python
.venv/.kdcache-setup: tools/setup-torch.sh
	bash tools/setup-torch.sh
	touch $@
build: .venv/.kdcache-setup
	$(CARGO) build --release --bins

# the Python package (python/): maturin builds the abi3 wheel of the binding crate in this workspace's
# target directory (the core without libtorch, release profile), pip installs it into .venv
PY := .venv/bin/python
WHEEL_STAMP := .venv/.kdcache-python
PY_SOURCES := $(shell find python/src python/kdcache src -name '*.rs' -o -name '*.py' -o -name '*.pyi' 2>/dev/null) python/Cargo.toml python/pyproject.toml Cargo.toml Cargo.lock
python: $(WHEEL_STAMP)
$(WHEEL_STAMP): .venv/.kdcache-setup $(PY_SOURCES)
	rm -f target/wheels/kdcache-*.whl
	PYO3_PYTHON=$(abspath $(PY)) .venv/bin/maturin build --release -m python/Cargo.toml -o target/wheels
	$(PY) -m pip --disable-pip-version-check -q install --no-deps --force-reinstall target/wheels/kdcache-*.whl
	touch $@

# clippy (warnings are errors) on the core and the binding, the torch build in release (numerics), every
# test target again without libtorch in debug (a separate profile, so the two feature sets do not rebuild
# each other; the torch-only targets compile to nothing), the fuzz targets (they must build; in this
# target directory, where the debug build without libtorch left every dependency they need), and the
# Python package's tests (real torch, DataLoader workers, the CLI beside it)
test: setup
	$(CARGO) clippy --release --all-targets -- -D warnings
	PYO3_PYTHON=$(abspath $(PY)) $(CARGO) clippy --release -p kdcache-python -- -D warnings
	$(CARGO) test --release
	$(CARGO) test --no-default-features --lib --tests
	CARGO_TARGET_DIR=$${CARGO_TARGET_DIR:-$(abspath target)} $(CARGO) build --manifest-path fuzz/Cargo.toml
	KDCACHE_BIN=$(KD) $(PY) -m pytest python/tests -q

$(DATA)/synth.json: | setup
	$(KD) synth --out $(DATA) --classes $(CLASSES) --train $(TRAIN_ROWS) --test $(TEST_ROWS)
# synth writes the oracle teacher too (a pattern rule needs every prerequisite to have a rule)
$(TEACHER): $(DATA)/synth.json
	@test -f $@
# one rule per split; the teacher's batch is picked from the device and the class count
$(CACHE)/%/_manifest.json: $(DATA)/synth.json $(TEACHER)
	$(KD) cache --teacher $(TEACHER) --data $(DATA) --split $* --out $(CACHE)/$* --top-k $(TOPK) --temperatures 1,2,4 --overwrite

cache: setup $(CACHE)/train/_manifest.json $(CACHE)/test/_manifest.json
	$(KD) verify $(CACHE)/train

train: cache
	$(KD) train --cache $(CACHE)/train --eval-cache $(CACHE)/test --data $(DATA) --loss dis --epochs $(EPOCHS) --out $(RUNS)/dis --resume

demo: cache
	rm -rf $(RUNS)/demo
	for loss in dis full ghost topk; do \
	  $(KD) train --cache $(CACHE)/train --eval-cache $(CACHE)/test --data $(DATA) --loss $$loss --epochs $(EPOCHS) --eval-every 100 --out $(RUNS)/demo/$$loss >/dev/null; \
	done
	@echo; echo "teacher: $$($(KD) dump $(CACHE)/test --json --rows 0..0 | python3 -c 'import json,sys; m=json.load(sys.stdin)["manifest"]; print("held-out top-1 %.4f (agreement of its argmax with the labels)" % m["top1_agreement"])')"
	$(KD) compare $(RUNS)/demo/dis $(RUNS)/demo/full $(RUNS)/demo/ghost $(RUNS)/demo/topk --plot $(RUNS)/demo/curves.svg --target $(RUNS)/demo/full
	@echo "curves: $(RUNS)/demo/curves.svg"

# criterion benchmarks of cache I/O, then kdcache bench's seven tables (fidelity, step time vs C, cache I/O
# against pyarrow, quality on the demo cache, dis proposals, augmented views, ensembles) in results/bench.md and results/bench.json
bench: cache
	$(CARGO) bench --bench cache_io
	$(KD) bench --out results --quality-data $(DATA)

# the Python package's throughput: DataLoader rows/s (block-shuffled, random, pyarrow) on kdcache bench's io
# caches, and CacheWriter.add_logits against kdcache import (results/python.md, results/python.json)
.PHONY: bench-python
bench-python: setup
	$(PY) benches/python.py --out results --kdcache $(KD)

# DistillHead's step against kdcache train's at C = 20k, 100k, 1M, and the class-sharded head's memory and
# step time on 1, 2, 4 gloo ranks at C = 1M (results/head.md, results/head-sharded.md)
.PHONY: bench-head
bench-head: setup
	KDCACHE_BIN=$(KD) $(PY) benches/head.py --out results
	$(PY) benches/head.py --sharded --classes 1000000 --ranks 1,2,4 --out results

# fuzz the readers of hostile files (kds, Parquet, manifest, .npy), FUZZ_S seconds per target; fails on a
# crash or an input slower than 1 s (100 ms on replay); see fuzz/README.md
FUZZ_S ?= 60
.PHONY: fuzz
fuzz:
	FUZZ_S=$(FUZZ_S) CARGO=$(CARGO) bash tools/fuzz.sh

clean:
	rm -rf data runs target/release/kdcache target/wheels $(WHEEL_STAMP)
