"""Run the kit's notebooks headlessly, in order: ``python -m sdml.notebooks run``.

The plan is 01, 02, 03, then 04 once per method and seed (or, with ``--fuse-runs``, once per
seed, training all methods as one fused job), then 05. Every parameter set is checked
with :func:`sdml.notebooks.params.validate` before anything runs (papermill itself only warns about
unknown names). Notebooks run with papermill (kernel ``python3``, the repository root as working
folder); executed copies go to ``<run_root>/executed/``. A 04 run whose folder holds all its
epochs is skipped; an unfinished one is resumed by the notebook (``resume=True``).
The first failing notebook stops the run with its name, the failing cell and the error.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sdml.method.mixup import TABLE1_METHODS
from sdml.notebooks.plan import (REPO, USES_DATA, Step, build_plan, describe, parse_param,
                                 resolve_data, resolve_fuse_runs, resolve_profile, run_state)

NOTEBOOK_DIR = REPO / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names it, the cell and the error."""


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
    """Fetch and check a real dataset before any notebook runs, so missing files stop at once."""
    wanted = sorted({(s.params["data"], s.params["data_dir"]) for s in plan
                     if s.params["data"] != "synthetic" and s.notebook in USES_DATA})
    for data, folder in wanted:
        from sdml.data.load import load_dataset

        arrays = load_dataset(data, REPO / folder, download=True)
        log(f"[sdml] {data}: {len(arrays.train_y)} train and {len(arrays.test_y)} test images "
            f"(md5 checked)")


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
    p.add_argument("--profile", default="auto", help="smoke | demo | cpu | fashion | paper | auto (paper with a CUDA GPU, else cpu)")
    p.add_argument("--data", default="auto", help="synthetic | cifar100 | cifar10 | fashion-mnist | auto (the profile's own)")
    p.add_argument("--methods", nargs="+", default=list(TABLE1_METHODS),
                   help=f"notebook 04 runs once per method (default: Table 1's {' '.join(TABLE1_METHODS)})")
    p.add_argument("--seeds", nargs="+", type=int, default=[0], help="notebook 04 runs once per seed (default 0)")
    p.add_argument("--fuse-runs", default="auto", choices=["auto", "on", "off"],
                   help="train the methods of a seed as one fused job in one 04 run (auto: on with a "
                        "CUDA GPU and several methods)")
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
        fuse_runs = resolve_fuse_runs(args.fuse_runs, args.methods)
        plan = build_plan(profile, data, args.methods, args.seeds, args.only, args.runs_root,
                          args.figures_root, args.data_dir, extra, fuse_runs)
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
