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
from sdml.notebooks.auto import resolve_data, resolve_profile  # noqa: F401 (the runner's)
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


#: Seeds of notebook 04's runs when none are asked for: two for the profiles whose results are
#: read as findings (so a method's difference can be set against the spread between seeds), one
#: for the quick presets on synthetic data.
DEFAULT_SEEDS = {"paper": (0, 1), "fashion": (0, 1), "cpu": (0, 1)}


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
    run_root = str(Path(runs_root) if runs_root is not None else Path("runs") / profile)
    figures_dir = str(Path(figures_root) if figures_root is not None else Path("figures") / profile)
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


def run_state(step: Step) -> str:
    """``done`` (every 04 run with every epoch and its predictions), ``resume``, ``new`` (no run
    started) or ``run`` (not a training step)."""
    if not step.run_dirs:
        return "run"
    from sdml.training import runs

    if not any((d / runs.CONFIG).is_file() for d in step.run_dirs):
        return "new"
    target = nbparams.train_config(step.params).epochs

    def finished(d: Path) -> bool:
        rows = runs.read_metrics(d) if (d / runs.CONFIG).is_file() else []
        return bool(rows) and rows[-1]["epoch"] >= target and (d / runs.PREDICTIONS).is_file()

    return "done" if all(finished(d) for d in step.run_dirs) else "resume"


def describe(plan: list[Step]) -> str:
    lines = []
    for i, step in enumerate(plan, 1):
        state = run_state(step)
        own = {k: v for k, v in step.params.items() if k not in nbparams.COMMON or k == "seed"}
        lines.append(f"{i:>2}. {step.label:<55} {state:<7} {json.dumps(own)}")
    return "\n".join(lines)
