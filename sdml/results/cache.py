"""Results computed from a run folder, cached beside it and recomputed only when stale.

A cache file holds ``{"key": key, "value": value}``; the key names everything the value depends
on (the checkpoint's digest, the settings of the analysis), so a retrained run or other settings
recompute it, and an unchanged run reads it back. Files are written atomically and read with
``weights_only=True``: a cache holds tensors, numbers, strings, lists and dicts only.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any, Callable

import torch

from sdml.io.atomic import atomic_torch_save


def file_digest(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks; a missing file raises FileNotFoundError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file; train the run (notebook 04) first")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_cached(path: str | Path, key: dict) -> Any | None:
    """The cached value at ``path`` if its key equals ``key``; None when missing or stale."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError):  # truncated or foreign: stale
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        return None
    return saved["value"]


def cached(path: str | Path, key: dict, compute: Callable[[], Any]) -> Any:
    """``compute()``'s value, read from ``path`` when its key equals ``key``, else computed and
    written there (atomically) under ``key``."""
    value = read_cached(path, key)
    if value is None:
        value = compute()
        atomic_torch_save({"key": key, "value": value}, path)
    return value
