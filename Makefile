# Set-up and entry points. Every dependency is installed here, never by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-slow lint bench docs clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the pin resolves to a local CPU build; a looser one pulls GBs of CUDA wheels
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/jointseg demo --out results/demo

test: install
	$(VENV)/bin/lint-imports  # the layers and method independence of DESIGN.md (pyproject.toml)
	$(PY) -m pytest -m "not slow" -q --doctest-modules src/jointseg tests  # docstring examples run too

test-slow: install
	$(PY) -m pytest -m slow -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks scripts docs
	$(VENV)/bin/ruff format --check src tests benchmarks scripts docs

docs: install
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "Documentation: docs/_build/html/index.html"

bench: install
	$(PY) benchmarks/bench_aggregate.py
	$(PY) benchmarks/bench_transcript_stage.py

clean:
	rm -rf $(VENV) results .pytest_cache docs/_build docs/generated
