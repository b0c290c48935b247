# Two commands for users: `make run` and `make test`. Everything else is for developers.
SHELL := /bin/bash
PYTHON_VERSION := $(shell cat .python-version)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

# Find a Python matching .python-version: pyenv's when present, else python3.12 on PATH.
BASE_PYTHON := $(shell \
	(command -v pyenv >/dev/null && pyenv prefix $(PYTHON_VERSION) 2>/dev/null | head -1 | sed 's|$$|/bin/python|') \
	|| command -v python$(PYTHON_VERSION) || echo python$(PYTHON_VERSION))

.PHONY: run test lint bench backtest chaos soak restart clean chromium

$(PY):
	$(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP) $@

## run: install, then start every service with honcho (dashboard: http://127.0.0.1:5000)
run: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start

## test: install test tools (and Debian's chromium for the browser tests), run the whole suite
test: $(DEV_STAMP) chromium
	$(PY) -m pytest

# Browser tests drive Debian's chromium; install it when missing and we are allowed to.
chromium:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing chromium for the browser tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else echo "chromium missing and not root: browser tests will be skipped"; fi; }

## lint: ruff over the project
lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .

## bench: run the benchmarks (with their peers) and write docs/benchmarks.md
bench: $(DEV_STAMP) $(VENV)/.installed-bench
	$(PY) -m tests.bench

$(VENV)/.installed-bench: requirements-bench.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-bench.txt
	touch $@

DURATION ?= 600
SEED ?= 1
SOAK_DURATION ?= 1800

## chaos DURATION=600 SEED=1: whole stack under kills and faults, then the money checks
chaos: $(STAMP)
	$(PY) -m tests.chaos --duration $(DURATION) --workers 3 --bots 6 --seed $(SEED)

## soak SOAK_DURATION=1800: no faults; RSS and open fds per service at start and end
soak: $(STAMP)
	$(PY) -m tests.chaos --soak --duration $(SOAK_DURATION) --seed $(SEED)

## backtest ARGS="...": one backtest run (python -m backtest; see docs/backtesting.md)
backtest: $(STAMP)
	$(PY) -m backtest $(ARGS)

## restart SERVICE=name: restart one running service in place; the others carry on
restart:
	@test -n "$(SERVICE)" || { echo "usage: make restart SERVICE=<name>"; exit 2; }
	@found=0; for f in $${DATA_DIR:-var}/run/$(SERVICE).*.pid; do \
		[ -e "$$f" ] || continue; found=1; kill -HUP $$(cat "$$f") && echo "restarting $(SERVICE) pid $$(cat $$f)"; \
	done; [ $$found = 1 ] || { echo "no running $(SERVICE) found in $${DATA_DIR:-var}/run"; exit 1; }

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
