"""CIFAR-100 and CIFAR-10 from their python archives (and the synthetic dataset, which is
written in CIFAR-100's format), in memory.

CIFAR-100's archive (``cifar-100-python.tar.gz``) holds three pickles: ``train`` and ``test``
(keys ``data``: uint8 N x 3072 channel-major RGB rows, ``fine_labels``, ``coarse_labels``) and
``meta`` (``fine_label_names``, ``coarse_label_names``). CIFAR-10's (``cifar-10-python.tar.gz``)
holds ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` (``data``, ``labels``) and
``batches.meta`` (``label_names``). :func:`read_archive` checks the archive's md5 before anything
is unpickled, and unpickles with an allow-list of numpy globals only.
"""
from __future__ import annotations

import codecs
import io
import pickle
import pickletools
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from sdml.data.files import DATA_FIX, check_md5, download_checked, file_md5
from sdml.data.spec import DatasetArrays, DatasetFile, DatasetSpec
from sdml.io.readback import DamagedFile, damage_named
from sdml.hierarchy.classes import CIFAR10_NAMES, COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE

__all__ = ["ARCHIVE_NAME", "CIFAR10", "CIFAR100", "CIFAR100_MD5", "CIFAR100_URL", "CifarArrays",
           "MEMBERS", "Layout", "check_md5", "ensure_archive", "ensure_cifar100",
           "file_md5", "read_archive"]

ARCHIVE_NAME = "cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
#: CIFAR-100's archive members read by :func:`read_archive`, by split.
MEMBERS = {"train": "cifar-100-python/train", "test": "cifar-100-python/test",
           "meta": "cifar-100-python/meta"}
CifarArrays = DatasetArrays  # the name this module's readers used before other datasets came

CIFAR100 = DatasetSpec(
    name="cifar100", classes="cifar100", shape=(3, 32, 32),
    mean=(0.5071, 0.4865, 0.4409), std=(0.2673, 0.2564, 0.2762), crop_pad=4,
    superclasses="cifar", wordnet_k=20, files=(DatasetFile(ARCHIVE_NAME, CIFAR100_MD5),),
    source=CIFAR100_URL, title="CIFAR-100", per_class=(500, 100))
CIFAR10 = DatasetSpec(
    name="cifar10", classes="cifar10", shape=(3, 32, 32),
    mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616), crop_pad=4,
    superclasses="wordnet", wordnet_k=2,
    files=(DatasetFile("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a"),),
    source=CIFAR10_URL, title="CIFAR-10", per_class=(5000, 1000))


@dataclass(frozen=True)
class Layout:
    """Where a CIFAR python archive keeps its splits, labels and names."""

    train: tuple[str, ...]          # members concatenated into the train split
    test: tuple[str, ...]
    meta: str
    label_key: str                  # class labels in a split's dict
    names_key: str                  # class names in the meta dict
    names: tuple[str, ...]          # the class names the archive must list
    coarse_key: str | None = None   # superclass labels (CIFAR-100 only)
    coarse_names_key: str | None = None

    @property
    def members(self) -> tuple[str, ...]:
        return (*self.train, *self.test, self.meta)


CIFAR100_LAYOUT = Layout((MEMBERS["train"],), (MEMBERS["test"],), MEMBERS["meta"], "fine_labels",
                         "fine_label_names", FINE_NAMES, "coarse_labels", "coarse_label_names")
CIFAR10_LAYOUT = Layout(tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
                        ("cifar-10-batches-py/test_batch",), "cifar-10-batches-py/batches.meta",
                        "labels", "label_names", CIFAR10_NAMES)
LAYOUTS = {"cifar100": CIFAR100_LAYOUT, "cifar10": CIFAR10_LAYOUT}


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
            raise DamagedFile(self.where, f"the pickle refers to {module}.{name}, which is not "
                             f"allowed; only numpy array globals are", DATA_FIX) from None


def _check_memo(data: bytes, where: str) -> None:
    """Refuse a pickle that stores into a memo slot past its number of opcodes.

    The C unpickler grows its memo to the largest slot a ``PUT`` names: one damaged 4-byte
    index (``LONG_BINPUT 2**31``) makes it allocate and clear gigabytes before anything fails.
    A pickle writer numbers the slots 0, 1, 2, ..., so a slot never exceeds the opcodes before it.
    """
    for count, (op, arg, _) in enumerate(pickletools.genops(data)):
        if op.name in ("PUT", "BINPUT", "LONG_BINPUT") and int(arg) > count:
            raise DamagedFile(where, f"the pickle stores into memo slot {arg} after {count} "
                                     f"opcodes; it is damaged", DATA_FIX)


def _unpickle(data: bytes, where: str) -> dict:
    """Unpickle one archive member with :class:`_RestrictedUnpickler` (after
    :func:`_check_memo`); keys become ``str``."""
    _check_memo(data, where)
    obj = _RestrictedUnpickler(data, where).load()
    if not isinstance(obj, dict):
        raise DamagedFile(where, f"expected a pickled dict, got {type(obj).__name__}", DATA_FIX)
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_members(path: Path, layout: Layout) -> dict[str, bytes]:
    """The bytes of a layout's members of a .tar.gz, in one streaming pass, no extraction."""
    wanted = set(layout.members)
    found: dict[str, bytes] = {}
    with tarfile.open(path, "r|gz") as tar:
        for member in tar:
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts:
                raise DamagedFile(path, f"member {member.name!r} has an unsafe path; refused", DATA_FIX)
            if str(name) not in wanted:
                continue
            if not member.isfile() or str(name) in found:
                raise DamagedFile(path, f"member {member.name!r} is not a single regular file", DATA_FIX)
            found[str(name)] = tar.extractfile(member).read()
    missing = [m for m in layout.members if m not in found]
    if missing:
        raise DamagedFile(path, f"member(s) {missing} missing; not the python archive expected", DATA_FIX)
    return found


def _split_arrays(d: dict, where: str, layout: Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (N, 3, H, W) uint8, labels (N,), coarse (N,) or -1s) from one unpickled split."""
    keys = ("data", layout.label_key) + ((layout.coarse_key,) if layout.coarse_key else ())
    for key in keys:
        if key not in d:
            raise DamagedFile(where, f"key {key!r} missing (keys: {sorted(d)})", DATA_FIX)
    data = np.asarray(d["data"])
    n = data.shape[0] if data.ndim == 2 else -1
    side = int(round((data.shape[-1] / 3) ** 0.5)) if data.ndim == 2 else 0
    if data.dtype != np.uint8 or n < 0 or 3 * side * side != data.shape[1]:
        raise DamagedFile(where, f"'data' must be uint8 of shape (N, 3*S*S), "
                         f"got {data.dtype} {data.shape}", DATA_FIX)
    fine = np.asarray(d[layout.label_key], dtype=np.int64)
    coarse = (np.asarray(d[layout.coarse_key], dtype=np.int64) if layout.coarse_key
              else np.full(n, -1, dtype=np.int64))
    if fine.shape != (n,) or coarse.shape != (n,):
        raise DamagedFile(where, f"{n} images but {fine.shape} labels and {coarse.shape} "
                         f"coarse labels", DATA_FIX)
    if n and (fine.min() < 0 or fine.max() >= len(layout.names)):
        raise DamagedFile(where, f"labels must lie in 0..{len(layout.names) - 1}, got "
                         f"{fine.min()}..{fine.max()}", DATA_FIX)
    if layout.coarse_key:
        bad = np.nonzero(coarse != np.asarray(FINE_TO_COARSE)[fine])[0]
        if bad.size:
            i = int(bad[0])
            raise DamagedFile(where, f"{bad.size} sample(s) have a coarse label that is not "
                             f"their class's superclass, e.g. sample {i}: fine {fine[i]} "
                             f"({FINE_NAMES[fine[i]]}), coarse {coarse[i]}, expected "
                             f"{FINE_TO_COARSE[fine[i]]}", DATA_FIX)
    return data.reshape(n, 3, side, side), fine, coarse


def _concat(parts: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    return tuple(np.concatenate(arrays) for arrays in zip(*parts))


def read_archive(path: str | Path, md5: str, dataset: str = "cifar100") -> DatasetArrays:
    """Read a CIFAR-100 (or, with ``dataset="cifar10"``, CIFAR-10) python archive after checking
    that its md5 equals ``md5``.

    Nothing is unpickled before the checksum matches; the pickles are then read with an
    allow-list of numpy globals. Labels and class names are checked against
    :mod:`sdml.hierarchy.classes`. CIFAR-10's coarse labels are -1 here (it has no
    superclasses; :func:`sdml.data.load.load_dataset` fills in its reference ones).
    """
    path, layout = Path(path), LAYOUTS[dataset]
    check_md5(path, md5)
    # tarfile, gzip and the unpickler raise many types on a damaged archive: each is reported
    # as the damage it is, naming the archive
    with damage_named(path, DATA_FIX, "is not a readable CIFAR python archive"):
        return _read_checked(path, layout, dataset)


def _read_checked(path: Path, layout: Layout, dataset: str) -> DatasetArrays:
    raw = _read_members(path, layout)
    meta = _unpickle(raw[layout.meta], f"{path}:{layout.meta}")
    expected = [(layout.names_key, layout.names)]
    if layout.coarse_names_key:
        expected.append((layout.coarse_names_key, COARSE_NAMES))
    for key, names_expected in expected:
        names = tuple(meta.get(key, ()))
        if names != names_expected:
            raise DamagedFile(path, f"meta {key!r} differ from the {dataset} class names of "
                                    f"sdml.hierarchy.classes (got {len(names)} names starting "
                                    f"{str(names[:3])[:80]})", DATA_FIX)
    splits = {s: _concat([_split_arrays(_unpickle(raw[m], f"{path}:{m}"), f"{path}:{m}", layout)
                          for m in getattr(layout, s)]) for s in ("train", "test")}
    (train_x, train_y, train_c), (test_x, test_y, test_c) = splits["train"], splits["test"]
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DamagedFile(path, f"train images {train_x.shape[1:]} and test images "
                                f"{test_x.shape[1:]} differ in size", DATA_FIX)
    coarse_names = COARSE_NAMES if layout.coarse_key else ()
    return DatasetArrays(train_x, train_y, train_c, test_x, test_y, test_c, layout.names,
                         coarse_names, dataset)


def ensure_archive(spec: DatasetSpec, root: str | Path, download: bool = True) -> Path:
    """Path of a checked archive of ``spec`` in ``root``, downloading it if missing and allowed.

    An archive already in ``root`` is used without the network; its md5 must match.
    """
    (file,) = spec.files
    path = Path(root) / file.name
    if not path.is_file():
        hint = (f"Put the archive at {path} (from {spec.source}, md5 {file.md5}), "
                f"or use the synthetic dataset instead (--data synthetic).")
        if not download:
            raise FileNotFoundError(f"{spec.display_name} archive not found: {path}. {hint}")
        try:
            download_checked([spec.source], path, file.md5)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{spec.display_name} archive not found: {path}, and {err}. "
                                    f"{hint}") from None
        return path
    check_md5(path, file.md5)
    return path


def ensure_cifar100(root: str | Path, download: bool = True) -> Path:
    """Path of a checked ``root/cifar-100-python.tar.gz`` (see :func:`ensure_archive`)."""
    return ensure_archive(CIFAR100, root, download)
