# The two commands: `make demo` and `make test`. Both set up everything they need and are
# idempotent: a second run reuses .venv (rebuilt only when pyproject.toml changes).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest proto bench clean

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "scratchnet needs Python 3.11 or newer, found " + sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,plots,images]'
	touch $@

demo: $(INSTALLED)
	$(PY) -m trainer

test: $(INSTALLED) lint typecheck pytest

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(INSTALLED)
	$(PY) -m mypy

pytest: $(INSTALLED)
	$(PY) -m pytest

# Regenerate scratchnet_api/ from proto/ (tests/test_proto_generated.py fails when it is stale).
proto: $(INSTALLED)
	$(PY) scripts/generate_proto.py

bench: $(INSTALLED)
	$(PY) bench/train.py

clean:
	rm -rf $(VENV) artifacts build *.egg-info
