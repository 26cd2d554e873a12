"""Run folders: provenance, checkpoints and the metrics log.

A run folder holds ``config.json`` (resolved config, versions, git revision, seed),
``metrics.jsonl`` (one JSON line per finished epoch), ``checkpoint.pt`` (written atomically after
every epoch) and, once training ends, ``predictions.pt`` (the peers' test probabilities).
"""
from __future__ import annotations

import json
import platform
import subprocess
from pathlib import Path

import torch

from sdml.training.config import Config, from_dict
from sdml.io.atomic import atomic_torch_save, atomic_write_text
from sdml.io.readback import (DamagedFile, check, damage_named, is_int, is_number, read_json,
                              read_jsonl, read_torch)

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
PREDICTIONS = "predictions.pt"
#: Fields that may differ when a run is resumed (they do not change what is computed).
RESUMABLE = ("epochs", "device", "threads", "compile", "data_dir", "download", "eval_every")


#: What counts as code for provenance: a change elsewhere (figures, docs) leaves a run "clean".
CODE_PATHS = ("sdml", "notebooks", "tests", "benchmarks", "requirements.txt", "pyproject.toml",
              "Makefile")


def _notebook_sources(text: str) -> list | None:
    """A notebook's cell types and sources: what a notebook's code is (outputs are not)."""
    try:
        return [(c.get("cell_type"), "".join(c.get("source", []))) for c in json.loads(text)["cells"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def git_revision() -> str | None:
    """The repository's HEAD commit, with '-dirty' when its code (:data:`CODE_PATHS`) has local
    changes; a notebook counts as changed only if its cells' sources differ (an autosave that
    adds outputs does not)."""
    root = Path(__file__).resolve().parents[2]

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=5)

    try:
        rev = git("rev-parse", "HEAD")
        if rev.returncode != 0:
            return None
        changed = git("diff", "HEAD", "--name-only", "--", *CODE_PATHS).stdout.split()
        dirty = False
        for name in changed:
            if not name.endswith(".ipynb") or not (root / name).is_file():
                dirty = True
                break
            committed = git("show", f"HEAD:{name}")
            if committed.returncode != 0 or (_notebook_sources(committed.stdout)
                                             != _notebook_sources((root / name).read_text())):
                dirty = True
                break
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict:
    """Versions and revision recorded beside every result (torchvision's from its package
    metadata: importing it costs seconds per run and nothing in training needs it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        vision = version("torchvision")
    except PackageNotFoundError:
        vision = None
    info = {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": vision, "platform": platform.platform(),
            "git": git_revision()}
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def load_checkpoint_epoch(run_dir: Path) -> int:
    """The finished epochs of the run's checkpoint (0 without one)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return 0
    # mmap: reading the epoch does not read the weights and optimizer state from disk
    return read_checkpoint(path, mmap=True)["epoch"]


def save_checkpoint(run_dir: Path, epoch: int, model, optimizer, fuse: str) -> None:
    """Write the state after ``epoch`` finished epochs, atomically."""
    atomic_torch_save({"epoch": epoch, "fuse": fuse, "peers": model.peer_state_dicts(),
                       "optimizer": optimizer.state_dict()}, Path(run_dir) / CHECKPOINT)


def load_checkpoint(run_dir: Path, model, optimizer, fuse: str, device, state: dict | None = None) -> int:
    """Restore model and optimizer from ``run_dir`` (or from its ``state`` already read and
    checked by :func:`sdml.training.resume.check_progress`); returns the finished epochs."""
    path = Path(run_dir) / CHECKPOINT
    if state is None:
        if not path.exists():
            return 0
        state = read_checkpoint(path, map_location=device)
    if state["fuse"] != fuse:
        raise ValueError(f"fuse: {fuse!r} differs from the checkpoint's {state['fuse']!r}; "
                         f"resume with --fuse {state['fuse']}")
    try:
        model.load_peer_state_dicts(state["peers"])
        optimizer.load_state_dict(state["optimizer"])
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as err:
        raise DamagedFile(path, f"does not fit this run's model ({type(err).__name__}: "
                                f"{' '.join(str(err).split())[:160]})", CHECKPOINT_FIX) from None
    return int(state["epoch"])


CHECKPOINT_FIX = ("delete it to train the run again from epoch 0 (its metrics are trimmed to "
                  "match), or restore it from a copy")
METRICS_FIX = "restore it from a copy, or move the run folder away and start a new run"
CONFIG_FIX = ("the run's settings are lost: restore the file from a copy, or move the run folder "
              "away and start a new run")


def read_checkpoint(path: Path, map_location="cpu", mmap: bool = False) -> dict:
    """A checkpoint read and checked: its keys, ``epoch`` a count of finished epochs, ``peers``
    two or more state dicts of tensors with the same names, shapes and dtypes (each with a
    linear head ``fc.weight`` (C, F) and a first convolution ``conv1.weight`` (W, in, k, k)),
    and an optimizer state with its ``state`` and ``param_groups``."""
    import torch

    state = read_torch(path, CHECKPOINT_FIX, ("epoch", "fuse", "peers", "optimizer"),
                       map_location=map_location, mmap=mmap)
    epoch, peers, opt = state["epoch"], state["peers"], state["optimizer"]
    check(is_int(epoch) and epoch >= 0, path, f"its epoch {epoch!r} is not a count of finished "
                                              f"epochs", CHECKPOINT_FIX)
    check(isinstance(peers, list) and len(peers) >= 2 and all(isinstance(p, dict) for p in peers),
          path, "its 'peers' is not a list of two or more state dicts", CHECKPOINT_FIX)
    check(isinstance(opt, dict) and isinstance(opt.get("state"), dict)
          and isinstance(opt.get("param_groups"), list), path,
          "its optimizer state is malformed (no 'state' dict or 'param_groups' list)", CHECKPOINT_FIX)
    check(isinstance(state["fuse"], str), path, "its fuse mode is not a string", CHECKPOINT_FIX)
    layout = {k: (tuple(v.shape), v.dtype) for k, v in peers[0].items() if isinstance(v, torch.Tensor)}
    for i, peer in enumerate(peers):
        check(all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in peer.items()), path,
              f"peer {i}'s state holds something other than named tensors", CHECKPOINT_FIX)
        got = {k: (tuple(v.shape), v.dtype) for k, v in peer.items()}
        check(got == layout, path, f"peer {i}'s tensors differ in names, shapes or dtypes from "
                                   f"peer 0's", CHECKPOINT_FIX)
    fc, conv = layout.get("fc.weight"), layout.get("conv1.weight")
    check(fc is not None and len(fc[0]) == 2 and fc[1].is_floating_point and min(fc[0]) > 0
          and conv is not None and len(conv[0]) == 4 and min(conv[0]) > 0, path,
          "its peers have no linear head 'fc.weight' (C, F) or first convolution "
          "'conv1.weight' (W, in, k, k)", CHECKPOINT_FIX)
    return state


def check_checkpoint_fits(path: Path, state: dict, cfg: Config) -> None:
    """The checkpoint holds ``cfg.peers`` peers of ``cfg.width`` channels (its shapes match the
    config the run folder records), else :class:`DamagedFile` naming it."""
    peers, conv = state["peers"], state["peers"][0]["conv1.weight"]
    check(len(peers) == cfg.peers and int(conv.shape[0]) == cfg.width, path,
          f"holds {len(peers)} peers of width {int(conv.shape[0])}, but the run's config.json "
          f"says {cfg.peers} of width {cfg.width}", CHECKPOINT_FIX)


def save_predictions(run_dir: Path, probs: torch.Tensor, y: torch.Tensor, coarse: torch.Tensor) -> None:
    """The peers' (K, N, C) test probabilities (float32) with the labels, written atomically."""
    atomic_torch_save({"probs": probs.float().cpu(), "y": y.cpu(), "coarse": coarse.cpu()},
                      Path(run_dir) / PREDICTIONS)


PREDICTIONS_FIX = "delete it and run `--resume` to predict again from the checkpoint"


def read_predictions(run_dir: Path) -> dict:
    """``predictions.pt`` read and checked: ``probs`` (K, N, C) floating, finite, in [0, 1], with
    ``y`` and ``coarse`` (N,) integer labels, ``y`` in 0..C-1."""
    import torch

    path = Path(run_dir) / PREDICTIONS
    pred = read_torch(path, PREDICTIONS_FIX, ("probs", "y", "coarse"))
    probs, y, coarse = pred["probs"], pred["y"], pred["coarse"]
    tensors = all(isinstance(t, torch.Tensor) for t in (probs, y, coarse))
    check(tensors and probs.dim() == 3 and probs.is_floating_point() and min(probs.shape) > 0, path,
          "its 'probs' is not a (K, N, C) floating tensor", PREDICTIONS_FIX)
    n, c = probs.shape[1], probs.shape[2]
    for name, t in (("y", y), ("coarse", coarse)):
        check(t.shape == (n,) and not t.is_floating_point() and not t.is_complex()
              and t.dtype != torch.bool, path,
              f"its {name!r} is not ({n},) integer labels (got {t.dtype} {tuple(t.shape)})",
              PREDICTIONS_FIX)
    check(bool(((y >= 0) & (y < c)).all()), path, f"its labels 'y' are not all in 0..{c - 1}",
          PREDICTIONS_FIX)
    check(bool(torch.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()), path,
          "its 'probs' are not all finite probabilities in [0, 1]", PREDICTIONS_FIX)
    return pred


#: Metrics that a row holds as one number or a list of one per peer, and their allowed range.
METRIC_RANGES = {"lr": (0.0, float("inf")), "train_loss": (0.0, float("inf")),
                 "test_loss": (0.0, float("inf")), "test_acc": (0.0, 100.0),
                 "superclass_acc": (0.0, 100.0), "ensemble_acc": (0.0, 100.0),
                 "ensemble_superclass_acc": (0.0, 100.0)}


def check_metrics_row(path: Path, n: int, row: dict) -> None:
    """Row ``n`` of a metrics log: ``epoch`` a positive integer, and each metric of
    :data:`METRIC_RANGES` it holds a finite number (or list of them) in its range."""
    check(is_int(row["epoch"]) and row["epoch"] >= 1, path,
          f"row {n} has epoch {row['epoch']!r}, not an integer of 1 or more", METRICS_FIX)
    for key, (lo, hi) in METRIC_RANGES.items():
        if key not in row:
            continue
        value = row[key]
        values = value if isinstance(value, list) else [value]
        ok = bool(values) and all(is_number(v) and lo <= v <= hi for v in values)
        check(ok, path, f"row {n} has {key} {str(value)[:60]}, not finite number(s) in "
                        f"[{lo:g}, {hi:g}]", METRICS_FIX)


def read_metrics(run_dir: Path) -> list[dict]:
    """The rows of ``metrics.jsonl`` (none when it is missing); a line cut by a kill during an
    append is left out (``--resume`` removes it from the file)."""
    return read_metrics_cut(run_dir)[0]


def read_metrics_cut(run_dir: Path) -> tuple[list[dict], bool]:
    """:func:`read_metrics` and whether the last line was cut short."""
    path = Path(run_dir) / METRICS
    if not path.exists():
        return [], False
    rows, cut = read_jsonl(path, METRICS_FIX, required=("epoch",))
    for n, row in enumerate(rows, 1):
        check_metrics_row(path, n, row)
    return rows, cut


def append_metrics(run_dir: Path, row: dict) -> None:
    """One line more; a kill or a full disk mid-line leaves a cut last line, which ``--resume``
    removes (:func:`sdml.io.readback.read_jsonl`)."""
    path = Path(run_dir) / METRICS
    try:
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise


def write_metrics(run_dir: Path, rows: list[dict]) -> None:
    atomic_write_text(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in rows))


def read_record(run_dir: Path) -> dict:
    """``config.json`` read and checked (:func:`_checked_record`)."""
    return _checked_record(Path(run_dir) / CONFIG, CONFIG_FIX)


def read_config_file(path: str | Path) -> Config:
    """The config a run recorded, from its ``config.json`` (or the run folder holding it), to
    train it again; a damaged or foreign file is a one-line error naming it."""
    path = Path(path)
    if path.is_dir():
        path = path / CONFIG
    return from_dict(_checked_record(path, "give the config.json of a run folder this kit wrote")["config"])


def _checked_record(path: Path, fix: str) -> dict:
    """A JSON object whose ``config`` is a valid config (:func:`sdml.training.config.from_dict`:
    known fields, types, finite numbers in range), and whose ``superclasses``, ``provenance`` and
    ``ddp``, when present, are objects."""
    record = read_json(path, fix)
    if not isinstance(record.get("config"), dict):
        raise DamagedFile(path, "has no 'config' object", fix)
    with damage_named(path, fix, "its config is not valid"):
        from_dict(record["config"])
    for key in ("superclasses", "provenance", "ddp"):
        check(isinstance(record.get(key, {}), dict), path, f"its {key!r} is not an object", fix)
    return record


def read_config(run_dir: Path) -> Config:
    return from_dict(read_record(run_dir)["config"])


def superclasses_name(superclasses: str) -> str:
    """A superclasses source's short name: ``cifar``, ``wordnet`` or a JSON mapping's file stem."""
    return superclasses if superclasses in ("cifar", "wordnet") else Path(superclasses).stem


def run_name(method: str, superclasses: str, seed: int, mutual_weight: float = 1.0) -> str:
    """``<method>-<superclasses>-seed<seed>``, superclasses by :func:`superclasses_name`; a weight
    of the mutual term other than DML's 1 adds ``-kl<weight>`` before the seed (``-kl0``: the
    independent control)."""
    kl = "" if mutual_weight == 1 else f"-kl{mutual_weight:g}"
    return f"{method}-{superclasses_name(superclasses)}{kl}-seed{seed}"
