# ScopeWatch: the README's quick start is `make demo` and `make test`.
# Setup is a .venv at the repo root; torch is pinned to the CPU wheel first so that nothing
# can pull a CUDA build. The stamp makes a second setup a no-op unless pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.scopewatch-installed
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/scopewatch demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/synth_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
