# Pulse. `make demo` and `make test` create .venv and install everything themselves.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV := .venv
# Bytewax 0.21.1 ships wheels for CPython <= 3.12: pick 3.11, else 3.12, else stop.
PYTHON_BIN ?= $(shell for p in python3.11 python3.12 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)' 2>/dev/null \
	&& { echo $$p; break; }; done)
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## .*$$' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON_BIN)" ]; then \
		echo "error: Pulse needs Python 3.11 or 3.12 (Bytewax 0.21.1 has no wheels for newer Pythons)." >&2; \
		echo "       Install python3.11 or run: make PYTHON_BIN=/path/to/python3.11 ..." >&2; exit 1; fi
	$(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install Pulse with its pinned dependencies

demo: $(STAMP) ## replay the real datasets through a private broker + Redis and print a summary
	$(VENV)/bin/pulse demo

run: $(STAMP) ## run the worker against KAFKA_BOOTSTRAP_SERVERS / REDIS_URL (config/pulse.toml)
	$(VENV)/bin/pulse run

test: $(STAMP) ## unit tests, then integration tests through real Kafka (tansu) and Redis
	$(PY) -m pytest

bench: $(STAMP) ## throughput, latency and memory of the full flow on amplified real data
	$(PY) -m bench.bench

clean: ## remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache *.egg-info dataflow.json

.PHONY: help setup demo run test bench clean
