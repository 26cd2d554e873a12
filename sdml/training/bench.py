"""Throughput of the K-peer training step (``python -m sdml bench``)."""
from __future__ import annotations

import time

import numpy as np
import torch

from sdml.training.config import Config
from sdml.data.batches import to_device
from sdml.data.cifar import CifarArrays
from sdml.data.datasets import get_spec
from sdml.hierarchy.superclasses import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE, superclass_of
from sdml.training.step import Stepper, plan_epoch
from sdml.training.train import (build_model, make_optimizer, resolve_device, resolve_fuse,
                                 resolve_mix_params, stream_seed, use_compile, use_graphs)


def random_arrays(n: int, seed: int = 0, shape: tuple[int, int, int] = (3, 32, 32)) -> CifarArrays:
    """``n`` random uint8 images (C, H, W = ``shape``) with balanced CIFAR-100 labels: data for
    timing only."""
    rng = np.random.default_rng(seed)
    y = np.arange(n, dtype=np.int64) % len(FINE_NAMES)
    coarse = np.asarray(FINE_TO_COARSE, dtype=np.int64)[y]
    x = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    return CifarArrays(x, y, coarse, x[:1], y[:1], coarse[:1], tuple(FINE_NAMES), tuple(COARSE_NAMES))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_step(cfg: Config, steps: int = 20, warmup: int = 5, repeats: int = 3) -> dict:
    """Time the training step (augment, mix, K forwards and backwards, update) on random device
    data shaped as the config's dataset (100 classes whatever the dataset: the head's size
    barely matters to the step's time).

    ``images_per_s`` counts training samples per second through the whole K-peer step; multiply
    by K for per-model images. The device is synchronised at the ends of each repeat, not each step.
    """
    if steps < 1 or warmup < 0 or repeats < 1:
        raise ValueError(f"steps: {steps}, warmup: {warmup}, repeats: {repeats}; "
                         f"allowed: steps >= 1, warmup >= 0, repeats >= 1")
    device = resolve_device(cfg.device)
    if device.type == "cpu" or cfg.threads:
        from sdml.training.threads import cpu_threads

        torch.set_num_threads(cpu_threads(cfg.threads))
    fuse = resolve_fuse(cfg.fuse, device)
    shape = get_spec(cfg.data).shape  # images shaped as the config's dataset's (synthetic: 32 x 32)
    data = to_device(random_arrays(cfg.batch_size * max(steps, warmup, 1), shape=shape), device)
    model = build_model(cfg, len(FINE_NAMES), device, fuse, shape[0])
    compiled = use_compile(cfg, device)
    stepper = Stepper(model, make_optimizer(cfg, model, tensor_lr=compiled), data, cfg.temperature,
                      use_amp=device.type == "cuda", compile=compiled, graphs=use_graphs(cfg))
    gen = torch.Generator(device=device).manual_seed(stream_seed(cfg.seed, "bench"))
    n_plan = max(steps, warmup, 1)
    plan = plan_epoch(data.train_y, cfg.batch_size, n_plan, cfg.method, superclass_of().to(device),
                      gen, resolve_mix_params(cfg), augment=cfg.augment)
    model.train()
    t0 = time.perf_counter()
    for i in range(warmup):
        stepper(plan, i)
    _sync(device)
    warmup_s = time.perf_counter() - t0
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(steps):
            stepper(plan, i)
        _sync(device)
        rates.append(steps * cfg.batch_size / (time.perf_counter() - t0))
    return {"images_per_s": float(np.median(rates)), "images_per_s_min": min(rates),
            "images_per_s_max": max(rates), "warmup_s": warmup_s,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(), "batch": cfg.batch_size, "peers": cfg.peers,
            "model": f"resnet{cfg.depth}-w{cfg.width}-{cfg.shortcut}", "fuse": fuse,
            "compiled": stepper.compiled, "method": cfg.method, "steps": steps, "repeats": repeats,
            "torch": torch.__version__}
