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
from sdml.io.atomic import atomic_torch_save, atomic_write_json, atomic_write_text

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINT = "checkpoint.pt"
PREDICTIONS = "predictions.pt"
#: Fields that may differ when a run is resumed (they do not change what is computed).
RESUMABLE = ("epochs", "device", "threads", "compile", "data_dir", "download")


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
    """Versions and revision recorded beside every result."""
    import torchvision

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "platform": platform.platform(),
            "git": git_revision()}
    if torch.cuda.is_available():
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def start(run_dir: Path, cfg: Config, resume: bool, extra: dict | None = None) -> tuple[Config, int]:
    """Prepare ``run_dir`` for training; returns the config to use and the first epoch to run.

    A folder holding another run is never overwritten: without ``resume`` it is refused.
    """
    run_dir = Path(run_dir)
    cfg_path = run_dir / CONFIG
    if cfg_path.exists():
        if not resume:
            raise ValueError(f"out: {str(run_dir)!r} already holds a run; pass --resume to continue "
                             f"it, or choose another --out")
        saved = from_dict(json.loads(cfg_path.read_text())["config"])
        for name, value in cfg.to_dict().items():
            if name in RESUMABLE or name == "profile":
                continue
            if saved.to_dict()[name] != value:
                raise ValueError(f"{name}: {value!r} differs from the run being resumed "
                                 f"({saved.to_dict()[name]!r}); only {', '.join(RESUMABLE)} may change")
        for name in RESUMABLE:
            setattr(saved, name, getattr(cfg, name))
        cfg = saved.validate()
        record = json.loads(cfg_path.read_text())
        if record["config"] != cfg.to_dict():  # e.g. more epochs: the folder says what it holds
            record["config"] = cfg.to_dict()
            record.setdefault("resumed_with", []).append(provenance())
            atomic_write_json(cfg_path, record)
        first = load_checkpoint_epoch(run_dir)
        trim_metrics(run_dir, first)
        return cfg, first
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cfg_path, {"config": cfg.to_dict(), "provenance": provenance(), "seed": cfg.seed,
                                 **(extra or {})})
    (run_dir / METRICS).unlink(missing_ok=True)
    return cfg, 0


def load_checkpoint_epoch(run_dir: Path) -> int:
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return 0
    # mmap: reading the epoch does not read the weights and optimizer state from disk
    return int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"])


def save_checkpoint(run_dir: Path, epoch: int, model, optimizer, fuse: str) -> None:
    """Write the state after ``epoch`` finished epochs, atomically."""
    atomic_torch_save({"epoch": epoch, "fuse": fuse, "peers": model.peer_state_dicts(),
                       "optimizer": optimizer.state_dict()}, Path(run_dir) / CHECKPOINT)


def load_checkpoint(run_dir: Path, model, optimizer, fuse: str, device) -> int:
    """Restore model and optimizer from ``run_dir``; returns the number of finished epochs."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return 0
    state = torch.load(path, map_location=device, weights_only=True)
    if state["fuse"] != fuse:
        raise ValueError(f"fuse: {fuse!r} differs from the checkpoint's {state['fuse']!r}; "
                         f"resume with --fuse {state['fuse']}")
    model.load_peer_state_dicts(state["peers"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"])


def save_predictions(run_dir: Path, probs: torch.Tensor, y: torch.Tensor, coarse: torch.Tensor) -> None:
    """The peers' (K, N, C) test probabilities (float32) with the labels, written atomically."""
    atomic_torch_save({"probs": probs.float().cpu(), "y": y.cpu(), "coarse": coarse.cpu()},
                      Path(run_dir) / PREDICTIONS)


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / METRICS
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_metrics(run_dir: Path, row: dict) -> None:
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(row) + "\n")


def trim_metrics(run_dir: Path, epochs_done: int) -> None:
    """Drop metric lines of epochs whose checkpoint was never written (a kill between the two)."""
    rows = [r for r in read_metrics(run_dir) if r["epoch"] <= epochs_done]
    atomic_write_text(Path(run_dir) / METRICS, "".join(json.dumps(r) + "\n" for r in rows))


def read_config(run_dir: Path) -> Config:
    return from_dict(json.loads((Path(run_dir) / CONFIG).read_text())["config"])


def superclasses_name(superclasses: str) -> str:
    """A superclasses source's short name: ``cifar``, ``wordnet`` or a JSON mapping's file stem."""
    return superclasses if superclasses in ("cifar", "wordnet") else Path(superclasses).stem


def run_name(method: str, superclasses: str, seed: int) -> str:
    """``<method>-<superclasses>-seed<seed>``, superclasses by :func:`superclasses_name`."""
    return f"{method}-{superclasses_name(superclasses)}-seed{seed}"
