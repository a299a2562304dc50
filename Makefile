# launchdeck: every target works from a fresh clone; `make install` is implied where needed.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
HOROVOD_STAMP := $(VENV)/.horovod-stamp
# Extra pip arguments for torch, e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu".
TORCH_PIP_ARGS ?=
PYTEST_ARGS ?=
# make launch STRATEGY=zero3 [NPROC=2] [STEPS=50] [MODEL=tiny] [ARGS="--set zero.overlap_comm=false"]
STRATEGY ?= zero3
NPROC ?=
STEPS ?=
MODEL ?= tiny
ARGS ?=
SMOKE_STEPS ?= 12

# Debian packages the multi-host and Slurm tests run for real (fake hosts need root: network namespaces).
SYSTEM_PACKAGES := iproute2 openssh-server openssh-client pdsh openmpi-bin slurm-wlm munge procps

.PHONY: install horovod system-deps test lint configs launch smoke bench bench-overhead bench-memory bench-cluster bench-stall bench-ray stress clean help

help:
	@echo "make install   create $(VENV) with pinned torch/deepspeed/transformers and launchdeck (editable)"
	@echo "make horovod   build Horovod 0.28.1 (PyTorch + Gloo) against the venv's torch; wheel cached in ~/.cache"
	@echo "make system-deps  apt-get install what the multi-host and Slurm tests run (root; CI does this)"
	@echo "make test      run the test suite (what CI runs; builds Horovod first so its tests never skip)"
	@echo "make configs   regenerate ds_configs/ from strategies/"
	@echo "make lint      ruff"
	@echo "make launch    train STRATEGY (default zero3) on all local GPUs, or 2 CPU ranks without one"
	@echo "make smoke     every strategy for a few steps on 2 CPU ranks, one table"
	@echo "make bench     launch overhead vs torchrun and steps/s per strategy -> runs/bench-*/report.md"
	@echo "make bench-overhead  launchdeck vs torchrun --standalone on a trivial 2-rank job: median ratio of pairs, 3 rounds"
	@echo "make bench-memory    launchdeck estimate vs memory measured per rank (MemTracker), every strategy; MODELS, WORLDS, SEQ_LEN"
	@echo "make stress         trial loops (same-instant launches, Ctrl-C of one of two, kill -9 here and on 2 fake hosts) and a long fuzz; ARGS='--trials 20'"
	@echo "make bench-stall    (root) --stall-at drills here and on 2 fake hosts, 10 runs with no false stall, heartbeat cost"
	@echo "make bench-cluster  (root) every transport across 2 fake hosts, teardown times, Slurm -> runs/bench-cluster-*/"
	@echo "make bench-ray      (root) a Ray cluster on 2 fake hosts: training, launch overhead vs ssh, memory per node"

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt $(TORCH_PIP_ARGS) torch
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,ray]'
	$(BIN)/python -m compileall -q launcher  # bytecode up front: launches start faster, also under PYTHONDONTWRITEBYTECODE
	touch $@

horovod: $(HOROVOD_STAMP)

$(HOROVOD_STAMP): $(STAMP) tools/build_horovod.sh
	PYTHON=$(BIN)/python bash tools/build_horovod.sh
	touch $@

system-deps:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi

test: $(STAMP) $(HOROVOD_STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=30 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check launcher tests benchmarks

configs: $(STAMP)
	$(BIN)/python -m launcher.render.reference ds_configs

launch: $(STAMP)
	$(BIN)/launchdeck launch $(STRATEGY) $(if $(NPROC),--nproc $(NPROC)) $(if $(STEPS),--steps $(STEPS)) \
		--model $(MODEL) $(ARGS)

smoke: $(STAMP)
	$(BIN)/python benchmarks/smoke.py $(SMOKE_STEPS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

bench-overhead: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

bench-memory: $(STAMP) $(HOROVOD_STAMP)
	$(BIN)/python benchmarks/memory.py

bench-cluster: $(STAMP) $(HOROVOD_STAMP) system-deps
	$(BIN)/python benchmarks/cluster.py

bench-ray: $(STAMP) $(HOROVOD_STAMP) system-deps
	$(BIN)/python benchmarks/ray_transport.py

bench-stall: $(STAMP) system-deps
	$(BIN)/python benchmarks/stall.py $(ARGS)

stress: $(STAMP) system-deps
	$(BIN)/python benchmarks/stress.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
