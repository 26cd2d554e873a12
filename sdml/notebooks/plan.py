"""The runner's plan: which notebook runs with which parameters, checked before anything runs.

:func:`build_plan` resolves the runner's options into validated :class:`Step` s (01, 02, 03, 04
once per method and seed, or once per seed as a fused job, then 05 and 06); :func:`run_state` says
whether a 04 step's runs are new, unfinished or done. :mod:`sdml.notebooks.runner` executes the plan.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from pathlib import Path

from sdml.notebooks import params as nbparams
from sdml.notebooks.auto import default_folder, resolve_data, resolve_profile  # noqa: F401 (the runner's)
from sdml.method.mixup import TABLE1_METHODS

REPO = Path(__file__).resolve().parents[2]
USES_DATA = ("02_mixing_preview", "03_ratio_distributions", "04_train_dml",
             "06_analysis")  # read the dataset
#: Parameters the runner sets from its own options; ``-p`` may not set them.
MANAGED = {"profile": "--profile", "data": "--data", "data_dir": "--data-dir", "seed": "--seeds",
           "run_root": "--runs-root", "figures_dir": "--figures-root", "method": "--methods",
           "methods": "--methods", "independent": "--independent",
           "interactive": "(always False when run headlessly)"}


@dataclass(frozen=True)
class Step:
    """One notebook execution of the plan."""

    notebook: str
    params: dict = field(hash=False)
    output: Path
    run_dirs: tuple[Path, ...] = ()  # notebook 04: the run folders it trains into

    @property
    def label(self) -> str:
        if not self.run_dirs:
            return self.notebook
        if len(self.run_dirs) == 1:
            return f"{self.notebook} [{self.run_dirs[0].name}]"
        return f"{self.notebook} [fused: {', '.join(d.name for d in self.run_dirs)}]"


# ----------------------------------------------------------------------------- resolving options

def resolve_fuse_runs(fuse_runs: str, methods, log=print) -> bool:
    """``auto``: fuse the methods' runs when a CUDA GPU is present and there are several; on a
    CPU grouped convolutions are slower than a loop of separate models."""
    if fuse_runs not in ("auto", "on", "off"):
        raise ValueError(f"fuse_runs: {fuse_runs!r}; allowed: auto, on, off")
    if fuse_runs != "auto":
        return fuse_runs == "on"
    import torch

    fused = torch.cuda.is_available() and len(methods) > 1
    if fused:
        log(f"[sdml] fuse-runs auto -> on: CUDA GPU found; the {len(methods)} runs of a seed train "
            f"as one fused job")
    return fused


#: Seeds of notebook 04's runs when none are asked for: for the CPU main job, the seed rule of
#: its sweep (sdml.results.power.seeds_for_effect at the pooled sd of paired differences, 0.78
#: points over 10 degrees of freedom: 4 seeds detect the paper's 1.8 points at p < 0.05 with
#: 80 % power; benchmarks/regime_sweep.md); two for the GPU profiles whose results are read as
#: findings (no sweep has measured their spread yet); one for the quick presets.
DEFAULT_SEEDS = {"paper": (0, 1), "fashion": (0, 1), "cpu": (0, 1, 2, 3)}


#: Methods also trained as independent peers (the DML paper's control) when ``--independent
#: auto``: Table 1's no-mixup and Beta runs, except on the CPU main job, whose time goes to the
#: seeds the paired tests need (benchmarks/regime_sweep.md's seed rule) instead.
DEFAULT_INDEPENDENT = {"cpu": ()}


def resolve_independent(methods, profile: str) -> list[str]:
    """``["auto"]``: the profile's :data:`DEFAULT_INDEPENDENT` (no mixup and Beta for others);
    anything else as given."""
    if list(methods) == ["auto"]:
        return list(DEFAULT_INDEPENDENT.get(profile, ("none", "superclass-beta")))
    return list(methods)


def resolve_seeds(seeds, profile: str) -> list[int]:
    """The seeds asked for, else the profile's :data:`DEFAULT_SEEDS` (one seed, 0, for others)."""
    return list(seeds) if seeds else list(DEFAULT_SEEDS.get(profile, (0,)))


def parse_param(text: str) -> tuple[str, object]:
    """``name=value`` -> (name, value); the value is a Python literal if it parses as one."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise ValueError(f"-p: {text!r} is not name=value (for example -p epochs=2)")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return name.strip(), value


def check_extra(extra: dict) -> None:
    """Every ``-p`` name must be a parameter of some notebook and not one the runner sets."""
    known = {name for nb in nbparams.NOTEBOOKS for name in nbparams.spec(nb)}
    for name in extra:
        if name in MANAGED:
            raise ValueError(f"{name}: set by the runner; use {MANAGED[name]} instead of -p")
        if name not in known:
            raise ValueError(f"{name}: not a parameter of any notebook; allowed with -p: "
                             f"{', '.join(sorted(known - set(MANAGED)))}")


def select(only: list[str] | None) -> list[str]:
    """Notebooks whose name starts with one of ``only`` (all when None)."""
    if not only:
        return list(nbparams.NOTEBOOKS)
    for prefix in only:
        if not any(nb.startswith(prefix) for nb in nbparams.NOTEBOOKS):
            raise ValueError(f"only: {prefix!r} matches no notebook; allowed: a prefix of "
                             f"{', '.join(nbparams.NOTEBOOKS)}")
    return [nb for nb in nbparams.NOTEBOOKS if any(nb.startswith(p) for p in only)]


# ----------------------------------------------------------------------------- the plan

def build_plan(profile: str, data: str, methods=TABLE1_METHODS, seeds=(0,), only=None,
               runs_root: str | Path | None = None, figures_root: str | Path | None = None,
               data_dir: str = "data", extra: dict | None = None,
               fuse_runs: bool = False, independent=()) -> list[Step]:
    """Validated steps: [01, 02, 03] + [04 per method x seed] + [05, 06], filtered by ``only``;
    with ``fuse_runs`` (and several runs) 04 runs once per seed, all methods as one job.
    ``independent`` adds, per seed, a run of each of its methods with ``mutual_weight = 0``
    (the DML paper's control: the peers trained side by side without the KL term).

    ``profile`` and ``data`` must be resolved already (not ``auto``). Raises ValueError naming the
    first bad parameter before anything is executed.
    """
    extra = dict(extra or {})
    check_extra(extra)
    for name, values in (("methods", list(methods)), ("seeds", list(seeds))):
        if not values or len(set(values)) < len(values):
            raise ValueError(f"{name}: {values!r}; allowed: one or more, each named once")
    independent = list(independent)
    if len(set(independent)) < len(independent):
        raise ValueError(f"independent: {independent!r}; allowed: methods, each named once")
    folder = default_folder(profile, data)
    run_root = str(Path(runs_root) if runs_root is not None else Path("runs") / folder)
    figures_dir = str(Path(figures_root) if figures_root is not None else Path("figures") / folder)
    common = dict(profile=profile, data=data, data_dir=str(data_dir), run_root=run_root,
                  figures_dir=figures_dir, interactive=False)
    executed = REPO / run_root / "executed"

    def make(nb: str, **own) -> dict:
        spec = nbparams.spec(nb)  # a notebook gets only the parameters it takes
        return nbparams.validate(nb, **{k: v for k, v in {**common, **extra, **own}.items()
                                        if k in spec})  # a step's own values (the control's weight) win

    plan = []
    for nb in select(only):
        if nb == "04_train_dml" and fuse_runs and len(methods) + len(independent) > 1:
            for seed in seeds:
                params = make(nb, seed=seed, method=methods[0], methods=list(methods),
                              independent=independent)
                dirs = tuple(REPO / d for d in nbparams.run_dirs(params))
                plan.append(Step(nb, params, executed / f"{nb}-fused-seed{seed}.ipynb", dirs))
        elif nb == "04_train_dml":
            control = [(m, {"mutual_weight": 0.0}) for m in independent]
            for method, own in [(m, {}) for m in methods] + control:
                for seed in seeds:
                    params = make(nb, seed=seed, method=method, **own)
                    run_dir = nbparams.run_dir(params)
                    plan.append(Step(nb, params, executed / f"{nb}-{run_dir.name}.ipynb", (REPO / run_dir,)))
        else:
            gathered = list(dict.fromkeys([*methods, *independent]))
            own = {"methods": gathered} if nb in ("05_results", "06_analysis") else {}
            plan.append(Step(nb, make(nb, seed=seeds[0], **own), executed / f"{nb}.ipynb"))
    folders = [d for s in plan for d in s.run_dirs]
    if len(set(folders)) < len(folders):
        twice = next(d for i, d in enumerate(folders) if d in folders[:i])
        raise ValueError(f"run_name: {extra.get('run_name', 'auto')!r} would put several runs in "
                         f"{twice.name!r}; allowed with several methods or seeds: auto, and each "
                         f"run (method, mutual_weight) asked for once")
    return plan


def step_configs(step: Step) -> list:
    """The configs notebook 04 trains for ``step``, as :func:`sdml.training.multirun.train_runs`
    trains them (a fused job's with ``fuse = "grouped"``)."""
    from sdml.training.multirun import check_job

    cfgs, dirs = nbparams.train_plan(step.params)
    return check_job(cfgs, dirs) if len(cfgs) > 1 else cfgs


def run_depends(cfg, cache: dict | None = None) -> dict:
    """What training ``cfg`` would record beside its config (:func:`sdml.training.resume.depends`):
    the superclass mapping's content and the dataset's identity. ``cache`` keeps the identities
    of the datasets already read during one plan."""
    from sdml.data.datasets import get_spec
    from sdml.data.load import dataset_for
    from sdml.hierarchy.resolve import resolve_superclasses
    from sdml.training import resume

    sc = resolve_superclasses(cfg.superclasses, cfg.wordnet_k, get_spec(cfg.data).classes)
    key = (cfg.data, str(Path(cfg.data_dir).resolve()), cfg.synthetic_train_per_class,
           cfg.synthetic_test_per_class, cfg.synthetic_seed, cfg.train_per_class, cfg.test_per_class)
    cache = {} if cache is None else cache
    if key not in cache:
        cache[key] = resume.dataset_identity(cfg.data, dataset_for(cfg))
    return resume.depends(sc, cache[key])


def run_state(step: Step, cache: dict | None = None) -> str:
    """``done``, ``resume``, ``new`` or ``run`` (not a training step).

    A 04 run is ``done`` only when its ``config.json`` is the run asked for, checked by the test
    ``sdml train --resume`` applies (:func:`sdml.training.resume.compare_record`: every protocol
    field, the superclass mapping's sha256, the dataset's identity), and it holds every epoch and
    its predictions; with fewer epochs it is resumed (``resume``). Any other difference (fewer
    epochs asked for than it has finished included) raises :class:`sdml.training.resume.RecordMismatch`
    naming the run, the field and both values.
    """
    if not step.run_dirs:
        return "run"
    from sdml.training import resume, runs

    if not any((d / runs.CONFIG).is_file() for d in step.run_dirs):
        return "new"
    finished = []
    for d, cfg in zip(step.run_dirs, step_configs(step)):
        if not (d / runs.CONFIG).is_file():
            finished.append(False)
            continue
        resume.compare_record(d, runs.read_record(d), cfg, run_depends(cfg, cache))
        rows = runs.read_metrics(d)
        done = rows[-1]["epoch"] if rows else 0
        resume.check_epochs(d, cfg.epochs, done)
        finished.append(done == cfg.epochs and (d / runs.PREDICTIONS).is_file())
    return "done" if all(finished) else "resume"


def describe(plan: list[Step]) -> str:
    lines, cache = [], {}
    for i, step in enumerate(plan, 1):
        state = run_state(step, cache)
        own = {k: v for k, v in step.params.items() if k not in nbparams.COMMON or k == "seed"}
        lines.append(f"{i:>2}. {step.label:<55} {state:<7} {json.dumps(own)}")
    return "\n".join(lines)
