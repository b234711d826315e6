# Set-up on first use: `make bench` and `make test` build .venv (Python 3.11+) if needed.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: venv bench test

venv: $(STAMP)

# Rebuilt when pyproject.toml or setup.py changes (new dependencies, compiled modules).
$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job: real traces, five guests, one host against a static split.
bench: $(STAMP)
	$(VENV)/bin/tmem bench workload

# The tests (what CI runs).
test: $(STAMP)
	$(VENV)/bin/python -m pytest
