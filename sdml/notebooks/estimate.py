"""How long a plan's training will take, said before it starts when that is over an hour.

A plan's work is the training images its unfinished runs still have to go through. When even a
slow pace (:data:`SLOW_PACE` images/s) would finish it within the hour, nothing is measured.
Otherwise a short warm-up of the plan's step (:func:`sdml.training.bench.bench_step`: a few
untimed steps, then a few timed ones, on random data shaped as the dataset's) gives the pace, and
the estimate is printed before the first notebook runs, so that a user can stop and pick a
smaller plan. The console's per-epoch ETA (:class:`sdml.training.eta.PlanClock`) then follows
the real pace.
"""
from __future__ import annotations

from dataclasses import dataclass

from sdml.notebooks import params as nbparams
from sdml.training.eta import duration_text

HOUR = 3600.0
SLOW_PACE = 100.0  # images/s: below this pace's hour of work, a plan needs no warm-up


@dataclass(frozen=True)
class Work:
    """A plan's remaining training: runs, run-epochs and training images."""

    runs: int
    run_epochs: int
    images: int
    cfg: object  # the first unfinished run's config (its step is the one measured)


def train_size(cfg) -> int:
    """Training images of a run: its per-class subset, the synthetic split, else the dataset's."""
    from sdml.data.datasets import get_spec

    spec = get_spec(cfg.data)
    if cfg.train_per_class:
        return cfg.train_per_class * spec.num_classes
    if cfg.data == "synthetic":
        return cfg.synthetic_train_per_class * spec.num_classes
    from sdml.data.load import dataset_for

    return len(dataset_for(cfg).train_y)


def plan_work(plan, size=train_size) -> Work:
    """The epochs and images the plan's notebook-04 runs have left (finished epochs excluded)."""
    from sdml.training import runs
    from sdml.training.train import steps_per_epoch

    n_runs = run_epochs = images = 0
    first, sizes = None, {}
    for step in plan:
        if not step.run_dirs:
            continue
        cfgs, _ = nbparams.train_plan(step.params)
        for cfg, folder in zip(cfgs, step.run_dirs):
            done = len(runs.read_metrics(folder)) if (folder / runs.CONFIG).is_file() else 0
            left = max(cfg.epochs - done, 0)
            if not left:
                continue
            key = (cfg.data, cfg.train_per_class, cfg.synthetic_train_per_class, cfg.data_dir)
            if key not in sizes:
                sizes[key] = size(cfg)
            n_runs, run_epochs = n_runs + 1, run_epochs + left
            images += left * steps_per_epoch(cfg, sizes[key]) * cfg.batch_size
            first = first or cfg
    return Work(n_runs, run_epochs, images, first)


def measure_pace(cfg) -> float:
    """Training images per second of ``cfg``'s step, from a short warm-up on random data."""
    from sdml.training.bench import bench_step

    return bench_step(cfg, steps=10, warmup=3, repeats=1)["images_per_s"]


def estimate(work: Work, measure=measure_pace, log=print) -> float | None:
    """Seconds of training the work needs at the measured pace, said when over an hour; ``None``
    when it is too small to need measuring."""
    if work.cfg is None or work.images < SLOW_PACE * HOUR:
        return None
    from sdml.training.train import resolve_device

    pace = measure(work.cfg)
    seconds = work.images / pace
    if seconds > HOUR:
        log(f"[sdml] estimate: {work.runs} training run(s), {work.run_epochs} run-epochs, "
            f"{work.images:,} training images at {pace:,.0f} images/s (a short warm-up of one "
            f"run's step on {resolve_device(work.cfg.device)}): about {duration_text(seconds)} of training, "
            f"evaluation not counted; stop now (Ctrl-C) for a smaller plan: fewer --seeds or "
            f"--methods, or another --profile")
    return seconds
