"""The step check before a run's first step: the chosen step against the plain eager fp32 step of
looped peers on one batch; a failing or differing step makes the run fall back, say so and record
it. On the CPU the chosen step is made non-plain with grouped peers, and made to fail or differ."""
import json

import pytest
import torch

from sdml.data.batches import to_device
from sdml.data.load import dataset_for
from sdml.hierarchy.resolve import resolve_superclasses
from sdml.data.datasets import get_spec
from sdml.models.fused import GroupedPeers
from sdml.training import guard, runs
from sdml.training import train as train_mod
from sdml.training.config import make_config
from sdml.training.step import forward_losses

GROUPED = guard.StepPath(fuse="grouped")


def tiny(data_dir, **kw):
    base = dict(data="synthetic", data_dir=str(data_dir), depth=8, width=4, epochs=1, batch_size=32,
                lr=0.05, synthetic_train_per_class=4, synthetic_test_per_class=2,
                max_steps_per_epoch=2, eval_batch_size=200, threads=1)
    return make_config("smoke", **{**base, **kw})


@pytest.fixture
def batch(tiny_data, one_thread):
    """(cfg, data, superclass_of, mix_params, build, seed): check_step's arguments but the path."""
    cfg = tiny(tiny_data)
    arrays = dataset_for(cfg)
    sc = resolve_superclasses(cfg.superclasses, cfg.wordnet_k, get_spec(cfg.data).classes)
    cpu = torch.device("cpu")
    return (cfg, to_device(arrays, cpu), sc.of, train_mod.resolve_mix_params(cfg),
            train_mod.step_builder(cfg, len(arrays.fine_names), cpu, arrays.train_x.shape[1]),
            train_mod.stream_seed(cfg.seed, "epoch", 0))


def test_the_plain_step_has_nothing_to_check(batch):
    assert guard.check_step(*batch[:1], guard.PLAIN, *batch[1:]) is None
    cfg = batch[0]
    assert train_mod.step_path(cfg, torch.device("cpu")) == guard.PLAIN  # the CPU defaults


def test_grouped_peers_pass_against_looped_ones(batch):
    check = guard.check_step(batch[0], GROUPED, *batch[1:])
    assert check.passed and check.reason.startswith("losses within bf16 tolerance")
    assert check.losses == pytest.approx(check.plain_losses, rel=1e-4)  # fp32: rounding only


@pytest.mark.parametrize("broken, said", [
    (lambda *a, **k: (lambda out: (out[0] * 1.5, out[1]))(forward_losses(*a, **k)),
     "beyond bf16 tolerance"),
    (lambda *a, **k: (lambda out: (out[0] * float("nan"), out[1]))(forward_losses(*a, **k)),
     "non-finite losses or gradients"),
    (lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no kernel image for this device\nmore")),
     "RuntimeError: no kernel image for this device"),
])
def test_a_step_that_differs_or_fails_is_refused(batch, broken, said):
    check = guard.check_step(batch[0], GROUPED, *batch[1:], forward=broken)
    assert not check.passed and said in check.reason
    line = check.line()
    assert "\n" not in line and "grouped peers, fp32, eager" in line and "loop peers, fp32, eager" in line


def test_within_tolerance_is_within_bf16_rounding_only(batch):
    scaled = lambda *a, **k: (lambda out: (out[0] * 1.005, out[1]))(forward_losses(*a, **k))  # noqa: E731
    assert guard.check_step(batch[0], GROUPED, *batch[1:], forward=scaled).passed


def _broken_grouped(monkeypatch):
    forward = GroupedPeers.forward
    monkeypatch.setattr(GroupedPeers, "forward", lambda self, x: forward(self, x) * 3.0)


def test_a_run_whose_step_differs_trains_on_the_plain_step_and_records_it(tmp_path, tiny_data,
                                                                         one_thread, monkeypatch):
    _broken_grouped(monkeypatch)
    said = []
    fell = train_mod.train(tiny(tiny_data, fuse="grouped"), tmp_path / "fell", progress=False,
                           log=said.append)
    plain = train_mod.train(tiny(tiny_data, fuse="loop"), tmp_path / "plain", progress=False,
                            log=lambda *_: None)
    lines = [s for s in said if s.startswith("[sdml] step check:")]
    assert len(lines) == 1 and "training with the plain step" in lines[0]
    record = json.loads((tmp_path / "fell" / runs.CONFIG).read_text())["step_check"]
    assert record["passed"] is False and "beyond bf16 tolerance" in record["reason"]
    assert [r["test_acc"] for r in fell] == [r["test_acc"] for r in plain]  # the same training
    assert torch.load(tmp_path / "fell" / runs.CHECKPOINT, weights_only=True)["fuse"] == "loop"
    assert "step_check" not in json.loads((tmp_path / "plain" / runs.CONFIG).read_text())


def test_a_run_that_fell_back_resumes_on_the_plain_step(tmp_path, tiny_data, one_thread, monkeypatch):
    with monkeypatch.context() as m:
        _broken_grouped(m)
        train_mod.train(tiny(tiny_data, fuse="grouped"), tmp_path / "run", progress=False,
                        log=lambda *_: None)
    said = []  # the grouped step is sound now, but the run stays on the step it started with
    rows = train_mod.train(tiny(tiny_data, fuse="grouped", epochs=2), tmp_path / "run", resume=True,
                           progress=False, log=said.append)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert torch.load(tmp_path / "run" / runs.CHECKPOINT, weights_only=True)["fuse"] == "loop"
    assert not any(s.startswith("[sdml] step check:") for s in said)


def test_a_sound_chosen_step_is_recorded_as_passed(tmp_path, tiny_data, one_thread):
    train_mod.train(tiny(tiny_data, fuse="grouped"), tmp_path / "run", progress=False,
                    log=lambda *_: None)
    record = json.loads((tmp_path / "run" / runs.CONFIG).read_text())["step_check"]
    assert record["passed"] is True and record["chosen"] == "grouped peers, fp32, eager"
    assert torch.load(tmp_path / "run" / runs.CHECKPOINT, weights_only=True)["fuse"] == "grouped"


def test_the_runner_checks_a_fused_plans_step_before_it_starts(tmp_path, one_thread):
    from sdml.notebooks.plan import build_plan
    from sdml.notebooks.step_check import fused_step_holds

    plan = build_plan("smoke", "synthetic", ["none", "mixup"], [0], only=["04"], fuse_runs=True,
                      runs_root=tmp_path / "runs", data_dir=str(tmp_path / "data"),
                      extra={"threads": 1})
    assert len(plan) == 1 and len(plan[0].run_dirs) == 2
    said = []
    assert fused_step_holds(plan, said.append) and said == []  # grouped peers hold on the CPU
    broken = lambda *a, **k: (lambda out: (out[0] * 2.0, out[1]))(forward_losses(*a, **k))  # noqa: E731
    assert not fused_step_holds(plan, said.append, forward=broken)
    assert len(said) == 1 and "the runs train one by one instead of as fused jobs" in said[0]
    unfused = build_plan("smoke", "synthetic", ["none", "mixup"], [0], only=["04"],
                         runs_root=tmp_path / "runs", data_dir=str(tmp_path / "data"))
    assert fused_step_holds(unfused, pytest.fail)  # nothing fused: nothing to check
