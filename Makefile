# kdcache — everything goes through these targets. On a fresh clone:  make demo   and   make test
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
KD := target/release/kdcache
SCALE ?= default
RAYON_NUM_THREADS ?= $(shell nproc)
export RAYON_NUM_THREADS

ifeq ($(SCALE),large)
  CLASSES := 100000
  TRAIN_ROWS := 100000
  TEST_ROWS := 10000
  # a trained MLP teacher over 100k classes would take hours on a CPU: use the generator's Bayes-optimal teacher
  TEACHER = $(DATA)/oracle.safetensors
  EPOCHS ?= 1
  # B×C logits stay small enough for the allocator to reuse them (100 MB blocks go back to the OS each time)
  CACHE_BATCH := 32
else
  CLASSES := 1000
  TRAIN_ROWS := 100000
  TEST_ROWS := 10000
  TEACHER = $(DATA)/teacher.safetensors
  EPOCHS ?= 3
  CACHE_BATCH := 1024
endif
DATA := data/$(SCALE)
CACHE := $(DATA)/cache
RUNS := $(if $(filter default,$(SCALE)),runs,runs/$(SCALE))

.PHONY: setup build test demo cache train bench clean help
help:
	@echo "make demo    set up, then synth -> teach -> cache -> train (dis, full, topk) and print a summary table"
	@echo "make test    set up, then run the whole test suite"
	@echo "make cache   build the demo cache (SCALE=large: 100,000 classes);  make train: train a dis student on it"
	@echo "make bench   criterion benchmarks, then kdcache bench (results/bench.md, results/bench.json)"

# torch venv (idempotent; CPU-only torch unless a GPU is visible) and the release build
setup: .venv/.kdcache-setup build
.venv/.kdcache-setup: tools/setup-torch.sh
	bash tools/setup-torch.sh
	touch $@
build: .venv/.kdcache-setup
	$(CARGO) build --release --bins

# the torch build in release (numerics), the libtorch-free build in debug (a separate target dir, so the
# two feature sets do not rebuild each other), and the fuzz targets (they must build)
test: setup
	$(CARGO) test --release
	$(CARGO) test --no-default-features --lib --test roundtrip --test corrupt --test cli_notorch
	$(CARGO) build --manifest-path fuzz/Cargo.toml

$(DATA)/synth.json: | setup
	$(KD) synth --out $(DATA) --classes $(CLASSES) --train $(TRAIN_ROWS) --test $(TEST_ROWS)
$(DATA)/teacher.safetensors: $(DATA)/synth.json
	$(KD) teach --data $(DATA) --epochs 3 --out $@
$(CACHE)/train/manifest.json: $(DATA)/synth.json $(TEACHER)
	$(KD) cache --teacher $(TEACHER) --data $(DATA) --split train --out $(CACHE)/train --top-k 64 --temperatures 1,2,4 --batch-size $(CACHE_BATCH) --overwrite
$(CACHE)/test/manifest.json: $(DATA)/synth.json $(TEACHER)
	$(KD) cache --teacher $(TEACHER) --data $(DATA) --split test --out $(CACHE)/test --top-k 64 --temperatures 1,2,4 --batch-size $(CACHE_BATCH) --overwrite

cache: setup $(CACHE)/train/manifest.json $(CACHE)/test/manifest.json
	$(KD) verify $(CACHE)/train

train: cache
	$(KD) train --cache $(CACHE)/train --eval-cache $(CACHE)/test --data $(DATA) --loss dis --epochs $(EPOCHS) --out $(RUNS)/dis --resume 2>/dev/null \
	  || $(KD) train --cache $(CACHE)/train --eval-cache $(CACHE)/test --data $(DATA) --loss dis --epochs $(EPOCHS) --out $(RUNS)/dis

demo: cache
	rm -rf $(RUNS)/demo
	for loss in dis full topk; do \
	  $(KD) train --cache $(CACHE)/train --eval-cache $(CACHE)/test --data $(DATA) --loss $$loss --epochs $(EPOCHS) --out $(RUNS)/demo/$$loss >/dev/null; \
	done
	@echo; echo "teacher: $$($(KD) dump $(CACHE)/test --json --rows 0..0 | python3 -c 'import json,sys; m=json.load(sys.stdin)["manifest"]; print("held-out top-1 %.4f (agreement of its argmax with the labels)" % m["top1_agreement"])')"
	$(KD) compare $(RUNS)/demo/dis $(RUNS)/demo/full $(RUNS)/demo/topk --plot $(RUNS)/demo/curves.svg
	@echo "curves: $(RUNS)/demo/curves.svg"

# criterion benchmarks of cache I/O, then kdcache bench's four tables (fidelity, step time vs C, cache I/O
# against pyarrow, quality on the demo cache) in results/bench.md and results/bench.json
bench: cache
	$(CARGO) bench --bench cache_io
	$(KD) bench --out results --quality-data $(DATA)

clean:
	rm -rf data runs target/release/kdcache
