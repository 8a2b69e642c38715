# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both install omnizoo with every optional source ([all]) and the dev tools ([dev]) into .venv,
# created/refreshed only when pyproject.toml changed (a stamp file records it), with the NEWEST
# releases pyproject allows: what CI (.ci/run -> make test) tests.
# `make test-oldest` is the other end of each range: a separate .venv-oldest with every
# dependency at exactly its declared lower bound (scripts/lower_bounds.py), and the same suite.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.stamp-install
PYTEST_ARGS ?=
# Test processes (pytest-xdist): one per CPU; files that must not run beside themselves are
# grouped on one worker (tests/conftest.py). JOBS=0 runs in one process.
JOBS ?= auto
# The newest torch pair. Named because the shipped card indexes (src/omnizoo/data/prebuilt/)
# are keyed by the torch version: any other torch builds them on first use.
NEWEST_TORCH := "torch==2.14.1" "torchvision==0.29.1"
OLD_VENV  := .venv-oldest
OLD_PY    := $(OLD_VENV)/bin/python
OLD_STAMP := $(OLD_VENV)/.stamp-install

.PHONY: venv venv-oldest demo test test-oldest test-slow lint bench docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --upgrade --upgrade-strategy eager $(NEWEST_TORCH) -e ".[all,dev,docs]"
	touch $(STAMP)

# Old torch wheels on PyPI pull their CUDA libraries: about 3 GB to download, 5 GB on disk.
venv-oldest: $(OLD_STAMP)

$(OLD_STAMP): pyproject.toml scripts/lower_bounds.py
	test -x $(OLD_PY) || $(PYTHON) -m venv $(OLD_VENV)
	$(OLD_PY) -m pip install -q --upgrade pip
	$(PYTHON) scripts/lower_bounds.py > $(OLD_VENV)/floors.txt
	$(OLD_PY) -m pip install -q -c $(OLD_VENV)/floors.txt -e ".[all,dev,docs]"
	touch $(OLD_STAMP)

demo: $(STAMP)
	OMNIZOO_OFFLINE=1 $(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) --dist loadgroup $(PYTEST_ARGS)

# tests/test_packaging.py finds $(OLD_VENV)/floors.txt: there it checks every package is
# exactly at its bound.
test-oldest: $(OLD_STAMP)
	$(OLD_PY) -m pytest -q -n $(JOBS) --dist loadgroup $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) --dist loadgroup -m slow $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples
	$(VENV)/bin/mypy

# The site, offline, into site/: the model tables and zoo plot first (committed), then
# mkdocs, whose hooks generate the API reference and the zoo browser (docs/about-docs.md).
docs: $(STAMP)
	$(PY) -m omnizoo.overview.tables docs/models
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) $(OLD_VENV) build dist site src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
