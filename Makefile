# aftercare - developer entry points. Each target creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help venv vendor demo test lint typecheck proto bench packages clean

help:            ## list targets
	@grep -E '^[a-z]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/ -/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP) vendor  ## create .venv and install aftercare with its dev tools

vendor:          ## fetch the portal's pinned npm packages (asciinema-player), sha512 checked
	packaging/vendor.sh

demo: $(STAMP) vendor  ## run a collector (SQLite store under ./var) and a local agent
	$(BIN)/python -m collector.demo --var var

test: $(STAMP) vendor  ## run the whole test suite on two workers (one test file per worker at a time)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

lint: $(STAMP)   ## ruff format check and lint
	$(BIN)/ruff format --check agent collector common playbooks proto tests
	$(BIN)/ruff check agent collector common playbooks proto tests

typecheck: $(STAMP)  ## mypy --strict on the packages
	$(BIN)/mypy

proto: $(STAMP)  ## regenerate the Python code from proto/*.proto
	$(BIN)/python -m proto.generate

bench: $(STAMP)  ## print performance figures (not a pass/fail test)
	$(BIN)/python tests/bench/agent_cycle.py
	$(BIN)/python tests/bench/ingest.py
	$(BIN)/python tests/bench/rules_eval.py
	$(BIN)/python tests/bench/fault_to_ticket.py
	$(BIN)/python tests/bench/playbook_run.py
	$(BIN)/python tests/bench/session_throughput.py
	$(BIN)/python tests/bench/redaction.py
	$(BIN)/python tests/bench/portal_pages.py

packages: $(STAMP) vendor  ## build the agent's and the collector's .deb and .rpm into build/packages
	packaging/build.sh agent deb rpm
	packaging/build.sh collector deb rpm

clean:           ## remove the venv, demo state and built packages
	rm -rf $(VENV) var build
