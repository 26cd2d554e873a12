"""A run's trained peers read back, and their penultimate features of the test split.

The penultimate layer of a CIFAR ResNet is the output of its last stage averaged over space: the
vector its linear head reads (``logits = fc(features)``). :func:`test_features` gives it for every
peer and test image; :func:`run_features` caches it in the run folder as ``features.pt``, beside
``predictions.pt``, keyed by the checkpoint's digest and the data's identity
(:attr:`TrainedRun.cache_key`), so it is computed once per trained run and again only when the
run's weights or its data change; :func:`load_trained` refuses data other than the run's.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from sdml.data.batches import DeviceData, eval_batches, to_device
from sdml.hierarchy.superclasses import Superclasses, from_json
from sdml.io.readback import damage_named, expect_tensor
from sdml.results.cache import cached, file_digest
from sdml.training import runs
from sdml.training.config import Config, from_dict

FEATURES = "features.pt"


@dataclass(frozen=True)
class TrainedRun:
    """A finished run folder with its peers loaded and its test split on their device."""

    path: Path
    config: Config
    peers: list[nn.Module]          # K networks in eval mode, each ``x -> logits (B, C)``
    data: DeviceData                # the run's dataset (test split used here)
    class_names: tuple[str, ...]    # the dataset's classes, in label order
    superclasses: Superclasses      # the superclasses the run mixed with
    digest: str                     # sha256 of checkpoint.pt
    dataset: dict | None = None     # the identity of ``data`` (sdml.training.resume.dataset_identity)

    @property
    def label(self) -> str:
        return self.path.name

    @property
    def cache_key(self) -> dict:
        """What every cache of this run is keyed by, besides its own settings: the checkpoint,
        the data it is evaluated on and the superclasses (pairs are drawn by them)."""
        return {"checkpoint": self.digest, "data": (self.dataset or {}).get("sha256"),
                "superclasses": self.superclasses.superclass_names,
                "superclass_of": self.superclasses.of.tolist()}


def load_peers(run_dir: str | Path, device: torch.device | str = "cpu") -> list[nn.Module]:
    """The K trained peers of ``run_dir`` (``checkpoint.pt``, read with ``weights_only=True``)
    as separate networks in eval mode, built as training builds them."""
    from sdml.training.train import build_model

    run_dir, device = Path(run_dir), torch.device(device)
    cfg = runs.read_config(run_dir)
    path = run_dir / runs.CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint; train the run (notebook 04) first")
    state = runs.read_checkpoint(path, map_location=device)  # checked; weights_only=True
    runs.check_checkpoint_fits(path, state, cfg)
    first = state["peers"][0]
    num_classes, in_channels = int(first["fc.weight"].shape[0]), int(first["conv1.weight"].shape[1])
    # a checkpoint holds plain per-peer weights whichever layout trained them
    model = build_model(cfg, num_classes, device, "loop", in_channels)
    with damage_named(path, runs.CHECKPOINT_FIX, "does not fit the run's model"):
        model.load_peer_state_dicts(state["peers"])
    model.eval()
    return list(model.peers)


def run_superclasses(run_dir: str | Path) -> Superclasses:
    """The superclass mapping a run mixed with, as its ``config.json`` recorded it."""
    path = Path(run_dir) / runs.CONFIG
    saved = runs.read_record(run_dir)  # checked: a damaged file is one line naming it
    if "superclasses" in saved:
        mapping = saved["superclasses"]
        with damage_named(path, runs.CONFIG_FIX, "its 'superclasses' is not a valid mapping"):
            return from_json(mapping, source="superclasses", dataset=mapping.get("dataset", "cifar100"))
    from sdml.data.datasets import get_spec
    from sdml.hierarchy.resolve import resolve_superclasses

    cfg = saved["config"]
    return resolve_superclasses(cfg["superclasses"], cfg["wordnet_k"], get_spec(cfg["data"]).classes)


def load_trained(run_dir: str | Path, data_dir: str | Path | None = None,
                 device: torch.device | str = "cpu", datasets: dict | None = None) -> TrainedRun:
    """Read a run folder back: config, peers, superclasses and its dataset on ``device``.

    Args:
        data_dir: where the dataset lives now (None: the folder the run was trained with);
            nothing is downloaded.
        datasets: a dict shared between calls, so runs of one dataset load it once.
    """
    from sdml.data.load import dataset_for
    from sdml.training.resume import check_dataset, dataset_identity

    run_dir, device = Path(run_dir), torch.device(device)
    record = runs.read_record(run_dir)
    cfg = from_dict(record["config"])
    source = dataclasses.replace(cfg, download=False,
                                 data_dir=str(data_dir) if data_dir is not None else cfg.data_dir)
    # runs whose data fields agree read the same arrays (dataset, folder, sizes, subset)
    key = (str(device),) + tuple(sorted((k, str(v)) for k, v in source.to_dict().items()
                                        if k.startswith(("data", "synthetic_")) or k.endswith("_per_class")))
    store = datasets if datasets is not None else {}
    if key not in store:
        arrays = dataset_for(source)
        store[key] = (to_device(arrays, device), tuple(arrays.fine_names),
                      dataset_identity(cfg.data, arrays))
    data, names, identity = store[key]
    check_dataset(run_dir, record, source.data_dir, identity)  # before any cache of it is read
    return TrainedRun(run_dir, cfg, load_peers(run_dir, device), data, names,
                      run_superclasses(run_dir), file_digest(run_dir / runs.CHECKPOINT), identity)


@torch.no_grad()
def penultimate(peer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, F) features the peer's linear head reads: ``peer.fc(penultimate(peer, x)) == peer(x)``."""
    return peer.features(x)


@torch.no_grad()
def test_features(peers: list[nn.Module], data: DeviceData, batch_size: int = 500) -> torch.Tensor:
    """(K, N, F) float32 penultimate features of every peer on the test split, in test order."""
    for peer in peers:
        peer.eval()
    out = [torch.stack([penultimate(p, x).float() for p in peers]).cpu()  # (K, B, F)
           for x, _, _ in eval_batches(data, batch_size)]
    return torch.cat(out, dim=1)


def run_features(trained: TrainedRun, batch_size: int = 500) -> dict[str, torch.Tensor]:
    """``{"features": (K, N, F), "y": (N,), "coarse": (N,)}`` of a trained run, from the run's
    ``features.pt`` when it was computed from the same checkpoint, else computed and written."""
    key = {**trained.cache_key, "n_test": int(trained.data.test_y.shape[0]), "layer": "penultimate"}

    def compute() -> dict[str, torch.Tensor]:
        return {"features": test_features(trained.peers, trained.data, batch_size),
                "y": trained.data.test_y.cpu(), "coarse": trained.data.test_coarse.cpu()}

    return cached(trained.path / FEATURES, key, compute,
                  lambda value: check_features(value, len(trained.peers), key["n_test"]))


def check_features(value, k: int, n: int) -> None:
    """Raise ``ValueError`` unless ``value`` is ``{"features": (k, n, F) finite floats, "y": (n,),
    "coarse": (n,)}`` (what :func:`run_features` caches)."""
    if not isinstance(value, dict) or set(value) != {"features", "y", "coarse"}:
        raise ValueError("not a dict of 'features', 'y' and 'coarse'")
    expect_tensor(value["features"], "features", (k, n, None), floating=True, finite=True)
    expect_tensor(value["y"], "y", (n,), floating=False)
    expect_tensor(value["coarse"], "coarse", (n,), floating=False)
