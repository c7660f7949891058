# ltrr: the two commands that set up a fresh machine are `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Set explicitly: Ray 2.60 turns token auth on once ~/.ray/auth_token exists.
# Everything here listens on 127.0.0.1 only; use token mode on a shared network.
export RAY_AUTH_MODE ?= disabled
export RAY_USAGE_STATS_ENABLED := 0
# Measured on 2 cores (README, "Latency"): deployments call each other over gRPC instead of Ray
# actor calls (+20% req/s at 16 callers); the two loop flags stay at Ray's defaults, which did best.
export RAY_SERVE_USE_GRPC_BY_DEFAULT ?= 1
export RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD ?= 1
export RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP ?= 1
export HF_HUB_OFFLINE := 1
# The gRPC proxy's largest message (Ray's default is 2 GiB); read from the environment of `ray start`.
export RAY_SERVE_GRPC_MAX_MESSAGE_SIZE ?= 4194304
export TRANSFORMERS_OFFLINE := 1
export LTRR_HOME := $(CURDIR)

.PHONY: install meili pg run up down logs test unit integration lint bench bench-quick chaos overload soak multinode autoscale bench-scale clean

install: $(STAMP)

# torch first, pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $@

meili: install
	$(PY) -m ltrr.backends.meili_server install

# PostgreSQL 15's server binaries, for the event log's tests and benchmark (ltrr/pgserver.py starts a
# private server from them); apt installs them only when initdb is missing (sudo unless root).
PG_BIN := /usr/lib/postgresql/15/bin
pg:
	@if test -x $(PG_BIN)/initdb || command -v initdb >/dev/null; then \
		echo "PostgreSQL: $$($(PG_BIN)/initdb --version 2>/dev/null || initdb --version)"; \
	else \
		SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
		$$SUDO apt-get update -q && { $$SUDO apt-get install -y postgresql-15 || $$SUDO apt-get install -y postgresql; }; \
	fi

up: install meili
	scripts/up.sh

run: up
	@echo "ltrr is serving gRPC on 127.0.0.1:9000; following the logs (Ctrl-C stops following; 'make down' stops ltrr)"
	scripts/logs.sh

logs:
	scripts/logs.sh

down:
	scripts/down.sh

test: install meili pg
	$(PY) -m ruff check ltrr deployments graph tests scripts
	$(PY) -m pytest -q -ra

unit: install pg
	$(PY) -m pytest -q -m "not integration"

integration: install meili
	$(PY) -m pytest -q -m integration

lint: install
	$(PY) -m ruff check ltrr deployments graph tests scripts
	$(PY) -m mypy ltrr graph deployments

bench: install meili
	$(PY) scripts/bench_policy.py
	$(PY) scripts/bench_eventlog.py
	$(PY) scripts/bench_embed.py
	$(PY) scripts/bench.py
	$(PY) scripts/bench_ranker.py
	$(PY) scripts/bench_regret.py
	$(PY) scripts/bench_report.py

# About 5 minutes with `make up` running: the ranker's held-out quality and cost, then a short
# regret run (ltrr, two VW learners, the peers) on the same queries; writes bench-out/quick/.
bench-quick: install meili
	$(PY) scripts/bench_ranker.py -n 150 --train-n 300 --no-losses --reps 60 --searches 40 --out bench-out/quick
	$(PY) scripts/bench_regret.py --queries 300 --vw "vw squarecb g=1000,vw epsilon 0.1" --out bench-out/quick

# Issue 11, against the running app (`make up` first): `overload` is 200 callers back to back for 60 s, `soak`
# 30 minutes of open-loop load at 10 searches/s; each writes bench-out/<name>/. Options: SOAK_ARGS="--minutes 5".
# About 20 minutes: every fault of scripts/chaos.py twice under load; writes bench-out/chaos/.
chaos: install
	$(PY) scripts/chaos.py $(CHAOS_ARGS)

overload: install
	$(PY) scripts/overload.py $(OVERLOAD_ARGS)

soak: install
	$(PY) scripts/soak.py $(SOAK_ARGS)

# Issue 12, about 5 minutes once its catalog slice is indexed (more the first time): a head and a worker Ray node
# on this machine with PostgreSQL behind them, the worker's raylet killed under load, then restarted; writes
# bench-out/multinode/. Runs beside `make up`, stopping only what it started. MULTINODE_ARGS="--short" (~4 min).
multinode: install meili pg
	scripts/multinode.sh $(MULTINODE_ARGS)

# Issue 12, "Scaling", against the running app (`make up` first), about 4 minutes: replicas changed through Serve's
# REST API (PUT /api/serve/applications/, what the dashboard and `serve deploy` send), then autoscaling under a ramp
# of closed-loop callers; restores the original config; writes bench-out/autoscale/. AUTOSCALE_ARGS="--step-s 15".
autoscale: install
	$(PY) scripts/autoscale.py $(AUTOSCALE_ARGS)

# Issue 10, "Scale", against the running servers (`make up` first; not part of `make bench`): synthetic catalogs of
# 58k, 250k and 1M entities under var/scale/, each ingested into its own indexes (hashing embedder) and served in turn,
# then the normal app re-deployed. Estimated 1.5-2 hours the first time (the 1M catalog's generation and ingest),
# about 20 minutes with SCALE_ARGS="--reuse"; writes bench-out/scale/. SCALE_ARGS="--sizes 58000 --searches 50 --drop".
bench-scale: install meili
	$(PY) scripts/bench_scale.py $(SCALE_ARGS)

clean: down
	rm -rf var
