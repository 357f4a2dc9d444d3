# funnel: `make run` (simulate the default world and run the pipeline) and `make test`.
# Every target depends on `setup`, which builds .venv (Python 3.10) with uv from the
# committed lock file, so a fresh clone needs nothing else typed.

SHELL := /bin/bash
PYTHON310 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.10.*/bin/python3.10) $(shell command -v python3.10))
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
WORK ?= work
# TFX 1.16 runs on Keras 2 (tf-keras); this must be set before TensorFlow is imported.
export TF_USE_LEGACY_KERAS := 1
export PYTHONWARNINGS := ignore::FutureWarning
export TF_CPP_MIN_LOG_LEVEL := 3
# uv writes every installed module's bytecode at install time. Without it, a process started
# where bytecode is not written (PYTHONDONTWRITEBYTECODE, as on these machines and CI) compiles
# TensorFlow, TFX and Beam from source on every start: importing them took 72 s here, 25 s with
# the bytecode (setup takes about a minute longer). The test suite starts dozens of such processes
# (xdist workers, the ablation and peer children, the distributed workers, the CLI).
export UV_COMPILE_BYTECODE := 1

.PHONY: setup bench-deps orchestration-deps browser-deps run test test-all test-fast audit bench bench-census bench-ingest bench-scale bench-train bench-serving bench-load bench-peers bench-position-free lock clean

setup: $(STAMP)

UV_LOG := $(TOOLS)/uv-setup.log
$(UV):
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found (set PYTHON310=/path/to/python3.10)"; exit 1; }
	@echo "setup: installing uv into $(TOOLS) with $(PYTHON310) (log: $(UV_LOG))"
	@mkdir -p $(TOOLS) && { $(PYTHON310) -m venv $(TOOLS) && \
	  $(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==0.13.9; } > $(UV_LOG) 2>&1 \
	  || { cat $(UV_LOG); echo "setup failed: see $(UV_LOG)"; exit 1; }

# uv lists every package it installs; that list goes to a log (shown when the install fails).
SETUP_LOG := $(TOOLS)/setup.log
$(STAMP): requirements.lock setup.py $(UV)
	@echo "setup: installing requirements.lock into $(VENV) with uv (log: $(SETUP_LOG))"
	@{ test -x $(PY) || $(UV) venv --seed --python $(PYTHON310) $(VENV); \
	  $(UV) pip sync --python $(PY) requirements.lock && \
	  $(UV) pip install --python $(PY) --no-deps -e . ; } > $(SETUP_LOG) 2>&1 \
	  || { tail -n 40 $(SETUP_LOG); echo "setup failed: see $(SETUP_LOG)"; exit 1; }
	@touch $@

# Re-resolve the pinned sets after editing requirements.in or requirements-orchestration.in. The
# orchestration lock starts from requirements.lock's pins (uv keeps an output file's pins where it
# can), so the two agree on every package they share but the few the extra forces (listed in
# requirements-orchestration.in; tests/pipeline/test_orchestration.py checks it).
lock: $(UV)
	$(UV) pip compile requirements.in --python-version 3.10 -o requirements.lock
	cp requirements.lock requirements-orchestration.lock
	$(UV) pip compile requirements-orchestration.in --python-version 3.10 -o requirements-orchestration.lock

run: setup
	$(VENV)/bin/funnel simulate --out $(WORK)/logs
	$(VENV)/bin/funnel run --logs $(WORK)/logs --work $(WORK)

# The bench-only extra (setup.py `bench`): DeepCTR for `make bench-peers`, never a dependency of
# funnel itself. Pinned; it adds no package beyond the lock file's.
BENCH_STAMP := $(VENV)/.bench-installed
bench-deps: $(BENCH_STAMP)

$(BENCH_STAMP): $(STAMP)
	$(UV) pip install --python $(PY) --no-deps "deepctr==0.9.4"
	touch $@

# The orchestration extra (setup.py `orchestration`): Kubeflow Pipelines (kfp) and Airflow, for
# `funnel compile` and its tests; not part of `make setup`. `uv pip install` adds it to .venv without
# removing anything; a later `make setup` that re-syncs requirements.lock removes it again and
# touches $(STAMP), which makes this stamp stale, so the next `make test` reinstalls it.
ORCH_STAMP := $(VENV)/.orchestration-installed
orchestration-deps: $(ORCH_STAMP)

$(ORCH_STAMP): $(STAMP) requirements-orchestration.lock
	$(UV) pip install --python $(PY) -r requirements-orchestration.lock
	touch $@

# Headless Chromium for the test that renders WORK/report.html (tests/pipeline/test_report_page.py):
# Debian's `chromium`, installed with apt-get when missing (as root, like CI). The package list is
# refreshed only when the install fails, so a machine with a current list installs without it.
BROWSER_LOG := $(TOOLS)/browser-setup.log
APT_CHROMIUM := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium
browser-deps:
	@test -x /usr/bin/chromium || command -v chromium > /dev/null || { \
	  mkdir -p $(TOOLS); \
	  echo "browser-deps: installing Debian's chromium with apt-get (log: $(BROWSER_LOG))"; \
	  { $(APT_CHROMIUM) || { apt-get update && $(APT_CHROMIUM); }; } > $(BROWSER_LOG) 2>&1 \
	    || { tail -n 40 $(BROWSER_LOG); echo "browser-deps failed: see $(BROWSER_LOG)"; exit 1; }; }

# The suite runs on TEST_WORKERS pytest-xdist workers (tests/conftest.py groups the tests that
# share one pipeline run onto one worker); TEST_WORKERS=0 runs it in this process. PYTEST_ARGS adds
# pytest options, e.g. PYTEST_ARGS="--durations=30" or a test path.
TEST_WORKERS ?= 2
# `make test`: every test but the longest end-to-end checks (marked `heavy`: the daily retraining
# runs, distributed training, the Trainer on each architecture, the BeamDagRunner, the ablation and
# peer suites). `make test-all` adds them; CI (.ci/run) runs `make test-all`.
test: setup bench-deps orchestration-deps browser-deps
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder -m "not heavy" $(PYTEST_ARGS)

test-all: setup bench-deps orchestration-deps browser-deps
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

# The unit tests only (skips the end-to-end ones marked `e2e`).
test-fast: setup bench-deps orchestration-deps browser-deps
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder -m "not e2e" $(PYTEST_ARGS)

# Known vulnerabilities of every pinned package in both lock files: pip-audit (pinned, run by uv in
# its own environment, never installed into .venv). It needs the network: PyPI's JSON API (the
# default) or OSV (AUDIT_SERVICE=osv). --strict fails when a package cannot be audited, so an
# unreachable database is a failure, not "No known vulnerabilities found". Not part of `make test`.
PIP_AUDIT := pip-audit==2.10.1
AUDIT_SERVICE ?= pypi
audit: $(UV)
	$(UV) tool run --from "$(PIP_AUDIT)" pip-audit --strict --no-deps --disable-pip --progress-spinner off \
	  --vulnerability-service $(AUDIT_SERVICE) -r requirements.lock -r requirements-orchestration.lock $(AUDIT_ARGS)

bench: bench-ingest bench-train bench-serving bench-load bench-peers

# DeepCTR's MMOE, PLE, ESMM, DIN, BST, DCNMix and EDCN beside funnel's dmt and dnn-base on the same
# ingested default-world examples (the trainer's settings: 2 epochs, batch 512); simulates the world
# into $(WORK)/logs if absent. Library messages go to $(WORK)/peers/peers.log.
bench-peers: bench-deps
	test -d $(WORK)/logs || $(VENV)/bin/funnel simulate --out $(WORK)/logs
	$(PY) -m bench.peers_bench --logs $(WORK)/logs --work $(WORK) --out bench/results/peers.json

# DMT trained on position-free labels drawn from the simulator's truth beside DMT trained on the
# logged ones, same examples (bench/position_free_labels.py); not part of `make bench`.
bench-position-free: setup
	test -d $(WORK)/logs || $(VENV)/bin/funnel simulate --out $(WORK)/logs
	$(PY) -m bench.position_free_labels --logs $(WORK)/logs --work $(WORK) --out bench/results/position_free.json

# Ingest vs the I/O floor on >= 1M simulated impressions (about 5 minutes).
bench-ingest: setup
	$(PY) -m bench.ingest_bench --out bench/results/ingest.json --log $(WORK)/bench/ingest.log

# Ingest + Transform on a simulated world of >= 5M impressions, Beam multi-processing on every
# core: wall and CPU time, impressions/s, peak RSS of the workers and bytes written per stage. On 2
# idle cores: ~5 min to simulate (once: the logs are kept in $(WORK)/bench-scale/ and reused),
# ~1.5 min of ingest, ~18 min of Transform (its two passes); ~4 GB of memory at the peak.
bench-scale: setup
	$(PY) -m bench.scale_bench --work $(WORK)/bench-scale --out bench/results/scale.json --log $(WORK)/bench/scale.log

# Census-Income (KDD), the MMoE / DTN papers' public benchmark: funnel's shared-bottom, MMoE, PLE and DTN
# layers and DeepCTR's DCN-M and EDCN, test AUC per task over 5 seeds beside the DTN paper's Table 3
# (reads ../shared/data).
bench-census: bench-deps
	$(PY) -m bench.census_bench --out bench/results/census.json --log $(WORK)/bench/census.log

# DMT training throughput and the achieved fraction of the machine's matmul FLOP/s.
bench-train: setup
	$(PY) -m bench.train_bench --out bench/results/train.json --log $(WORK)/bench/train.log

# Per-request ranking latency (one user, 200 candidates) in-process and through `funnel serve`,
# on the newest model `make run` pushed to $(WORK)/serving (trains a small one if there is none).
bench-serving: setup
	$(PY) -m bench.serving_bench --work $(WORK) --out bench/results/serving.json

# `funnel serve` under load: 20,000 `rank` requests (200 candidates) at concurrency 16 on loopback,
# 5 % malformed (six kinds), a version pushed mid-load; fails unless no valid request failed and every
# malformed one got its status. Same model as bench-serving (trains a small one if there is none).
bench-load: setup
	$(PY) -m bench.load_bench --work $(WORK) --out bench/results/load.json

clean:
	rm -rf $(WORK) .pytest_cache
