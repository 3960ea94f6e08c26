# The two commands: `make demo` runs the whole thing on the bundled example; `make test` runs
# every test against the real Docker engine, registry, Traefik and git.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: help install stack lint test unit demo demo-stop benchmark traefik-config clean

help:
	@echo "make demo        install what is missing, run the stack and publish examples/notebooks"
	@echo "make demo-stop   stop the demo and remove its containers and images"
	@echo "make test        provision the real parts, then lint, type-check and run all tests"
	@echo "make unit        fast tests only (no Docker needed)"
	@echo "make lint        ruff and mypy"
	@echo "make benchmark   measure against the original orchestrator's way, print ratios"

$(BIN)/notebook-gateway: pyproject.toml
	scripts/stack.sh python
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

install: $(BIN)/notebook-gateway

# Docker engine (started), registry and debootstrap packages, and the local Jupyter base image.
stack:
	scripts/stack.sh all

lint: install
	$(BIN)/ruff check gateway tests scripts benchmarks
	$(BIN)/ruff format --check gateway tests scripts benchmarks
	$(BIN)/mypy

unit: install
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test: install stack lint
	$(BIN)/pytest $(PYTEST_ARGS)

demo: install stack
	scripts/demo.sh up

demo-stop:
	scripts/demo.sh down

# Side by side against what the gateway replaces; BENCHMARK_ARGS="--only P3" for some figures.
BENCHMARK_ARGS ?=
benchmark: install stack
	$(BIN)/python -m benchmarks.run $(BENCHMARK_ARGS)

traefik-config: install
	$(BIN)/notebook-gateway traefik-config --runtime docker --output traefik/traefik.toml
	$(BIN)/notebook-gateway traefik-config --runtime swarm --output traefik/traefik-swarm.toml

clean: demo-stop
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache .hypothesis
