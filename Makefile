# Two commands: `make run` (Loom on http://localhost:3000) and `make test` (the whole suite).
# Each sets itself up, once: the venv, the package, bun for Reflex's frontend build, axe-core for the browser tests.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
BUN := .tools/node_modules/bun/bin/bun.exe
AXE := .tools/node_modules/axe-core/axe.min.js
export REFLEX_BUN_PATH := $(abspath $(BUN))
export REFLEX_TELEMETRY_ENABLED := false
export PYTHONUNBUFFERED := 1

.PHONY: run test lint setup bench clean

run: setup
	$(BIN)/loom up

test: setup lint
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

setup: $(VENV)/.installed $(BUN) $(AXE)

$(VENV)/.installed: pyproject.toml loom_migrator/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e './loom_migrator[github]'  # the SDK, its own distribution, from this checkout
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

$(BUN):
	npm install --silent --prefix .tools bun@1.4.4
	test -x $(BUN)

# The browser tests inject it into each page (tests/e2e/test_every_screen.py); after bun, as npm rewrites .tools.
$(AXE): | $(BUN)
	npm install --silent --prefix .tools axe-core@4.11.4
	test -f $(AXE)

bench: setup
	$(BIN)/python bench/announce.py
	$(BIN)/python bench/persist.py
	$(BIN)/python bench/runs.py

clean:
	rm -rf $(VENV) .tools .web data
