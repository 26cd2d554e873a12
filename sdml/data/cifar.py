"""CIFAR-100 from its python archive (or the synthetic dataset in the same format), in memory.

The archive (``cifar-100-python.tar.gz``) holds three pickles: ``train`` and ``test`` (keys
``data``: uint8 N x 3072 channel-major RGB rows, ``fine_labels``, ``coarse_labels``) and ``meta``
(``fine_label_names``, ``coarse_label_names``). :func:`read_archive` checks the archive's md5
before anything is unpickled, and unpickles with an allow-list of numpy globals only.
:mod:`sdml.data.synthetic` writes archives of the same format for runs without the real data;
:mod:`sdml.data.batches` puts a dataset on its device.
"""
from __future__ import annotations

import codecs
import hashlib
import io
import os
import pickle
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from sdml.hierarchy.superclasses import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE

ARCHIVE_NAME = "cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
#: Archive members read by :func:`read_archive`, by split.
MEMBERS = {"train": "cifar-100-python/train", "test": "cifar-100-python/test",
           "meta": "cifar-100-python/meta"}
DATASETS = ("cifar100", "synthetic")


@dataclass(frozen=True)
class CifarArrays:
    """One CIFAR-100-format dataset in memory (numpy)."""

    train_x: np.ndarray       # (N, 3, H, W) uint8
    train_y: np.ndarray       # (N,) int64 fine labels
    train_coarse: np.ndarray  # (N,) int64 superclass labels
    test_x: np.ndarray        # (M, 3, H, W) uint8
    test_y: np.ndarray        # (M,) int64
    test_coarse: np.ndarray   # (M,) int64
    fine_names: tuple[str, ...]
    coarse_names: tuple[str, ...]


# ----------------------------------------------------------------------------- archive reading

def file_md5(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_md5(path: str | Path, expected: str) -> None:
    """Raise ``ValueError`` naming the file and both checksums unless ``md5(path) == expected``."""
    actual = file_md5(path)
    if actual != expected:
        raise ValueError(f"{path}: md5 is {actual}, expected {expected}; the file is corrupt or "
                         f"not the archive it claims to be, so it is refused (delete it and fetch "
                         f"or generate it again)")


# Objects a numpy-array pickle may name. They are taken from numpy's own reductions so that the
# private module they live in (numpy.core in 1.x, numpy._core in 2.x) does not matter here.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
_SCALAR = np.uint8(0).__reduce__()[0]
_FROMBUFFER = np.empty(1).__reduce_ex__(5)[0]
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    # Python 3 writes bytes at pickle protocol 2 as _codecs.encode(text, "latin1").
    ("_codecs", "encode"): codecs.encode,
    **{key: obj for pkg in ("numpy.core", "numpy._core") for key, obj in (
        ((f"{pkg}.multiarray", "_reconstruct"), _RECONSTRUCT),
        ((f"{pkg}.multiarray", "scalar"), _SCALAR),
        ((f"{pkg}.numeric", "_frombuffer"), _FROMBUFFER))},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only the globals numpy arrays need (defence beyond the md5)."""

    def __init__(self, data: bytes, where: str):
        super().__init__(io.BytesIO(data), encoding="latin1")
        self.where = where

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ValueError(f"{self.where}: the pickle refers to {module}.{name}, which is not "
                             f"allowed; only numpy array globals are") from None


def _unpickle(data: bytes, where: str) -> dict:
    """Unpickle one archive member with :class:`_RestrictedUnpickler`; keys become ``str``."""
    obj = _RestrictedUnpickler(data, where).load()
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected a pickled dict, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_members(path: Path) -> dict[str, bytes]:
    """The bytes of the :data:`MEMBERS` of a .tar.gz, in one streaming pass, no extraction."""
    wanted = {name: split for split, name in MEMBERS.items()}
    found: dict[str, bytes] = {}
    with tarfile.open(path, "r|gz") as tar:
        for member in tar:
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts:
                raise ValueError(f"{path}: member {member.name!r} has an unsafe path; refused")
            split = wanted.get(str(name))
            if split is None:
                continue
            if not member.isfile() or split in found:
                raise ValueError(f"{path}: member {member.name!r} is not a single regular file")
            found[split] = tar.extractfile(member).read()
    missing = [MEMBERS[s] for s in MEMBERS if s not in found]
    if missing:
        raise ValueError(f"{path}: member(s) {missing} missing; not a CIFAR-100 python archive")
    return found


def _split_arrays(d: dict, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (N, 3, H, W) uint8, fine (N,), coarse (N,)) from one unpickled split."""
    for key in ("data", "fine_labels", "coarse_labels"):
        if key not in d:
            raise ValueError(f"{where}: key {key!r} missing (keys: {sorted(d)})")
    data = np.asarray(d["data"])
    n = data.shape[0] if data.ndim == 2 else -1
    side = int(round((data.shape[-1] / 3) ** 0.5)) if data.ndim == 2 else 0
    if data.dtype != np.uint8 or n < 0 or 3 * side * side != data.shape[1]:
        raise ValueError(f"{where}: 'data' must be uint8 of shape (N, 3*S*S), "
                         f"got {data.dtype} {data.shape}")
    fine = np.asarray(d["fine_labels"], dtype=np.int64)
    coarse = np.asarray(d["coarse_labels"], dtype=np.int64)
    if fine.shape != (n,) or coarse.shape != (n,):
        raise ValueError(f"{where}: {n} images but {fine.shape} fine and {coarse.shape} "
                         f"coarse labels")
    if n and (fine.min() < 0 or fine.max() >= len(FINE_NAMES)):
        raise ValueError(f"{where}: fine labels must lie in 0..{len(FINE_NAMES) - 1}")
    bad = np.nonzero(coarse != np.asarray(FINE_TO_COARSE)[fine])[0]
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{where}: {bad.size} sample(s) have a coarse label that is not their "
                         f"class's superclass, e.g. sample {i}: fine {fine[i]} "
                         f"({FINE_NAMES[fine[i]]}), coarse {coarse[i]}, expected "
                         f"{FINE_TO_COARSE[fine[i]]}")
    return data.reshape(n, 3, side, side), fine, coarse


def read_archive(path: str | Path, md5: str) -> CifarArrays:
    """Read a CIFAR-100 python archive after checking that its md5 equals ``md5``.

    Nothing is unpickled before the checksum matches; the pickles are then read with an
    allow-list of numpy globals. Labels and class names are checked against
    :mod:`sdml.hierarchy.superclasses`.
    """
    path = Path(path)
    check_md5(path, md5)
    raw = _read_members(path)
    meta = _unpickle(raw["meta"], f"{path}:{MEMBERS['meta']}")
    for key, expected in (("fine_label_names", FINE_NAMES), ("coarse_label_names", COARSE_NAMES)):
        names = tuple(meta.get(key, ()))
        if names != expected:
            raise ValueError(f"{path}: meta {key!r} differ from sdml.hierarchy.superclasses's CIFAR-100 names "
                             f"(got {len(names)} names starting {names[:3]})")
    splits = {s: _split_arrays(_unpickle(raw[s], f"{path}:{MEMBERS[s]}"), f"{path}:{MEMBERS[s]}")
              for s in ("train", "test")}
    (train_x, train_y, train_c), (test_x, test_y, test_c) = splits["train"], splits["test"]
    if train_x.shape[1:] != test_x.shape[1:]:
        raise ValueError(f"{path}: train images {train_x.shape[1:]} and test images "
                         f"{test_x.shape[1:]} differ in size")
    return CifarArrays(train_x, train_y, train_c, test_x, test_y, test_c, FINE_NAMES, COARSE_NAMES)


def ensure_cifar100(root: str | Path, download: bool = True) -> Path:
    """Path of a checked ``root/cifar-100-python.tar.gz``, downloading it if missing and allowed.

    An archive already in ``root`` is used without the network; its md5 must match.
    """
    path = Path(root) / ARCHIVE_NAME
    if not path.is_file():
        hint = (f"Put the archive at {path} (from {CIFAR100_URL}, md5 {CIFAR100_MD5}), "
                f"or use the synthetic dataset instead (--data synthetic).")
        if not download:
            raise FileNotFoundError(f"CIFAR-100 archive not found: {path}. {hint}")
        from torchvision.datasets.utils import download_url

        path.parent.mkdir(parents=True, exist_ok=True)
        # Download into a scratch folder beside the target so a broken transfer leaves nothing.
        with tempfile.TemporaryDirectory(prefix=".download-", dir=path.parent) as tmp:
            try:
                download_url(CIFAR100_URL, tmp, ARCHIVE_NAME)
            except Exception as err:
                raise FileNotFoundError(f"CIFAR-100 archive not found: {path}, and downloading "
                                        f"it failed ({type(err).__name__}: {err}). {hint}") from err
            check_md5(Path(tmp) / ARCHIVE_NAME, CIFAR100_MD5)
            os.replace(Path(tmp) / ARCHIVE_NAME, path)
        return path
    check_md5(path, CIFAR100_MD5)
    return path
