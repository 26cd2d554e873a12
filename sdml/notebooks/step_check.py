"""Before a plan's first fused job: its step checked on one batch against the plain step.

A run trained alone checks its own step (:mod:`sdml.training.guard`). A fused job (several runs as
one grouped network, what the runner picks with a CUDA GPU) takes grouped peers, bf16 and
compilation at once; so before the plan starts, the runner puts one batch of its first fused run
through that step and through the plain one. When it fails, the runner says so in one line and
trains the runs one by one instead, each checking (and, if need be, falling back from) its own
step and recording it in its ``config.json``.
"""
from __future__ import annotations

import dataclasses

from sdml.notebooks import params as nbparams


def fused_step_holds(plan, log=print, forward=None) -> bool:
    """False (said in one line) when the first fused job's step fails its check; True when it
    passes or the plan has no fused job. ``forward``: the step's loss function (tests break it)."""
    step = next((s for s in plan if len(s.run_dirs) > 1), None)
    if step is None:
        return True
    import torch

    from sdml.data.batches import to_device
    from sdml.data.datasets import get_spec
    from sdml.data.load import dataset_for
    from sdml.hierarchy.resolve import resolve_superclasses
    from sdml.training import guard
    from sdml.training.step import forward_losses
    from sdml.training.train import (resolve_device, resolve_mix_params, step_builder, step_path,
                                     stream_seed)

    cfg = dataclasses.replace(nbparams.train_plan(step.params)[0][0], fuse="grouped")
    device = resolve_device(cfg.device)
    if device.type == "cpu" or cfg.threads:
        from sdml.training.threads import cpu_threads

        torch.set_num_threads(cpu_threads(cfg.threads))
    arrays = dataset_for(cfg)
    sc = resolve_superclasses(cfg.superclasses, cfg.wordnet_k, get_spec(cfg.data).classes)
    build = step_builder(cfg, len(arrays.fine_names), device, arrays.train_x.shape[1])
    check = guard.check_step(cfg, step_path(cfg, device), to_device(arrays, device),
                             sc.of.to(device), resolve_mix_params(cfg), build,
                             stream_seed(cfg.seed, "epoch", 0), forward=forward or forward_losses)
    if check is None or check.passed:
        return True
    log(f"{check.line().removesuffix(' instead')}: the runs train one by one instead of as "
        f"fused jobs, each checking its own step")
    return False
