"""The independent control: mutual_weight 0 trains K peers side by side with cross entropy only."""
import argparse
import math

import pytest
import torch
import torch.nn.functional as F

from sdml import cli
from sdml.data.batches import crop_flip, normalize, to_device
from sdml.hierarchy.superclasses import superclass_of
from sdml.method.losses import dml_losses
from sdml.method.mixup import mix_images
from sdml.models.resnet import resnet_cifar
from sdml.training import multirun, runs
from sdml.training import train as train_mod
from sdml.training.bench import random_arrays
from sdml.training.config import make_config
from sdml.training.step import forward_losses, plan_epoch, step_inputs
from sdml.training.train import build_model, stream_seed

SC = superclass_of()
quiet = dict(progress=False, log=lambda *_: None)
TIMING = ("train_seconds", "images_per_s", "threads")


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


def tiny(data_dir, **kw):
    base = dict(data="synthetic", data_dir=str(data_dir), depth=8, width=4, epochs=2,
                batch_size=32, lr=0.05, milestones=(2,), synthetic_train_per_class=4,
                synthetic_test_per_class=2, max_steps_per_epoch=3, eval_batch_size=200, threads=1,
                device="cpu", compile="off")
    base.update(kw)
    return make_config("smoke", **base)


# --- the loss and its gradients --------------------------------------------------------------

def test_weight_zero_gives_the_gradients_of_k_separate_cross_entropy_trainings():
    cfg = make_config("smoke", depth=8, width=4, batch_size=16, peers=3, method="superclass-beta",
                      mutual_weight=0.0)
    data = to_device(random_arrays(64), "cpu")
    model = build_model(cfg, 100, torch.device("cpu"), "loop")
    plan = plan_epoch(data.train_y, 16, 4, cfg.method, SC, torch.Generator().manual_seed(1),
                      cfg.mix_params())
    x_u8, y, dy, dx, flip, partner, lam = step_inputs(data, plan, 1)
    mean, std = data.mean, data.std
    losses, _ = forward_losses(model, mean, std, x_u8, y, dy, dx, flip, partner, lam, 1.0, False,
                               mutual_weight=0.0)
    losses.sum().backward()
    # independently: each peer alone, a standalone ResNet with the peer's weights, torch's own
    # cross entropy on the mixed batch, its own backward
    x = mix_images(normalize(crop_flip(x_u8, dy, dx, flip), mean, std), partner, lam)
    for k, state in enumerate(model.peer_state_dicts()):
        net = resnet_cifar(depth=8, num_classes=100, width=4)
        net.load_state_dict(state)
        z = net(x)
        loss = (lam * F.cross_entropy(z, y, reduction="none")
                + (1 - lam) * F.cross_entropy(z, y[partner], reduction="none")).mean()
        loss.backward()
        torch.testing.assert_close(losses[k].detach(), loss.detach(), rtol=1e-6, atol=1e-6)
        theirs = dict(net.named_parameters())
        for name, p in model.peers[k].named_parameters():  # float32: rounding only
            torch.testing.assert_close(p.grad, theirs[name].grad, rtol=1e-5, atol=1e-7, msg=name)


def test_weight_scales_the_kl_term_only():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 5, generator=g, dtype=torch.float64)
    y, yp = torch.randint(0, 5, (6,), generator=g), torch.randint(0, 5, (6,), generator=g)
    lam = torch.rand(6, generator=g, dtype=torch.float64)
    ce = dml_losses(logits, y, yp, lam, mutual_weight=0.0)
    full = dml_losses(logits, y, yp, lam)
    half = dml_losses(logits, y, yp, lam, mutual_weight=0.5)
    torch.testing.assert_close(half, ce + 0.5 * (full - ce))
    assert torch.all(full > ce)  # the KL of two different peers is positive
    one = dml_losses(logits[:1], y, yp, lam, mutual_weight=0.0)  # one peer: plain mixed CE
    torch.testing.assert_close(one, ce[:1])


@pytest.mark.parametrize("w", [-1.0, float("nan"), float("inf"), True, "0"])
def test_bad_weight_is_refused_by_the_loss(w):
    logits = torch.zeros(2, 3, 4)
    y = torch.zeros(3, dtype=torch.long)
    with pytest.raises(ValueError, match="^mutual_weight:"):
        dml_losses(logits, y, y, torch.ones(3), mutual_weight=w)


# --- the config --------------------------------------------------------------------------------

@pytest.mark.parametrize("w", [-0.5, float("nan"), float("inf"), True])
def test_config_refuses_a_negative_or_non_finite_weight(w):
    with pytest.raises(ValueError, match=r"^mutual_weight: .*allowed: a finite number >= 0"):
        make_config("smoke", mutual_weight=w)


def test_one_peer_needs_weight_zero():
    with pytest.raises(ValueError, match=r"^peers: 1 given with mutual_weight 1.0; allowed"):
        make_config("smoke", peers=1)
    with pytest.raises(ValueError, match=r"^peers: 1 given with mutual_weight 0.5"):
        make_config("smoke", peers=1, mutual_weight=0.5)
    assert make_config("smoke", peers=1, mutual_weight=0).peers == 1
    with pytest.raises(ValueError, match="^peers: 0"):
        make_config("smoke", peers=0, mutual_weight=0)


def test_run_names_mark_a_weight_other_than_dml():
    assert runs.run_name("none", "cifar", 3) == "none-cifar-seed3"
    assert runs.run_name("none", "cifar", 3, 1.0) == "none-cifar-seed3"
    assert runs.run_name("none", "cifar", 3, 0.0) == "none-cifar-kl0-seed3"
    assert runs.run_name("mixup", "wordnet", 0, 0.5) == "mixup-wordnet-kl0.5-seed0"
    assert multirun.run_name(make_config("smoke", mutual_weight=0)) == "superclass-beta-cifar-kl0-seed0"


# --- training ------------------------------------------------------------------------------------

def test_one_peer_trains_as_the_first_peer_of_an_independent_pair(tmp_path):
    """Peer 1 of K = 2 draws its weights first from the run seed and, without the KL term, never
    sees peer 2: a run of one peer must reproduce it."""
    one = tiny(tmp_path / "data", peers=1, mutual_weight=0.0, fuse="loop")
    two = tiny(tmp_path / "data", peers=2, mutual_weight=0.0, fuse="loop")
    rows1 = train_mod.train(one, tmp_path / "one", **quiet)
    rows2 = train_mod.train(two, tmp_path / "two", **quiet)
    assert [len(r["test_acc"]) for r in rows1] == [1, 1]
    for a, b in zip(rows1, rows2):
        assert a["train_loss"][0] == pytest.approx(b["train_loss"][0], rel=1e-6)
        assert a["test_loss"][0] == pytest.approx(b["test_loss"][0], rel=1e-5)
        assert a["test_acc"][0] == pytest.approx(b["test_acc"][0])
    c1 = torch.load(tmp_path / "one" / runs.CHECKPOINT, weights_only=True)
    c2 = torch.load(tmp_path / "two" / runs.CHECKPOINT, weights_only=True)
    init = build_model(one, 100, torch.device("cpu"), "loop").peer_state_dicts()[0]
    for key, value in c1["peers"][0].items():
        torch.testing.assert_close(value, c2["peers"][0][key], rtol=1e-5, atol=1e-6, msg=key)
    assert any(not torch.equal(v, init[k]) for k, v in c1["peers"][0].items())  # it did train
    pred = torch.load(tmp_path / "one" / runs.PREDICTIONS, weights_only=True)
    assert pred["probs"].shape[0] == 1
    assert stream_seed(one.seed, "init") == stream_seed(two.seed, "init")


def test_fused_job_of_independent_and_mutual_runs_equals_the_separate_runs(tmp_path):
    cfgs = [tiny(tmp_path / "data", method="mixup", seed=1, mutual_weight=0.0, fuse="grouped"),
            tiny(tmp_path / "data", method="mixup", seed=1, fuse="grouped"),
            tiny(tmp_path / "data", method="superclass-beta", seed=2, mutual_weight=0.5,
                 fuse="grouped")]
    dirs = [tmp_path / multirun.run_name(c) for c in cfgs]
    assert [d.name for d in dirs] == ["mixup-cifar-kl0-seed1", "mixup-cifar-seed1",
                                      "superclass-beta-cifar-kl0.5-seed2"]
    fused = multirun.train_many(cfgs, dirs, **quiet)
    single = [train_mod.train(c, tmp_path / f"single-{i}", **quiet) for i, c in enumerate(cfgs)]
    for rows, ref in zip(fused, single):
        for row, r in zip(rows, ref, strict=True):
            for key in row:
                if key not in TIMING:
                    torch.testing.assert_close(torch.tensor(row[key], dtype=torch.float64),
                                               torch.tensor(r[key], dtype=torch.float64),
                                               rtol=1e-4, atol=1e-4, msg=key)
    # the control differs from its mutual twin (same seed, same batches): the KL term acted
    assert fused[0][-1]["train_loss"] != fused[1][-1]["train_loss"]
    assert runs.read_config(dirs[0]).mutual_weight == 0.0


def test_train_many_command_adds_the_independent_runs(tmp_path):
    parser = argparse.ArgumentParser()
    cli.add_many_arguments(parser)
    cli.add_config_options(parser)
    args = parser.parse_args(["--out-root", str(tmp_path), "--profile", "smoke", "--methods",
                              "none", "mixup", "--independent", "none", "--seeds", "3"])
    cfgs, dirs = multirun.plan_many(make_config("smoke"), args.methods, args.seeds, args.out_root,
                                    independent=args.independent)
    assert [d.name for d in dirs] == ["none-cifar-seed3", "mixup-cifar-seed3", "none-cifar-kl0-seed3"]
    assert [c.mutual_weight for c in cfgs] == [1.0, 1.0, 0.0]
    assert math.isclose(cli.config_from_args(parser.parse_args(
        ["--out-root", "x", "--mutual-weight", "0.25"])).mutual_weight, 0.25)


# --- notebook 04 and the runner ------------------------------------------------------------------

def test_runner_plans_the_control_runs_alone_and_fused():
    from sdml.notebooks import params as nbparams
    from sdml.notebooks.plan import build_plan

    plan = build_plan("smoke", "synthetic", ["none", "mixup"], [0], only=["04", "05"],
                      runs_root="r", independent=["none"])
    assert [s.label for s in plan] == ["04_train_dml [none-cifar-seed0]",
                                       "04_train_dml [mixup-cifar-seed0]",
                                       "04_train_dml [none-cifar-kl0-seed0]", "05_results"]
    assert nbparams.train_config(plan[2].params).mutual_weight == 0.0
    assert plan[-1].params["methods"] == ["none", "mixup"]
    fused = build_plan("smoke", "synthetic", ["none", "mixup"], [3], only=["04"], runs_root="r",
                       independent=["superclass-beta"], fuse_runs=True)
    assert fused[0].label == ("04_train_dml [fused: none-cifar-seed3, mixup-cifar-seed3, "
                              "superclass-beta-cifar-kl0-seed3]")
    cfgs, dirs = nbparams.train_plan(fused[0].params)
    assert [(c.method, c.mutual_weight, c.seed) for c in cfgs] == [
        ("none", 1.0, 3), ("mixup", 1.0, 3), ("superclass-beta", 0.0, 3)]
    assert [d.name for d in dirs] == [d.name for d in fused[0].run_dirs]


@pytest.mark.parametrize("params, named", [
    ({"peers": 1}, "peers: 1 is not allowed in notebook 04_train_dml with mutual_weight 1.0"),
    ({"mutual_weight": -1.0}, "mutual_weight: -1.0 is not allowed"),
    ({"mutual_weight": float("nan")}, "mutual_weight: nan is not allowed"),
    ({"independent": ["none"]}, "independent: ['none'] without methods"),
    ({"independent": ["none"], "methods": ["none"], "mutual_weight": 0.0},
     "independent: ['none'] with mutual_weight 0"),
])
def test_notebook_04_refuses_bad_control_parameters(params, named):
    from sdml.notebooks import params as nbparams

    with pytest.raises(ValueError) as err:
        nbparams.validate("04_train_dml", **params)
    assert str(err.value).startswith(named), str(err.value)
    one = nbparams.validate("04_train_dml", profile="smoke", peers=1, mutual_weight=0.0)
    assert nbparams.run_dir(one).name == "superclass-beta-cifar-kl0-seed0"


@pytest.mark.parametrize("argv, said", [
    (["--peers", "1"], "peers: 1 given with mutual_weight 1.0; allowed"),
    (["--mutual-weight", "-1"], "mutual_weight: -1.0; allowed: a finite number >= 0"),
    (["--mutual-weight", "inf"], "mutual_weight: inf; allowed"),
])
def test_the_command_line_refuses_a_bad_control_in_one_line(tmp_path, capsys, argv, said):
    assert cli.main(["train", "--profile", "smoke", "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"sdml train: error: {said}") and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("nb", ["04_train_dml", "05_results"])
def test_papermill_reads_every_parameter_of_the_notebook(nb):
    """papermill skips a parameter line it cannot parse (two '=' in it) with a mere warning."""
    import nbformat
    from papermill.translators import PythonTranslator

    from sdml.notebooks import params as nbparams
    from sdml.notebooks.runner import NOTEBOOK_DIR

    cells = nbformat.read(NOTEBOOK_DIR / f"{nb}.ipynb", as_version=4).cells
    cell = next(c for c in cells if "parameters" in c.metadata.get("tags", []))
    assert {p.name for p in PythonTranslator.inspect(cell)} == set(nbparams.spec(nb))
