"""Load a dataset by name: the real CIFAR-100 archive or the generated synthetic one.

Above the archive reader and the synthetic generator, which writes the reader's format.
"""
from __future__ import annotations

from pathlib import Path

from sdml.data.cifar import (ARCHIVE_NAME, CIFAR100_MD5, DATASETS, CifarArrays, ensure_cifar100,
                             read_archive)
from sdml.data.synthetic import DEFAULTS, ensure_synthetic


def load_dataset(name: str, root: str | Path, *, download: bool = True,
                 synthetic: dict | None = None) -> CifarArrays:
    """Load ``"cifar100"`` (the real archive in ``root``) or ``"synthetic"`` (generated there).

    Args:
        synthetic: parameters of :func:`sdml.data.synthetic.ensure_synthetic` (``n_train_per_class``,
            ``n_test_per_class``, ``seed``, ``size``); unset ones take their defaults.
    """
    if name == "cifar100":
        path = Path(root) / ARCHIVE_NAME
        if not path.is_file():
            ensure_cifar100(root, download=download)  # downloads and checks; read_archive re-checks
        return read_archive(path, CIFAR100_MD5)
    if name == "synthetic":
        unknown = sorted(set(synthetic or {}) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"synthetic: unknown parameter(s) {unknown}; "
                             f"allowed: {list(DEFAULTS)}")
        path, md5 = ensure_synthetic(root, **(synthetic or {}))
        return read_archive(path, md5)
    raise ValueError(f"data = {name!r} is not a known dataset; allowed: {', '.join(DATASETS)}")


def dataset_for(cfg) -> CifarArrays:
    """The dataset a :class:`sdml.training.config.Config` names, with its synthetic sizes."""
    return load_dataset(cfg.data, cfg.data_dir, download=cfg.download,
                        synthetic=dict(n_train_per_class=cfg.synthetic_train_per_class,
                                       n_test_per_class=cfg.synthetic_test_per_class,
                                       seed=cfg.synthetic_seed))
