"""Several runs as one fused job: layout, optimiser split, equality with single runs, resume."""
import argparse
import dataclasses
import json
import shutil

import pytest
import torch

from sdml.training import job_checkpoints
from sdml.training import multirun
from sdml.training import runs
from sdml.training import train as train_mod
from sdml import cli
from sdml.cli import add_config_options
from sdml.training.config import make_config
from sdml.models.fused import (GroupedPeers, RunStem, SharedInput, merge_optimizer_states,
                               split_optimizer_state)
from sdml.method.losses import dml_losses

SMALL = dict(depth=8, width=4, num_classes=10)
TIMING = ("train_seconds", "images_per_s", "threads")  # the machine's, the only keys allowed to differ
quiet = dict(progress=False, log=lambda *_: None)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tiny(data_dir, **kw):
    base = dict(data="synthetic", data_dir=str(data_dir), depth=8, width=4, epochs=2,
                batch_size=32, lr=0.05, synthetic_train_per_class=4,
                synthetic_test_per_class=2, max_steps_per_epoch=3, eval_batch_size=200, threads=1,
                device="cpu", fuse="grouped", compile="off")
    base.update(kw)
    return make_config("smoke", **base)


def two_configs(data_dir, **kw):
    """Two runs that differ in all a job allows: method, its parameters, superclasses, seed, T."""
    return [tiny(data_dir, method="mixup", alpha=0.4, seed=1, **kw),
            tiny(data_dir, method="superclass-beta", superclasses="wordnet", seed=2,
                 temperature=2.0, **kw)]


def checkpoint(run_dir):
    return torch.load(run_dir / runs.CHECKPOINT, weights_only=True)


def assert_rows_equal(rows, expected, **tol):
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in expected]
    for row, ref in zip(rows, expected):
        assert row.keys() == ref.keys()
        for key in row:
            if key not in TIMING:
                torch.testing.assert_close(torch.tensor(row[key], dtype=torch.float64),
                                           torch.tensor(ref[key], dtype=torch.float64), **tol,
                                           msg=key)


def assert_checkpoints_equal(a, b, **tol):
    assert a["epoch"] == b["epoch"] and a["fuse"] == b["fuse"] == "grouped"
    for sa, sb in zip(a["peers"], b["peers"], strict=True):
        assert list(sa) == list(sb)
        for key in sa:
            torch.testing.assert_close(sa[key], sb[key], **tol, msg=key)
    oa, ob = a["optimizer"], b["optimizer"]
    assert oa["param_groups"] == ob["param_groups"] and oa["state"].keys() == ob["state"].keys()
    for i in oa["state"]:
        torch.testing.assert_close(oa["state"][i]["momentum_buffer"],
                                   ob["state"][i]["momentum_buffer"], **tol)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    """A fused job of two runs and the same two runs trained alone, 2 epochs of 3 steps."""
    root = tmp_path_factory.mktemp("job")
    cfgs = two_configs(root / "data")
    fused = multirun.train_many(cfgs, [root / "a", root / "b"], **quiet)
    single = [train_mod.train(cfg, root / f"single-{n}", **quiet) for cfg, n in zip(cfgs, "ab")]
    return root, cfgs, fused, single


# --- the fused network ----------------------------------------------------------------------------

def test_one_run_is_todays_grouped_peers():
    today = GroupedPeers(3, generator=gen(7), **SMALL)
    one = GroupedPeers(3, generator=gen(7), **SMALL, runs=1)
    assert type(one.conv1) is torch.nn.Conv2d and one.conv1.groups == 1  # the dense stem
    a, b = today.state_dict(), one.state_dict()
    assert list(a) == list(b)
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_runs_side_by_side_compute_each_run_alone():
    nets = [GroupedPeers(2, generator=gen(r), **SMALL).double() for r in range(3)]
    with torch.random.fork_rng(devices=[]):
        fused = GroupedPeers(2, **SMALL, runs=3).double()
    fused.load_peer_state_dicts([peer for net in nets for peer in net.peer_state_dicts()])
    assert isinstance(fused.conv1, RunStem) and fused.conv1.groups == 3
    # the same parameters in the same order, each the runs' own concatenated on dim 0
    single = list(nets[0].named_parameters())
    assert [name for name, _ in fused.named_parameters()] == [name for name, _ in single]
    for (name, p), (_, q) in zip(fused.named_parameters(), single):
        assert p.shape == (3 * q.shape[0], *q.shape[1:]), name
    xs = [torch.randn(4, 3, 16, 16, generator=gen(10 + r), dtype=torch.float64) for r in range(3)]
    with torch.no_grad():
        for mode in (True, False):  # batch statistics, then the running ones they updated
            for m in nets + [fused]:
                m.train(mode)
            out = fused(torch.cat(xs, dim=1))  # (R*K, B, C)
            ref = torch.cat([net(x) for net, x in zip(nets, xs)])
            torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
        shared = SharedInput(fused)(xs[0])
        torch.testing.assert_close(shared, torch.cat([net(xs[0]) for net in nets]), rtol=1e-12,
                                   atol=1e-12)
    with pytest.raises(ValueError, match=r"x: shape \(4, 3, 16, 16\); expected \(B, 9, H, W\)"):
        fused(xs[0])


def sgd(model):
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                           weight_decay=5e-4)


def dml_step(model, opt, x, ys, lam, runs_: int):
    logits = model(x).unflatten(0, (runs_, -1))  # (R, K, B, C)
    loss = sum(dml_losses(logits[r], ys[r], ys[r].flip(0), lam).sum() for r in range(runs_))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def test_optimizer_state_splits_like_the_weights():
    with torch.random.fork_rng(devices=[]):
        fused = GroupedPeers(2, generator=gen(3), **SMALL, runs=2).double()
    opt = sgd(fused)
    g = gen(4)
    batches = [(torch.randn(6, 6, 8, 8, generator=g, dtype=torch.float64),
                torch.randint(10, (2, 6), generator=g), torch.rand(6, generator=g))
               for _ in range(3)]
    for x, ys, lam in batches[:2]:
        dml_step(fused, opt, x, ys, lam, 2)
    state = opt.state_dict()
    parts = split_optimizer_state(state, 2)
    merged = merge_optimizer_states(parts)
    assert all(torch.equal(merged["state"][i]["momentum_buffer"], state["state"][i]["momentum_buffer"])
               for i in state["state"])
    # each run continued alone from its share equals the fused job's next step
    peers = fused.peer_state_dicts()
    alone = []
    for r in range(2):
        net = GroupedPeers(2, **SMALL).double()
        net.load_peer_state_dicts(peers[2 * r:2 * r + 2])
        opt_r = sgd(net)
        opt_r.load_state_dict(parts[r])
        alone.append((net, opt_r))
    x, ys, lam = batches[2]
    dml_step(fused, opt, x, ys, lam, 2)
    for r, (net, opt_r) in enumerate(alone):
        dml_step(net, opt_r, x[:, 3 * r:3 * r + 3], ys[r:r + 1], lam, 1)
    expected = [peer for net, _ in alone for peer in net.peer_state_dicts()]
    for got, ref in zip(fused.peer_state_dicts(), expected, strict=True):
        for key in got:
            torch.testing.assert_close(got[key], ref[key], rtol=1e-12, atol=1e-12, msg=key)


def _fused_steps(compile: bool, steps: int = 2):
    from sdml.training.bench import random_arrays
    from sdml.data.batches import to_device
    from sdml.hierarchy.superclasses import superclass_of
    from sdml.training.step import plan_epoch

    data = to_device(random_arrays(64), "cpu")
    with torch.random.fork_rng(devices=[]):
        model = GroupedPeers(2, generator=gen(1), depth=8, width=4, num_classes=100, runs=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    stepper = multirun.FusedStepper(model, opt, data, [1.0, 2.0], use_amp=False, compile=compile)
    plans = [plan_epoch(data.train_y, 8, steps, m, superclass_of(), gen(s), p)
             for m, s, p in (("mixup", 1, {"alpha": 1.0}), ("none", 2, {}))]
    plan = multirun.stack_plans(plans)
    assert plan.index.shape == (steps, 2, 8)
    return torch.stack([stepper(plan, i)[0] for i in range(steps)]), stepper


def test_failed_compile_falls_back_to_the_fused_eager_step(monkeypatch):
    eager, _ = _fused_steps(False)

    def broken(fn, **kwargs):
        def fail(*args, **kw):
            raise torch._dynamo.exc.TorchDynamoException("no compiler here")
        return fail

    monkeypatch.setattr(torch, "compile", broken)
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        fallback, stepper = _fused_steps(True)
    assert not stepper.compiled and stepper.forward is multirun.fused_forward_losses
    assert fallback.shape == (2, 2, 2)  # (steps, R, K)
    assert torch.equal(fallback, eager)


# --- the job against single runs ------------------------------------------------------------------

def test_fused_job_reproduces_the_single_runs(job):
    root, cfgs, fused, single = job
    for n, rows, ref in zip("ab", fused, single):
        assert_rows_equal(rows, ref, rtol=1e-5, atol=1e-6)
        assert_checkpoints_equal(checkpoint(root / n), checkpoint(root / f"single-{n}"),
                                 rtol=1e-5, atol=1e-6)
        pred = torch.load(root / n / runs.PREDICTIONS, weights_only=True)
        ref_pred = torch.load(root / f"single-{n}" / runs.PREDICTIONS, weights_only=True)
        torch.testing.assert_close(pred["probs"], ref_pred["probs"], rtol=1e-3, atol=1e-3)
    assert fused[0][-1]["train_loss"] != fused[1][-1]["train_loss"]  # two different runs


def test_each_run_folder_is_a_complete_single_run_folder(job):
    root, cfgs, fused, single = job
    for r, (n, cfg) in enumerate(zip("ab", cfgs)):
        run_dir = root / n
        assert sorted(p.name for p in run_dir.iterdir()) == sorted(
            [runs.CONFIG, runs.METRICS, runs.CHECKPOINT, runs.PREDICTIONS])  # no next checkpoint
        saved = json.loads((run_dir / runs.CONFIG).read_text())
        assert saved["fused_job"] == {"runs": ["a", "b"], "index": r}
        assert saved["superclasses"]["name"] and {"torch", "git"} <= set(saved["provenance"])
        read = runs.read_config(run_dir)
        assert (read.method, read.seed, read.temperature, read.fuse) == (
            cfg.method, cfg.seed, cfg.temperature, "grouped")
        assert runs.read_metrics(run_dir) == fused[r]
        assert runs.load_checkpoint_epoch(run_dir) == 2
        assert set(checkpoint(run_dir)) == {"epoch", "fuse", "peers", "optimizer"}
        assert len(checkpoint(run_dir)["peers"]) == cfg.peers
        assert torch.load(run_dir / runs.PREDICTIONS, weights_only=True)["probs"].shape == (2, 200, 100)


def test_a_run_resumes_alone_as_the_job_continues(job):
    root, cfgs, _, _ = job
    more = [dataclasses.replace(c, epochs=3) for c in cfgs]  # epochs may change on resume
    for n in "ab":
        shutil.copytree(root / n, root / f"cont-{n}")
    shutil.copytree(root / "a", root / "alone-a")
    together = multirun.train_many(more, [root / "cont-a", root / "cont-b"], resume=True, **quiet)
    alone = train_mod.train(more[0], root / "alone-a", resume=True, **quiet)
    assert_rows_equal(alone, together[0], rtol=1e-5, atol=1e-6)
    assert_checkpoints_equal(checkpoint(root / "alone-a"), checkpoint(root / "cont-a"),
                             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cut", ["write_next", "promote"])
def test_killed_job_resumes_to_the_uninterrupted_result(job, tmp_path, monkeypatch, cut):
    root, cfgs, fused, _ = job
    cfgs = two_configs(root / "data")
    dirs = [tmp_path / "a", tmp_path / "b"]
    real = getattr(job_checkpoints, cut)
    calls = {"n": 0}

    def dying(*args):  # the kill comes right after run a's part of epoch 2's commit
        real(*args)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(job_checkpoints, cut, dying)
    with pytest.raises(KeyboardInterrupt):
        multirun.train_many(cfgs, dirs, **quiet)
    monkeypatch.setattr(job_checkpoints, cut, real)
    # cut while writing: nothing swapped in yet; cut while swapping: run a already holds epoch 2
    assert [runs.load_checkpoint_epoch(d) for d in dirs] == ([1, 1] if cut == "write_next" else [2, 1])
    assert [len(runs.read_metrics(d)) for d in dirs] == [2, 2]
    rows = multirun.train_many(cfgs, dirs, resume=True, **quiet)
    for d, n, got, ref in zip(dirs, "ab", rows, fused):
        assert_rows_equal(got, ref, rtol=0, atol=0)
        assert_checkpoints_equal(checkpoint(d), checkpoint(root / n), rtol=0, atol=0)
        assert not (d / job_checkpoints.NEXT_CHECKPOINT).exists()


def test_non_finite_loss_stops_the_job_and_keeps_every_run_at_its_last_commit(tmp_path, monkeypatch):
    real, calls = multirun.dml_losses, {"n": 0}

    def poisoned(*args, **kwargs):  # run b's losses of epoch 2 (two runs, 3 steps an epoch)
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if calls["n"] > 6 and calls["n"] % 2 == 0 else out

    monkeypatch.setattr(multirun, "dml_losses", poisoned)
    dirs = [tmp_path / "a", tmp_path / "b"]
    with pytest.raises(FloatingPointError, match=r"in epoch 2 .*this one: .*b\)"):
        multirun.train_many(two_configs(tmp_path / "data"), dirs, **quiet)
    assert [runs.load_checkpoint_epoch(d) for d in dirs] == [1, 1]
    assert [len(runs.read_metrics(d)) for d in dirs] == [1, 1]


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("field, a, b", [("depth", 8, 14), ("lr", 0.05, 0.1), ("batch_size", 32, 16),
                                         ("epochs", 2, 3), ("peers", 2, 3), ("augment", True, False),
                                         ("synthetic_seed", 0, 1)])
def test_configs_must_agree_on_the_job(tmp_path, field, a, b):
    cfgs = [tiny(tmp_path, **{field: a}), tiny(tmp_path, method="none", seed=5, **{field: b})]
    with pytest.raises(ValueError, match=rf"^{field}: cfgs\[0\] has {a!r}, cfgs\[1\] has {b!r}"):
        multirun.train_many(cfgs, [tmp_path / "a", tmp_path / "b"], **quiet)
    assert not (tmp_path / "a").exists()


def test_job_checks(tmp_path):
    cfgs = two_configs(tmp_path, fuse="auto")
    checked = multirun.check_job(cfgs, ["a", "b"])  # differing in the allowed fields only
    assert [c.fuse for c in checked] == ["grouped", "grouped"] and cfgs[0].fuse == "auto"
    with pytest.raises(ValueError, match="fuse: 'loop'"):
        multirun.check_job(two_configs(tmp_path, fuse="loop"), ["a", "b"])
    with pytest.raises(ValueError, match="run_dirs: 1 folders for 2 configs"):
        multirun.check_job(cfgs, ["a"])
    with pytest.raises(ValueError, match="run_dirs: './a' appears twice"):
        multirun.check_job(cfgs, ["a", "./a"])
    with pytest.raises(ValueError, match="cfgs: empty"):
        multirun.check_job([], [])


def test_folders_are_refused_before_any_is_touched(job, tmp_path):
    root, cfgs, _, _ = job
    shutil.copytree(root / "b", tmp_path / "b")
    with pytest.raises(ValueError, match="already holds a run"):
        multirun.train_many(cfgs, [tmp_path / "a", tmp_path / "b"], **quiet)
    with pytest.raises(ValueError, match=r"finished \[0, 2\] epochs"):
        multirun.train_many(cfgs, [tmp_path / "a", tmp_path / "b"], resume=True, **quiet)
    assert not (tmp_path / "a").exists()


# --- command line ---------------------------------------------------------------------------------

def test_train_many_command_names_the_run_folders(tmp_path):
    parser = argparse.ArgumentParser()
    cli.add_many_arguments(parser)
    add_config_options(parser)
    args = parser.parse_args(["--out-root", str(tmp_path / "root"), "--profile", "smoke",
                              "--methods", "none", "superclass-choice", "--seeds", "3", "4"])
    base = make_config("smoke")
    cfgs, dirs = multirun.plan_many(base, args.methods, args.seeds, args.out_root)
    assert [d.name for d in dirs] == ["none-cifar-seed3", "none-cifar-seed4",
                                      "superclass-choice-cifar-seed3", "superclass-choice-cifar-seed4"]
    assert [(c.method, c.seed) for c in cfgs] == [("none", 3), ("none", 4),
                                                  ("superclass-choice", 3), ("superclass-choice", 4)]
    assert multirun.run_name(make_config("smoke", superclasses="x/my_groups.json")) == \
        "superclass-beta-my_groups-seed0"
    with pytest.raises(ValueError, match="'none-cifar-seed3' is asked for twice"):
        multirun.plan_many(base, ["none", "none"], [3], tmp_path)
    args = parser.parse_args(["--out-root", str(tmp_path / "root"), "--profile", "smoke",
                              "--methods", "none", "mixup", "--data-dir", str(tmp_path / "data"),
                              "--epochs", "1", "--synthetic-train-per-class", "1",
                              "--synthetic-test-per-class", "1", "--batch-size", "50",
                              "--depth", "8", "--width", "2", "--device", "cpu", "--no-progress"])
    with pytest.raises(ValueError, match="method: --method mixup is not used"):
        cli.main_many(argparse.Namespace(**{**vars(args), "method": "mixup"}))
    rows = cli.main_many(args)
    assert [len(r) for r in rows] == [1, 1]
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == ["mixup-cifar-seed0",
                                                                      "none-cifar-seed0"]
