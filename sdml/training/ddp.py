"""One DML run data-parallel over torchrun's ranks, with ``DistributedDataParallel``.

``torchrun --nproc_per_node N -m sdml train --ddp ...``: every rank draws the same epoch plan
from the run seed (:func:`sdml.training.step.plan_epoch`, the single-process plan of the global
batch of ``batch_size`` samples) and trains on its slice of ``batch_size / N`` samples. Partners
are a permutation of the *global* batch, so a rank augments its own samples and their partners
(wherever in the global batch those are) and mixes them as the single process does; its slice
therefore sees exactly the single-process mixed images, labels and ratios. DDP averages the
gradients of the ranks' slice means, which is the gradient of the global batch mean, so a step
equals the single-process step up to float rounding, as long as BatchNorm sees the same
statistics: with per-rank BatchNorm (the default) each rank normalises by its slice's statistics,
with ``sync_bn`` (CUDA only) by the global batch's.

Rank 0 alone evaluates and writes the run folder (metrics, checkpoints, predictions), then tells
the others whether to go on. The world size is recorded in ``config.json``; a resume on another
world size is refused, since per-rank BatchNorm makes the world size part of the run.
"""
from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch

from sdml.data.batches import PAD, crop_flip, normalize
from sdml.method.losses import dml_losses
from sdml.method.mixup import mix_images
from sdml.training import runs
from sdml.training.config import Config, from_dict
from sdml.training.distributed import (RankEnv, agree, init_group, leave_group, rank_device,
                                       require_torchrun)
from sdml.training.step import Stepper


def slice_of(batch_size: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s positions in a global batch of ``batch_size`` samples."""
    if batch_size % world_size:
        raise ValueError(f"batch_size: {batch_size} is not divisible by the world size "
                         f"{world_size}; allowed: a multiple of {world_size}")
    b = batch_size // world_size
    return slice(rank * b, (rank + 1) * b)


def ddp_forward_losses(model, mean, std, x_u8, y, dy, dx, flip, partner, lam, temperature: float,
                       use_amp: bool, mutual_weight: float = 1.0, pad: int = PAD, *, rank: int,
                       world_size: int):
    """:func:`sdml.training.step.forward_losses` for this rank's slice of a global batch.

    Takes the global batch's (B, ...) inputs; returns the slice's (K,) DML losses (means over the
    slice) and the global batch's (B,) partners' labels.
    """
    mine = slice_of(y.shape[0], rank, world_size)
    b = mine.stop - mine.start
    own = torch.arange(mine.start, mine.stop, device=y.device)
    pick = torch.cat([own, partner[mine]])  # (2b,) own samples, then their partners
    x = normalize(crop_flip(x_u8[pick], dy[pick], dx[pick], flip[pick], pad), mean, std)
    # each own sample's partner sits b rows below it; the partners' rows are mixed and dropped
    back = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(y.device)
    x = mix_images(x, back, torch.cat([lam[mine], lam[mine]]))[:b]  # (b, C, H, W)
    if use_amp:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        logits = model(x)  # (K, b, C); DDP all-reduces the gradients in backward
    y_partner = y[partner]  # (B,)
    return (dml_losses(logits.float(), y[mine], y_partner[mine], lam[mine], temperature,
                       mutual_weight), y_partner)


class DDPStepper(Stepper):
    """A :class:`sdml.training.step.Stepper` of one rank; ``__call__`` returns the global batch's
    (K,) losses (the ranks' slice means averaged), labels and partners' labels."""

    def __init__(self, model, optimizer, data, temperature, use_amp: bool, compile: bool,
                 env: RankEnv, mutual_weight: float = 1.0):
        forward = functools.partial(ddp_forward_losses, rank=env.rank, world_size=env.world_size)
        super().__init__(model, optimizer, data, temperature, use_amp, compile, forward=forward,
                         mutual_weight=mutual_weight)
        self.world_size = env.world_size

    def __call__(self, plan, i: int):
        import torch.distributed as dist

        losses, y, y_partner = super().__call__(plan, i)
        losses = losses.clone()
        dist.all_reduce(losses)  # on the device; no host sync
        return losses / self.world_size, y, y_partner


def verdict(error: str | None) -> str | None:
    """Rank 0's error (or None), known to every rank."""
    import torch.distributed as dist

    box = [error]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def check_world_size(run_dir: Path, world_size: int) -> None:
    """A resumed data-parallel run continues on the world size it started with."""
    path = Path(run_dir) / runs.CONFIG
    if not path.exists():
        return
    saved = runs.read_record(run_dir).get("ddp", {}).get("world_size")
    if saved is not None and saved != world_size:
        raise ValueError(f"ddp: the run in {str(run_dir)!r} was trained on {saved} ranks, this job "
                         f"has {world_size}; resume it with torchrun --nproc_per_node {saved} "
                         f"(per-rank BatchNorm makes the world size part of the run)")


def prepare(cfg: Config, run_dir: Path, resume: bool, env: RankEnv, device: torch.device,
            sc, extra: dict, hold: contextlib.ExitStack) -> tuple[Config, int]:
    """Rank 0 claims and checks the run folder (:mod:`sdml.training.resume`: locked for the run's
    life, everything checked before anything is written) and the first rank of each node gets the
    data; every rank learns the config and first epoch, or raises the same one-line error.
    Rank 0's claim (:func:`sdml.training.resume.claimed`) enters ``hold``, an ExitStack the
    caller closes when the run ends."""
    import torch.distributed as dist

    from sdml.data.load import dataset_for
    from sdml.training import resume as resume_mod
    from sdml.training.train import check_checkpoint_loads, resolve_fuse

    error, box = None, [None]
    try:
        if env.local_rank == 0:
            arrays = dataset_for(cfg)  # once per node, before its other ranks read it
        if env.is_main:
            run_dir = resume_mod.run_folder(run_dir)
            hold.enter_context(resume_mod.claimed([run_dir]))  # this job alone, for the run's life
            if resume:
                check_world_size(run_dir, env.world_size)
            deps = {**resume_mod.depends(sc, resume_mod.dataset_identity(cfg.data, arrays)), **extra}
            record = resume_mod.check_record(run_dir, cfg, resume, deps)
            progress = None if record.new else resume_mod.check_progress(run_dir, record.cfg)
            check_checkpoint_loads(run_dir, progress, record.cfg,
                                   resolve_fuse(record.cfg.fuse, device), arrays)
            resume_mod.begin(run_dir, record, progress)
            box = [(record.cfg.to_dict(), progress.done if progress else 0)]
    except (ValueError, FileNotFoundError) as err:
        error = str(err)
    agree(error)
    dist.broadcast_object_list(box, src=0)
    return from_dict(box[0][0]), box[0][1]


def train_ddp(cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True,
              log=print, env: RankEnv | None = None) -> list[dict]:
    """Train (or resume) one run data-parallel; returns its metric rows on rank 0 ([] elsewhere).

    The stages are those of :func:`sdml.training.train.train`; rank 0 evaluates and writes.
    """
    from torch.nn.parallel import DistributedDataParallel

    from sdml.data.batches import to_device
    from sdml.data.datasets import get_spec
    from sdml.data.load import dataset_for, reference_superclasses
    from sdml.hierarchy.resolve import resolve_superclasses
    from sdml.training.train import (build_model, check_finite, evaluate_runs, is_eval_epoch, lr_schedule,
                                     make_optimizer, predict, resolve_fuse, resolve_mix_params,
                                     set_lr, steps_per_epoch, summary_line, train_one_epoch,
                                     use_compile)

    run_dir = Path(run_dir)
    env = env if env is not None else require_torchrun("ddp")
    cfg.validate()
    # checks every rank makes alike, before any process group or folder
    if not cfg.ddp:
        raise ValueError("ddp: false; train_ddp trains runs with ddp true")
    slice_of(cfg.batch_size, 0, env.world_size)
    if cfg.compile == "graphs":
        raise ValueError("compile: 'graphs' with ddp; allowed with ddp: auto, on, off")
    device = rank_device(cfg.device, env.local_rank)
    if cfg.sync_bn and device.type != "cuda":
        raise ValueError(f"sync_bn: true on {device.type}; SyncBatchNorm needs CUDA devices; "
                         f"allowed here: false (BatchNorm per rank)")
    spec = get_spec(cfg.data)
    sc = resolve_superclasses(cfg.superclasses, cfg.wordnet_k, spec.classes)
    mix_params = resolve_mix_params(cfg)
    main = env.is_main
    log = log if main else (lambda *_: None)
    created = init_group(device)
    held = contextlib.ExitStack()  # rank 0's claim on the run folder
    try:
        # setup: rank 0 fetches the data and prepares the folder; then every rank reads the data
        cfg, first_epoch = prepare(cfg, run_dir, resume, env, device, sc,
                                   {"ddp": {"world_size": env.world_size}}, held)
        arrays = dataset_for(cfg)
        steps_per_epoch(cfg, len(arrays.train_y))
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        fuse = resolve_fuse(cfg.fuse, device)
        data = to_device(arrays, device)
        superclass_of, cifar_of = sc.of.to(device), reference_superclasses(spec).of.to(device)
        model = build_model(cfg, len(arrays.fine_names), device, fuse,
                            arrays.train_x.shape[1])  # the same on every rank
        if cfg.sync_bn:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        compiled = use_compile(cfg, device)
        optimizer = make_optimizer(cfg, model, tensor_lr=compiled)
        # every rank loads the checkpoint (a shared file system), so the momentum agrees too
        done = runs.load_checkpoint(run_dir, model, optimizer, fuse, device) if first_epoch else 0
        # running BatchNorm statistics stay per rank (no broadcast per step): only rank 0's are
        # used, to evaluate and to checkpoint
        ddp_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda"
                                            else None, forward_sync_buffers=False)
        stepper = DDPStepper(ddp_model, optimizer, data, cfg.temperature,
                             use_amp=device.type == "cuda", compile=compiled, env=env,
                             mutual_weight=cfg.mutual_weight)
        lrs = lr_schedule(cfg)
        log(f"[sdml] run {run_dir} | {cfg.method} | {cfg.peers} x ResNet-{cfg.depth} (width "
            f"{cfg.width}, {fuse}) | {cfg.data} | ddp over {env.world_size} ranks, "
            f"{cfg.batch_size // env.world_size} of {cfg.batch_size} samples each, BatchNorm "
            f"{'synchronised' if cfg.sync_bn else 'per rank'} | epochs {done + 1}..{cfg.epochs}")
        for epoch in range(done, cfg.epochs):
            set_lr(optimizer, lrs[epoch], tensor=stepper.compiled)
            # train: every rank its slice of every step
            row = {"epoch": epoch + 1, "lr": lrs[epoch]}
            row.update(train_one_epoch(stepper, data, cfg, superclass_of, epoch, mix_params,
                                       progress and main))
            # evaluate, log and checkpoint on rank 0; the others learn whether to go on
            error = None
            if main:
                try:
                    if is_eval_epoch(cfg, epoch):
                        row.update(evaluate_runs(model, data, cfg, device, cifar_of)[0])
                    check_finite(row, str(run_dir / runs.CHECKPOINT), epoch)
                    runs.append_metrics(run_dir, row)
                    runs.save_checkpoint(run_dir, epoch + 1, model, optimizer, fuse)
                    log(summary_line(row, cfg.epochs))
                except FloatingPointError as err:
                    error = str(err)
            error = verdict(error)
            if error is not None:
                raise FloatingPointError(error)
        if main and (done < cfg.epochs or not (run_dir / runs.PREDICTIONS).exists()):
            probs = predict(model, data, cfg.eval_batch_size, device)
            runs.save_predictions(run_dir, probs, data.test_y, data.test_coarse)
        verdict(None)  # no rank leaves before rank 0 has written the predictions
        return runs.read_metrics(run_dir) if main else []
    finally:
        held.close()
        leave_group(created)
