"""Several runs at once on a CPU: one process per run, each with its share of the cores.

Small models use several cores badly from one process: their operators are too small to split
across threads without the threads waiting on each other. Measured on 2 cores (AMD EPYC, no
native bf16) with the ``cpu`` profile's two-peer ResNet-8 step: one process at 2 threads, 1,240
images/s; one process at 1 thread, 936, so two one-thread processes give about 1,870 together.
:func:`train_in_pool` therefore trains the runs of a plan in ``workers`` processes, each run in
its own folder exactly as :func:`sdml.training.train.train` trains it alone (the thread count is
an execution detail: it is not part of a run's identity, ``sdml.training.runs.RESUMABLE``).

The pool is :class:`concurrent.futures.ProcessPoolExecutor` with the ``spawn`` start method (a
fresh interpreter per worker: no torch thread pool or CUDA state inherited from the parent).
A run that fails stops the pool: runs not yet started are cancelled, and the error reaches the
caller; every run that finished or was interrupted resumes on the next call.
"""
from __future__ import annotations

import dataclasses
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from sdml.training.config import Config


def plan_workers(workers: int | str, runs: int, cores: int | None = None) -> tuple[int, int]:
    """(processes, threads each) for ``runs`` runs: ``auto`` takes one process per core, at most
    one per run, and splits the cores evenly; a number asks for that many processes."""
    cores = cores or os.cpu_count() or 1
    if workers == "auto":
        n = max(1, min(cores, runs))
    elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: {workers!r}; allowed: auto or an integer >= 1")
    else:
        n = max(1, min(workers, runs))
    return n, max(1, cores // n)


def die_with_parent() -> None:
    """Worker initializer: on Linux, ask the kernel to end this worker when the process that
    started it dies (a killed runner must not leave runs training on; they resume next time).
    Elsewhere a no-op: workers then finish their current run first."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _train_one(cfg: Config, run_dir: str, cwd: str | None) -> str:
    """A worker's job: train (or resume) one run, relative paths read from ``cwd``; its lines
    name the run."""
    from sdml.training.train import train

    if cwd is not None:
        os.chdir(cwd)
    name = Path(run_dir).name

    def log(line: str) -> None:
        print(f"[sdml]   {name}: {line.removeprefix('[sdml] ')}", flush=True)

    train(cfg, run_dir, resume=True, progress=False, log=log)
    return run_dir


def train_in_pool(cfgs: list[Config], run_dirs: list, workers: int | str = "auto",
                  log=print, cwd: str | Path | None = None) -> None:
    """Train (or resume) each config in its run folder, ``workers`` runs at a time on the CPU;
    the workers read relative paths (``data_dir``) from ``cwd`` (default: this process's)."""
    if len(cfgs) != len(run_dirs):
        raise ValueError(f"run_dirs: {len(run_dirs)} folders for {len(cfgs)} configs; allowed: "
                         f"one folder per config")
    if not cfgs:
        return
    n, threads = plan_workers(workers, len(cfgs))
    log(f"[sdml] training {len(cfgs)} run(s) in {n} process(es) at {threads} thread(s) each")
    jobs = [(dataclasses.replace(c, threads=threads).validate(), str(d))
            for c, d in zip(cfgs, run_dirs)]
    with ProcessPoolExecutor(n, mp_context=get_context("spawn"), initializer=die_with_parent) as pool:
        futures = [pool.submit(_train_one, c, d, None if cwd is None else str(cwd))
                   for c, d in jobs]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()
