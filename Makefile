# Every entry point bootstraps .venv itself: on a fresh clone where only python3
# exists, `make test` creates .venv, installs the project with its test extras
# and runs the suite. The venv is rebuilt when setup.cfg or pyproject.toml change.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := test
.PHONY: test venv lint clean cluster shell sim bench fuzz nemesis

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

# ruff (rules and format in pyproject.toml), mypy (settings in setup.cfg:
# strict for ledgerpaxos/core, ledgerpaxos/storage and wire).
LINTED := ledgerpaxos wire tools tests
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)
	$(VENV)/bin/mypy

# KEEP=1 keeps data/ and logs/ from the last run.
cluster: $(STAMP)
	$(VENV)/bin/ledgerpaxos-shell --launch $(if $(KEEP),--keep-data)

# The shell on replicas that are already running.
shell: $(STAMP)
	$(VENV)/bin/ledgerpaxos-shell

# make sim SEEDS=10000 START=0 REPLICAS=5
SEEDS ?= 1000
START ?= 0
REPLICAS ?= 5
sim: $(STAMP)
	$(VENV)/bin/ledgerpaxos-sim --seeds $(SEEDS) --start $(START) --replicas $(REPLICAS)

# 1x1, 64x1 and 64x100 (clients x transfers per request) on 5 fresh replicas with
# fsync on: one table, docs/bench.json and docs/bench.png. make bench DURATION=30
DURATION ?= 10
PLOT_STAMP := $(VENV)/.installed-plot

$(PLOT_STAMP): $(STAMP)
	$(VENV)/bin/pip install -q -e '.[plot]'
	touch $@

bench: $(PLOT_STAMP)
	$(VENV)/bin/ledgerpaxos-bench --matrix --replicas 5 --duration $(DURATION) \
		--json docs/bench.json --plot docs/bench.png

# Mutated frames against three real replicas over authenticated connections:
# make fuzz PEER_FRAMES=100000 CLIENT_FRAMES=1000000 SEED=1
PEER_FRAMES ?= 100000
CLIENT_FRAMES ?= 1000000
SEED ?= 1
fuzz: $(STAMP)
	$(VENV)/bin/ledgerpaxos-fuzz --peer-frames $(PEER_FRAMES) --client-frames $(CLIENT_FRAMES) --seed $(SEED)

# The real cluster under real faults (kill -9, SIGSTOP, partitions with nftables,
# a full tmpfs, a lost disk, a flipped WAL byte), then its history checked:
# make nemesis DURATION=600 SEED=1 (partitions and the full disk need root).
nemesis: $(PLOT_STAMP)
	$(VENV)/bin/ledgerpaxos-nemesis --duration $(if $(filter command line,$(origin DURATION)),$(DURATION),60) \
		--seed $(SEED) --json docs/nemesis.json --plot docs/nemesis.png

clean:
	rm -rf $(VENV) data logs .pytest_cache .hypothesis .ruff_cache .mypy_cache build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
