# The two commands: `make demo` and `make test`. Both set up everything they need and are
# idempotent: a second run reuses .venv (reinstalled only when pyproject.toml changes), the npm
# packages (when package-lock.json changes) and the C++ build (incremental).
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
NODE_INSTALLED := clients/node/node_modules/.installed
PLAYGROUND_INSTALLED := server/playground/node_modules/.installed
PEERS_VENV := build/peers-venv
PEERS_INSTALLED := $(PEERS_VENV)/.installed
UV := uv==0.13.9

.PHONY: demo test lint typecheck proto-check pytest proto bench bench-peers clean constraints cpp-client node-deps node-test playground chromium screenshot serve

# --- The two commands ------------------------------------------------------------------------
# Train -> export -> serve -> score the MNIST test set over gRPC -> stop the server.
demo: $(INSTALLED)
	$(PY) scripts/demo.py

test: lint typecheck cpp-client pytest node-test

# --- Python ----------------------------------------------------------------------------------
$(INSTALLED): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "scratchnet needs Python 3.11 or newer, found " + sys.version.split()[0])'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# uv installs the same pinned set in a third of pip's time (34 s against 84 s here); the
	# bytecode is compiled at install, as pip does, since every test process would otherwise
	# compile what it imports (this environment sets PYTHONDONTWRITEBYTECODE).
	$(PY) -m pip install --quiet --disable-pip-version-check $(UV)
	$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode -c constraints.txt -e '.[dev,plots,images,ray,http]'
	touch $@

# Re-resolve the dependencies in a scratch venv and pin the result in constraints.txt.
constraints:
	rm -rf build/constraints-venv
	$(PYTHON) -m venv build/constraints-venv
	build/constraints-venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev,plots,images,ray,http]'
	{ sed -n '1,2p' constraints.txt; build/constraints-venv/bin/python -m pip freeze --exclude-editable; } > build/constraints.txt
	mv build/constraints.txt constraints.txt
	rm -rf build/constraints-venv

lint: $(INSTALLED)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(INSTALLED)
	$(PY) -m mypy

proto-check: $(INSTALLED)
	$(PY) scripts/generate_proto.py --check

pytest: $(INSTALLED) cpp-client $(NODE_INSTALLED) playground chromium
	# Two workers: most tests wait on a server or a subprocess, so two at a time take about 4 min
	# where one takes 7. loadscope gives each worker whole modules, so that a module's servers and
	# the browser session start once (spread test by test, a module's fixtures started again each
	# time a worker came back to it: 277 s against 242). Tests marked serial (Ray) need the
	# machine to themselves and run after, alone.
	$(PY) -m pytest -n 2 --dist loadscope -m 'not serial'
	$(PY) -m pytest -m serial

# Regenerate scratchnet/api/ from proto/ (`make proto-check` fails when it is stale).
proto: $(INSTALLED)
	$(PY) scripts/generate_proto.py

# Speed figures quoted in the README; each script measures its contenders side by side. The
# serving and HTTP benchmarks include KServe and PyTriton, installed first into their own venv
# (bench-peers); README.md's tables are rewritten from bench/results/*.json.
bench: $(INSTALLED) $(PEERS_INSTALLED)
	test -f artifacts/model.onnx || { $(PY) -m trainer && $(PY) -m export; }
	test -f artifacts/model_uint8.onnx || $(PY) -m export --input-dtype uint8 -o artifacts/model_uint8.onnx
	$(PY) bench/train_speed.py
	$(PY) bench/export_speed.py
	$(PY) bench/server_throughput.py artifacts/model.onnx
	$(PY) bench/serving.py --peers
	$(PY) bench/scale.py
	$(PY) bench/batching.py
	$(PY) bench/soak.py
	$(PY) bench/report.py --write README.md
	$(PY) bench/http_serving.py
	$(PY) bench/report.py bench/results/http.json --write README.md
	$(PY) bench/report.py bench/results/http.json --write docs/http.md

# The peer servers of bench/serving.py in a venv of their own: their pins conflict with ours.
$(PEERS_INSTALLED): bench/peers/requirements.txt
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r bench/peers/requirements.txt
	touch $@

bench-peers: $(PEERS_INSTALLED)

# --- C++ client (clients/cpp): Debian's gRPC, built with CMake -------------------------------
cpp-client:
	clients/cpp/install-debian-packages.sh
	cmake -S clients/cpp -B clients/cpp/build -DCMAKE_BUILD_TYPE=Release
	cmake --build clients/cpp/build -j2

# --- Node.js client (clients/node) ------------------------------------------------------------
# onnxruntime-node's install script would download GPU files from a host unreachable here; the
# CPU binaries ship in the package, so skip it (package.json's allowScripts does the same on npm 11).
$(NODE_INSTALLED): clients/node/package.json clients/node/package-lock.json
	@command -v npm >/dev/null || { echo "node-deps: needs Node.js >= 20 and npm" >&2; exit 1; }
	cd clients/node && ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
	touch $@

node-deps: $(NODE_INSTALLED)

node-test: $(INSTALLED) $(NODE_INSTALLED)
	cd clients/node && SCRATCHNET_PYTHON=$(abspath $(PY)) node --test

# --- The playground (server/playground): onnxruntime-web, the browser tests' tools ------------
# onnxruntime-web's WebAssembly build is copied from npm into static/ort/, which the server serves
# for the page's "in this page" mode (never committed); playwright-core drives the browser tests.
$(PLAYGROUND_INSTALLED): server/playground/package.json server/playground/package-lock.json
	@command -v npm >/dev/null || { echo "playground: needs Node.js >= 20 and npm" >&2; exit 1; }
	cd server/playground && npm ci --no-audit --no-fund
	mkdir -p server/playground/static/ort
	cd server/playground/node_modules/onnxruntime-web/dist && cp ort.wasm.min.mjs ort-wasm-simd-threaded.mjs ort-wasm-simd-threaded.wasm ../../../static/ort/
	touch $@

playground: $(PLAYGROUND_INSTALLED)

# Debian's Chromium for the browser tests (playwright-core cannot download its own here).
chromium:
	tests/playground/install-chromium.sh

# The playground and both APIs: gRPC on 127.0.0.1:50051, HTTP and the page on
# http://127.0.0.1:8000/ (trains and exports the model first if there is none). Ctrl-C stops it.
serve: $(INSTALLED) $(PLAYGROUND_INSTALLED)
	test -f artifacts/model.onnx || { $(PY) -m trainer && $(PY) -m export; }
	$(PY) -m server --http-port 8000

# Rewrite docs/playground.png, the README's picture, from the page as the browser test draws it.
screenshot: $(INSTALLED) $(PLAYGROUND_INSTALLED) chromium
	test -f artifacts/model.onnx || { $(PY) -m trainer && $(PY) -m export; }
	$(PY) scripts/playground_screenshot.py docs/playground.png

clean:
	rm -rf $(VENV) artifacts build *.egg-info clients/cpp/build clients/node/node_modules server/playground/node_modules server/playground/static/ort
