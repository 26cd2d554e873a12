# sdml: `make reproduce` sets everything up and runs the kit; `make test` runs the tests.
# `make` alone (or `make help`) lists the targets and variables; a line starting with `##` below
# is what `make help` prints.
##
## Targets:
##   help        this list (the default)
##   reproduce   create .venv, install, get WordNet and the data, run every notebook (the main job)
##   test        the test suite on the CPU (installs Chromium for the browser test where it can)
##   lab         JupyterLab on the notebooks; they find the runs `make reproduce` made
##   train       a smoke training run on synthetic data into RUN (seconds on a CPU)
##   train-many  notebook 04's runs spread over GPUS processes by torchrun
##   bench       the cpu step's old and new paths; throughput against a typical DML implementation
##   figures     refresh the committed figures/readme/ from the synthetic demo
##   setup       create .venv and install the tested set (requirements.txt) and the kit
##   wordnet     make WordNet 3.0 available to nltk
##   fashion-mnist  install Debian's dataset-fashion-mnist (as root, with apt-get), else it is downloaded
##   chromium    install Debian's chromium for the browser test (as root, with apt-get)
##   clean       remove .venv and the caches; runs/, data/ and figures/ only with CLEAN_RUNS=yes
##
## Variables (make reproduce VAR=value):
##   PROFILE=auto|paper|fashion|cpu|quick|demo|smoke  auto: paper with a CUDA GPU, cpu otherwise
##   DATA=auto|cifar100|cifar10|fashion-mnist|synthetic  auto: the profile's own (cpu: fashion-mnist)
##   METHODS="none mixup ..."      methods to train (default: the profile's four)
##   SEEDS="0 1"                   seeds (default: the profile's)
##   FUSE_RUNS=auto|on|off         auto: the methods of a seed as one fused job with a CUDA GPU
##   INDEPENDENT=auto              methods also trained as independent peers (the DML paper's
##                                 control, mutual_weight 0); auto: none and superclass-beta,
##                                 except on the cpu profile; INDEPENDENT= for none
##   GPUS=N                        train notebook 04's runs first, spread over N GPUs by torchrun
##   RUN=runs/smoke-train          the run folder of `make train`
##   PYTHON=python3, VENV=.venv    the interpreter that creates the venv, and the venv's folder
##   SDML_CHROMIUM=/usr/bin/chromium  the Chromium binary the browser test uses
##   CLEAN_RUNS=yes                let `make clean` also remove runs/, data/ and figures/<profile>/
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= auto
DATA ?= auto
METHODS ?=
SEEDS ?=
FUSE_RUNS ?= auto
INDEPENDENT ?= auto
RUN ?= runs/smoke-train
GPUS ?=
CLEAN_RUNS ?=
# train-many's profile, data, run folder and seeds: PROFILE/DATA/SEEDS resolved as the runner
# resolves them
RESOLVE = from sdml.notebooks.plan import resolve_profile, resolve_data, resolve_seeds, default_folder; \
  p = resolve_profile('$(PROFILE)', log=lambda m: None); d = resolve_data('$(DATA)', p); \
  print(p, d, default_folder(p, d), *('$(SEEDS)'.split() or resolve_seeds([], p)))

.PHONY: help setup wordnet fashion-mnist chromium reproduce test lab train train-many bench figures clean

help:
	@sed -n 's/^##//p' $(MAKEFILE_LIST)

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q -e .
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
	$(if $(GPUS),$(MAKE) --no-print-directory train-many)
	$(PY) -m sdml.notebooks run --profile $(PROFILE) --data $(DATA) --fuse-runs $(FUSE_RUNS) \
	  $(if $(METHODS),--methods $(METHODS)) $(if $(SEEDS),--seeds $(SEEDS)) \
	  $(if $(INDEPENDENT),--independent $(INDEPENDENT))

# Debian's chromium for the browser test (tests/test_browser.py): installed when root with apt-get,
# else the test is skipped, and this says so loudly.
SDML_CHROMIUM ?= /usr/bin/chromium
chromium:
	@if [ ! -x "$(SDML_CHROMIUM)" ] && command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's chromium for the browser test"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium \
	    || echo "chromium could not be installed"; \
	fi
	@if [ ! -x "$(SDML_CHROMIUM)" ]; then \
	  echo "********************************************************************************"; \
	  echo "* NO CHROMIUM at $(SDML_CHROMIUM): the browser test (tests/test_browser.py) WILL BE SKIPPED."; \
	  echo "* Install it (apt-get install chromium, as root) or set SDML_CHROMIUM to a Chromium binary."; \
	  echo "********************************************************************************"; \
	fi

test: setup chromium
	$(PY) -m pytest -q

# JupyterLab on the notebooks; notebooks resolve data/, runs/ and figures/ against the project
# root, so they share the runner's folders. Root (e.g. in a container) needs --allow-root.
lab: setup wordnet
	$(VENV)/bin/jupyter lab --notebook-dir=. --LabApp.default_url=/lab/tree/notebooks \
	  $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

# A smoke training run on synthetic data (seconds on a CPU).
train: setup
	$(PY) -m sdml train --profile smoke --data synthetic --method superclass-beta --out $(RUN) --resume

# Notebook 04's runs (every method and seed) spread over GPUS processes by torchrun, one GPU each
# (CPU processes without CUDA), into the folders the notebooks use; `make reproduce` then skips
# them. Resumable: running it again continues only the unfinished runs.
train-many: setup
	@set -e; set -- $$($(PY) -c "$(RESOLVE)"); profile=$$1 data=$$2 folder=$$3; shift 3; \
	echo "train-many: profile $$profile, data $$data, seeds $$*, over $(or $(GPUS),1) process(es)"; \
	$(PY) -m torch.distributed.run --standalone --nproc_per_node $(or $(GPUS),1) -m sdml train-many \
	  --profile $$profile --data $$data $(if $(METHODS),--methods $(METHODS)) --seeds "$$@" \
	  $(if $(filter-out auto,$(INDEPENDENT)),--independent $(INDEPENDENT)) --out-root runs/$$folder --resume --no-progress

# Throughput: the cpu profile's step, old path (one run on every core) against new (one run
# per core), beside the typical reference; then the reference against ours at the paper's size.
bench: setup
	$(PY) benchmarks/cpu_bench.py --json runs/cpu_bench.json
	$(PY) benchmarks/dml_bench.py --device auto --json runs/bench.json
	$(PY) benchmarks/threads_bench.py --json runs/threads.json

# Refresh the committed copy of the demo's figures that README.md shows (figures/readme/), on
# purpose: the main job writes only into the git-ignored figures/<profile>/.
figures: setup wordnet
	$(PY) -m sdml.notebooks run --profile demo --data synthetic
	mkdir -p figures/readme && cp figures/demo/*.png figures/readme/

# The venv and the caches; what the kit produced (runs/, data/, figures/<profile>/) only when
# asked with CLEAN_RUNS=yes. figures/readme/ is committed and never removed.
clean:
	rm -rf $(VENV) .cache .pytest_cache build *.egg-info
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
	find . -name .ipynb_checkpoints -type d -prune -not -path './.git/*' -exec rm -rf {} +
	@if [ "$(CLEAN_RUNS)" = yes ]; then \
	  echo "removing runs/, data/ and figures/ but figures/readme/"; \
	  rm -rf runs data; find figures -mindepth 1 -maxdepth 1 -not -name readme -exec rm -rf {} +; \
	elif [ -d runs ]; then \
	  echo "kept runs/ (your training runs and results); make clean CLEAN_RUNS=yes removes it too"; \
	fi
