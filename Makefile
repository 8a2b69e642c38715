# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both install omnizoo with every optional source ([all]) and the dev tools ([dev]).
# Both create/refresh .venv only when pyproject.toml changed (a stamp file records it), with
# every dependency at exactly its declared lower bound (scripts/lower_bounds.py).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp-install
PYTEST_ARGS ?=
# Test processes (pytest-xdist): one per CPU; files that must not run beside themselves are
# grouped on one worker (tests/conftest.py). JOBS=0 runs in one process.
JOBS ?= auto

.PHONY: venv demo test test-slow lint bench docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PYTHON) scripts/lower_bounds.py > $(VENV)/lower-bounds.txt
	$(PY) -m pip install -q -c $(VENV)/lower-bounds.txt "torch==2.14.1" "torchvision==0.29.1" -e ".[all,dev]"
	touch $(STAMP)

demo: $(STAMP)
	OMNIZOO_OFFLINE=1 $(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) --dist loadgroup $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) --dist loadgroup -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/mypy

docs: $(STAMP)
	$(PY) -m omnizoo.overview.tables docs/models

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
