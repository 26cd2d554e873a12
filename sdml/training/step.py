"""The training step as a pure tensor function of an epoch plan, optionally compiled.

Everything random about an epoch (order, mixing partners, ratios, crops, flips) is drawn up front
by :func:`plan_epoch` with the epoch's generator. The step itself then only gathers, augments,
mixes, runs the peers and updates them: static shapes and no host synchronisation, which is what
``torch.compile`` needs on a GPU.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from sdml.data.batches import PAD, crop_flip, normalize
from sdml.method.losses import dml_losses
from sdml.method.mixup import mix_images, sample_ratios


@dataclass(frozen=True)
class EpochPlan:
    """The random draws of one epoch, S steps of B samples."""

    index: torch.Tensor    # (S, B) int64: train samples of each step
    partner: torch.Tensor  # (S, B) int64: position of each sample's partner within its batch
    lam: torch.Tensor      # (S, B) float32: weight of the sample's own image and label
    dy: torch.Tensor       # (S, B) int64: crop offsets in the padded image, 0..2*pad
    dx: torch.Tensor       # (S, B) int64
    flip: torch.Tensor     # (S, B) bool: horizontal mirror

    @property
    def steps(self) -> int:
        return self.index.shape[0]


def plan_epoch(train_y: torch.Tensor, batch_size: int, steps: int, method: str,
               superclass_of: torch.Tensor, generator: torch.Generator, mix_params: dict,
               augment: bool = True, pad: int = PAD) -> EpochPlan:
    """Draw one epoch: a shuffle cut into ``steps`` batches, a random permutation partner inside
    each batch, one ratio per sample from ``method``, and crop/flip parameters (crops of the
    image zero-padded by ``pad`` pixels)."""
    n, dev = train_y.shape[0], train_y.device
    if steps * batch_size > n:
        raise ValueError(f"batch_size: {batch_size} x {steps} steps exceeds the {n} train samples")
    index = torch.randperm(n, generator=generator, device=dev)[: steps * batch_size]
    index = index.reshape(steps, batch_size)
    partner = torch.rand(steps, batch_size, generator=generator, device=dev).argsort(dim=1)
    y = train_y[index]  # (S, B)
    y_partner = y.gather(1, partner)
    lam = sample_ratios(method, y.reshape(-1), y_partner.reshape(-1), superclass_of, generator,
                        **mix_params).reshape(steps, batch_size)
    shape = (steps, batch_size)
    if augment:
        dy = torch.randint(0, 2 * pad + 1, shape, generator=generator, device=dev)
        dx = torch.randint(0, 2 * pad + 1, shape, generator=generator, device=dev)
        flip = torch.rand(shape, generator=generator, device=dev) < 0.5
    else:  # the centre crop of the padded image is the image itself
        dy = dx = torch.full(shape, pad, dtype=torch.long, device=dev)
        flip = torch.zeros(shape, dtype=torch.bool, device=dev)
    return EpochPlan(index, partner, lam.float(), dy, dx, flip)


def step_inputs(data, plan: EpochPlan, i: int):
    """The tensors step ``i`` needs: uint8 images, labels and that step's draws."""
    idx = plan.index[i]
    return (data.train_x[idx], data.train_y[idx], plan.dy[i], plan.dx[i], plan.flip[i],
            plan.partner[i], plan.lam[i])


def forward_losses(model, mean, std, x_u8, y, dy, dx, flip, partner, lam, temperature: float,
                   use_amp: bool, pad: int = PAD):
    """Augment, normalise, mix and run all peers on one batch; returns the (K,) DML losses,
    ``y`` and the partners' labels."""
    x = normalize(crop_flip(x_u8, dy, dx, flip, pad), mean, std)  # (B, C, H, W) float32
    x = mix_images(x, partner, lam)  # every peer sees the same mixed batch
    if use_amp:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        logits = model(x)  # (K, B, C)
    y_partner = y[partner]
    return dml_losses(logits.float(), y, y_partner, lam, temperature), y_partner


def compile_errors() -> tuple[type, ...]:
    """The exceptions by which ``torch.compile`` says it cannot compile here (no compiler, no
    Triton, an unsupported construct); anything else, such as running out of memory, is a real
    error and propagates."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor import exc as inductor

    names = ("CppCompileError", "InvalidCxxCompiler", "OperatorIssue", "CppWrapperCodegenError")
    # not every torch release has every one of them
    return (TorchDynamoException, *(getattr(inductor, n) for n in names if hasattr(inductor, n)))


def use_float_lr(optimizer: torch.optim.Optimizer) -> None:
    """An eager step wants a Python float lr (a tensor lr costs a host sync per eager step)."""
    for group in optimizer.param_groups:
        if isinstance(group["lr"], torch.Tensor):
            group["lr"] = float(group["lr"])


class Stepper:
    """Runs training steps of one model and optimiser, eagerly or through ``torch.compile``.

    With ``graphs`` the compiled forward+backward and update use ``mode="reduce-overhead"``:
    on CUDA inductor records them as CUDA graphs and replays them (inductor skips the graphs, with
    a log line, for whatever it cannot capture, and on a CPU). A graph's outputs are overwritten
    by its next replay, so the step returns copies.

    If compiling fails before the first compiled step has succeeded, a warning names the error and
    the step runs eagerly from then on; a failure after that, or any other error, propagates.
    """

    def __init__(self, model, optimizer, data, temperature, use_amp: bool, compile: bool,
                 forward=forward_losses, graphs: bool = False):
        self.model, self.optimizer, self.data = model, optimizer, data
        self.temperature, self.use_amp = temperature, use_amp
        self.eager_forward = self.forward = forward
        self.update = optimizer.step
        self.compiled = False
        self.graphs = False
        self.proven = False  # a compiled step has run to the end
        if compile:
            mode = "reduce-overhead" if graphs else None
            self.forward = torch.compile(forward, dynamic=False, mode=mode)
            self.update = torch.compile(optimizer.step, dynamic=False, mode=mode)
            self.compiled, self.graphs = True, graphs

    def _run(self, inputs):
        x_u8, y, dy, dx, flip, partner, lam = inputs
        if self.graphs:  # a new iteration: the last step's graph outputs may be reused
            torch.compiler.cudagraph_mark_step_begin()
        losses, y_partner = self.forward(self.model, self.data.mean, self.data.std, x_u8, y, dy, dx,
                                         flip, partner, lam, self.temperature, self.use_amp,
                                         pad=self.data.pad)
        # backward + update: each peer's loss reaches only that peer (teachers are detached)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        self.update()
        if self.graphs:
            return losses.detach().clone(), y, y_partner.clone()
        return losses.detach(), y, y_partner

    def __call__(self, plan: EpochPlan, i: int):
        """Step ``i`` of ``plan``; returns the (K,) losses, labels and partners' labels."""
        inputs = step_inputs(self.data, plan, i)
        if not self.compiled or self.proven:
            return self._run(inputs)
        try:
            out = self._run(inputs)
        except compile_errors() as err:
            warnings.warn(f"compile: torch.compile failed on this platform ({type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}); running the step eagerly",
                          RuntimeWarning, stacklevel=2)
            self.forward, self.update = self.eager_forward, self.optimizer.step
            self.compiled = self.graphs = False
            use_float_lr(self.optimizer)
            return self._run(inputs)
        self.proven = True
        return out
