# `make demo` and `make test` set everything up on a fresh machine (idempotent) and run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup ext demo test test-slow lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# C++ extensions: rebuilt by torch when a source changes; a failure is reported, not fatal
ext: $(STAMP)
	-$(PY) -m rnnkit._ext

demo: ext
	$(VENV)/bin/rnnkit demo

test: ext
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m pytest -n 2 -q

test-slow: ext
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks

bench: ext
	$(PY) benchmarks/executors.py

clean:
	rm -rf $(VENV) build src/*.egg-info
