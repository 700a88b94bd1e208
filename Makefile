# jaxmm — the two commands a user types on a fresh machine are `make demo` and `make test`.
# Every target creates .venv and installs what it needs when missing.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Ticket files: reinstall when pyproject.toml changes.
CORE   := $(VENV)/.core-installed
APP    := $(VENV)/.app-installed
DEV    := $(VENV)/.dev-installed
BENCH  := $(VENV)/.bench-installed

# pytest workers: two on this 2-core machine; override with `make test PYTEST_WORKERS=0`.
PYTEST_WORKERS ?= 2

.PHONY: demo test lint bench venv clean browser

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(CORE): pyproject.toml | $(VENV)/bin/python
	$(PIP) install -q -e .
	@touch $@

# The product: engine + API + console + SQLite store + report plots (what `make demo` runs).
$(APP): pyproject.toml $(CORE)
	$(PIP) install -q -e ".[api,store,report]"
	@touch $@

$(DEV): pyproject.toml $(APP)
	$(PIP) install -q -e ".[dev,api,store,report]"
	@touch $@

$(BENCH): pyproject.toml $(DEV)
	$(PIP) install -q -e ".[bench]"
	$(PIP) install -q --no-deps py_vollib_vectorized==0.1.1 py_vollib==1.0.1 \
		py_lets_be_rational==1.0.0 financepy==1.1.2 simplejson==3.20.2 hftbacktest==2.4.4
	@touch $@

venv: $(DEV)

demo: $(APP)
	$(PY) -m jaxmm.demo

lint: $(DEV)
	$(VENV)/bin/ruff check jaxmm tests benchmarks experiments
	$(VENV)/bin/ruff format --check jaxmm tests benchmarks experiments

# The console's browser test drives Debian's headless Chromium; a fresh machine has none.
browser:
	@command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 || \
		{ SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		  $$SUDO apt-get update -qq && \
		  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; }

test: lint browser
	$(PY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile -q

bench: $(BENCH)
	$(PY) benchmarks/bench_pricing.py
	$(PY) benchmarks/bench_strategy.py
	$(PY) benchmarks/bench_risk.py
	$(PY) benchmarks/bench_book.py
	$(PY) benchmarks/bench_backtest.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis
