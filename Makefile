# sdml: `make reproduce` sets everything up and runs the kit; `make test` runs the tests.
#   PROFILE=auto|paper|fashion|cpu|demo|smoke  (auto: paper with a CUDA GPU, cpu otherwise)
#   DATA=auto|cifar100|cifar10|fashion-mnist|synthetic  (auto: the profile's own; cpu: fashion-mnist)
#   FUSE_RUNS=auto|on|off          (auto: the methods of a seed as one fused job with a CUDA GPU)
#   INDEPENDENT=auto               methods also trained as independent peers (the DML paper's
#                                  control, mutual_weight 0); auto: none and superclass-beta,
#                                  except on the cpu profile; INDEPENDENT= for none
#   GPUS=N                         (train notebook 04's runs first, spread over N GPUs by torchrun)
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
# train-many's profile, data, run folder and seeds: PROFILE/DATA/SEEDS resolved as the runner
# resolves them
RESOLVE = from sdml.notebooks.plan import resolve_profile, resolve_data, resolve_seeds, default_folder; \
  p = resolve_profile('$(PROFILE)', log=lambda m: None); d = resolve_data('$(DATA)', p); \
  print(p, d, default_folder(p, d), *('$(SEEDS)'.split() or resolve_seeds([], p)))

.PHONY: setup wordnet fashion-mnist reproduce test lab train train-many bench figures

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
	$(if $(GPUS),$(MAKE) --no-print-directory train-many)
	$(PY) -m sdml.notebooks run --profile $(PROFILE) --data $(DATA) --fuse-runs $(FUSE_RUNS) \
	  $(if $(METHODS),--methods $(METHODS)) $(if $(SEEDS),--seeds $(SEEDS)) \
	  $(if $(INDEPENDENT),--independent $(INDEPENDENT))

test: setup
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
