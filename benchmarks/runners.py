"""The timed things: the reference and sdml's step in each mode, and their interleaved timing.

A mode is a config (``fuse``, ``compile``) or the reference; a runner holds one mode's model,
optimiser and data stream and runs ``steps`` training steps per call. :func:`measure` warms every
runner up, then times them interleaved, the device synchronised at the ends of each repeat only.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from dataclasses import dataclass

import torch

from sdml.training.config import make_config
from sdml.hierarchy.superclasses import superclass_of as cifar_superclass_of
from sdml.training.step import Stepper
from sdml.training.train import (build_model, make_optimizer, resolve_mix_params, train_one_epoch,
                                 use_compile, use_graphs)

if __package__:
    from . import report
    from .reference_dml import build_reference
else:  # run as a script: python benchmarks/dml_bench.py
    import report
    from reference_dml import build_reference


@dataclass(frozen=True)
class Mode:
    """One way of running the step: the reference, or sdml with a ``fuse`` and ``compile``."""

    name: str
    fuse: str | None = None    # sdml: loop | grouped (None for the reference)
    compile: str | None = None  # sdml: on | off (None for the reference)
    reference: bool = False    # the typical implementation of reference_dml.py
    needs_cuda: bool = False   # skipped, with the reason, on other devices


MODES = (Mode("reference", reference=True), Mode("loop", fuse="loop", compile="off"),
         Mode("grouped", fuse="grouped", compile="off"),
         Mode("compiled", fuse="grouped", compile="on", needs_cuda=True),
         Mode("graphs", fuse="grouped", compile="graphs", needs_cuda=True))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class OursRunner:
    """sdml's step as training runs it: a ``Stepper`` driven by ``train_one_epoch`` over
    device-resident data, one call of ``steps`` steps per repeat."""

    def __init__(self, mode: Mode, opts, peers: int, batch: int, data,
                 num_classes: int, device: torch.device):
        self.cfg = make_config("paper", data="synthetic", depth=opts.depth, width=opts.width,
                               shortcut=opts.shortcut, peers=peers, batch_size=batch,
                               method=opts.method, device=device.type, fuse=mode.fuse,
                               compile=mode.compile, seed=opts.seed)
        self.wants_compile = use_compile(self.cfg, device)
        model = build_model(self.cfg, num_classes, device, mode.fuse)
        optimizer = make_optimizer(self.cfg, model, tensor_lr=self.wants_compile)
        self.stepper = Stepper(model, optimizer, data, self.cfg.temperature,
                               use_amp=device.type == "cuda", compile=self.wants_compile,
                               graphs=use_graphs(self.cfg))
        self.mix_params = resolve_mix_params(self.cfg)
        self.superclass_of = cifar_superclass_of().to(device)
        self.data, self.epoch = data, 0

    @property
    def compiled(self) -> bool:
        return self.stepper.compiled

    def run(self, steps: int) -> None:
        cfg = dataclasses.replace(self.cfg, max_steps_per_epoch=steps)
        row = train_one_epoch(self.stepper, self.data, cfg, self.superclass_of, self.epoch,
                              self.mix_params)
        self.epoch += 1
        if row["steps"] != steps:
            raise ValueError(f"steps: {row['steps']} taken, {steps} asked; the dataset is too small")
        if not all(math.isfinite(v) for v in row["train_loss"]):
            raise FloatingPointError(f"non-finite loss {row['train_loss']} in sdml's step")


class ReferenceRunner:
    """The typical implementation (``reference_dml.py``); its global-RNG use is fenced off."""

    def __init__(self, opts, peers: int, batch: int, arrays, num_classes: int,
                 device: torch.device, workers: int):
        cfg = make_config("paper", method=opts.method)
        self.ref = build_reference(arrays.train_x, arrays.train_y, peers=peers, batch_size=batch,
                                   depth=opts.depth, width=opts.width, shortcut=opts.shortcut,
                                   num_classes=num_classes, method=opts.method,
                                   mix_params=resolve_mix_params(cfg),
                                   superclass_of=cifar_superclass_of(), device=device,
                                   workers=workers, seed=opts.seed)
        self.wants_compile = self.compiled = False
        self.rng_state = torch.Generator().manual_seed(opts.seed).get_state()

    def run(self, steps: int) -> None:
        # torchvision's transforms draw from torch's global RNG (in the main process when there
        # are no workers): they get a stream of their own, and global state is left as it was
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.rng_state)
            losses = [self.ref.step() for _ in range(steps)]
            self.rng_state = torch.get_rng_state()
        if not all(math.isfinite(v) for step in losses for v in step):
            raise FloatingPointError(f"non-finite loss {losses[-1]} in the reference step")


def timed(runner, steps: int, device: torch.device) -> float:
    """Seconds for ``steps`` steps, the device synchronised at both ends only."""
    sync(device)
    t0 = time.perf_counter()
    runner.run(steps)
    sync(device)
    return time.perf_counter() - t0


def measure(runners: dict, batch: int, steps: int, repeats: int, warmup: int,
            device: torch.device) -> dict:
    """Warm every runner up, then time them interleaved; per runner: images/s and warm-up.

    Compiled runners warm up for at least 3 steps. A runner that asked for ``torch.compile`` but
    fell back to eager (sdml warns and goes on) is not timed: its entry is
    ``{"status": "skipped", "reason": ...}``. A compiled runner that raises is ``{"status":
    "failed", "error": ...}`` and the others go on (compiling is the part a new platform breaks);
    an error of an eager runner propagates.
    """
    out, dropped = {}, {}
    for name, runner in runners.items():
        # compiling happens here: step 1 (no momentum buffers yet) and step 2 differ in graph
        w = max(warmup, 3) if runner.wants_compile else warmup
        error = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                seconds = timed(runner, w, device) if w else 0.0
            except Exception as err:
                if not runner.wants_compile:
                    raise
                error = err
        for warning in caught:  # shown once recording has ended
            warnings.warn_explicit(warning.message, warning.category, warning.filename,
                                   warning.lineno)
        if error is not None:
            dropped[name] = failure(error)
        elif runner.wants_compile and not runner.compiled:
            dropped[name] = {"status": "skipped", "reason": "; ".join(
                str(warning.message) for warning in caught) or "torch.compile fell back to eager"}
        else:
            out[name] = {"status": "measured", "warmup_steps": w, "warmup_s": seconds, "ips": []}
    for _ in range(repeats):
        for name in list(out):
            try:
                out[name]["ips"].append(steps * batch / timed(runners[name], steps, device))
            except Exception as err:
                if not runners[name].wants_compile:
                    raise
                dropped[name] = failure(err)
                del out[name]
    for name, m in list(out.items()):
        m["images_per_s"] = report.summarise(m.pop("ips"))
        m["compiled"] = runners[name].compiled
        if runners[name].wants_compile and not m["compiled"]:  # fell back while being timed
            dropped[name] = {"status": "skipped", "reason": "torch.compile fell back to eager "
                             "during the timed repeats (see the warning above)"}
            del out[name]
        elif runners[name].wants_compile:
            # compile time: the warm-up's excess over the same steps at the measured speed
            step_s = batch / m["images_per_s"]["median"]
            m["compile_s"] = max(0.0, m["warmup_s"] - m["warmup_steps"] * step_s)
    return {**out, **dropped}


def failure(err: Exception) -> dict:
    """A compiled runner's error, as the JSON and the table show it (first line only)."""
    text = str(err).strip().splitlines()
    warnings.warn(f"a compiled mode failed and is not timed: {type(err).__name__}: "
                  f"{text[0] if text else ''}", RuntimeWarning, stacklevel=3)
    return {"status": "failed", "error": f"{type(err).__name__}: {text[0] if text else ''}"}


def make_runner(mode: Mode, opts, peers, batch, ctx):
    if mode.compile in ("on", "graphs"):
        # a fresh compile cache: each compiled runner pays (and reports) its own compile time,
        # and no recompile limit left over from earlier sweep points turns it eager
        torch.compiler.reset()
    if mode.reference:
        return ReferenceRunner(opts, peers, batch, ctx["arrays"], ctx["num_classes"],
                               ctx["device"], ctx["workers"])
    return OursRunner(mode, opts, peers, batch, ctx["data"], ctx["num_classes"], ctx["device"])
