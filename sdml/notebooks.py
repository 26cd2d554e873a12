"""Run the kit's notebooks headlessly, in order: ``python -m sdml.notebooks run``.

The plan is 01, 02, 03, then 04 once per method and seed, then 05. Every parameter set is checked
with :func:`sdml.nbparams.validate` before anything runs (papermill itself only warns about
unknown names). Notebooks run with papermill (kernel ``python3``, the repository root as working
folder); executed copies go to ``<run_root>/executed/``. A 04 run whose folder holds all its
epochs is skipped; an unfinished one is resumed by the notebook (``train(..., resume=True)``).
The first failing notebook stops the run with its name, the failing cell and the error.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import nbparams
from .mixup import TABLE1_METHODS

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK_DIR = REPO / "notebooks"
USES_DATA = ("02_mixing_preview", "03_ratio_distributions", "04_train_dml")  # read the dataset
#: Parameters the runner sets from its own options; ``-p`` may not set them.
MANAGED = {"profile": "--profile", "data": "--data", "data_dir": "--data-dir", "seed": "--seeds",
           "run_root": "--runs-root", "figures_dir": "--figures-root", "method": "--methods",
           "methods": "--methods", "interactive": "(always False when run headlessly)"}


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names it, the cell and the error."""


@dataclass(frozen=True)
class Step:
    """One notebook execution of the plan."""

    notebook: str
    params: dict = field(hash=False)
    output: Path
    run_dir: Path | None = None  # notebook 04: the run folder it trains into

    @property
    def label(self) -> str:
        return self.notebook if self.run_dir is None else f"{self.notebook} [{self.run_dir.name}]"


# ----------------------------------------------------------------------------- resolving options

def resolve_profile(profile: str, log=print) -> str:
    """``auto``: ``paper`` when a CUDA GPU is present, else ``demo``; says which and why."""
    if profile != "auto":
        return profile
    import torch

    if torch.cuda.is_available():
        log(f"[sdml] profile auto -> paper: CUDA GPU found ({torch.cuda.get_device_name(0)}); "
            f"Table 1's protocol (2 x ResNet-32, CIFAR-100, 200 epochs)")
        return "paper"
    log("[sdml] profile auto -> demo: no CUDA GPU (torch.cuda.is_available() is False); the paper "
        "profile (200 epochs of 2 x ResNet-32) needs one, so a small CPU run on synthetic data instead")
    return "demo"


def resolve_data(data: str, profile: str) -> str:
    """``auto``: ``cifar100`` for the paper profile, ``synthetic`` for the CPU profiles."""
    if data != "auto":
        return data
    return "cifar100" if profile == "paper" else "synthetic"


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
               data_dir: str = "data", extra: dict | None = None) -> list[Step]:
    """Validated steps: [01, 02, 03] + [04 per method x seed] + [05], filtered by ``only``.

    ``profile`` and ``data`` must be resolved already (not ``auto``). Raises ValueError naming the
    first bad parameter before anything is executed.
    """
    extra = dict(extra or {})
    check_extra(extra)
    for name, values in (("methods", list(methods)), ("seeds", list(seeds))):
        if not values or len(set(values)) < len(values):
            raise ValueError(f"{name}: {values!r}; allowed: one or more, each named once")
    run_root = str(Path(runs_root) if runs_root is not None else Path("runs") / profile)
    figures_dir = str(Path(figures_root) if figures_root is not None else Path("figures") / profile)
    common = dict(profile=profile, data=data, data_dir=str(data_dir), run_root=run_root,
                  figures_dir=figures_dir, interactive=False)
    executed = REPO / run_root / "executed"

    def make(nb: str, **own) -> dict:
        spec = nbparams.spec(nb)
        return nbparams.validate(nb, **common, **own, **{k: v for k, v in extra.items() if k in spec})

    plan = []
    for nb in select(only):
        if nb == "04_train_dml":
            for method in methods:
                for seed in seeds:
                    params = make(nb, seed=seed, method=method)
                    run_dir = nbparams.run_dir(params)
                    plan.append(Step(nb, params, executed / f"{nb}-{run_dir.name}.ipynb", REPO / run_dir))
        else:
            own = {"methods": list(methods)} if nb == "05_results" else {}
            plan.append(Step(nb, make(nb, seed=seeds[0], **own), executed / f"{nb}.ipynb"))
    folders = [s.run_dir for s in plan if s.run_dir is not None]
    if len(set(folders)) < len(folders):
        raise ValueError(f"run_name: {extra.get('run_name')!r} would put several runs in one folder; "
                         f"allowed with several methods or seeds: auto")
    return plan


def run_state(step: Step) -> str:
    """``done`` (a 04 run with every epoch and its predictions), ``resume``, ``new`` or ``run``."""
    if step.run_dir is None:
        return "run"
    from . import runs

    if not (step.run_dir / runs.CONFIG).is_file():
        return "new"
    target = nbparams.train_config(step.params).epochs
    rows = runs.read_metrics(step.run_dir)
    epochs_done = rows[-1]["epoch"] if rows else 0
    if epochs_done >= target and (step.run_dir / runs.PREDICTIONS).is_file():
        return "done"
    return "resume"


def describe(plan: list[Step]) -> str:
    lines = []
    for i, step in enumerate(plan, 1):
        state = run_state(step)
        own = {k: v for k, v in step.params.items() if k not in nbparams.COMMON or k == "seed"}
        lines.append(f"{i:>2}. {step.label:<55} {state:<7} {json.dumps(own)}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- execution

PAPERMILL_TAGS = {"injected-parameters", "papermill-error-cell-tag"}  # cells papermill adds


def failed_cell(output: Path) -> tuple[int | None, str]:
    """Position (from 1, in the notebook as committed) and first line of the cell that raised."""
    import nbformat

    cells = [c for c in nbformat.read(output, as_version=4).cells
             if not PAPERMILL_TAGS & set(c.metadata.get("tags", []))]
    for i, cell in enumerate(cells, 1):
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            lines = cell.source.strip().splitlines()
            return i, lines[0] if lines else ""
    return None, ""


def execute(step: Step, log_output: bool = False) -> None:
    """Execute one notebook with papermill; raise :class:`NotebookFailed` naming the cell."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    step.output.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(str(NOTEBOOK_DIR / f"{step.notebook}.ipynb"), str(step.output),
                            parameters=step.params, kernel_name="python3", cwd=str(REPO),
                            progress_bar=False, log_output=log_output)
    except PapermillExecutionError as err:
        index, line = failed_cell(step.output)
        where = f"cell {index} ({line!r})" if index else f"cell {err.cell_index} of the executed copy"
        raise NotebookFailed(f"notebook {step.label} failed in {where}: {err.ename}: {err.evalue}\n"
                             f"  the executed copy, with the traceback: {step.output}") from None


def prepare_data(plan: list[Step], log=print) -> None:
    """Fetch and check CIFAR-100 before any notebook runs, so a missing archive stops at once."""
    folders = sorted({s.params["data_dir"] for s in plan
                      if s.params["data"] == "cifar100" and s.notebook in USES_DATA})
    for folder in folders:
        from .data import ensure_cifar100

        log(f"[sdml] CIFAR-100: {ensure_cifar100(REPO / folder, download=True)} (md5 checked)")


def run_plan(plan: list[Step], log=print, log_output: bool = False) -> None:
    """Execute the plan in order, skipping finished 04 runs; stops at the first failure."""
    for i, step in enumerate(plan, 1):
        state = run_state(step)
        if state == "done":
            log(f"[sdml] {i}/{len(plan)} {step.label}: finished run, skipped")
            continue
        log(f"[sdml] {i}/{len(plan)} {step.label}" + (f" ({state})" if state != "run" else "") + " ...")
        t0 = time.perf_counter()
        execute(step, log_output)
        log(f"[sdml] {i}/{len(plan)} {step.label}: done in {time.perf_counter() - t0:.0f} s "
            f"-> {step.output}")


# ----------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sdml.notebooks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="execute the notebooks in order with papermill")
    p.add_argument("--profile", default="auto", help="smoke | demo | paper | auto (paper with a CUDA GPU, else demo)")
    p.add_argument("--data", default="auto", help="synthetic | cifar100 | auto (cifar100 for paper, else synthetic)")
    p.add_argument("--methods", nargs="+", default=list(TABLE1_METHODS),
                   help=f"notebook 04 runs once per method (default: Table 1's {' '.join(TABLE1_METHODS)})")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="notebook 04 runs once per seed (default 0)")
    p.add_argument("--only", nargs="+", default=None, metavar="PREFIX",
                   help="run only the notebooks whose name starts with one of these (e.g. 04)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and run nothing")
    p.add_argument("--data-dir", default="data", help="folder of the dataset archives (default data)")
    p.add_argument("--runs-root", default=None, help="run folder of the profile (default runs/<profile>)")
    p.add_argument("--figures-root", default=None, help="figure folder (default figures/<profile>)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE",
                   help="another notebook parameter, e.g. -p epochs=2 -p device=cpu (repeatable)")
    p.add_argument("--log-output", action="store_true", help="stream the notebooks' output here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        profile = resolve_profile(args.profile)
        data = resolve_data(args.data, profile)
        extra = dict(parse_param(p) for p in args.param)
        plan = build_plan(profile, data, args.methods, args.seeds, args.only, args.runs_root,
                          args.figures_root, args.data_dir, extra)
    except ValueError as err:
        print(f"sdml.notebooks: error: {err}", file=sys.stderr)
        return 2
    print(f"[sdml] profile {profile}, data {data}: {len(plan)} notebook run(s)")
    if args.dry_run:
        print(describe(plan))
        return 0
    try:
        prepare_data(plan)
    except (ValueError, FileNotFoundError) as err:
        print(f"sdml.notebooks: error: {err}", file=sys.stderr)
        return 2
    if args.log_output:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        run_plan(plan, log_output=args.log_output)
    except NotebookFailed as err:
        print(f"sdml.notebooks: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
