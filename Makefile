# Two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)

.PHONY: install test-tools run test test-unit test-e2e test-hostile test-cluster lint bench loadtest fuzz clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/flockmq serve $(ARGS)

# Mosquitto's broker and clients, which some tests talk to (apt-get where
# possible; otherwise those tests skip and say why).
test-tools:
	@scripts/install_test_tools.sh

test: install test-tools
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# Parts of `make test`: the sans-IO cores (seconds), the real broker with
# real clients, the attacks on it, and the cluster harness.
test-unit: install
	$(BIN)/python -m pytest -q tests/unit $(PYTEST_ARGS)

test-e2e: install test-tools
	$(BIN)/python -m pytest -q tests/e2e $(PYTEST_ARGS)

test-hostile: install
	$(BIN)/python -m pytest -q tests/hostile $(PYTEST_ARGS)

# Hosts as network namespaces (root; skipped, saying why, without it).
test-cluster: install test-tools
	$(BIN)/python -m pytest -q tests/cluster $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy flockmq scripts tests

loadtest: install
	$(BIN)/python scripts/loadtest.py $(ARGS)

# Not in CI: 10 million random and mutated inputs to the codec on every core
# (ARGS="--inputs 1000000" for a shorter run).
fuzz: install
	$(BIN)/python scripts/fuzz_codec.py $(ARGS)

bench: install
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	$(BIN)/python scripts/bench.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
