# The two commands a new user types. Each sets itself up on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.selflearn-installed
SHARED ?= ../shared/data
export OMP_NUM_THREADS ?= 1

.PHONY: demo test install clean docs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned: any other torch spec pulls GBs of CUDA packages.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[world,test,bench]'
	# optional: speaker embeddings in the ASR channel (resemblyzer's pins are stale, so --no-deps, last)
	$(PY) -m pip install --quiet webrtcvad-wheels librosa
	$(PY) -m pip install --quiet --no-deps resemblyzer==0.1.4
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) examples/demo.py --shared $(SHARED) $(DEMO_ARGS)

docs: $(STAMP)
	$(PY) -m selflearn.docs

clean:
	rm -rf $(VENV) demo-out .pytest_cache
