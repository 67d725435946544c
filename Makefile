# ScopeWatch: the README's quick start is `make demo` and `make test`.
# Setup is a .venv at the repo root; torch is pinned to the CPU wheel first so that nothing
# can pull a CUDA build. The stamp makes a second setup a no-op unless pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.scopewatch-installed
export GRADIO_ANALYTICS_ENABLED := False

.PHONY: setup demo test bench weights evaluate realworld validate-real clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev,ray]'
	touch $(STAMP)

demo: setup
	$(VENV)/bin/scopewatch demo

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/synth_speed.py
	$(PY) benchmarks/model_speed.py

# Reproduce the shipped weights: train (3600 steps in bfloat16 through torch.compile, about 40 min on a
# 2-core machine; docs/MODEL.md), then fit the presence decisions' last layer (training/calibrate.py) on 480
# clips made from the trainer's validation content (procedural scenes 1000-1011, seconds 8-10 of the real
# video), never from the test content.
SURGICAL := ../shared/data/surgical
WEIGHTS  := model/weights/scopewatch_lap5.synth_v9.pt
VALSET   := data/valset480
$(VALSET)/labels.csv:
	$(VENV)/bin/scopewatch synth --out $(VALSET) --clips 480 --seconds 2 --seed 1000 --content procedural:1000-1012 \
	    $(if $(wildcard $(SURGICAL)/real_clean_video),--content '$(SURGICAL)/real_clean_video/cholec_endo_720p.mp4@8:')

weights: setup $(VALSET)/labels.csv
	$(VENV)/bin/scopewatch train --out runs/synth_v9
	$(VENV)/bin/scopewatch calibrate $(VALSET) --weights runs/synth_v9/best.pt --out $(WEIGHTS)

# The held-out test set: procedural seeds and real frames that training and validation never used.
TESTSET  := data/testset
$(TESTSET)/labels.csv:
	$(VENV)/bin/scopewatch synth --out $(TESTSET) --clips 120 --seconds 2 --seed 2000 \
	    --content procedural:2000-2016 $(if $(wildcard $(SURGICAL)/train_clean),--content '$(SURGICAL)/train_clean[16:]')

evaluate: setup $(TESTSET)/labels.csv
	$(VENV)/bin/scopewatch evaluate $(TESTSET) --out reports/evaluation

realworld: setup
	$(PY) -m training.realworld --out reports/realworld.json
	$(VENV)/bin/scopewatch check-real eval --out reports

# The real validation signal: the val split of the real footage through the monitor (frames with an
# alarm and false events on clean items, recall on degraded ones); what may choose thresholds.
validate-real: setup
	$(VENV)/bin/scopewatch check-real val --out reports

clean:
	rm -rf $(VENV) build *.egg-info runs data
