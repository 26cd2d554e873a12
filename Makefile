# sdml: `make reproduce` sets everything up and runs the kit; `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= auto
DATA ?= auto
RUN ?= runs/smoke-train

.PHONY: setup test train bench reproduce lab clean-runs

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q

# A smoke training run on synthetic data (seconds on a CPU).
train: setup
	$(PY) -m sdml train --profile smoke --data synthetic --method superclass-beta --out $(RUN) --resume

bench: setup
	$(PY) -m sdml bench --profile smoke
