"""Run the kit's notebooks headlessly, in order: ``python -m sdml.notebooks run``.

The plan is 01, 02, 03, then 04 once per method and seed (or, with ``--fuse-runs``, once per
seed, training all methods as one fused job), then 05. Every parameter set is checked
with :func:`sdml.notebooks.params.validate` before anything runs (papermill itself only warns about
unknown names). Notebooks run with papermill (kernel ``python3``, the repository root as working
folder); executed copies go to ``<run_root>/executed/``. A 04 run whose folder holds all its
epochs is skipped; an unfinished one is resumed by the notebook (``resume=True``); any other
notebook is skipped when its inputs and outputs are unchanged (:mod:`sdml.notebooks.stamps`).
While a notebook runs, its epoch lines (one per run and epoch) are printed as they come.
The first failing notebook stops the run with its name, the failing cell and the error.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import sys
import time
from pathlib import Path

from sdml.io.failures import (EXIT_CODES_HELP, EXIT_CRASH, EXIT_INPUT, OneLineParser,
                              describe_failure, parse_command_line)
from sdml.method.mixup import TABLE1_METHODS
from sdml.notebooks import stamps
from sdml.notebooks.estimate import estimate, plan_work
from sdml.notebooks.step_check import fused_step_holds
from sdml.notebooks.plan import (REPO, USES_DATA, Step, build_plan, describe, parse_param,
                                 resolve_data, resolve_fuse_runs, resolve_profile, resolve_seeds,
                                 run_state)
from sdml.training.eta import PlanClock

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


PROGRESS = re.compile(r"(^|: )epoch +\d+/\d+ |^\[sdml\]")  # training's per-epoch summary lines
#: The kernel's own log goes to the runner's console; at WARNING it says on every start that
#: it "is running over TCP without encryption" (local kernels do, on 127.0.0.1), so errors only.
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]


class ProgressLines:
    """A file-like sink for a notebook's stdout that passes its progress lines to ``log``.

    papermill writes each stream output as it arrives, so training's epoch lines reach the
    console live; everything else stays in the executed copy only.
    """

    def __init__(self, label: str, log=print, clock=None):
        self.label, self.log, self.pending, self.clock = label, log, "", clock

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            line = line.rstrip("\r").split("\r")[-1]
            if PROGRESS.search(line):
                # an epoch line of a run also gets the ETA of the plan's training
                eta = self.clock.tick() if self.clock and not line.startswith("[sdml]") else ""
                self.log(f"[sdml]   {self.label}: {line.removeprefix('[sdml] ').strip()}{eta}")
        return len(text)

    def flush(self) -> None:
        pass


def execute(step: Step, log_output: bool = False, log=print, clock=None) -> None:
    """Execute one notebook with papermill; raise :class:`NotebookFailed` naming the cell."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    step.output.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(str(NOTEBOOK_DIR / f"{step.notebook}.ipynb"), str(step.output),
                            parameters=step.params, kernel_name="python3", cwd=str(REPO),
                            progress_bar=False, log_output=log_output, extra_arguments=KERNEL_ARGS,
                            stdout_file=None if log_output else ProgressLines(step.label, log, clock))
    except PapermillExecutionError as err:
        index, line = failed_cell(step.output)
        where = f"cell {index} ({line!r})" if index else f"cell {err.cell_index} of the executed copy"
        raise NotebookFailed(f"notebook {step.label} failed in {where}: {err.ename}: {err.evalue}\n"
                             f"  the executed copy, with the traceback: {step.output}") from None


def prepare_data(plan: list[Step], log=print) -> None:
    """Fetch and check a real dataset before any notebook runs, so missing files stop at once."""
    wanted = sorted({(s.params["data"], s.params["data_dir"]) for s in plan
                     if s.params.get("data", "synthetic") != "synthetic" and s.notebook in USES_DATA})
    for data, folder in wanted:
        from sdml.data.load import ensure_files

        log(f"[sdml] {ensure_files(data, REPO / folder, download=True)}")


def run_plan(plan: list[Step], log=print, log_output: bool = False, clock=None) -> None:
    """Execute the plan in order, skipping finished 04 runs and unchanged notebooks (see
    :mod:`sdml.notebooks.stamps`); stops at the first failure. Ends with the plan's wall time."""
    start, ran = time.perf_counter(), 0
    for i, step in enumerate(plan, 1):
        state = run_state(step)
        source = NOTEBOOK_DIR / f"{step.notebook}.ipynb"
        if state == "done":
            log(f"[sdml] {i}/{len(plan)} {step.label}: finished run, skipped")
            continue
        if state == "run" and stamps.unchanged(source, step.notebook, step.params, step.output):
            log(f"[sdml] {i}/{len(plan)} {step.label}: inputs and outputs unchanged, skipped")
            continue
        log(f"[sdml] {i}/{len(plan)} {step.label}" + (f" ({state})" if state != "run" else "") + " ...")
        t0, started = time.perf_counter(), time.time()
        if clock is not None and step.run_dirs:
            clock.begin()
        execute(step, log_output, log, clock)
        if state == "run":
            stamps.record(source, step.notebook, step.params, step.output, started)
        ran += 1
        log(f"[sdml] {i}/{len(plan)} {step.label}: done in {time.perf_counter() - t0:.0f} s "
            f"-> {step.output}")
    minutes, seconds = divmod(round(time.perf_counter() - start), 60)
    log(f"[sdml] all {len(plan)} notebook run(s) in {minutes} min {seconds} s ({ran} executed, "
        f"{len(plan) - ran} skipped)")


# ----------------------------------------------------------------------------- command line

def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m sdml.notebooks", description=__doc__,
                           epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also: SDML_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="execute the notebooks in order with papermill", epilog=EXIT_CODES_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show the traceback of an error (also: SDML_DEBUG=1)")
    p.add_argument("--profile", default="auto", help="smoke | demo | cpu | fashion | paper | auto (paper with a CUDA GPU, else cpu)")
    p.add_argument("--data", default="auto", help="synthetic | cifar100 | cifar10 | fashion-mnist | auto (the profile's own)")
    p.add_argument("--methods", nargs="+", default=list(TABLE1_METHODS),
                   help=f"notebook 04 runs once per method (default: Table 1's {' '.join(TABLE1_METHODS)})")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="notebook 04 runs once per seed (default: 0 1 for paper, fashion and cpu, "
                        "so results can be set against the seeds' spread; 0 for smoke and demo)")
    p.add_argument("--independent", nargs="*", default=[], metavar="METHOD",
                   help="also train these methods as independent peers (mutual_weight 0, the DML "
                        "paper's control), once per seed (default: none; make reproduce asks for "
                        "none and superclass-beta)")
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


def missing_notebooks(plan: list[Step]) -> list[Path]:
    """The plan's notebook files that do not exist (checked before any notebook starts)."""
    paths = dict.fromkeys(NOTEBOOK_DIR / f"{step.notebook}.ipynb" for step in plan)
    return [p for p in paths if not p.is_file()]


def main(argv: list[str] | None = None) -> int:
    """``python -m sdml.notebooks run``; failures are one line and an exit code as in
    ``python -m sdml`` (:mod:`sdml.io.failures`), ``--debug`` or ``SDML_DEBUG=1`` for tracebacks."""
    argv, args = parse_command_line(build_parser(), argv, "sdml.notebooks")
    if args is None:
        return EXIT_INPUT
    try:
        return run_command(args)
    except NotebookFailed as err:
        print(f"sdml.notebooks: error: {err}", file=sys.stderr)
        return EXIT_CRASH
    except (Exception, KeyboardInterrupt) as err:
        if args.debug or os.environ.get("SDML_DEBUG") == "1":
            raise
        code, message = describe_failure(err, "run", argv, prog="python -m sdml.notebooks")
        if isinstance(err, KeyboardInterrupt):
            message = (f"interrupted; run the same command again to continue (finished runs are "
                       f"skipped, unfinished ones resumed): python -m sdml.notebooks {shlex.join(argv)}")
        print(f"sdml.notebooks: error: {message}", file=sys.stderr)
        return code


def run_command(args) -> int:
    profile = resolve_profile(args.profile)
    data = resolve_data(args.data, profile)
    extra = dict(parse_param(p) for p in args.param)
    fuse_runs = resolve_fuse_runs(args.fuse_runs, args.methods + args.independent)
    seeds = resolve_seeds(args.seeds, profile)
    plan = build_plan(profile, data, args.methods, seeds, args.only, args.runs_root,
                      args.figures_root, args.data_dir, extra, fuse_runs, args.independent)
    missing = missing_notebooks(plan)
    if missing:
        raise FileNotFoundError(f"notebook {missing[0]} does not exist; nothing was run (restore "
                                f"it, e.g. with git checkout, or leave it out with --only)")
    print(f"[sdml] profile {profile}, data {data}: {len(plan)} notebook run(s)")
    if args.dry_run:
        print(describe(plan))
        return 0
    prepare_data(plan)
    if fuse_runs and not fused_step_holds(plan):
        plan = build_plan(profile, data, args.methods, seeds, args.only, args.runs_root,
                          args.figures_root, args.data_dir, extra, False, args.independent)
    if args.log_output:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = plan_work(plan)
    estimate(work)  # said when the plan's training would take over an hour
    run_plan(plan, log=lambda line: print(line, flush=True), log_output=args.log_output,
             clock=PlanClock(work.run_epochs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
