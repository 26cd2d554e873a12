"""The epoch plan and the training step: what is drawn, and eager against compiled."""
import pytest
import torch

from sdml.training.config import make_config
from sdml.data.batches import PAD, crop_flip, normalize, to_device
from sdml.hierarchy.superclasses import superclass_of
from sdml.training.bench import random_arrays
from sdml.method.losses import dml_losses
from sdml.method.mixup import mix_images
from sdml.training.step import Stepper, forward_losses, plan_epoch, step_inputs
from sdml.training.train import build_model, make_optimizer

SC = superclass_of()


def test_plan_draws_a_shuffle_partners_and_the_methods_ratios():
    y = torch.arange(1000) % 100
    gen = torch.Generator().manual_seed(3)
    plan = plan_epoch(y, 50, 20, "superclass-choice", SC, gen, {"same_ratio": 0.5, "diff_ratio": 0.9})
    assert plan.index.shape == (20, 50)
    assert torch.equal(plan.index.flatten().sort().values, torch.arange(1000))  # each sample once
    for row in plan.partner:  # a permutation inside every batch
        assert torch.equal(row.sort().values, torch.arange(50))
    yy = y[plan.index]
    same = SC[yy] == SC[yy.gather(1, plan.partner)]
    assert torch.all(plan.lam[same] == 0.5)
    diff = plan.lam[~same]
    assert torch.all(torch.isclose(diff, torch.tensor(0.1)) | torch.isclose(diff, torch.tensor(0.9)))
    assert plan.dy.min() >= 0 and plan.dy.max() <= 2 * PAD and plan.flip.dtype == torch.bool
    again = plan_epoch(y, 50, 20, "superclass-choice", SC, torch.Generator().manual_seed(3),
                       {"same_ratio": 0.5, "diff_ratio": 0.9})
    assert all(torch.equal(getattr(plan, f), getattr(again, f))
               for f in ("index", "partner", "lam", "dy", "dx", "flip"))


def test_plan_without_augmentation_is_the_identity_crop():
    plan = plan_epoch(torch.arange(200) % 100, 20, 5, "none", SC, torch.Generator().manual_seed(0),
                      {}, augment=False)
    x = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(crop_flip(x, plan.dy[0], plan.dx[0], plan.flip[0]), x)
    assert torch.all(plan.lam == 1)


def test_plan_refuses_more_steps_than_samples():
    with pytest.raises(ValueError, match="batch_size"):
        plan_epoch(torch.arange(100), 64, 2, "none", SC, torch.Generator(), {})


def test_step_losses_equal_an_independent_computation():
    cfg = make_config("smoke", depth=8, width=4, batch_size=16, method="superclass-beta")
    data = to_device(random_arrays(64), "cpu")
    model = build_model(cfg, 100, torch.device("cpu"), "loop")
    plan = plan_epoch(data.train_y, 16, 4, cfg.method, SC, torch.Generator().manual_seed(1),
                      cfg.mix_params())
    x_u8, y, dy, dx, flip, partner, lam = step_inputs(data, plan, 2)
    losses, y_p = forward_losses(model, data.mean, data.std, x_u8, y, dy, dx, flip, partner, lam,
                                 1.0, False)
    # the same thing by hand: crop, normalise, mix, both peers, the DML loss
    x = mix_images(normalize(crop_flip(x_u8, dy, dx, flip), data.mean, data.std), partner, lam)
    ref = dml_losses(model(x), y, y[partner], lam)
    assert torch.allclose(losses, ref, atol=1e-6) and torch.equal(y_p, y[partner])


def _train(compile: bool, steps: int = 3, graphs: bool = False):
    cfg = make_config("smoke", depth=8, width=4, batch_size=8, method="mixup", seed=5)
    data = to_device(random_arrays(64), "cpu")
    model = build_model(cfg, 100, torch.device("cpu"), "loop")
    stepper = Stepper(model, make_optimizer(cfg, model, tensor_lr=compile), data, 1.0, False, compile,
                      graphs=graphs)
    plan = plan_epoch(data.train_y, 8, steps, cfg.method, SC, torch.Generator().manual_seed(0),
                      cfg.mix_params())
    losses = [stepper(plan, i)[0] for i in range(steps)]
    return torch.stack(losses), model.peer_state_dicts(), stepper


@pytest.mark.parametrize("graphs", [False, True], ids=["on", "graphs"])
def test_compiled_step_matches_eager_on_cpu(graphs):
    """``graphs`` takes the same code path on a CPU (mode reduce-overhead, a step begin marked,
    outputs copied); inductor records no CUDA graph there."""
    pytest.importorskip("torch._inductor")
    eager_losses, eager_w, _ = _train(False)
    comp_losses, comp_w, stepper = _train(True, graphs=graphs)
    assert stepper.graphs == (graphs and stepper.compiled)
    if not stepper.compiled:
        pytest.skip("torch.compile fell back to eager on this platform (a warning said why)")
    assert torch.allclose(eager_losses, comp_losses, rtol=1e-4, atol=1e-5)
    for a, b in zip(eager_w, comp_w):
        for key in a:
            assert torch.allclose(a[key].float(), b[key].float(), rtol=1e-3, atol=1e-4), key



def _broken_compile(error):
    def broken(fn, **kwargs):
        def fail(*args, **kw):
            raise error
        return fail
    return broken


def test_a_failed_compile_warns_and_runs_eagerly_with_a_float_lr(monkeypatch):
    from torch._inductor.exc import InvalidCxxCompiler

    eager_losses, eager_w, _ = _train(False)
    monkeypatch.setattr(torch, "compile", _broken_compile(InvalidCxxCompiler()))
    with pytest.warns(RuntimeWarning, match="InvalidCxxCompiler"):
        losses, weights, stepper = _train(True, graphs=True)
    assert not stepper.compiled and not stepper.graphs
    assert all(isinstance(g["lr"], float) for g in stepper.optimizer.param_groups)
    assert torch.equal(losses, eager_losses)


def test_other_errors_in_a_compiled_step_propagate(monkeypatch):
    monkeypatch.setattr(torch, "compile", _broken_compile(torch.OutOfMemoryError("out of memory")))
    with pytest.raises(torch.OutOfMemoryError):
        _train(True)


@pytest.mark.parametrize("value,device,compiled,graphs", [
    ("auto", "cuda", True, False), ("auto", "cpu", False, False), ("off", "cuda", False, False),
    ("on", "cpu", True, False), ("graphs", "cuda", True, True), ("graphs", "cpu", True, True)])
def test_the_compile_setting_resolves_per_device(value, device, compiled, graphs):
    from sdml.training.train import use_compile, use_graphs

    cfg = make_config("smoke", compile=value)
    assert use_compile(cfg, torch.device(device)) == compiled
    assert use_graphs(cfg) == graphs


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "compiled"])
def test_the_cuda_recipe_runs_on_the_cpu_close_to_fp32(compile):
    """What training does on CUDA (grouped peers, channels_last, bf16 autocast with fp32 master
    weights and fp32 losses, a tensor lr; compiled or not), run on the CPU where bf16 autocast
    exists too: it stays within bf16 rounding of the fp32 eager step."""
    if compile:
        pytest.importorskip("torch._inductor")
    cfg = make_config("smoke", depth=8, width=4, batch_size=8, method="superclass-beta", seed=2)
    data = to_device(random_arrays(64), "cpu")
    plan = plan_epoch(data.train_y, 8, 3, cfg.method, SC, torch.Generator().manual_seed(1),
                      cfg.mix_params())
    out = {}
    for recipe in (False, True):
        model = build_model(cfg, 100, torch.device("cpu"), "grouped")
        if recipe:
            model = model.to(memory_format=torch.channels_last)
        stepper = Stepper(model, make_optimizer(cfg, model, tensor_lr=recipe), data, 1.0,
                          use_amp=recipe, compile=recipe and compile)
        losses = torch.stack([stepper(plan, i)[0] for i in range(plan.steps)])
        out[recipe] = losses, model.peer_state_dicts(), stepper
    (ref, ref_w, _), (low, low_w, stepper) = out[False], out[True]
    if compile and not stepper.compiled:
        pytest.skip("torch.compile fell back to eager on this platform (a warning said why)")
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    torch.testing.assert_close(low, ref, rtol=0.02, atol=0.02)
    for peer in low_w:  # master weights stay fp32
        assert all(v.dtype == torch.float32 for k, v in peer.items() if v.is_floating_point())
    for a, b in zip(ref_w, low_w):
        for key in a:
            if a[key].is_floating_point():
                torch.testing.assert_close(b[key], a[key], rtol=0.05, atol=0.02, msg=key)
    assert not torch.equal(low, ref)  # bf16 did take part: the two differ by its rounding
