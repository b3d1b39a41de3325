# The two commands: `make demo` and `make test`. Both set up everything they need and are
# idempotent: a second run reuses .venv (rebuilt only when pyproject.toml changes).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint typecheck proto-check pytest proto bench clean cpp-client node-deps node-test

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "scratchnet needs Python 3.11 or newer, found " + sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,plots,images]'
	touch $@

demo: $(INSTALLED)
	$(PY) -m trainer

test: $(INSTALLED) lint typecheck proto-check cpp-client node-deps pytest node-test

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(INSTALLED)
	$(PY) -m mypy

proto-check: $(INSTALLED)
	$(PY) scripts/generate_proto.py --check

pytest: $(INSTALLED)
	$(PY) -m pytest

# Regenerate scratchnet_api/ from proto/ (`make proto-check` fails when it is stale).
proto: $(INSTALLED)
	$(PY) scripts/generate_proto.py

bench: $(INSTALLED)
	$(PY) bench/train.py

# --- C++ client (clients/cpp): Debian's gRPC, built with CMake -------------------------------
cpp-client:
	@echo "cpp-client: not yet"

# --- Node.js client (clients/node) ------------------------------------------------------------
node-deps:
	@echo "node-deps: not yet"

node-test: $(INSTALLED)
	@echo "node-test: not yet"

clean:
	rm -rf $(VENV) artifacts build *.egg-info clients/cpp/build clients/node/node_modules
