"""What a dataset is to the kit: one declaration (:class:`DatasetSpec`) and its arrays in memory.

A declaration names the dataset's class set (:mod:`sdml.hierarchy.classes`), its image shape,
normalisation and crop padding, its files with their md5, where its reader looks for them, and
its superclass sources. Each reader module (:mod:`sdml.data.cifar`, :mod:`sdml.data.fashion_mnist`,
:mod:`sdml.data.synthetic`) holds its datasets' declarations; :mod:`sdml.data.datasets` lists them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sdml.hierarchy.classes import class_names


@dataclass(frozen=True)
class DatasetFile:
    """One file of a dataset and the md5 it must have (of the bytes its reader parses)."""

    name: str
    md5: str


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset, declared."""

    name: str                          # what --data says
    classes: str                       # the class set (sdml.hierarchy.classes)
    shape: tuple[int, int, int]        # (C, H, W) of one image
    mean: tuple[float, ...] | None     # per channel, pixel values in [0, 1]; None: from the data
    std: tuple[float, ...] | None      # per channel; None: from the data
    crop_pad: int                      # pixels of zero padding before the random crop
    superclasses: str                  # default superclass source: cifar (own) | wordnet
    wordnet_k: int                     # default number of WordNet superclasses
    files: tuple[DatasetFile, ...] = ()  # checked files (empty: generated)
    folder: str = ""                   # subfolder of the data folder it is looked for in
    system_dirs: tuple[str, ...] = ()  # system copies, tried after the data folder
    source: str = ""                   # where it comes from, for messages
    title: str = ""                    # its name in prose (CIFAR-100); "" = ``name``
    per_class: tuple[int, int] = (0, 0)  # (train, test) images per class; (0, 0): generated,
                                       # sized by the config's synthetic_* fields

    @property
    def class_names(self) -> tuple[str, ...]:
        return class_names(self.classes)

    @property
    def display_name(self) -> str:
        return self.title or self.name

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def has_own_superclasses(self) -> bool:
        return self.superclasses == "cifar"


@dataclass(frozen=True)
class DatasetArrays:
    """One dataset in memory (numpy), both splits, with its reference superclasses: the
    dataset's own where it has them, else its default WordNet grouping."""

    train_x: np.ndarray       # (N, C, H, W) uint8
    train_y: np.ndarray       # (N,) int64 class labels
    train_coarse: np.ndarray  # (N,) int64 reference superclass labels
    test_x: np.ndarray        # (M, C, H, W) uint8
    test_y: np.ndarray        # (M,) int64
    test_coarse: np.ndarray   # (M,) int64
    fine_names: tuple[str, ...]
    coarse_names: tuple[str, ...]
    dataset: str = ""  # the DatasetSpec name; "" for arrays made by hand (their statistics
                       # are then computed from the train split, and the crop padding is 4)
