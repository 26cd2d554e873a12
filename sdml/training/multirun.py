"""Several independent DML runs trained as one fused job, so that small models fill a large GPU.

R runs of K peers become one ``GroupedPeers(k=K, runs=R)`` network (:mod:`sdml.models.fused`): each run
mixes its own batch with its own plan, the R batches go in side by side on the channel axis, one
forward gives (R*K, B, C) logits, each run's DML losses use its own labels, partners, ratios,
temperature and weight of the mutual term (so independent and mutual runs share a job), and
their sum takes one backward and one SGD step (SGD is per element, so one optimiser over all
runs equals one per run). Every run starts from its own seed's weights and
draws its own epoch plans exactly as :func:`sdml.training.train.train` does, so run r of a fused job
reproduces the single run of its config (up to float rounding).

Each run keeps its own run folder in the single-run format (``config.json``, ``metrics.jsonl``,
``checkpoint.pt`` with that run's peers and its share of the optimiser state, ``predictions.pt``):
a run can be read, compared, or resumed alone with ``sdml.training.train.train(..., resume=True)`` and
``fuse="grouped"``. Checkpoints of a job are committed all or none (:mod:`sdml.training.job_checkpoints`).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from sdml.training import resume as resume_mod
from sdml.training import runs
from sdml.data.batches import PAD, crop_flip, normalize
from sdml.training.config import Config
from sdml.training.eta import eta_note
from sdml.models.fused import GroupedPeers, SharedInput
from sdml.training.job_checkpoints import load_runs, save_runs, settle_checkpoints
from sdml.method.losses import dml_losses
from sdml.method.mixup import mix_images
from sdml.training.step import EpochPlan, Stepper, plan_epoch
from sdml.training.train import (build_model, check_checkpoint_loads, check_finite, evaluate_runs,
                                 is_eval_epoch, lr_schedule, make_optimizer, mode_text, predict,
                                 resolve_device, resolve_mix_params, set_lr, steps_per_epoch,
                                 stream_seed, summary_line, thread_note, tqdm, use_compile,
                                 use_graphs)

#: Config fields in which the runs of one job may differ (they do not change the job's shapes).
MAY_DIFFER = ("method", "alpha", "same_ratio", "diff_ratio", "same_alpha", "diff_alpha",
              "superclasses", "wordnet_k", "seed", "temperature", "mutual_weight", "profile")


def check_job(cfgs: list[Config], run_dirs: list) -> list[Config]:
    """Validate a job; returns copies of the configs with ``fuse="grouped"`` (what a fused job
    trains, recorded so that each run folder resumes alone in the same mode)."""
    if not cfgs:
        raise ValueError("cfgs: empty; allowed: a list of one or more configs")
    if len(run_dirs) != len(cfgs):
        raise ValueError(f"run_dirs: {len(run_dirs)} folders for {len(cfgs)} configs; "
                         f"allowed: one folder per config")
    seen = set()
    for d in run_dirs:
        if Path(d).resolve() in seen:
            raise ValueError(f"run_dirs: {str(d)!r} appears twice; each run needs its own folder")
        seen.add(Path(d).resolve())
    first = cfgs[0].validate().to_dict()
    for i, cfg in enumerate(cfgs[1:], 1):
        for name, value in cfg.validate().to_dict().items():
            if name not in MAY_DIFFER and value != first[name]:
                raise ValueError(f"{name}: cfgs[0] has {first[name]!r}, cfgs[{i}] has {value!r}; "
                                 f"runs of one fused job may differ only in {', '.join(MAY_DIFFER)}")
    if first["fuse"] == "loop":
        raise ValueError("fuse: 'loop'; a fused job trains grouped peers; allowed: grouped, auto")
    return [dataclasses.replace(cfg, fuse="grouped") for cfg in cfgs]


def stack_plans(plans: list[EpochPlan]) -> EpochPlan:
    """R runs' plans of S steps of B samples as one plan whose fields are (S, R, B)."""
    return EpochPlan(*(torch.stack([getattr(p, f.name) for p in plans], dim=1)
                       for f in dataclasses.fields(EpochPlan)))


def fused_forward_losses(model, mean, std, x_u8, y, dy, dx, flip, partner, lam, temperatures,
                         use_amp: bool, mutual_weight=None, pad: int = PAD):
    """:func:`sdml.training.step.forward_losses` for R runs at once; inputs stacked (R, B, ...).

    ``temperatures`` and ``mutual_weight`` (None: 1 for every run) hold one number per run.
    Returns the (R, K) DML losses and the (R, B) partners' labels.
    """
    r, b = y.shape
    x = normalize(crop_flip(x_u8.flatten(0, 1), dy.flatten(), dx.flatten(), flip.flatten(), pad),
                  mean, std)  # (R*B, C, H, W) float32
    offset = torch.arange(r, device=y.device)[:, None] * b  # each run mixes inside its own batch
    x = mix_images(x, (partner + offset).flatten(), lam.flatten())
    x = x.unflatten(0, (r, b)).transpose(0, 1).flatten(1, 2)  # (B, R*C, H, W): run r at Cr..Cr+C-1
    if use_amp:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=use_amp):
        logits = model(x)  # (R*K, B, C)
    logits = logits.float().unflatten(0, (r, -1))  # (R, K, B, C)
    y_partner = y.gather(1, partner)  # (R, B)
    weights = (1.0,) * r if mutual_weight is None else mutual_weight
    losses = torch.stack([dml_losses(logits[i], y[i], y_partner[i], lam[i], temperatures[i],
                                     weights[i]) for i in range(r)])  # (R, K)
    return losses, y_partner


class FusedStepper(Stepper):
    """A :class:`sdml.training.step.Stepper` whose step is :func:`fused_forward_losses` on (S, R, B) plans;
    ``__call__`` returns the (R, K) losses and the (R, B) labels and partners' labels."""

    def __init__(self, model, optimizer, data, temperatures, use_amp: bool, compile: bool,
                 graphs: bool = False, mutual_weights=None):
        weights = tuple(mutual_weights) if mutual_weights is not None else (1.0,) * len(temperatures)
        if len(weights) != len(temperatures):
            raise ValueError(f"mutual_weights: {len(weights)} for {len(temperatures)} runs; "
                             f"allowed: one per run")
        super().__init__(model, optimizer, data, tuple(temperatures), use_amp, compile,
                         forward=fused_forward_losses, graphs=graphs, mutual_weight=weights)


def train_fused_epoch(stepper: FusedStepper, data, cfgs: list[Config],
                      superclass_of: list[torch.Tensor], epoch: int, mix_params: list[dict],
                      progress: bool = False) -> list[dict]:
    """One pass of every run over the train split; each run's dict has the keys of
    :func:`sdml.training.train.train_one_epoch` (seconds and images/s are the job's, shared by its runs)."""
    device = data.train_x.device
    steps = steps_per_epoch(cfgs[0], data.train_x.shape[0])
    # draw each run's epoch from that run's own stream, as a single run does
    plans = []
    for cfg, sc, params in zip(cfgs, superclass_of, mix_params):
        gen = torch.Generator(device=device).manual_seed(stream_seed(cfg.seed, "epoch", epoch))
        plans.append(plan_epoch(data.train_y, cfg.batch_size, steps, cfg.method, sc, gen, params,
                                augment=cfg.augment, pad=data.pad))
    plan = stack_plans(plans)
    sc_table = torch.stack(superclass_of)  # (R, C)
    stepper.model.train()
    loss_sum = torch.zeros(len(cfgs), cfgs[0].peers, dtype=torch.float64, device=device)
    same_sum = torch.zeros(len(cfgs), dtype=torch.float64, device=device)
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfgs[0].epochs} ({len(cfgs)} runs)",
               leave=False, disable=not progress) if tqdm is not None else None
    t0 = time.perf_counter()
    for i in range(steps):
        losses, y, y_partner = stepper(plan, i)  # (R, K), (R, B), (R, B)
        loss_sum += losses.double()
        same_sum += (sc_table.gather(1, y) == sc_table.gather(1, y_partner)).double().mean(1)
        if bar is not None:
            bar.update(1)
    mean_lam = torch.stack([p.lam.mean() for p in plans]).double()  # (R,)
    per_run = torch.cat([loss_sum / steps, (same_sum / steps)[:, None], mean_lam[:, None]], dim=1)
    per_run = per_run.tolist()  # (R, K + 2) values: the epoch's one host sync
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return [{"train_loss": loss, "train_loss_total": sum(loss), "same_superclass_share": share,
             "mean_lam": lam, "steps": steps, "train_seconds": seconds,
             "images_per_s": steps * cfgs[0].batch_size / seconds, "threads": torch.get_num_threads()}
            for *loss, share, lam in per_run]


# ----------------------------------------------------------------------------- the job

def build_job_model(cfgs: list[Config], num_classes: int, device: torch.device,
                    in_channels: int = 3) -> GroupedPeers:
    """The fused network of a job; run r's peers start as ``build_model(cfgs[r])``'s (its seed)."""
    cfg = cfgs[0]
    with torch.random.fork_rng(devices=[]):  # the fused layers' default init is overwritten
        model = GroupedPeers(cfg.peers, cfg.depth, num_classes, cfg.width, cfg.shortcut,
                             generator=torch.Generator().manual_seed(0), runs=len(cfgs),
                             in_channels=in_channels)
    model.load_peer_state_dicts([peer for c in cfgs for peer in build_model(
        c, num_classes, torch.device("cpu"), "grouped", in_channels).peer_state_dicts()])
    model = model.to(device)
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def train_many(cfgs: list[Config], run_dirs: list, resume: bool = False, progress: bool = True,
               log=print, on_epoch=None) -> list[list[dict]]:
    """Train (or resume) R runs as one fused job; returns each run's metric rows.

    ``on_epoch``, if given, receives each epoch's R metric rows once they are committed.

    The configs may differ only in :data:`MAY_DIFFER`; a disagreement raises ValueError naming
    the field and both values. ``run_dirs[r]`` gets what :func:`sdml.training.train.train` would write
    for ``cfgs[r]`` (with ``fuse="grouped"``). A non-finite loss in any run stops the job with
    ``FloatingPointError``; every run keeps its last committed checkpoint.
    """
    from sdml.data.datasets import get_spec
    from sdml.data.load import dataset_for
    from sdml.hierarchy.resolve import resolve_superclasses

    progress_bar = progress
    cfgs = check_job(cfgs, run_dirs)
    run_dirs = [resume_mod.run_folder(d, "run_dirs") for d in run_dirs]
    cfg = cfgs[0]
    resolve_device(cfg.device)  # fail before touching any run folder
    # setup: superclasses, mixing parameters and data (all validated before a folder is used)
    spec = get_spec(cfg.data)
    scs = [resolve_superclasses(c.superclasses, c.wordnet_k, spec.classes) for c in cfgs]
    mix_params = [resolve_mix_params(c) for c in cfgs]
    arrays = dataset_for(cfgs[0])
    steps_per_epoch(cfgs[0], len(arrays.train_y))  # a batch larger than the data fails here, early
    identity = resume_mod.dataset_identity(cfg.data, arrays)
    deps_each = [resume_mod.depends(sc, identity) for sc in scs]
    with resume_mod.claimed(run_dirs):  # this job alone holds its folders, for its life
        # check every folder before any is written
        names = [d.name for d in run_dirs]
        records = [resume_mod.check_record(d, c, resume, {**dep, "fused_job": {"runs": names, "index": r}})
                   for r, (d, c, dep) in enumerate(zip(run_dirs, cfgs, deps_each))]
        held = [d for d, rec in zip(run_dirs, records) if not rec.new]
        if held:  # finish or undo a commit of all runs' checkpoints that a kill interrupted
            settle_checkpoints(held)
        progress = [None if rec.new else resume_mod.check_progress(d, rec.cfg, "grouped")
                    for d, rec in zip(run_dirs, records)]
        done_each = [p.done if p else 0 for p in progress]
        if len(set(done_each)) > 1:
            raise ValueError(f"run_dirs: the runs have finished {done_each} epochs; a fused job "
                             f"resumes runs at the same epoch (resume the others alone first)")
        for d, rec, prog in zip(run_dirs, records, progress):
            check_checkpoint_loads(d, prog, rec.cfg, "grouped", arrays)
        for d, rec, prog in zip(run_dirs, records, progress):
            resume_mod.begin(d, rec, prog)
        return _train_job([rec.cfg for rec in records], run_dirs, progress, scs, mix_params,
                          arrays, progress_bar, log, on_epoch)


def _train_job(cfgs, run_dirs, progress, scs, mix_params, arrays, progress_bar, log,
               on_epoch) -> list[list[dict]]:
    """:func:`train_many` once its folders are claimed and checked."""
    from sdml.data.batches import to_device
    from sdml.data.datasets import get_spec
    from sdml.data.load import reference_superclasses

    spec = get_spec(cfgs[0].data)

    cfg, device = cfgs[0], resolve_device(cfgs[0].device)
    if device.type == "cpu" or cfg.threads:
        from sdml.training.threads import cpu_threads

        torch.set_num_threads(cpu_threads(cfg.threads))
    data = to_device(arrays, device)
    superclass_of = [sc.of.to(device) for sc in scs]
    reference_of = reference_superclasses(spec).of.to(device)
    num_classes, k, r_runs = len(arrays.fine_names), cfg.peers, len(cfgs)
    model = build_job_model(cfgs, num_classes, device, arrays.train_x.shape[1])
    compiled = use_compile(cfg, device)
    optimizer = make_optimizer(cfg, model, tensor_lr=compiled)
    done = 0
    if progress[0] is not None and progress[0].done:
        done = load_runs(run_dirs, model, optimizer, device, states=[p.state for p in progress])
    lrs = lr_schedule(cfg)
    stepper = FusedStepper(model, optimizer, data, [c.temperature for c in cfgs],
                           use_amp=device.type == "cuda", compile=compiled, graphs=use_graphs(cfg),
                           mutual_weights=[c.mutual_weight for c in cfgs])
    log(f"[sdml] fused job | {r_runs} runs x {k} x ResNet-{cfg.depth} (width {cfg.width}, grouped, "
        f"{r_runs * k} peers) | {cfg.data} | device {device}{thread_note()} | epochs {done + 1}..{cfg.epochs}")
    for d, c in zip(run_dirs, cfgs):
        log(f"[sdml]   {d} | {c.method} | {mode_text(c.mutual_weight)} | superclasses "
            f"{c.superclasses} | seed {c.seed}")
    started = time.perf_counter()
    for epoch in range(done, cfg.epochs):
        set_lr(optimizer, lrs[epoch], tensor=stepper.compiled)
        # train all runs
        rows = [{"epoch": epoch + 1, "lr": lrs[epoch], **metrics} for metrics in
                train_fused_epoch(stepper, data, cfgs, superclass_of, epoch, mix_params, progress_bar)]
        # evaluate on eval epochs: every run sees the same test and training images
        if is_eval_epoch(cfg, epoch):
            for row, ev in zip(rows, evaluate_runs(SharedInput(model), data, cfg, device,
                                                   reference_of, r_runs)):
                row.update(ev)
        for d, row in zip(run_dirs, rows):  # every run keeps its last committed checkpoint
            check_finite(row, f"every run of the job (this one: {d})", epoch)
        # log, then commit all runs' checkpoints (a kill in between is repaired on resume)
        for d, row in zip(run_dirs, rows):
            runs.append_metrics(d, row)
        save_runs(run_dirs, epoch + 1, model, optimizer)
        eta = eta_note("job", time.perf_counter() - started, epoch + 1 - done, cfg.epochs - done)
        for d, row in zip(run_dirs, rows):
            log(f"{d.name}: {summary_line(row, cfg.epochs)}{eta}")
        if on_epoch is not None:
            on_epoch(rows)
    missing = [not (d / runs.PREDICTIONS).exists() for d in run_dirs]
    if done < cfg.epochs or any(missing):
        probs = predict(SharedInput(model), data, cfg.eval_batch_size, device)
        for d, p, miss in zip(run_dirs, probs.unflatten(0, (r_runs, k)), missing):
            if done < cfg.epochs or miss:
                runs.save_predictions(d, p, data.test_y, data.test_coarse)
    return [runs.read_metrics(d) for d in run_dirs]


def train_runs(cfgs: list[Config], run_dirs: list, progress: bool = True, log=print,
               on_epoch=None) -> list[list[dict]]:
    """Train or continue the runs of notebook 04: one run with :func:`sdml.training.train.train`, several
    as one fused job; ``on_epoch`` receives each epoch's list of rows (one per run)."""
    if len(cfgs) == 1:
        from sdml.training.train import train

        one = None if on_epoch is None else (lambda row: on_epoch([row]))
        return [train(cfgs[0], run_dirs[0], resume=True, progress=progress, log=log, on_epoch=one)]
    return train_many(cfgs, run_dirs, resume=True, progress=progress, log=log, on_epoch=on_epoch)


# ----------------------------------------------------------------------------- a job's runs

def run_name(cfg: Config) -> str:
    """A config's run folder name, :func:`sdml.training.runs.run_name` of its method, superclasses,
    seed and weight of the mutual term (the name notebook 04 gives the same run)."""
    return runs.run_name(cfg.method, cfg.superclasses, cfg.seed, cfg.mutual_weight)


def plan_many(base: Config, methods, seeds, out_root, independent=()) -> tuple[list[Config], list[Path]]:
    """One config per (method, seed), ``base`` otherwise, each in ``out_root/<run_name>``; with
    ``independent``, also one per (method of it, seed) with ``mutual_weight = 0`` (the control)."""
    cfgs = [dataclasses.replace(base, method=m, seed=s).validate() for m in methods for s in seeds]
    cfgs += [dataclasses.replace(base, method=m, seed=s, mutual_weight=0.0).validate()
             for m in independent for s in seeds]
    dirs = [Path(out_root) / run_name(c) for c in cfgs]
    for i, d in enumerate(dirs):
        if d in dirs[:i]:
            raise ValueError(f"methods/seeds: run {d.name!r} is asked for twice; allowed: "
                             f"distinct methods and distinct seeds")
    return cfgs, dirs
