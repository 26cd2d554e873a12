"""results.md's time section: training seconds, throughput and threads per group, from metrics."""
import statistics
from pathlib import Path

import pytest

from sdml.results import timing
from sdml.results.summary import Run
from sdml.training.config import make_config


def timed_run(method, seed, seconds, threads=None):
    cfg = make_config("smoke", method=method, seed=seed, epochs=len(seconds)).to_dict()
    metrics = [{"epoch": e + 1, "train_seconds": s, "steps": 10, "test_acc": [50.0, 50.0],
                "ensemble_acc": 50.0, **({"threads": threads} if threads else {})}
               for e, s in enumerate(seconds)]
    return Run(Path(f"{method}-{seed}"), cfg, {"platform": "Linux-test"}, metrics, None, None, None)


def test_time_rows_sum_each_runs_epochs_and_pool_a_groups_runs():
    runs = [timed_run("none", 0, [2.0, 3.0], threads=2), timed_run("none", 1, [4.0, 4.0], threads=1),
            timed_run("mixup", 0, [1.0, 1.0])]
    rows = {r["group"]: r for r in timing.time_rows(runs)}
    none = rows["none"]
    assert none["runs"] == 2 and none["total_seconds"] == pytest.approx(13.0)
    assert none["seconds"] == pytest.approx(6.5) and none["seconds_std"] == pytest.approx(statistics.stdev([5, 8]))
    batch = runs[0].config["batch_size"]
    assert none["images_per_s"] == pytest.approx(statistics.mean([20 * batch / 5, 20 * batch / 8]))
    assert none["threads"] == [1, 2] and rows["mixup"]["threads"] == []
    text = "\n".join(timing.time_section(runs))
    assert "| none | 2 | 6.5 ± 2.1 |" in text and "| 1, 2 |" in text
    assert "| mixup | 1 | 2.0 | " in text and "not recorded" in text
    assert "all 3 runs together: 15 s of training on CPU only (Linux-test)" in text
    assert timing.time_section([]) == []
    untimed = timed_run("none", 2, [1.0])
    del untimed.metrics[0]["train_seconds"]
    assert [r["runs"] for r in timing.time_rows(runs + [untimed])] == [2, 1]
    assert timing.time_section([untimed]) == []
