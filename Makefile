# `make demo` and `make test` set up a virtual environment on first use;
# `make test` also sets up a second one with the next Keras release.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NIGHTLY_VENV ?= .venv-nightly
KERAS_NIGHTLY := keras-nightly==3.16.0.dev2026102704

.PHONY: demo test lint bench docs

$(VENV)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# keras-nightly installs the module `keras` too, so it replaces the release
# that the dev extras pulled in, without touching their other packages.
$(NIGHTLY_VENV)/.installed: setup.py pyproject.toml
	$(PYTHON) -m venv $(NIGHTLY_VENV)
	$(NIGHTLY_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(NIGHTLY_VENV)/bin/python -m pip install --quiet -e ".[dev]"
	$(NIGHTLY_VENV)/bin/python -m pip uninstall --quiet --yes keras
	$(NIGHTLY_VENV)/bin/python -m pip install --quiet --no-deps "$(KERAS_NIGHTLY)"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m frozen_bn demo

test: $(VENV)/.installed $(NIGHTLY_VENV)/.installed
	$(PY) scripts/run_tests.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

# The documentation site, into site/; --strict fails on a broken link or
# reference. Needs the docs extra (part of dev).
docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict --site-dir site
