"""A check of the chosen training step on one batch, against the plain step, before a run trains.

A CUDA user's first run goes straight into paths that only the CPU has exercised: bf16 autocast
with channels_last, ``torch.compile`` (and CUDA graphs), grouped (fused) peers. So before its first
step, a run puts one batch through the step it chose and through the plain one (eager, fp32,
looped peers) from the same initial weights. The chosen step passes when it runs, its gradients
are finite and its losses agree with the plain step's within bf16 tolerance (:data:`RTOL`,
:data:`ATOL`). Otherwise the run trains with the plain step, says so in one line, and records
the check in ``config.json`` (``step_check``); a run that fell back resumes on the plain step.
A run whose chosen step is the plain one (the CPU defaults) has nothing to check.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from sdml.io.atomic import atomic_write_json
from sdml.training import runs
from sdml.training.step import Stepper, forward_losses, plan_epoch

#: bf16 keeps 8 significant bits (relative rounding 2**-8, about 0.4 %); a loss computed through a
#: network in bf16 drifts several times that from the fp32 one. A wrong kernel or a broken graph
#: moves it much further.
RTOL = 3e-2
ATOL = 3e-2


@dataclass(frozen=True)
class StepPath:
    """How a run's training step runs."""

    fuse: str = "loop"      # loop | grouped peers
    compiled: bool = False  # torch.compile
    graphs: bool = False    # compiled, replayed as CUDA graphs
    amp: bool = False       # bf16 autocast and channels_last (CUDA)

    def describe(self) -> str:
        parts = [f"{self.fuse} peers", "bf16 autocast + channels_last" if self.amp else "fp32",
                 ("compiled, CUDA graphs" if self.graphs else "compiled") if self.compiled else "eager"]
        return ", ".join(parts)


PLAIN = StepPath()


@dataclass(frozen=True)
class StepCheck:
    """What the check found; ``passed`` False means the run trains with :data:`PLAIN`."""

    chosen: str
    passed: bool
    reason: str
    losses: list | None = None
    plain_losses: list | None = None

    def line(self) -> str:
        """The one line a fallback is said in."""
        return (f"[sdml] step check: the chosen step ({self.chosen}) failed on one batch "
                f"({self.reason}); training with the plain step ({PLAIN.describe()}) instead")


def one_step(cfg, path: StepPath, data, superclass_of: torch.Tensor, mix_params: dict, build,
             seed: int, forward=forward_losses) -> tuple[torch.Tensor, bool]:
    """The (K,) losses of one batch through ``path``'s step, from the model and optimiser that
    ``build(fuse, tensor_lr)`` makes (the run's initial weights: the run's own are untouched),
    the batch drawn from ``seed``; and whether every gradient is finite."""
    device = data.train_x.device
    model, optimizer = build(path.fuse, path.compiled)
    if not path.amp:
        model = model.to(memory_format=torch.contiguous_format)
    stepper = Stepper(model, optimizer, data, cfg.temperature, use_amp=path.amp,
                      compile=path.compiled, graphs=path.graphs, mutual_weight=cfg.mutual_weight,
                      forward=forward)
    gen = torch.Generator(device=device).manual_seed(seed)
    plan = plan_epoch(data.train_y, cfg.batch_size, 1, cfg.method, superclass_of, gen, mix_params,
                      augment=cfg.augment, pad=data.pad)
    model.train()
    losses, _, _ = stepper(plan, 0)
    finite = all(bool(torch.isfinite(p.grad).all()) for p in model.parameters() if p.grad is not None)
    return losses.detach().float().cpu(), finite


def check_step(cfg, path: StepPath, data, superclass_of: torch.Tensor, mix_params: dict, build,
               seed: int, forward=forward_losses) -> StepCheck | None:
    """Check ``path``'s step against :data:`PLAIN`'s on one batch (see :func:`one_step`);
    ``None`` when ``path`` is the plain step. ``forward`` is the chosen step's loss function
    (tests give a broken one)."""
    if path == PLAIN:
        return None
    chosen = path.describe()
    try:
        plain, _ = one_step(cfg, PLAIN, data, superclass_of, mix_params, build, seed)
        losses, finite = one_step(cfg, path, data, superclass_of, mix_params, build, seed, forward)
    except Exception as err:  # any failure of the never-run path: fall back, and say why
        first = str(err).splitlines()[0] if str(err) else ""
        return StepCheck(chosen, False, f"{type(err).__name__}: {first[:200]}")
    values, plain_values = [round(v, 6) for v in losses.tolist()], [round(v, 6) for v in plain.tolist()]
    if not finite or not bool(torch.isfinite(losses).all()):
        return StepCheck(chosen, False, "non-finite losses or gradients", values, plain_values)
    if not torch.allclose(losses, plain, rtol=RTOL, atol=ATOL):
        return StepCheck(chosen, False, f"losses {values} against the plain step's {plain_values}, "
                                        f"beyond bf16 tolerance", values, plain_values)
    return StepCheck(chosen, True, "losses within bf16 tolerance, gradients finite", values, plain_values)


def record(run_dir, check: StepCheck) -> None:
    """Add the check to the run's ``config.json`` (``step_check``)."""
    rec = runs.read_record(run_dir)
    rec["step_check"] = asdict(check)
    atomic_write_json(Path(run_dir) / runs.CONFIG, rec)


def fell_back(rec: dict) -> bool:
    """Whether a run's record says it trains with the plain step."""
    check = rec.get("step_check")
    return isinstance(check, dict) and check.get("passed") is False
