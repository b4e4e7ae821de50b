# Two commands for a newcomer: `make run` and `make test`. The virtualenv is made on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/monitor.yaml

.PHONY: run daemon test lint serve bench clean

$(BIN)/newsmonitor: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/newsmonitor  ## one pass over seeds/ and every configured feed, then exit
	$(BIN)/newsmonitor --config $(CONFIG) run --once

daemon: $(BIN)/newsmonitor  ## keep running on the schedule until Ctrl-C / SIGTERM
	$(BIN)/newsmonitor --config $(CONFIG) run

test: $(BIN)/newsmonitor  ## the whole test suite (what CI runs)
	$(BIN)/ruff check monitor tests bench
	$(BIN)/python -m pytest -q

serve: $(BIN)/newsmonitor  ## browse the database with Datasette on http://127.0.0.1:8001/ (read-only)
	$(BIN)/newsmonitor --config $(CONFIG) serve

lint: $(BIN)/newsmonitor
	$(BIN)/ruff check monitor tests bench

clean:
	rm -rf $(VENV) data/monitor.db data/monitor.db-*
