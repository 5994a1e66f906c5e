# make run   - set up .venv and run the gateway on its embedded default (SQLite in ./data)
# make test  - set up .venv with the test tools and run lint, types and the whole suite
# make bench - the gateway against a bare aiohttp ceiling, side by side (bench/README.md)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint typecheck pytest bench clean screenshots

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/gateway serve

test: $(VENV)/.test-installed js-clients lint typecheck pytest

# Segment's JavaScript clients for the compatibility tests (tests/js), installed as locked;
# again whenever the lock file changes. Without npm the tests that need them skip (CI has it).
JS_DIR := tests/js
.PHONY: js-clients
js-clients:
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory $(JS_DIR)/node_modules/.installed; \
	  else echo "js-clients: npm is not installed; the Segment JavaScript client tests skip"; fi

$(JS_DIR)/node_modules/.installed: $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	cd $(JS_DIR) && npm ci --no-audit --no-fund
	touch $@

lint: $(VENV)/.test-installed
	$(BIN)/ruff check gateway tests bench
	$(BIN)/lint-imports

typecheck: $(VENV)/.test-installed
	$(BIN)/mypy

pytest: $(VENV)/.test-installed
	$(BIN)/python -m pytest

# wrk from Debian's packages (else bench/pyload.py stands in) and py-spy for the profile phase.
BENCH_ARGS ?=
bench: $(VENV)/.run-installed
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && apt-get install -y -qq wrk >/dev/null; } || \
	  echo "bench: wrk is not installed; the Python load generator stands in"
	@test -x $(BIN)/py-spy || $(BIN)/python -m pip install --quiet py-spy || \
	  echo "bench: py-spy is not installed; the profile phase is skipped"
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache .import_linter_cache $(JS_DIR)/node_modules

# Retake the UI screenshots the README shows (docs/ui-*.png).
screenshots: $(VENV)/.test-installed
	GATEWAY_TEST_SCREENSHOTS=1 $(BIN)/python -m pytest tests/ui -q
