# Parley developer entry points. `make test` is the one test command (CI runs it too).
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
PYTEST  := $(BIN)/python -m pytest
DOCKERFILES := Dockerfile.relay Dockerfile.client Dockerfile.lb .ci/redis.Dockerfile
# Images built locally by .ci/docker-setup.sh when no container registry is reachable.
LOCAL_BASE_IMAGE  ?= parley-base:bookworm
LOCAL_REDIS_IMAGE ?= parley-redis:bookworm

.PHONY: setup lint format test test-unit test-integration test-containers test-faults test-random demo \
        bench mutate mutate-ci clean docker-setup redis-image images

setup: $(VENV)/.installed

$(VENV)/.installed: requirements-dev.txt shared/crypto/pyproject.toml services/relay/pyproject.toml services/client/pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint $(DOCKERFILES)
	@# The whole suite must collect (e.g. two test files with one basename do not, as the test
	@# folders are not packages): a targeted run would not notice, `make test` would fail at once.
	$(PYTEST) --collect-only -q tests > /dev/null

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The single test command: lint, then unit, integration, fault and container tests. All but
# the container tests run on TEST_WORKERS pytest-xdist processes, one test file per worker at a
# time (most tests wait on servers and clients, not the CPU; a file's module fixtures start
# once); then the container tests, in one process: they share one Docker engine, and images
# built twice at once would replace each other's tags under running projects.
# TEST_WORKERS=0: everything in one process.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),-p no:xdist,-n $(TEST_WORKERS) --dist loadfile)
test: lint
	@status=0; \
	$(PYTEST) $(XDIST) --ignore=tests/containers tests || status=$$?; \
	$(PYTEST) -p no:xdist tests/containers || status=$$?; \
	exit $$status

test-unit: setup
	$(PYTEST) tests/unit

test-integration: setup
	$(PYTEST) tests/integration

test-containers: setup
	$(PYTEST) tests/containers

test-faults: setup
	$(PYTEST) tests/faults

# The whole suite in a random order (the seed is printed, re-run one with
# RANDOM_ORDER_SEED=<n>): proves no test depends on another having run first. The default
# bucket shuffles the modules and the tests inside each; RANDOM_ORDER_BUCKET=global mixes all
# tests (much slower: module fixtures such as the compose projects start again and again).
RANDOM_ORDER_SEED ?= $(shell python3 -c 'import random; print(random.randrange(10**6))')
RANDOM_ORDER_SEED := $(RANDOM_ORDER_SEED)  # drawn once: both pytest runs use the same seed
RANDOM_ORDER_BUCKET ?= module
RANDOM_ORDER := --random-order-bucket=$(RANDOM_ORDER_BUCKET) --random-order-seed=$(RANDOM_ORDER_SEED)
test-random: lint
	@status=0; \
	$(PYTEST) $(XDIST) $(RANDOM_ORDER) --ignore=tests/containers tests || status=$$?; \
	$(PYTEST) -p no:xdist $(RANDOM_ORDER) tests/containers || status=$$?; \
	exit $$status

# Two scripted clients talk through an in-memory relay; needs only Python 3.11+.
demo: setup
	$(BIN)/python scripts/demo.py

# Docker engine + Compose v2 + local base and Redis images, for machines with no registry.
docker-setup:
	.ci/docker-setup.sh

redis-image:
	BASE_IMAGE=$(LOCAL_BASE_IMAGE) REDIS_IMAGE=$(LOCAL_REDIS_IMAGE) \
	  DOCKER_SETUP_STEPS="engine base redis" .ci/docker-setup.sh

# Relay and client images from the local base (users with a registry just `docker compose build`).
images: docker-setup
	BASE_IMAGE=$(LOCAL_BASE_IMAGE) docker compose --profile client --profile replicas --profile lb build

# Mutation testing (cosmic-ray) of the crypto package and the relay's and client's decision
# code, in a throw-away copy of the tree, one mutant at a time; not part of `make test`.
# MUTATE_ARGS="handshake safety" for some targets, --full for every operator, --recheck to
# re-run only the last run's survivors. `mutate-ci` is the bounded subset for CI.
# Scores and judged survivors: docs/testing.md.
mutate: setup
	$(BIN)/python -m tests.support.mutate $(MUTATE_ARGS)

mutate-ci: setup
	$(BIN)/python -m tests.support.mutate --ci

bench: setup
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/relay.py
	$(BIN)/python bench/flood.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
