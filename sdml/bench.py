"""Throughput of the K-peer training step (``python -m sdml bench``)."""
from __future__ import annotations

import time

import torch

from .config import Config
from .hierarchy import superclass_of
from .train import (build_model, make_optimizer, resolve_device, resolve_fuse, resolve_mix_params,
                    stream_seed, train_step)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_step(cfg: Config, steps: int = 20, warmup: int = 5) -> dict:
    """Time ``steps`` training steps on random normalised images of the config's shape.

    ``images_per_s`` counts training samples per second through the whole K-peer step (mixing,
    forward and backward of all K peers, the update); multiply by K for per-model images.
    """
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps: {steps}, warmup: {warmup}; allowed: steps >= 1, warmup >= 0")
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    fuse = resolve_fuse(cfg.fuse, device)
    model = build_model(cfg, 100, device, fuse)
    optimizer = make_optimizer(cfg, model)
    gen = torch.Generator(device=device).manual_seed(stream_seed(cfg.seed, "bench"))
    x = torch.randn(cfg.batch_size, 3, 32, 32, generator=gen, device=device)
    y = torch.randint(0, 100, (cfg.batch_size,), generator=gen, device=device)
    sc = superclass_of().to(device)
    params = resolve_mix_params(cfg)
    use_amp = device.type == "cuda"
    for _ in range(warmup):
        train_step(model, optimizer, x, y, cfg, sc, gen, params, use_amp)
    _sync(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        train_step(model, optimizer, x, y, cfg, sc, gen, params, use_amp)
        _sync(device)
        times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    return {"images_per_s": cfg.batch_size / median, "images_per_s_min": cfg.batch_size / times[-1],
            "images_per_s_max": cfg.batch_size / times[0], "step_ms_median": median * 1e3,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(), "batch": cfg.batch_size, "peers": cfg.peers,
            "model": f"resnet{cfg.depth}-w{cfg.width}-{cfg.shortcut}", "fuse": fuse,
            "method": cfg.method, "steps": steps, "torch": torch.__version__}
