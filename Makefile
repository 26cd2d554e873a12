# sdml: `make reproduce` sets everything up and runs the kit; `make test` runs the tests.
#   PROFILE=auto|paper|fashion|cpu|demo|smoke  (auto: paper with a CUDA GPU, cpu otherwise)
#   DATA=auto|cifar100|cifar10|fashion-mnist|synthetic  (auto: the profile's own; cpu: fashion-mnist)
#   FUSE_RUNS=auto|on|off          (auto: the methods of a seed as one fused job with a CUDA GPU)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= auto
DATA ?= auto
METHODS ?=
SEEDS ?=
FUSE_RUNS ?= auto
RUN ?= runs/smoke-train

.PHONY: setup wordnet fashion-mnist reproduce test lab train bench

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

setup: $(VENV)/.installed

# WordNet 3.0 for nltk: already there, nltk.download, or Debian's packages (installed when root).
wordnet: setup
	@$(PY) -m sdml wordnet 2>/dev/null || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    echo "WordNet not found; installing Debian's wordnet-base and wordnet-sense-index"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wordnet-base wordnet-sense-index; \
	  fi; \
	  $(PY) -m sdml wordnet; }

# Fashion-MNIST for the CPU main job: Debian's copy (installed when root), else the reader
# downloads it from torchvision's mirrors into data/fashion-mnist/ when the job starts.
fashion-mnist:
	@if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
	    && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's dataset-fashion-mnist (31 MB)"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends dataset-fashion-mnist \
	    || echo "dataset-fashion-mnist not installed; the files will be downloaded"; \
	fi

reproduce: setup wordnet $(if $(filter synthetic cifar100 cifar10,$(DATA)),,fashion-mnist)
	$(PY) -m sdml.notebooks run --profile $(PROFILE) --data $(DATA) --fuse-runs $(FUSE_RUNS) \
	  $(if $(METHODS),--methods $(METHODS)) $(if $(SEEDS),--seeds $(SEEDS))

test: setup
	$(PY) -m pytest -q

lab: setup wordnet
	$(VENV)/bin/jupyter lab notebooks/

# A smoke training run on synthetic data (seconds on a CPU).
train: setup
	$(PY) -m sdml train --profile smoke --data synthetic --method superclass-beta --out $(RUN) --resume

# Throughput: a typical DML implementation against ours, interleaved in one process.
bench: setup
	$(PY) benchmarks/dml_bench.py --device auto --json runs/bench.json
	$(PY) benchmarks/threads_bench.py --json runs/threads.json
