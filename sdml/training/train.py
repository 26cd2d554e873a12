"""Deep Mutual Learning with superclass-aware mixup: one explicit training function.

:func:`train` runs (or resumes) a run folder; :func:`train_one_epoch` and :func:`evaluate` return
dicts of metrics and never plot.
"""
from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import torch

from sdml.io.readback import DamagedFile, check
from sdml.training import guard
from sdml.training import resume as resume_mod
from sdml.training import runs
from sdml.training.config import Config
from sdml.training.eta import eta_note
from sdml.training.step import Stepper, plan_epoch

try:
    from tqdm.auto import tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency; keep the library importable
    tqdm = None


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; asking for a missing device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' asked for but no CUDA device is available; allowed here: auto, cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device: 'mps' asked for but MPS is not available; allowed here: auto, cpu")
    return torch.device(name)


def resolve_fuse(fuse: str, device: torch.device) -> str:
    """``auto``: grouped convolutions on CUDA (one launch for all peers), a loop on the CPU."""
    if fuse != "auto":
        return fuse
    return "grouped" if device.type == "cuda" else "loop"


def stream_seed(seed: int, *keys) -> int:
    """A 63-bit seed derived from the run seed and keys; epochs get independent streams."""
    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def lr_schedule(cfg: Config) -> list[float]:
    """Learning rate of each epoch: lr * gamma^(number of milestones passed)."""
    return [cfg.lr * cfg.gamma ** sum(e >= m for m in cfg.milestones) for e in range(cfg.epochs)]


def build_model(cfg: Config, num_classes: int, device: torch.device, fuse: str,
                in_channels: int = 3):
    """K peers with weights drawn from the run seed, without touching global random state;
    ``in_channels`` is the dataset's (3 colour, 1 grayscale)."""
    from sdml.models.peers import build_peers

    gen = torch.Generator().manual_seed(stream_seed(cfg.seed, "init"))
    model = build_peers(cfg.peers, fuse=fuse, generator=gen, depth=cfg.depth,
                        num_classes=num_classes, width=cfg.width, shortcut=cfg.shortcut,
                        in_channels=in_channels)
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def step_builder(cfg: Config, num_classes: int, device: torch.device, in_channels: int = 3):
    """``(fuse, tensor_lr) -> (model, optimizer)`` from the run's initial weights, for the step
    check (:func:`sdml.training.guard.check_step`)."""
    def build(fuse: str, tensor_lr: bool):
        model = build_model(cfg, num_classes, device, fuse, in_channels)
        return model, make_optimizer(cfg, model, tensor_lr=tensor_lr)
    return build


def check_checkpoint_loads(run_dir: Path, progress, cfg: Config, fuse: str, arrays) -> None:
    """Load a resumed run's checkpoint (``progress.state``, read and checked by
    :func:`sdml.training.resume.check_progress`; nothing to do without one) into a throw-away
    model and optimizer on the CPU before anything in the folder is written, so that a
    checkpoint that parses but does not fit the run is reported as damaged, with nothing
    changed. Beyond what loading checks: the peers' dtypes are the model's, every floating
    tensor is finite, the optimizer's hyperparameters are the config's, and each momentum
    buffer is a finite tensor of its parameter's shape (SGD's ``load_state_dict`` only casts
    the buffers to their parameters' dtypes; a wrong shape would fail in the first step)."""
    if progress is None or progress.state is None:
        return
    state, path, fix = progress.state, Path(run_dir) / runs.CHECKPOINT, runs.CHECKPOINT_FIX
    model = build_model(cfg, len(arrays.fine_names), torch.device("cpu"), fuse,
                        arrays.train_x.shape[1])
    optimizer = make_optimizer(cfg, model)
    layout = {k: v.dtype for k, v in model.peer_state_dicts()[0].items()}
    for i, peer in enumerate(state["peers"]):
        for k, v in peer.items():
            if k in layout and v.dtype != layout[k]:
                raise DamagedFile(path, f"peer {i}'s {[k]} has dtype {v.dtype}, the model's is "
                                        f"{layout[k]}", fix)
            if v.is_floating_point() and not torch.isfinite(v).all():
                raise DamagedFile(path, f"peer {i}'s {[k]} holds NaN or infinite values", fix)
    runs.load_checkpoint(run_dir, model, optimizer, fuse, torch.device("cpu"), state=state)
    for group in optimizer.param_groups:
        for name, want in (("momentum", cfg.momentum), ("weight_decay", cfg.weight_decay),
                           ("nesterov", cfg.momentum > 0)):  # as make_optimizer sets them
            check(group.get(name) == want, path, f"its optimizer's {name} is "
                                                 f"{group.get(name)!r}, the run's is {want!r}", fix)
        for param in group["params"]:
            buf = optimizer.state.get(param, {}).get("momentum_buffer")
            if buf is None:
                check(cfg.momentum == 0 or state["epoch"] == 0, path,
                      "its optimizer state lacks a momentum buffer for a parameter", fix)
                continue
            check(isinstance(buf, torch.Tensor) and buf.shape == param.shape, path,
                  "a momentum buffer in its optimizer state does not have its parameter's shape "
                  "and dtype", fix)
            check(bool(torch.isfinite(buf).all()), path,
                  "a momentum buffer in its optimizer state holds NaN or infinite values", fix)


def make_optimizer(cfg: Config, model, tensor_lr: bool = False) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum over all peers' parameters (SGD is per element, so one
    optimiser over K peers equals K optimisers). A tensor lr lets a compiled step follow the
    schedule without recompiling."""
    device = next(model.parameters()).device
    lr = torch.tensor(cfg.lr, device=device) if tensor_lr else cfg.lr
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=cfg.momentum,
                           nesterov=cfg.momentum > 0, weight_decay=cfg.weight_decay)


def set_lr(optimizer: torch.optim.Optimizer, lr: float, tensor: bool = False) -> None:
    """Set every group's lr; ``tensor`` keeps it a device tensor, updated in place, so that a
    compiled ``optimizer.step`` follows the schedule without recompiling (a run resumed with
    ``compile`` switched gets the lr type its step wants)."""
    for group in optimizer.param_groups:
        if not tensor:
            group["lr"] = float(lr)
        elif isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(lr)
        else:
            group["lr"] = torch.tensor(float(lr), device=group["params"][0].device)


def check_finite(row: dict, where: str, epoch: int) -> None:
    """Stop on a non-finite training or test loss, before anything of this epoch is saved (the
    test loss also catches weights broken by the epoch's last update). ``where`` names the
    checkpoint(s) that keep the last good epoch."""
    values = list(row["train_loss"]) + list(row.get("test_loss", []))
    if not all(math.isfinite(v) for v in values):
        kept = (f"{where} still holds epoch {epoch}; the lr cannot change on --resume, so start a "
                f"new run (another --out) with a lower --lr" if epoch else
                "no checkpoint was written (it stopped in its first epoch); start again with a "
                "lower --lr in a new folder, or delete this one first")
        raise FloatingPointError(
            f"non-finite loss in epoch {epoch + 1} (train {row['train_loss']}, test "
            f"{row.get('test_loss', 'not evaluated')}); the run stopped and {kept}")


def steps_per_epoch(cfg: Config, n_train: int) -> int:
    """Full batches per epoch (the last incomplete batch is dropped), capped by the config."""
    steps = n_train // cfg.batch_size
    if steps == 0:
        raise ValueError(f"batch_size: {cfg.batch_size} is larger than the train split "
                         f"({n_train} samples); allowed: 2..{n_train}")
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


def use_compile(cfg: Config, device: torch.device) -> bool:
    """``auto`` compiles on CUDA only: on a few CPU cores compiling does not pay off."""
    return cfg.compile in ("on", "graphs") or (cfg.compile == "auto" and device.type == "cuda")


def step_path(cfg: Config, device: torch.device) -> guard.StepPath:
    """The training step a run chooses on ``device``: peers, precision, compilation."""
    compiled = use_compile(cfg, device)
    return guard.StepPath(resolve_fuse(cfg.fuse, device), compiled, compiled and use_graphs(cfg),
                          device.type == "cuda")


def use_graphs(cfg: Config) -> bool:
    """``graphs`` also replays the compiled step as CUDA graphs (``mode="reduce-overhead"``);
    on a CPU inductor skips the graphs and the step runs compiled as with ``on``."""
    return cfg.compile == "graphs"


def train_one_epoch(stepper: Stepper, data, cfg: Config, superclass_of: torch.Tensor, epoch: int,
                    mix_params: dict, progress: bool = False) -> dict:
    """One pass over the train split; returns the epoch's mean losses and mixing statistics."""
    device = data.train_x.device
    gen = torch.Generator(device=device).manual_seed(stream_seed(cfg.seed, "epoch", epoch))
    steps = steps_per_epoch(cfg, data.train_x.shape[0])
    # draw the epoch: order, partners, ratios, crops (one sampler call, no per-step sync)
    plan = plan_epoch(data.train_y, cfg.batch_size, steps, cfg.method, superclass_of, gen,
                      mix_params, augment=cfg.augment, pad=data.pad)
    stepper.model.train()
    loss_sum = torch.zeros(cfg.peers, dtype=torch.float64, device=device)  # stays on the device
    same_sum = torch.zeros((), dtype=torch.float64, device=device)
    bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
               disable=not progress) if tqdm is not None else None
    t0 = time.perf_counter()
    for i in range(steps):
        losses, y, y_partner = stepper(plan, i)
        loss_sum += losses.double()
        same_sum += (superclass_of[y] == superclass_of[y_partner]).double().mean()
        if bar is not None:
            bar.update(1)
    peer_loss = (loss_sum / steps).tolist()  # the epoch's one host sync
    seconds = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    return {"train_loss": peer_loss, "train_loss_total": sum(peer_loss),
            "same_superclass_share": same_sum.item() / steps, "mean_lam": plan.lam.mean().item(),
            "steps": steps, "train_seconds": seconds, "images_per_s": steps * cfg.batch_size / seconds,
            "threads": torch.get_num_threads()}


#: Training top-1 is measured on at most this many training images (every ceil(N / this)-th):
#: enough to read the regime (0.3 points of standard error at 95 %) at a small share of an epoch.
TRAIN_EVAL_MAX = 10_000


def train_eval_index(n: int, device=None) -> torch.Tensor:
    """The training images whose top-1 is measured: every ``ceil(n / TRAIN_EVAL_MAX)``-th."""
    return torch.arange(0, n, -(-n // TRAIN_EVAL_MAX), device=device)


@torch.no_grad()
def predict(model, data, batch_size: int, device: torch.device, split: str = "test") -> torch.Tensor:
    """(K, N, C) float32 probabilities of every peer on the test split, or with ``split="train"``
    on the un-augmented, unmixed training images of :func:`train_eval_index`."""
    from sdml.data.batches import eval_batches, normalize

    model.eval()
    if split == "train":
        idx = train_eval_index(data.train_x.shape[0], data.train_x.device)
        images = data.train_x[idx]
        batches = (normalize(images[s:s + batch_size], data.mean, data.std)
                   for s in range(0, images.shape[0], batch_size))
    else:
        batches = (x for x, _, _ in eval_batches(data, batch_size))
    out = []
    for x in batches:
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(x)
        out.append(torch.softmax(logits.float(), dim=-1))
    return torch.cat(out, dim=1)


def train_accuracy(probs: torch.Tensor, y: torch.Tensor) -> dict:
    """Top-1 [%] of each peer and of their averaged prediction on training images (the regime:
    whether the peers fit their data).

    Args:
        probs: (K, N, C) probabilities on un-augmented, unmixed training images; y: (N,) labels.
    """
    return {"train_acc": (probs.argmax(-1) == y).float().mean(1).mul(100).tolist(),
            "ensemble_train_acc": (probs.mean(0).argmax(-1) == y).float().mean().mul(100).item()}


def is_eval_epoch(cfg: Config, epoch: int) -> bool:
    """Whether the 0-based ``epoch`` is evaluated: every ``eval_every``-th and the last."""
    return (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs


def evaluate_runs(model, data, cfg: Config, device: torch.device, reference_of: torch.Tensor,
                  runs_in_model: int = 1) -> list[dict]:
    """Test metrics (:func:`evaluate`) and training top-1 (:func:`train_accuracy`) of each of the
    ``runs_in_model`` runs whose peers the model stacks along its first output axis."""
    test = predict(model, data, cfg.eval_batch_size, device)  # (R*K, M, C)
    train = predict(model, data, cfg.eval_batch_size, device, split="train")  # (R*K, N', C)
    train_y = data.train_y[train_eval_index(data.train_x.shape[0], data.train_y.device)]
    rows = []
    for p, q in zip(test.unflatten(0, (runs_in_model, -1)), train.unflatten(0, (runs_in_model, -1))):
        rows.append({**evaluate(p, data.test_y, reference_of), **train_accuracy(q, train_y)})
    return rows


def evaluate(probs: torch.Tensor, y: torch.Tensor, superclass_of: torch.Tensor) -> dict:
    """Top-1 of each peer and of their averaged prediction, fine and superclass; test NLL.

    Args:
        probs: (K, N, C) probabilities; y: (N,) fine labels; superclass_of: (C,) ids.
    """
    sc = superclass_of.to(y.device)
    ens = probs.mean(0)  # (N, C) the peers' ensemble: averaged probabilities
    pred = probs.argmax(-1)  # (K, N)
    nll = -torch.log(probs.gather(-1, y.expand(probs.shape[0], -1).unsqueeze(-1)).clamp_min(1e-12))
    return {
        "test_acc": (pred == y).float().mean(1).mul(100).tolist(),
        "ensemble_acc": (ens.argmax(-1) == y).float().mean().mul(100).item(),
        "superclass_acc": (sc[pred] == sc[y]).float().mean(1).mul(100).tolist(),
        "ensemble_superclass_acc": (sc[ens.argmax(-1)] == sc[y]).float().mean().mul(100).item(),
        "test_loss": nll.squeeze(-1).mean(1).tolist(),
    }


def train(cfg: Config, run_dir: str | Path, resume: bool = False, progress: bool = True,
          log=print, on_epoch=None) -> list[dict]:
    """Train (or resume) the run in ``run_dir``; returns all metric rows of the run.

    ``log`` receives one summary line per epoch; ``on_epoch``, if given, each epoch's metric row
    once it is saved (notebooks use it to redraw learning curves).

    Writes ``config.json``, appends to ``metrics.jsonl`` and checkpoints atomically after every
    epoch; a non-finite loss stops the run with ``FloatingPointError`` and keeps the last good
    checkpoint.
    """
    from sdml.data.datasets import get_spec
    from sdml.data.load import dataset_for
    from sdml.hierarchy.resolve import resolve_superclasses

    progress_bar = progress
    run_dir = resume_mod.run_folder(run_dir)
    cfg.validate()
    resolve_device(cfg.device)  # fail before touching the run folder
    # setup: superclasses, data and mixing parameters (all validated before the folder is used)
    spec = get_spec(cfg.data)
    sc = resolve_superclasses(cfg.superclasses, cfg.wordnet_k, spec.classes)
    mix_params = resolve_mix_params(cfg)
    arrays = dataset_for(cfg)
    steps_per_epoch(cfg, len(arrays.train_y))  # a batch larger than the data fails here, early
    deps = resume_mod.depends(sc, resume_mod.dataset_identity(cfg.data, arrays))
    with resume_mod.claimed([run_dir]):  # this process alone, for the run's life
        # check the folder, then write: nothing changes in it unless every check passed
        record = resume_mod.check_record(run_dir, cfg, resume, deps)
        fuse = resolve_fuse(record.cfg.fuse, resolve_device(record.cfg.device))
        plain = not record.new and guard.fell_back(runs.read_record(run_dir))
        if plain:  # the step check made this run fall back when it started: it stays there
            fuse = guard.PLAIN.fuse
        progress = None if record.new else resume_mod.check_progress(run_dir, record.cfg, fuse)
        check_checkpoint_loads(run_dir, progress, record.cfg, fuse, arrays)
        resume_mod.begin(run_dir, record, progress)
        return _train_claimed(record.cfg, run_dir, progress, sc, mix_params, arrays, progress_bar,
                              log, on_epoch, plain)


def _train_claimed(cfg: Config, run_dir: Path, progress, sc, mix_params, arrays, progress_bar: bool,
                   log, on_epoch, plain: bool = False) -> list[dict]:
    """:func:`train` once the folder is claimed and checked."""
    from sdml.data.batches import to_device
    from sdml.data.datasets import get_spec
    from sdml.data.load import reference_superclasses

    spec = get_spec(cfg.data)

    device = resolve_device(cfg.device)
    if device.type == "cpu" or cfg.threads:
        from sdml.training.threads import cpu_threads

        torch.set_num_threads(cpu_threads(cfg.threads))
    data = to_device(arrays, device)
    superclass_of = sc.of.to(device)
    reference_of = reference_superclasses(spec).of.to(device)
    # check the chosen step against the plain one on one batch (see sdml.training.guard)
    path = step_path(cfg, device) if not plain else guard.PLAIN
    check = guard.check_step(cfg, path, data, superclass_of, mix_params,
                             step_builder(cfg, len(arrays.fine_names), device, arrays.train_x.shape[1]),
                             stream_seed(cfg.seed, "epoch", 0))
    if check is not None:
        guard.record(run_dir, check)
        if not check.passed:
            log(check.line())
            path = guard.PLAIN
    fuse, compiled = path.fuse, path.compiled
    model = build_model(cfg, len(arrays.fine_names), device, fuse, arrays.train_x.shape[1])
    if not path.amp:
        model = model.to(memory_format=torch.contiguous_format)
    optimizer = make_optimizer(cfg, model, tensor_lr=compiled)
    done = 0
    if progress is not None and progress.state is not None:
        done = runs.load_checkpoint(run_dir, model, optimizer, fuse, device, state=progress.state)
    lrs = lr_schedule(cfg)
    stepper = Stepper(model, optimizer, data, cfg.temperature, use_amp=path.amp,
                      compile=compiled, graphs=path.graphs, mutual_weight=cfg.mutual_weight)
    log(f"[sdml] run {run_dir} | {cfg.method} | {mode_text(cfg.mutual_weight)} | {cfg.peers} x ResNet-{cfg.depth} (width {cfg.width}, "
        f"{fuse}) | {cfg.data} | device {device}{thread_note()} | epochs {done + 1}..{cfg.epochs}")
    started = time.perf_counter()
    for epoch in range(done, cfg.epochs):
        set_lr(optimizer, lrs[epoch], tensor=stepper.compiled)
        # train
        row = {"epoch": epoch + 1, "lr": lrs[epoch]}
        row.update(train_one_epoch(stepper, data, cfg, superclass_of, epoch, mix_params, progress_bar))
        # evaluate (test split, training top-1) on eval epochs; superclass accuracy uses the
        # dataset's reference superclasses (its own, else its default WordNet grouping)
        if is_eval_epoch(cfg, epoch):
            row.update(evaluate_runs(model, data, cfg, device, reference_of)[0])
        check_finite(row, str(run_dir / runs.CHECKPOINT), epoch)
        # log, then checkpoint (a kill in between is repaired on resume by trimming the log)
        runs.append_metrics(run_dir, row)
        runs.save_checkpoint(run_dir, epoch + 1, model, optimizer, fuse)
        log(summary_line(row, cfg.epochs)
            + eta_note("run", time.perf_counter() - started, epoch + 1 - done, cfg.epochs - done))
        if on_epoch is not None:
            on_epoch(row)
    if done < cfg.epochs or not (run_dir / runs.PREDICTIONS).exists():
        probs = predict(model, data, cfg.eval_batch_size, device)
        runs.save_predictions(run_dir, probs, data.test_y, data.test_coarse)
    return runs.read_metrics(run_dir)


def resolve_mix_params(cfg: Config) -> dict:
    params = cfg.mix_params()
    if cfg.method == "superclass-soft":
        from sdml.data.datasets import get_spec
        from sdml.hierarchy.wordnet import load_similarity, normalised_similarity

        params["similarity"] = normalised_similarity(
            load_similarity(dataset=get_spec(cfg.data).classes))
    return params


def mode_text(mutual_weight: float) -> str:
    """How the peers learn: ``DML`` (weight 1), ``independent`` (0) or ``DML, KL weight w``."""
    if mutual_weight == 0:
        return "independent"
    return "DML" if mutual_weight == 1 else f"DML, KL weight {mutual_weight:g}"


def thread_note() -> str:
    return f" ({torch.get_num_threads()} threads)"


def summary_line(row: dict, epochs: int) -> str:
    losses = " ".join(f"{v:.3f}" for v in row["train_loss"])
    head = f"epoch {row['epoch']:>3}/{epochs} lr {row['lr']:.4g} loss {losses}"
    speed = f"{row['images_per_s']:.0f} img/s"
    if "test_acc" not in row:  # not an eval epoch
        return f"{head} | {speed}"
    accs = " ".join(f"{a:.2f}" for a in row["test_acc"])
    fit = " ".join(f"{a:.1f}" for a in row["train_acc"]) if "train_acc" in row else "-"
    return (f"{head} | train top-1 {fit} | test top-1 {accs} ens {row['ensemble_acc']:.2f} | "
            f"superclass {row['ensemble_superclass_acc']:.2f} | {speed}")
