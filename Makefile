# Set-up and entry points. Every dependency is installed here, never by hand.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test test-py312 test-slow lint bench docs clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the pin resolves to a local CPU build; a looser one pulls GBs of CUDA wheels
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# The newest generation on Python 3.12 (spatialdata 0.8, squidpy 1.8.3 need it): a second venv and a smoke suite.
PYTHON312 ?= $(shell for p in $$(pyenv root 2>/dev/null)/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do [ -x "$$p" ] && echo $$p && break; done)
VENV312 := .venv312
STAMP312 := $(VENV312)/.installed-stamp

$(STAMP312): pyproject.toml Makefile
	@test -n "$(PYTHON312)" || { echo "No Python 3.12 found: set PYTHON312=/path/to/python3.12"; exit 1; }
	test -x $(VENV312)/bin/python || $(PYTHON312) -m venv $(VENV312)
	$(VENV312)/bin/python -m pip install -q --upgrade pip
	$(VENV312)/bin/python -m pip install -q torch==2.13.0
	$(VENV312)/bin/python -m pip install -q --upgrade -e ".[test]"
	touch $(STAMP312)

demo: install
	$(VENV)/bin/jointseg demo --out results/demo

test: install
	$(VENV)/bin/lint-imports  # the layers and method independence of DESIGN.md (pyproject.toml)
	$(PY) -m pytest -m "not slow" -q --doctest-modules src/jointseg tests  # docstring examples run too

test-py312: $(STAMP312)
	$(VENV312)/bin/python -c "import spatialdata, squidpy, sys; print('Python', sys.version.split()[0], 'spatialdata', spatialdata.__version__, 'squidpy', squidpy.__version__)"
	$(VENV312)/bin/python -m pytest -m smoke -q tests

test-slow: install
	$(PY) -m pytest -m slow -q

lint: install
	$(VENV)/bin/pre-commit run --all-files --show-diff-on-failure  # ruff, ruff-format, pyproject-fmt, file fixers

docs: install
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	@echo "Documentation: docs/_build/html/index.html"

bench: install
	$(PY) benchmarks/bench_aggregate.py
	$(PY) benchmarks/bench_transcript_stage.py

clean:
	rm -rf $(VENV) $(VENV312) results .pytest_cache docs/_build docs/generated
