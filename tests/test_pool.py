"""Runs trained in parallel CPU processes equal the same runs trained alone."""
import pytest

from sdml.training import train as train_mod
from tiny_run import tiny_config
from sdml.training.pool import plan_workers, train_in_pool
from sdml.training.runs import read_metrics


def tiny(tmp_path, **kw):
    return tiny_config(tmp_path, **{"epochs": 2, "max_steps_per_epoch": 2, **kw})


@pytest.mark.parametrize("workers, runs, cores, want", [
    ("auto", 12, 2, (2, 1)), ("auto", 1, 2, (1, 2)), ("auto", 12, 16, (12, 1)),
    ("auto", 3, 8, (3, 2)), (1, 12, 2, (1, 2)), (4, 2, 2, (2, 1))])
def test_plan_workers_splits_the_cores(workers, runs, cores, want):
    assert plan_workers(workers, runs, cores) == want


@pytest.mark.parametrize("bad", [0, -1, "two", 1.5, True])
def test_bad_worker_counts_are_refused_naming_the_field(bad):
    with pytest.raises(ValueError, match="^workers:"):
        plan_workers(bad, 4, 2)


def test_runs_of_a_pool_equal_the_runs_trained_alone(tmp_path):
    cfgs = [tiny(tmp_path, method=m) for m in ("none", "superclass-beta")]
    train_mod.train(cfgs[0], tmp_path / "data-ready", progress=False, log=lambda *_: None)
    lines = []
    train_in_pool(cfgs, [tmp_path / "a", tmp_path / "b"], workers=2, log=lines.append)
    assert lines == ["[sdml] training 2 run(s) in 2 process(es) at 1 thread(s) each"]
    for cfg, d in zip(cfgs, ("a", "b")):
        alone = train_mod.train(cfg, tmp_path / f"alone-{d}", progress=False, log=lambda *_: None)
        pooled = read_metrics(tmp_path / d)
        assert [r["train_loss"] for r in pooled] == [r["train_loss"] for r in alone]
        assert [r["test_acc"] for r in pooled] == [r["test_acc"] for r in alone]


def test_a_failing_run_reaches_the_caller(tmp_path):
    good = tiny(tmp_path)
    bad = tiny(tmp_path, batch_size=4096)  # larger than the train split
    with pytest.raises(ValueError, match="batch_size"):
        train_in_pool([good, bad], [tmp_path / "a", tmp_path / "b"], workers=2, log=lambda *_: None)
    assert not (tmp_path / "b").exists()


def test_configs_and_folders_must_pair_up(tmp_path):
    with pytest.raises(ValueError, match="^run_dirs:"):
        train_in_pool([tiny(tmp_path)], [], workers=1)
