"""Run the kit's notebooks headlessly, in order: ``python -m sdml.notebooks run``.

The plan is 01, 02, 03, then 04 once per method and seed (or, with ``--fuse-runs``, once per
seed, training all methods as one fused job), then 05. Every parameter set is checked
with :func:`sdml.notebooks.params.validate` before anything runs (papermill itself only warns about
unknown names). Notebooks run with papermill (kernel ``python3``, the repository root as working
folder); executed copies go to ``<run_root>/executed/``. A 04 run whose folder holds the run
asked for with all its epochs is skipped (unless the outputs 04 wrote are gone), an unfinished
one is resumed by the notebook (``resume=True``), and one that is not the run asked for stops the
runner before anything runs (:func:`sdml.notebooks.plan.run_state`); any other notebook is skipped
when its inputs and outputs are unchanged (:mod:`sdml.notebooks.stamps`).
While a notebook runs, its epoch lines (one per run and epoch) are printed as they come.
The first failing notebook stops the run with its name, the failing cell and the error.
"""
from __future__ import annotations

import argparse
import builtins
import os
import re
import shlex
import sys
import time
from pathlib import Path

from sdml.io.failures import (EXIT_CODES_HELP, EXIT_CRASH, EXIT_INPUT, OneLineParser, UsageError,
                              describe_failure, one_line, parse_command_line)
from sdml.io.lock import FolderBusy
from sdml.io.readback import DamagedFile
from sdml.method.mixup import TABLE1_METHODS
from sdml.notebooks import stamps
from sdml.notebooks.estimate import plan_work
from sdml.notebooks.step_check import fused_step_holds
from sdml.training.resume import RecordMismatch
from sdml.notebooks.plan import (REPO, USES_DATA, Step, build_plan, describe, parse_param,
                                 resolve_data, resolve_fuse_runs, resolve_independent,
                                 resolve_profile, resolve_seeds,
                                 run_state)
from sdml.training.eta import PlanClock

NOTEBOOK_DIR = REPO / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names it, the cell and the error. ``code``: the exit code
    the kit gives that error (:func:`kit_exit_code`); ``kernel_died``: the kernel itself stopped."""

    def __init__(self, message: str, code: int = EXIT_CRASH, kernel_died: bool = False):
        super().__init__(message)
        self.code, self.kernel_died = code, kernel_died


#: The kit's own exception types a notebook may raise, by name (a notebook's error reaches the
#: runner as the name of its type and its message only).
KIT_ERRORS = {cls.__name__: cls for cls in (FolderBusy, DamagedFile, RecordMismatch, UsageError)}


def kit_exit_code(ename: str) -> int:
    """The exit code ``python -m sdml`` gives an error of type ``ename`` (one of
    :data:`KIT_ERRORS` or a built-in: 2 bad input, 3 a file problem, 4 a folder in use, ...);
    :data:`EXIT_CRASH` for any other."""
    cls = KIT_ERRORS.get(ename) or getattr(builtins, ename, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return EXIT_CRASH
    # describe_failure decides by type alone (and errno, unset here): one mapping for both tools
    return describe_failure(cls.__new__(cls), "run", [])[0]


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


def running_cell(output: Path) -> tuple[int | None, str]:
    """Position (from 1, as committed) and first line of the last cell that started: the one
    running when the kernel died (papermill stamps each cell's start in the executed copy)."""
    import nbformat

    if not Path(output).is_file():
        return None, ""
    cells = [c for c in nbformat.read(output, as_version=4).cells
             if not PAPERMILL_TAGS & set(c.metadata.get("tags", []))]
    started = [i for i, c in enumerate(cells, 1) if c.metadata.get("papermill", {}).get("start_time")]
    if not started:
        return None, ""
    lines = cells[started[-1] - 1].source.strip().splitlines()
    return started[-1], lines[0] if lines else ""


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
    from nbclient.exceptions import DeadKernelError
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
        code = kit_exit_code(err.ename)
        if code != EXIT_CRASH:  # the kit's own one-line error: its message, then where
            raise NotebookFailed(f"{one_line(err.evalue)} (notebook {step.label}, {where}; the "
                                 f"executed copy: {step.output})", code) from None
        raise NotebookFailed(f"notebook {step.label} failed in {where}: {err.ename}: {err.evalue}\n"
                             f"  the executed copy, with the traceback: {step.output}") from None
    except DeadKernelError:
        index, line = running_cell(step.output)
        where = f"in cell {index} ({line!r})" if index else "before its first cell"
        raise NotebookFailed(f"notebook {step.label}: its kernel died {where} (killed, or out of "
                             f"memory); the executed copy so far: {step.output}",
                             kernel_died=True) from None


def prepare_data(plan: list[Step], log=print) -> None:
    """Fetch and check a real dataset before any notebook runs, so missing files stop at once."""
    from sdml.data.load import check_data_dir, ensure_files

    wanted = sorted({(s.params["data"], s.params["data_dir"]) for s in plan
                     if s.notebook in USES_DATA and "data" in s.params})  # 06 reads its runs' data
    for data, folder in wanted:
        check_data_dir(REPO / folder)  # every dataset, synthetic included
        if data != "synthetic":
            log(f"[sdml] {ensure_files(data, REPO / folder, download=True)}")


def parse_workers(text: str) -> int | str:
    """``--workers``: ``auto`` or a whole number >= 1."""
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"workers: {text!r}; allowed: auto or an integer >= 1")
    return int(text)


def pretrain(plan: list[Step], states: list[str], workers: int | str, log=print) -> None:
    """Train notebook 04's unfinished single runs in parallel CPU processes before the notebooks
    run (:mod:`sdml.training.pool`); their 04 steps then find them finished and are skipped.

    Only on a CPU, with more than one run to train and more than one worker: a GPU trains one
    run (or one fused job) at a time, inside notebook 04.
    """
    from sdml.notebooks import params as nbparams
    from sdml.training.pool import plan_workers, train_in_pool
    from sdml.training.train import resolve_device

    todo = [s for s, state in zip(plan, states) if len(s.run_dirs) == 1 and state != "done"]
    if len(todo) < 2 or plan_workers(workers, len(todo))[0] < 2:
        return
    jobs = [nbparams.train_plan(s.params) for s in todo]
    cfgs = [cfg for c, _ in jobs for cfg in c]
    if resolve_device(cfgs[0].device).type != "cpu":
        return
    train_in_pool(cfgs, [REPO / d for _, dirs in jobs for d in dirs], workers, log, cwd=REPO)


#: Plans smaller than this many trained-image equivalents start without a timed warm-up.
ESTIMATE_FROM = 100_000


def estimate(plan: list[Step], states: list[str], workers: int | str, max_hours: float | None,
             log=print) -> None:
    """Before anything trains: time a few steps of the plan's first unfinished run and print how
    long its training will take (:mod:`sdml.training.estimate`); refuse, in one line, a CPU plan
    longer than ``max_hours``. Small plans are not timed."""
    import dataclasses

    from sdml.notebooks import params as nbparams
    from sdml.training.bench import bench_step
    from sdml.training.estimate import check_plan_time, plan_seconds, run_images
    from sdml.training.pool import plan_workers
    from sdml.training.train import resolve_device

    cfgs = [c for s, state in zip(plan, states) if s.run_dirs and state != "done"
            for c in nbparams.train_plan(s.params)[0]]
    if not cfgs or sum(run_images(c) for c in cfgs) < ESTIMATE_FROM:
        return
    device = resolve_device(cfgs[0].device).type
    parallel, threads = plan_workers(workers, len(cfgs)) if device == "cpu" else (1, 0)
    probe = dataclasses.replace(cfgs[0], threads=threads, compile="off")  # eager: no compiling
    rate = bench_step(probe, steps=5, warmup=2, repeats=1)["images_per_s"]
    seconds = plan_seconds(cfgs, rate, parallel)
    log(f"[sdml] {check_plan_time(seconds, device, max_hours)} for {len(cfgs)} run(s) "
        f"({parallel} at a time; measured step {rate:.0f} images/s per process"
        f"{', eager: a compiled step is faster' if device != 'cpu' else ''})")


def plan_states(plan: list[Step]) -> list[str]:
    """Every step's :func:`run_state`; a run that is not the one asked for stops everything
    before anything starts (the first refusal names every such run)."""
    cache, states, refused = {}, [], []
    for step in plan:
        try:
            states.append(run_state(step, cache))
        except RecordMismatch as err:
            refused.append(err)
    if refused:
        refused[0].all_runs = [err.run_dir for err in refused]
        raise refused[0]
    return states


def run_plan(plan: list[Step], log=print, log_output: bool = False,
             started: float | None = None, clock=None) -> None:
    """Execute the plan in order, skipping finished 04 runs and unchanged notebooks (see
    :mod:`sdml.notebooks.stamps`); stops at the first failure. Ends with the plan's wall time
    (since ``started``, a :func:`time.perf_counter` value, when runs were trained before it)."""
    start, ran = (time.perf_counter() if started is None else started), 0
    states = plan_states(plan)
    for i, (step, state) in enumerate(zip(plan, states), 1):
        source = NOTEBOOK_DIR / f"{step.notebook}.ipynb"
        if state == "done" and (stamps.outputs_intact(step.output)
                                or not stamps.stamp_path(step.output).is_file()):
            log(f"[sdml] {i}/{len(plan)} {step.label}: finished run, skipped")
            continue
        if state == "done":
            state = "finished run, outputs missing or changed"  # the notebook redraws them
        if state == "run" and stamps.unchanged(source, step.notebook, step.params, step.output):
            log(f"[sdml] {i}/{len(plan)} {step.label}: inputs and outputs unchanged, skipped")
            continue
        log(f"[sdml] {i}/{len(plan)} {step.label}" + (f" ({state})" if state != "run" else "") + " ...")
        t0, started = time.perf_counter(), time.time()
        if clock is not None and step.run_dirs:
            clock.begin()
        execute(step, log_output, log, clock)
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
    p.add_argument("--profile", default="auto", help="smoke | demo | quick | cpu | fashion | paper | auto (paper with a CUDA GPU, else cpu)")
    p.add_argument("--data", default="auto", help="synthetic | cifar100 | cifar10 | fashion-mnist | auto (the profile's own)")
    p.add_argument("--methods", nargs="+", default=list(TABLE1_METHODS),
                   help=f"notebook 04 runs once per method (default: Table 1's {' '.join(TABLE1_METHODS)})")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="notebook 04 runs once per seed (default: 0 1 for paper, fashion and cpu, "
                        "so results can be set against the seeds' spread; 0 for smoke and demo)")
    p.add_argument("--independent", nargs="*", default=[], metavar="METHOD",
                   help="also train these methods as independent peers (mutual_weight 0, the DML "
                        "paper's control), once per seed (default: none; auto: none and "
                        "superclass-beta, except on the cpu profile, as make reproduce asks)")
    p.add_argument("--fuse-runs", default="auto", choices=["auto", "on", "off"],
                   help="train the methods of a seed as one fused job in one 04 run (auto: on with a "
                        "CUDA GPU and several methods)")
    p.add_argument("--only", nargs="+", default=None, metavar="PREFIX",
                   help="run only the notebooks whose name starts with one of these (e.g. 04)")
    p.add_argument("--workers", default="auto",
                   help="on a CPU, train notebook 04's runs this many at a time in separate "
                        "processes before the notebooks run (auto: one per core; 1: inside "
                        "notebook 04, one after the other)")
    p.add_argument("--max-hours", type=float, default=None,
                   help="on a CPU, refuse a plan whose measured estimate exceeds this many hours "
                        "(default 48)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and run nothing")
    p.add_argument("--data-dir", default="data", help="folder of the dataset archives (default data)")
    p.add_argument("--runs-root", default=None, help="run folder (default runs/<profile>, or "
                   "runs/<profile>-<data> when the data is not the profile's own)")
    p.add_argument("--figures-root", default=None, help="figure folder (default figures/<profile>, "
                   "or figures/<profile>-<data> as for --runs-root)")
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
        cont = (f"; to continue (finished notebooks and runs are skipped, an unfinished run "
                f"resumed): python -m sdml.notebooks {shlex.join(argv)}") if err.kernel_died else ""
        print(f"sdml.notebooks: error: {err}{cont}", file=sys.stderr)
        return err.code
    except RecordMismatch as err:
        stale = getattr(err, "all_runs", [err.run_dir])
        others = f" (and {len(stale) - 1} other run(s) of this plan)" if len(stale) > 1 else ""
        moves = " && ".join(f"mv {shlex.quote(str(d))} {shlex.quote(str(d) + '.old')}" for d in stale)
        print(f"sdml.notebooks: error: {one_line(err)}{others}; nothing was run. To train afresh: "
              f"{moves} && python -m sdml.notebooks {shlex.join(argv)}", file=sys.stderr)
        return EXIT_INPUT
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
    independent = resolve_independent(args.independent, profile)
    fuse_runs = resolve_fuse_runs(args.fuse_runs, args.methods + independent)
    seeds = resolve_seeds(args.seeds, profile)
    workers = parse_workers(args.workers)
    plan = build_plan(profile, data, args.methods, seeds, args.only, args.runs_root,
                      args.figures_root, args.data_dir, extra, fuse_runs, independent)
    missing = missing_notebooks(plan)
    if missing:
        raise FileNotFoundError(f"notebook {missing[0]} does not exist; nothing was run (restore "
                                f"it, e.g. with git checkout, or leave it out with --only)")
    print(f"[sdml] profile {profile}, data {data}: {len(plan)} notebook run(s)")
    if args.dry_run:
        print(describe(plan))
        return 0
    log = lambda line: print(line, flush=True)  # noqa: E731
    started = time.perf_counter()
    states = plan_states(plan)  # runs that are not the ones asked for are refused first
    estimate(plan, states, workers, args.max_hours, log)  # a plan far too long is refused here
    prepare_data(plan)
    if fuse_runs and not fused_step_holds(plan):
        plan = build_plan(profile, data, args.methods, seeds, args.only, args.runs_root,
                          args.figures_root, args.data_dir, extra, False, independent)
        states = plan_states(plan)
    if args.log_output:
        import logging

        logging.basicConfig(level=logging.INFO, format="%(message)s")
    pretrain(plan, states, workers, log)
    run_plan(plan, log=log, log_output=args.log_output, started=started,
             clock=PlanClock(plan_work(plan).run_epochs))  # what is left after the pool
    return 0


if __name__ == "__main__":
    sys.exit(main())
