"""What a plan's notebook-04 runs have left to train: runs, run-epochs and training images.

The runner's console ETA (:class:`sdml.training.eta.PlanClock`) counts down these run-epochs at
the real pace; the estimate printed before a plan starts, from a measured warm-up, and the
refusal of a CPU plan far too long are :mod:`sdml.training.estimate`'s.
"""
from __future__ import annotations

from dataclasses import dataclass

from sdml.notebooks import params as nbparams


@dataclass(frozen=True)
class Work:
    """A plan's remaining training: runs, run-epochs and training images."""

    runs: int
    run_epochs: int
    images: int
    cfg: object  # the first unfinished run's config (its step is the one measured)


def train_size(cfg) -> int:
    """Training images of a run, from its dataset's declaration and subset (nothing is read)."""
    from sdml.training.estimate import split_sizes

    return split_sizes(cfg)[0]


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
