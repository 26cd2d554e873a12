"""Load a dataset by name, with its reference superclasses and an optional per-class subset.

Above the readers (:mod:`sdml.data.cifar`, :mod:`sdml.data.fashion_mnist`) and the synthetic
generator, which writes CIFAR-100's archive format.
"""
from __future__ import annotations

import dataclasses
import errno
from pathlib import Path
import warnings

import numpy as np

from sdml.data import cifar
from sdml.data.cifar import CifarArrays, read_archive
from sdml.data.datasets import get_spec
from sdml.data.fashion_mnist import locate, read_fashion_mnist
from sdml.data.spec import DatasetArrays, DatasetSpec
from sdml.data.synthetic import DEFAULTS, ensure_synthetic

__all__ = ["CifarArrays", "check_data_dir", "dataset_for", "ensure_files", "load_dataset",
           "reference_superclasses", "stratified_subset"]


def check_data_dir(root: str | Path) -> Path:
    """``root`` as the data folder: a folder or a path not yet made, never a file (a reader that
    looks in several places would otherwise take its data from elsewhere without a word)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "data_dir is a file, not a folder; allowed: the "
                                 "folder of the dataset's files (or a new one)", str(root))
    return root


def reference_superclasses(spec: DatasetSpec):
    """The superclasses a dataset's results are read against: its own (CIFAR-100's 20) where
    it has them, else its default WordNet grouping (the committed mapping)."""
    from sdml.hierarchy.resolve import resolve_superclasses

    return resolve_superclasses(spec.superclasses, spec.wordnet_k, spec.classes)


def _with_reference(arrays: DatasetArrays, spec: DatasetSpec) -> DatasetArrays:
    """Fill in the reference superclass labels of a dataset that has none of its own."""
    if arrays.coarse_names:
        return arrays
    sc = reference_superclasses(spec)
    of = sc.of.numpy()
    return DatasetArrays(arrays.train_x, arrays.train_y, of[arrays.train_y], arrays.test_x,
                         arrays.test_y, of[arrays.test_y], arrays.fine_names, sc.superclass_names,
                         arrays.dataset)


def _first_per_class(y: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first n samples of each class, in their original order."""
    keep = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        keep[np.flatnonzero(y == c)[:n]] = True
    return np.flatnonzero(keep)


def stratified_subset(arrays: DatasetArrays, train_per_class: int = 0,
                      test_per_class: int = 0) -> DatasetArrays:
    """The first ``train_per_class`` / ``test_per_class`` samples of each class (0: all), in file
    order, so a subset is a fixed, balanced part of the dataset whatever the run seed."""
    if arrays.dataset not in ("", "synthetic"):  # synthetic data: sized by its synthetic_* fields
        for name, n, y in (("train_per_class", train_per_class, arrays.train_y),
                           ("test_per_class", test_per_class, arrays.test_y)):
            have = int(np.bincount(y).min()) if len(y) else 0
            if n > have:  # a cap, not an error: a profile's subset on a smaller copy still runs
                warnings.warn(f"{name}: {n} exceeds the {have} images of the smallest class of "
                              f"{arrays.dataset}'s {name.split('_')[0]} split, so every class "
                              f"gives what it has (at most {n}); 0 means all", UserWarning,
                              stacklevel=2)
    tr = _first_per_class(arrays.train_y, train_per_class) if train_per_class else slice(None)
    te = _first_per_class(arrays.test_y, test_per_class) if test_per_class else slice(None)
    return DatasetArrays(arrays.train_x[tr], arrays.train_y[tr], arrays.train_coarse[tr],
                         arrays.test_x[te], arrays.test_y[te], arrays.test_coarse[te],
                         arrays.fine_names, arrays.coarse_names, arrays.dataset)


def load_dataset(name: str, root: str | Path, *, download: bool = True,
                 synthetic: dict | None = None) -> DatasetArrays:
    """Load a dataset named in :data:`sdml.data.datasets.DATASETS`, from (or into) ``root``.

    Args:
        synthetic: parameters of :func:`sdml.data.synthetic.ensure_synthetic` (``n_train_per_class``,
            ``n_test_per_class``, ``seed``, ``size``); unset ones take their defaults.
    """
    spec = get_spec(name)
    check_data_dir(root)
    if name in ("cifar100", "cifar10"):
        path = Path(root) / spec.files[0].name
        if not path.is_file():
            ensure_files(name, root, download)  # downloads and checks; read_archive re-checks
        arrays = read_archive(path, spec.files[0].md5, name)
    elif name == "fashion-mnist":
        arrays = read_fashion_mnist(locate(root, download, spec), spec)
    else:  # synthetic
        unknown = sorted(set(synthetic or {}) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"synthetic: unknown parameter(s) {unknown}; "
                             f"allowed: {list(DEFAULTS)}")
        path, md5 = ensure_synthetic(root, **(synthetic or {}))
        arrays = read_archive(path, md5)
        arrays = dataclasses.replace(arrays, dataset="synthetic")
    return _with_reference(arrays, spec)


def ensure_files(name: str, root: str | Path, download: bool = True) -> str:
    """Find (or fetch) a real dataset's files and check them; returns a line saying what was
    checked. Synthetic data needs nothing."""
    spec = get_spec(name)
    check_data_dir(root)
    if name == "cifar100":
        return f"CIFAR-100: {cifar.ensure_cifar100(root, download=download)} (md5 checked)"
    if name == "cifar10":
        return f"CIFAR-10: {cifar.ensure_archive(spec, root, download=download)} (md5 checked)"
    if name == "fashion-mnist":
        paths = locate(root, download, spec)
        arrays = read_fashion_mnist(paths, spec)  # reading is checking: md5 first, then the format
        return (f"Fashion-MNIST: {len(arrays.train_y)} train and {len(arrays.test_y)} test images "
                f"from {sorted({str(p.parent) for p in paths.values()})} (md5 checked)")
    return f"{name}: generated, nothing to fetch"


def dataset_for(cfg) -> DatasetArrays:
    """The dataset a :class:`sdml.training.config.Config` names, with its synthetic sizes and
    its per-class subset."""
    arrays = load_dataset(cfg.data, cfg.data_dir, download=cfg.download,
                          synthetic=dict(n_train_per_class=cfg.synthetic_train_per_class,
                                         n_test_per_class=cfg.synthetic_test_per_class,
                                         seed=cfg.synthetic_seed))
    return stratified_subset(arrays, cfg.train_per_class, cfg.test_per_class)
