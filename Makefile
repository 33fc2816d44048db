# `make demo` and `make test` set everything up on a fresh machine (idempotent) and run.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup espeak-ng ext demo test test-slow lint bench docs-figures clean

setup: $(STAMP) espeak-ng

# `rnnkit speech synth` runs the espeak-ng program: installed with apt (as root, or through sudo) when missing
espeak-ng:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  if command -v apt-get >/dev/null 2>&1; then \
	    $$SUDO apt-get update -qq >/dev/null && $$SUDO apt-get install -y -qq espeak-ng >/dev/null; \
	  fi; \
	  command -v espeak-ng >/dev/null 2>&1 || echo "note: espeak-ng could not be installed: rnnkit speech synth needs it (apt-get install espeak-ng / brew install espeak-ng); its tests are skipped"; \
	}

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,deploy]'
	touch $(STAMP)

# C++ extensions: rebuilt by torch when a source changes; a failure is reported, not fatal
ext: setup
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

# re-measure every figure docs/ publish from a script (benchmarks/docs_figures.py) and rewrite its table
docs-figures: ext
	$(PY) benchmarks/docs_figures.py --run all

clean:
	rm -rf $(VENV) build src/*.egg-info
