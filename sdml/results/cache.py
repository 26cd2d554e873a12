"""Results computed from a run folder, cached beside it and recomputed only when stale.

A cache file holds ``{"key": key, "value": value}``; the key names everything the value depends
on (the checkpoint's digest, the settings of the analysis), so a retrained run or other settings
recompute it, and an unchanged run reads it back. Files are written atomically and read with
``weights_only=True``: a cache holds tensors, numbers, strings, lists and dicts only.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

from sdml.io.atomic import atomic_torch_save
from sdml.io.readback import damage_named, read_torch

CACHE_FIX = "delete it; it is computed again from the run's checkpoint"


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


def read_cached(path: str | Path, key: dict, check_value: Callable[[Any], None] | None = None
                ) -> Any | None:
    """The cached value at ``path`` if its key equals ``key``; None when missing or stale (a key
    of other settings or another checkpoint).

    A file that is not a cache the kit wrote raises :class:`~sdml.io.readback.DamagedFile` naming it, as does a
    value that ``check_value`` refuses (it raises ``ValueError`` or ``TypeError`` saying why).
    """
    path = Path(path)
    if not path.is_file():
        return None
    saved = read_torch(path, CACHE_FIX, ("key", "value"))
    with damage_named(path, CACHE_FIX, "its 'key' is not a dict of settings"):
        if not isinstance(saved["key"], dict):
            raise TypeError(f"a {type(saved['key']).__name__}")
        stale = bool(saved["key"] != key)  # a tensor hidden in a key cannot be compared
    if stale:
        return None
    if check_value is not None:
        with damage_named(path, CACHE_FIX, "holds a value that is not what it should be"):
            check_value(saved["value"])
    return saved["value"]


def cached(path: str | Path, key: dict, compute: Callable[[], Any],
           check_value: Callable[[Any], None] | None = None) -> Any:
    """``compute()``'s value, read from ``path`` when its key equals ``key`` (and the value
    passes ``check_value``), else computed and written there (atomically) under ``key``."""
    value = read_cached(path, key, check_value)
    if value is None:
        value = compute()
        atomic_torch_save({"key": key, "value": value}, path)
    return value

