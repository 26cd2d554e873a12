"""A sense of time: the ETA of a run and of a plan, the work a plan has left, and the metrics
as TensorBoard event files (the estimate before a long plan: test_estimate.py)."""
import json
import sys

import pytest

from sdml import cli
from sdml.notebooks import estimate as est
from sdml.notebooks.plan import build_plan
from sdml.notebooks.runner import ProgressLines
from sdml.training import eta
from sdml.training import tensorboard as tb
from tiny_run import train_argv


def test_remaining_time_is_the_mean_pace_times_the_units_left():
    assert eta.remaining_seconds(30.0, 3, 10) == pytest.approx(70.0)
    assert eta.remaining_seconds(5.0, 0, 10) is None
    assert eta.remaining_seconds(5.0, 4, 4) == 0.0
    assert [eta.duration_text(s) for s in (0, 42.4, 185, 7620, 90061)] == [
        "0 s", "42 s", "3 min 05 s", "2 h 07 min", "25 h 01 min"]
    assert eta.eta_note("run", 60.0, 2, 5) == " | ETA run 1 min 30 s"
    assert eta.eta_note("run", 60.0, 5, 5) == ""  # nothing left: no ETA


def test_plan_clock_counts_run_epochs_from_the_first_start():
    now = [100.0]
    clock = eta.PlanClock(total=6, clock=lambda: now[0])
    clock.begin()
    now[0] = 110.0
    assert clock.tick() == " | ETA plan 50 s"
    clock.begin()  # a later run's start does not restart the clock
    now[0] = 130.0
    assert clock.tick() == " | ETA plan 1 min 00 s"


def test_the_runners_epoch_lines_carry_the_plans_eta():
    now = [0.0]
    clock = eta.PlanClock(total=4, clock=lambda: now[0])
    clock.begin()
    said = []
    sink = ProgressLines("04 [none-cifar-seed0]", said.append, clock)
    now[0] = 20.0
    sink.write("[sdml] run runs/x | none\nepoch   1/2 lr 0.05 loss 4.5 | ETA run 20 s\nnoise\n")
    assert said == ["[sdml]   04 [none-cifar-seed0]: run runs/x | none",
                    "[sdml]   04 [none-cifar-seed0]: epoch   1/2 lr 0.05 loss 4.5 | ETA run 20 s"
                    " | ETA plan 1 min 00 s"]


def test_finished_epochs_are_not_counted(tmp_path, tiny_data):
    run = tmp_path / "runs" / "none-cifar-seed0"
    assert cli.main(train_argv(run, tiny_data, 1, "--method", "none")) == 0
    plan = build_plan("smoke", "synthetic", ["none"], [0], only=["04"], runs_root=tmp_path / "runs",
                      extra={"epochs": 3})
    assert est.plan_work(plan, size=lambda cfg: 64 * 10).run_epochs == 2


def test_scalars_flatten_a_metrics_row():
    row = {"epoch": 3, "lr": 0.1, "test_acc": [50.0, 52.5], "ensemble_acc": 53, "note": "x",
           "nested": [{"a": 1}]}
    assert tb.scalars(row) == {"lr": 0.1, "test_acc/peer1": 50.0, "test_acc/peer2": 52.5,
                               "ensemble_acc": 53.0}


def test_tensorboard_events_read_back_equal_the_metrics(tmp_path, tiny_data):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert cli.main(train_argv(run, tiny_data, 2, "--tensorboard")) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    events = EventAccumulator(str(run / tb.FOLDER))
    events.Reload()
    for name in ("ensemble_acc", "test_acc/peer2", "train_loss/peer1", "lr"):
        got = [(e.step, e.value) for e in events.Scalars(name)]
        want = [(r["epoch"], tb.scalars(r)[name]) for r in rows]
        assert [s for s, _ in got] == [s for s, _ in want]
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6)  # float32


def test_a_missing_tensorboard_is_one_line_naming_the_extra(tmp_path, tiny_data, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    run = tmp_path / "run"
    assert cli.main(train_argv(run, tiny_data, 1, "--tensorboard")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "pip install -e '.[tensorboard]'" in err
    assert not run.exists()
