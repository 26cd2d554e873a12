"""The regime sweep's reading: the seed rule, the regime, the length series and its figure."""
import json
import math
import statistics

import pytest

from sdml.io.readback import DamagedFile
from sdml.results import sweep
from sdml.results.power import seeds_for_effect


def row(name, epochs, methods, **over):
    o = dict(train_per_class=100, width=8, epochs=epochs, milestones=[epochs // 2],
             eval_every=max(1, epochs // 10), **over)
    return {"setting": name, "overrides": o, "seeds": [0, 1, 2],
            "methods": {m: {"n": len(t), "train_top1": f, "test_top1": t, "last_tenth_move": mv,
                            "train_seconds": 1.0} for m, (f, t, mv) in methods.items()}}


ROWS = [
    row("e10", 10, {"none": ([70, 71, 72], [68.0, 69.0, 68.5], 1.2),
                    "mixup": ([65, 66, 64], [66.0, 67.5, 66.0], 1.0)}),
    row("e60", 60, {"none": ([99.9, 100, 99.8], [80.8, 80.4, 81.0], 0.05),
                    "mixup": ([96, 96.5, 96.2], [81.7, 81.5, 82.1], 0.2)}),
    row("aug", 60, {"none": ([90, 91, 90], [80.0, 80.5, 79.8], 0.3)}, augment=True),
]


def test_the_pooled_sd_of_paired_differences_is_the_df_weighted_variance():
    d10 = [66.0 - 68.0, 67.5 - 69.0, 66.0 - 68.5]
    d60 = [81.7 - 80.8, 81.5 - 80.4, 82.1 - 81.0]
    want = math.sqrt((2 * statistics.variance(d10) + 2 * statistics.variance(d60)) / 4)
    sd, df = sweep.pooled_paired_sd(ROWS)
    assert (sd, df) == (pytest.approx(want), 4)
    assert sweep.seed_rule(ROWS) == {"sd": pytest.approx(want), "df": 4,
                                     "seeds": seeds_for_effect(want)}


def test_one_seed_per_setting_gives_no_spread():
    one = [row("e10", 10, {"none": ([70], [68.0], 1.0), "mixup": ([65], [66.0], 1.0)})]
    with pytest.raises(ValueError, match="^rows: no setting has two seeds"):
        sweep.pooled_paired_sd(one)


def test_the_regime_needs_fitted_peers_and_a_converged_schedule():
    assert [sweep.in_regime(r) for r in ROWS] == [False, True, False]


def test_the_length_series_keeps_the_settings_that_differ_only_in_length():
    assert [r["setting"] for r in sweep.length_series(ROWS)] == ["e10", "e60"]


def test_the_figure_draws_every_method_of_the_series():
    from sdml.notebooks.plots import mixing_pays

    fig = mixing_pays(sweep.length_series(ROWS))
    test_ax, train_ax = fig.axes
    assert len(test_ax.containers) == 2 and len(train_ax.containers) == 2  # errorbars: methods
    xs = sorted(round(x) for x in test_ax.containers[0].lines[0].get_xdata())
    assert xs == [9, 59]  # epochs, offset per method


def test_the_committed_sweep_reads_and_a_damaged_one_is_named(tmp_path):
    data = sweep.read_sweep()
    assert data["rows"] and any(sweep.in_regime(r) for r in data["rows"])
    bad = tmp_path / "sweep.json"
    bad.write_text(json.dumps({"machine": "x", "rows": [{"setting": "e1"}]}))
    with pytest.raises(DamagedFile, match="row 1 is not a sweep row"):
        sweep.read_sweep(bad)
    nan = dict(ROWS[1])
    nan["methods"] = {"none": {"train_top1": [float("nan")], "test_top1": [1.0]}}
    bad.write_text(json.dumps({"rows": [nan]}))
    with pytest.raises(DamagedFile, match=str(bad.name)):
        sweep.read_sweep(bad)
    with pytest.raises(FileNotFoundError, match="regime sweep's results are missing"):
        sweep.read_sweep(tmp_path / "none.json")
