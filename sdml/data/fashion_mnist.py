"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 70,000 28x28 grayscale images of 10 garments.

Its four idx files (:mod:`sdml.data.idx`) are looked for, each as it is or gzipped, in
``<data>/fashion-mnist/``, then ``<data>/`` itself, then Debian's ``dataset-fashion-mnist`` copy
(``/usr/share/datasets/fashion-mnist/``); when none is there and downloading is allowed, the
gzipped files are fetched from torchvision's ``FashionMNIST`` mirrors into
``<data>/fashion-mnist/``. The md5 sums are of the decompressed files: Debian recompressed its
copy, so the .gz sums in torchvision's list do not hold for it, while the content does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sdml.data.files import DATA_FIX, download_checked
from sdml.data.idx import read_idx
from sdml.data.spec import DatasetArrays, DatasetFile, DatasetSpec
from sdml.io.readback import DamagedFile

TRAIN_IMAGES, TRAIN_LABELS = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
TEST_IMAGES, TEST_LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist", classes="fashion-mnist", shape=(1, 28, 28),
    mean=(0.2860,), std=(0.3530,), crop_pad=2, superclasses="wordnet", wordnet_k=3,
    files=(DatasetFile(TRAIN_IMAGES, "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
           DatasetFile(TRAIN_LABELS, "9018921c3c673c538a1fc5bad174d6f9"),
           DatasetFile(TEST_IMAGES, "8181f5470baa50b63fa0f6fddb340f0a"),
           DatasetFile(TEST_LABELS, "15d484375f8d13e6eb1aabb0c3f46965")),
    folder="fashion-mnist", system_dirs=("/usr/share/datasets/fashion-mnist",),
    source="torchvision's FashionMNIST mirrors, or Debian's package dataset-fashion-mnist",
    title="Fashion-MNIST", per_class=(6000, 1000))


def search_dirs(spec: DatasetSpec, root: str | Path) -> list[Path]:
    """Where the files are looked for, in order."""
    return [Path(root) / spec.folder, Path(root), *map(Path, spec.system_dirs)]


def find_file(name: str, dirs: list[Path]) -> Path | None:
    """The first ``<dir>/<name>`` or ``<dir>/<name>.gz`` that exists."""
    for folder in dirs:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _download(name: str, root: Path) -> Path:
    """Fetch ``<name>.gz`` from torchvision's mirrors, checked against torchvision's .gz md5."""
    from torchvision.datasets import FashionMNIST

    gz_md5 = dict(FashionMNIST.resources)[f"{name}.gz"]
    urls = [f"{mirror}{name}.gz" for mirror in FashionMNIST.mirrors]
    return download_checked(urls, root / FASHION_MNIST.folder / f"{name}.gz", gz_md5)


def locate(root: str | Path, download: bool = True, spec: DatasetSpec = FASHION_MNIST
           ) -> dict[str, Path]:
    """The path of each of the dataset's files, downloading the missing ones when allowed."""
    dirs, out = search_dirs(spec, root), {}
    for file in spec.files:
        path = find_file(file.name, dirs)
        if path is None:
            tried = ", ".join(str(d / file.name) + "[.gz]" for d in dirs)
            hint = (f"install Debian's dataset-fashion-mnist, put the four idx files in "
                    f"{Path(root) / spec.folder}, or use --data synthetic")
            if not download:
                raise FileNotFoundError(f"{spec.name}: {file.name} not found (tried {tried}); "
                                        f"{hint}")
            try:
                path = _download(file.name, Path(root))
            except FileNotFoundError as err:
                raise FileNotFoundError(f"{spec.name}: {file.name} not found (tried {tried}), "
                                        f"and {err}; {hint}") from None
        out[file.name] = path
    return out


def _split(images: np.ndarray, labels: np.ndarray, where: str, spec: DatasetSpec):
    c, h, w = spec.shape
    if images.shape[1:] != (h, w):
        raise DamagedFile(where, f"images are {images.shape[1]}x{images.shape[2]}, expected "
                         f"{h}x{w}", DATA_FIX)
    if len(images) != len(labels):
        raise DamagedFile(where, f"{len(images)} images but {len(labels)} labels", DATA_FIX)
    if labels.size and labels.max() >= spec.num_classes:
        raise DamagedFile(where, f"labels must lie in 0..{spec.num_classes - 1}, got up to "
                         f"{labels.max()}", DATA_FIX)
    return images.reshape(len(images), c, h, w), labels.astype(np.int64)


def read_fashion_mnist(paths: dict[str, Path], spec: DatasetSpec = FASHION_MNIST
                       ) -> DatasetArrays:
    """Read the four idx files (each md5-checked before it is parsed) into arrays; coarse labels
    are -1 (:func:`sdml.data.load.load_dataset` fills in the reference superclasses)."""
    md5 = {f.name: f.md5 for f in spec.files}
    arrays = {name: read_idx(paths[name], md5[name], 3 if "images" in name else 1)
              for name in md5}
    train_x, train_y = _split(arrays[TRAIN_IMAGES], arrays[TRAIN_LABELS],
                              f"{paths[TRAIN_IMAGES]} + {paths[TRAIN_LABELS]}", spec)
    test_x, test_y = _split(arrays[TEST_IMAGES], arrays[TEST_LABELS],
                            f"{paths[TEST_IMAGES]} + {paths[TEST_LABELS]}", spec)
    none = np.full(len(train_y), -1), np.full(len(test_y), -1)
    return DatasetArrays(train_x, train_y, none[0], test_x, test_y, none[1], spec.class_names,
                         (), spec.name)
