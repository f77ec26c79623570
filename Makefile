# Parley developer entry points. `make test` is the one test command (CI runs it too).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTEST  := $(BIN)/python -m pytest

.PHONY: setup lint format test test-unit test-integration test-containers test-faults demo bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt shared/crypto/pyproject.toml services/relay/pyproject.toml services/client/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The single test command: lint, then unit, integration, container and fault tests.
test: lint
	$(PYTEST) tests

test-unit: setup
	$(PYTEST) tests/unit

test-integration: setup
	$(PYTEST) tests/integration

test-containers: setup
	$(PYTEST) tests/containers

test-faults: setup
	$(PYTEST) tests/faults

bench: setup
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/relay.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
