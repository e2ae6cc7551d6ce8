# Every entry point bootstraps .venv itself: on a fresh clone where only python3
# exists, `make test` creates .venv, installs the project with its test extras
# and runs the suite. The venv is rebuilt when setup.cfg or pyproject.toml change.

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := test
.PHONY: test venv lint clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

venv: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/python -m compileall -q ledgerpaxos wire tools tests

# Later entry points, each depending on $(STAMP) like `test`:
#   cluster  start the replicas of configs/cluster.toml and the cmd2 shell
#   sim      run the deterministic simulator over many seeds
#   bench    run the benchmark and draw its figures (the `plot` extra)

clean:
	rm -rf $(VENV) data logs .pytest_cache .hypothesis build dist *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
