"""How long a plan of runs will take: images to train and evaluate, over a measured rate.

A run trains ``epochs * steps_per_epoch * batch_size`` images and, on each evaluated epoch
(``eval_every`` and the last), predicts the test split and at most 10,000 training images. An
evaluated image costs about :data:`EVAL_COST` of a trained one (a forward pass without the
backward one, in large batches; measured on 2 CPU cores with the ``cpu`` profile: 10 epochs of
1,000 images and two evaluations of 11,000 images took 10 s and about 11 s). The rate comes from
a short warm-up of the real step (:func:`sdml.training.bench.bench_step`), so the estimate is
this machine's, not a guess.
"""
from __future__ import annotations

import math

from sdml.training.config import Config
from sdml.training.eta import duration_text

EVAL_COST = 0.5  # an evaluated image's cost, in trained images
#: Beyond this, a plan on a CPU is refused unless asked for (days of a laptop's time, such as
#: the paper's 200-epoch schedule): hours.
CPU_REFUSE_HOURS = 48.0


def split_sizes(cfg: Config) -> tuple[int, int]:
    """(train, test) images a run of ``cfg`` uses, from its dataset's declaration and subset."""
    from sdml.data.datasets import get_spec

    spec = get_spec(cfg.data)
    train, test = spec.per_class
    if (train, test) == (0, 0):  # generated: sized by the config
        train, test = cfg.synthetic_train_per_class, cfg.synthetic_test_per_class
    if cfg.train_per_class:
        train = min(train, cfg.train_per_class)
    if cfg.test_per_class:
        test = min(test, cfg.test_per_class)
    return train * spec.num_classes, test * spec.num_classes


def run_images(cfg: Config) -> float:
    """Trained-image equivalents of one whole run (training plus its evaluations)."""
    from sdml.training.train import TRAIN_EVAL_MAX

    n_train, n_test = split_sizes(cfg)
    steps = n_train // cfg.batch_size
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    evals = len({e for e in range(cfg.epochs) if (e + 1) % cfg.eval_every == 0} | {cfg.epochs - 1})
    return (cfg.epochs * steps * cfg.batch_size
            + EVAL_COST * evals * (n_test + min(n_train, TRAIN_EVAL_MAX)))


def spread_seconds(loads: list[float], images_per_s: float, parallel: int = 1) -> float:
    """Seconds until ``parallel`` processes at ``images_per_s`` each have worked through runs of
    these ``loads`` (images), each run taken, longest first, by the least loaded process (a
    pool takes the next run as a process comes free; with equal runs the two agree)."""
    if not images_per_s > 0 or not math.isfinite(images_per_s):
        raise ValueError(f"images_per_s: {images_per_s!r}; allowed: a positive finite number")
    shares = [0.0] * max(1, parallel)
    for load in sorted(loads, reverse=True):
        shares[shares.index(min(shares))] += load
    return max(shares) / images_per_s


def plan_seconds(cfgs: list[Config], images_per_s: float, parallel: int = 1) -> float:
    """Seconds to train ``cfgs`` at ``images_per_s`` per process, ``parallel`` at once."""
    return spread_seconds([run_images(c) for c in cfgs], images_per_s, parallel)


def check_plan_time(seconds: float, device_type: str, max_hours: float | None = None) -> str:
    """The line to print before a plan starts; raises ValueError when a CPU plan would take more
    than ``max_hours`` (default :data:`CPU_REFUSE_HOURS`), naming how to go on."""
    if max_hours is not None and (not isinstance(max_hours, (int, float)) or not max_hours > 0
                                  or not math.isfinite(max_hours)):
        raise ValueError(f"max_hours: {max_hours!r}; allowed: a positive number of hours")
    limit = CPU_REFUSE_HOURS if max_hours is None else max_hours
    if device_type == "cpu" and seconds > 3600 * limit:
        raise ValueError(f"epochs: this plan would take about {duration_text(seconds)} on this "
                         f"CPU, more than the {limit:g} h allowed; allowed: a shorter profile "
                         f"(cpu, quick), fewer epochs or seeds, a GPU, or --max-hours "
                         f"{math.ceil(seconds / 3600)} to run it anyway")
    return f"estimated training time: {duration_text(seconds)}"
