# `make demo` and `make test` set up a virtual environment on first use;
# `make test` also sets up a second one with the next Keras release.
#
#   make test-fast   the quick tier, under 3 minutes on 2 cores: one backend
#                    (TensorFlow), the tests not marked slow of the modules listed
#                    in FAST_TESTS (chosen by measuring; the demo's
#                    end-to-end run and the model-building suites are left
#                    to `make test`)
#   make test        every suite: each backend, TF1 graph mode, devices,
#                    workers, the next Keras (scripts/run_tests.py)
#   make lint        ruff check and ruff format --check
#   make typecheck   mypy on the package (configured in pyproject.toml)
#   make package     build the wheel and sdist, install the wheel in a fresh
#                    venv and try it (scripts/check_package.py)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
NIGHTLY_VENV ?= .venv-nightly
KERAS_NIGHTLY := keras-nightly==3.16.0.dev2026102704
FAST_BACKEND ?= tensorflow
FAST_TESTS := $(addprefix tests/test_,$(addsuffix .py, \
	checks metrics layers patching training_arg variable_values \
	report_figure freezing))

.PHONY: demo test test-fast lint typecheck package bench docs

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
	$(NIGHTLY_VENV)/bin/python -m pip install --quiet --no-deps --force-reinstall "$(KERAS_NIGHTLY)"
	touch $@

demo: $(VENV)/.installed
	$(PY) -m frozen_bn demo

test: $(VENV)/.installed $(NIGHTLY_VENV)/.installed
	$(PY) scripts/run_tests.py

test-fast: $(VENV)/.installed
	KERAS_BACKEND=$(FAST_BACKEND) $(PY) -m pytest -q -m "not slow" $(FAST_TESTS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(VENV)/.installed
	$(PY) -m mypy

package: $(VENV)/.installed
	$(PY) scripts/check_package.py

bench: $(VENV)/.installed
	$(PY) benchmarks/run_all.py

# The documentation site, into site/; --strict fails on a broken link or
# reference. Needs the docs extra (part of dev).
docs: $(VENV)/.installed
	$(VENV)/bin/mkdocs build --strict --site-dir site
