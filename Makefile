# The README's two commands are `make demo` and `make test`; both set up first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint docs bench clean

setup: $(STAMP)

$(STAMP): setup.py
	@command -v $(PYTHON) >/dev/null || { echo "make: need $(PYTHON) on PATH (or PYTHON=...)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: setup
	$(BIN)/reseg demo --root runs/demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check reseg tests bench
	$(BIN)/ruff format --check reseg tests bench

docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# `make bench BENCH_ARGS=--smoke`: every benchmark in seconds (bench/_env.py is their shared helper)
BENCH_ARGS ?=
bench: setup
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	for b in bench/[!_]*.py; do $(BIN)/python $$b $(BENCH_ARGS) || exit 1; done

clean:
	rm -rf $(VENV) build site *.egg-info
