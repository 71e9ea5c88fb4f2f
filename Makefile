# One command to run the app, one to run the tests. Both set up .venv first.
#   make run              start the chat at http://127.0.0.1:7860 (ARGS="--port 8000" to pass flags)
#   make test             lint + every test, with the real model, a real browser and real servers
#                         (PostgreSQL and Chroma, started by the tests on loopback)
#   make docs             build the documentation site into site/ (strictly, as make test does)
#   make bench            the chat benchmark, about 2.5 minutes (docs/benchmarks.md lists the others)
#   make lock             re-resolve requirements.lock after changing pyproject.toml's dependencies
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
LLAMA   := 0.3.36
# Wheels built with other CPU flags live under other keys, so a stale native build is never reused.
KEY     := $(shell $(PY) assistant/llm/buildflags.py --key)
WHEELS  := $(HOME)/.cache/autodidact/wheels/$(KEY)
ARGS    ?=
# Exact versions and hashes of everything installed, llama-cpp-python aside (built here, below).
LOCK    := requirements.lock

export HF_HUB_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: run test lint format bench install browser postgres clean lock docs

run: install
	$(BIN)/autodidact serve $(ARGS)

test: install browser postgres
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) docs
	$(BIN)/pytest

# A broken link, a page missing from the navigation or an undocumented setting fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

lint:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python -m bench.chat_throughput

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK) $(VENV)/.llama-$(KEY)
	$(BIN)/pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@

# pip-compile reads pip's own configuration (indexes, find-links), so the lock pins exactly what
# `make install` can fetch here: the CPU build of torch among them.
lock: install
	$(BIN)/pip-compile -q --extra dev --extra train --extra postgres --generate-hashes --strip-extras \
	  --unsafe-package llama-cpp-python --no-emit-index-url --no-emit-find-links \
	  -o $(LOCK) pyproject.toml

# llama-cpp-python has no wheel for this platform: build it once per flag set, without
# -march=native (see assistant/llm/buildflags.py), and keep the wheel outside the repo.
$(VENV)/.llama-$(KEY):
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	if ! ls $(WHEELS)/llama_cpp_python-$(LLAMA)-*.whl >/dev/null 2>&1; then \
	  echo "Building llama-cpp-python $(LLAMA) with: $$($(PY) assistant/llm/buildflags.py) (about 5 minutes)"; \
	  rm -rf $(WHEELS).tmp && mkdir -p $(WHEELS).tmp && \
	  CMAKE_ARGS="$$($(PY) assistant/llm/buildflags.py)" $(BIN)/pip wheel --no-cache-dir --no-deps \
	    --no-binary llama-cpp-python llama-cpp-python==$(LLAMA) -w $(WHEELS).tmp && \
	  rm -rf $(WHEELS) && mv $(WHEELS).tmp $(WHEELS); \
	fi
	$(BIN)/pip install -q --force-reinstall --no-deps $(WHEELS)/llama_cpp_python-$(LLAMA)-*.whl
	rm -f $(VENV)/.llama-* && touch $@

# The browser test drives Debian's Chromium: Playwright cannot download its own browser offline.
browser:
	@test -x /usr/bin/chromium || { \
	  echo "Installing Debian's chromium for the browser test"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

# The store tests also run on PostgreSQL: tests/postgres.py starts Debian's server (off PATH, in
# /usr/lib/postgresql/<version>/bin) in a temporary folder on loopback, so only the package is needed.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "Installing Debian's postgresql for the store tests"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

clean:
	rm -rf $(VENV)
