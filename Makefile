# Two commands for a newcomer: `make run` and `make test`. The virtualenv is made on first use;
# `make run` installs the runtime dependencies only, `make test` adds the test tools (pytest, ruff,
# Playwright, scikit-learn for the benches). pip's own lines show the progress.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/monitor.yaml

.PHONY: run daemon test lint serve clean

$(BIN)/python:
	@echo "== creating $(VENV) with $(PYTHON) -m venv"
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "cannot create $(VENV): on Debian or Ubuntu, 'sudo apt-get install python3-venv' first"; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip

$(BIN)/newsmonitor: pyproject.toml | $(BIN)/python
	@echo "== installing newsmonitor and its runtime dependencies into $(VENV) (a minute or two the first time)"
	$(BIN)/pip install --progress-bar on -e .
	touch $@

$(VENV)/.test-tools: pyproject.toml $(BIN)/newsmonitor
	@echo "== adding the test tools to $(VENV)"
	$(BIN)/pip install --progress-bar on -e '.[test]'
	touch $@

run: $(BIN)/newsmonitor  ## one pass over seeds/ and every configured feed, then exit
	$(BIN)/newsmonitor --config $(CONFIG) run --once

daemon: $(BIN)/newsmonitor  ## keep running on the schedule until Ctrl-C / SIGTERM
	$(BIN)/newsmonitor --config $(CONFIG) run

test: $(VENV)/.test-tools  ## the whole test suite (what CI runs)
	$(BIN)/ruff check monitor tests bench
	$(BIN)/python -m pytest -q

serve: $(BIN)/newsmonitor  ## browse the database with Datasette on http://127.0.0.1:8001/ (read-only)
	$(BIN)/newsmonitor --config $(CONFIG) serve

lint: $(VENV)/.test-tools
	$(BIN)/ruff check monitor tests bench

clean:
	rm -rf $(VENV) data/monitor.db data/monitor.db-*
