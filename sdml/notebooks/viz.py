"""Mixed images as figures: the paper's Figure 3 remade and a grid of mixes for every method.

Pure helpers first (pick samples, mix a pair, the mixed label's top classes), then the plots.
Every plot returns a :class:`matplotlib.figure.Figure` built without pyplot, so a notebook shows
it once (as a cell's value) and nothing stays open; :func:`save_figure` writes it as a PNG named
by its content. Images are in pixel units (0..255), channel first, as :mod:`sdml.data` stores them
(3 channels, or 1 for grayscale datasets, shown in gray).
The ratio lam is always the weight of the first image and its label (:mod:`sdml.method.mixup`).
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from sdml.data.cifar import CifarArrays
from sdml.io.atomic import atomic_write_bytes
from sdml.method.mixup import METHODS, mix_images, mixed_target, sample_ratios

#: The paper's Figure 3: (class of the first image, class of the second, lam).
FIGURE3 = (("orchid", "tulip", 0.5), ("tulip", "trout", 0.9), ("tulip", "trout", 0.1))
#: Figure 3 remade for each class set: a same-superclass pair at 0.5, then a pair from two
#: superclasses at 0.9 and at 0.1 (Fashion-MNIST: WordNet's clothing and footwear; CIFAR-10:
#: WordNet's vertebrates and vehicles).
FIGURE3_PAIRS = {
    "cifar100": FIGURE3,
    "fashion-mnist": (("t-shirt_top", "shirt", 0.5), ("t-shirt_top", "sneaker", 0.9),
                      ("t-shirt_top", "sneaker", 0.1)),
    "cifar10": (("cat", "dog", 0.5), ("cat", "truck", 0.9), ("cat", "truck", 0.1)),
}
PAIR_GROUPS = ("same superclass", "different superclass")


# ----------------------------------------------------------------------------- pure helpers

def class_index(names, name: str) -> int:
    """Label of class ``name``; an unknown name raises ValueError listing a few allowed ones."""
    if name not in names:
        raise ValueError(f"class: {name!r} is not a class of the dataset; allowed: "
                         f"{', '.join(names[:5])}, ... ({len(names)} names)")
    return list(names).index(name)


def pick_index(labels, label: int, generator: torch.Generator) -> int:
    """Index of a uniformly random sample of class ``label`` among ``labels`` (N,)."""
    where = torch.nonzero(torch.as_tensor(labels) == label).flatten()
    if where.numel() == 0:
        raise ValueError(f"label: no sample of class {label} in the {len(labels)} labels given")
    return int(where[torch.randint(where.numel(), (1,), generator=generator)])


def mix_pair(img_a, img_b, lam: float) -> torch.Tensor:
    """(C, H, W) float32: lam * img_a + (1 - lam) * img_b, through :func:`sdml.method.mixup.mix_images`."""
    x = torch.stack([torch.as_tensor(img_a), torch.as_tensor(img_b)]).float()  # (2, C, H, W)
    return mix_images(x, torch.tensor([1, 0]), torch.tensor([float(lam), float(lam)]))[0]


def top_classes(y: int, y_partner: int, lam: float, k: int = 3, names=None) -> list[tuple]:
    """The mixed label's largest entries, as (class, weight) with weight > 0, largest first.

    The label is :func:`sdml.method.mixup.mixed_target`; classes are names when ``names`` is given.
    Ties keep label order, so the result is deterministic.
    """
    num_classes = len(names) if names is not None else max(y, y_partner) + 1
    target = mixed_target(torch.tensor([y]), torch.tensor([y_partner]), torch.tensor([float(lam)]),
                          num_classes)[0]  # (C,)
    order = sorted(range(num_classes), key=lambda c: (-float(target[c]), c))[:k]
    return [(names[c] if names is not None else c, float(target[c])) for c in order if target[c] > 0]


def to_display(img) -> np.ndarray:
    """(H, W, 3) float in [0, 1] for ``imshow`` from a (3, H, W) or grayscale (1, H, W) image in
    pixel units (gray is repeated into three equal channels)."""
    x = torch.as_tensor(img).float().permute(1, 2, 0) / 255.0
    if x.shape[-1] == 1:
        x = x.expand(-1, -1, 3)
    return x.clamp(0, 1).numpy()


def figure3_for(names) -> tuple:
    """The Figure 3 pairs of the class set whose names are ``names`` (:data:`FIGURE3_PAIRS`)."""
    from sdml.hierarchy.classes import class_set_of

    classes = class_set_of(names)
    if classes not in FIGURE3_PAIRS:
        raise ValueError(f"names: no Figure 3 pairs for these {len(names)} classes; known class "
                         f"sets: {', '.join(FIGURE3_PAIRS)}")
    return FIGURE3_PAIRS[classes]


def superclass_of_arrays(arrays: CifarArrays) -> torch.Tensor:
    """(C,) reference superclass of each class, read from the train split's labels."""
    of = torch.full((len(arrays.fine_names),), -1, dtype=torch.long)
    of[torch.as_tensor(arrays.train_y)] = torch.as_tensor(arrays.train_coarse)
    if bool((of < 0).any()):
        raise ValueError("arrays: some class has no training sample, so no superclass")
    return of


@dataclass(frozen=True)
class MixExample:
    """Two training images, their classes and their mix at ratio lam (weight of image a)."""

    image_a: torch.Tensor  # (C, H, W) uint8
    image_b: torch.Tensor  # (C, H, W) uint8
    name_a: str
    name_b: str
    lam: float
    mixed: torch.Tensor    # (C, H, W) float32, pixel units

    @property
    def title(self) -> str:
        if self.name_a == self.name_b:
            return f"{self.name_a} 1.00"
        return f"{self.name_a} {self.lam:.2f}\n{self.name_b} {1 - self.lam:.2f}"


def make_example(arrays: CifarArrays, index_a: int, index_b: int, lam: float) -> MixExample:
    """The mix of training samples ``index_a`` and ``index_b`` at ratio ``lam``."""
    a, b = torch.from_numpy(arrays.train_x[index_a]), torch.from_numpy(arrays.train_x[index_b])
    return MixExample(a, b, arrays.fine_names[int(arrays.train_y[index_a])],
                      arrays.fine_names[int(arrays.train_y[index_b])], float(lam), mix_pair(a, b, lam))


def figure3_pairs(arrays: CifarArrays, generator: torch.Generator) -> list[MixExample]:
    """The paper's Figure 3 on the dataset's classes (:func:`figure3_for`): CIFAR-100's orchid +
    tulip at 0.5, tulip + trout at 0.9 and at 0.1; Fashion-MNIST's T-shirt/top + shirt at 0.5,
    T-shirt/top + sneaker at 0.9 and 0.1.

    One random training sample of each class (drawn with ``generator``) is used in every pair.
    """
    pairs = figure3_for(arrays.fine_names)
    picked = {}
    for name in dict.fromkeys(n for a, b, _ in pairs for n in (a, b)):
        picked[name] = pick_index(arrays.train_y, class_index(arrays.fine_names, name), generator)
    return [make_example(arrays, picked[a], picked[b], lam) for a, b, lam in pairs]


def sample_class_pairs(n: int, same: bool, superclass_of: torch.Tensor, generator: torch.Generator,
                       distinct: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(n,) classes and (n,) partner classes: uniform class, partner uniform among the classes of
    the same superclass (``same``) or of the other superclasses.

    With ``distinct`` a same-superclass partner is never the class itself (when the superclass
    has another class). Without it, same-superclass pairs are distributed as in a random batch
    conditioned on sharing a superclass (for equal-size superclasses).
    """
    if n < 1:
        raise ValueError(f"n: {n!r}; allowed: an integer >= 1")
    sc = superclass_of.long()
    allowed = (sc[:, None] == sc[None, :]) if same else (sc[:, None] != sc[None, :])  # (C, C)
    if same and distinct:
        alone = allowed.sum(1) == 1
        allowed = allowed & ~torch.eye(len(sc), dtype=torch.bool) | torch.diag(alone)
    y = torch.randint(len(sc), (n,), generator=generator)
    if not bool(allowed[y].any(1).all()):
        raise ValueError("superclass_of: every class is in one superclass; no different-superclass pair")
    y_partner = torch.multinomial(allowed[y].float(), 1, generator=generator).flatten()
    return y, y_partner


def mixing_grid(arrays: CifarArrays, superclass_of: torch.Tensor, methods: dict[str, dict],
                n_pairs: int, generator: torch.Generator) -> dict[tuple[str, str], list[MixExample]]:
    """Mixes of the same image pairs under every method: {(method, pair group): [examples]}.

    ``n_pairs`` same-superclass pairs (of two different classes) and ``n_pairs``
    different-superclass pairs are drawn once; each method then draws its ratios for them with
    :func:`sdml.method.mixup.sample_ratios` (``methods`` maps a method to its parameter overrides).
    """
    for method in methods:
        if method not in METHODS:
            raise ValueError(f"methods: {method!r} is not a mixing method; allowed: {', '.join(METHODS)}")
    pairs = {}
    for group, same in zip(PAIR_GROUPS, (True, False)):
        y, y_partner = sample_class_pairs(n_pairs, same, superclass_of, generator, distinct=True)
        idx = [(pick_index(arrays.train_y, int(a), generator), pick_index(arrays.train_y, int(b), generator))
               for a, b in zip(y.tolist(), y_partner.tolist())]
        pairs[group] = (y, y_partner, idx)
    grid = {}
    for method, params in methods.items():
        for group, (y, y_partner, idx) in pairs.items():
            lam = sample_ratios(method, y, y_partner, superclass_of, generator, **params)  # (n,)
            grid[(method, group)] = [make_example(arrays, ia, ib, float(l))
                                     for (ia, ib), l in zip(idx, lam.tolist())]
    return grid


# ----------------------------------------------------------------------------- plots

def _image(ax, img, title: str, fontsize: float = 9) -> None:
    ax.imshow(to_display(img), interpolation="nearest")  # upscaled pixels stay square
    ax.set_title(title, fontsize=fontsize)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_examples(examples: list[MixExample], show_sources: bool = True, size: float = 1.9) -> Figure:
    """One row per example: image a, image b and their mix (or only the mixes, in one row)."""
    if show_sources:
        fig = Figure(figsize=(3 * size, len(examples) * (size + 0.45)), layout="constrained")
        axes = fig.subplots(len(examples), 3, squeeze=False)
        for row, ex in zip(axes, examples):
            _image(row[0], ex.image_a, ex.name_a)
            _image(row[1], ex.image_b, ex.name_b)
            _image(row[2], ex.mixed, f"mixed (lam = {ex.lam:.2f})\n{ex.title}")
        return fig
    fig = Figure(figsize=(len(examples) * size, size + 0.6), layout="constrained")
    for ax, ex in zip(fig.subplots(1, len(examples), squeeze=False)[0], examples):
        _image(ax, ex.mixed, ex.title)
    return fig


def plot_mixing_grid(grid: dict[tuple[str, str], list[MixExample]], size: float = 1.45) -> Figure:
    """Rows: (method, pair group); columns: the pairs. Titles give both classes and their weight."""
    rows = list(grid)
    cols = max(len(v) for v in grid.values())
    fig = Figure(figsize=(cols * size + 1.2, len(rows) * (size + 0.4)), layout="constrained")
    axes = fig.subplots(len(rows), cols, squeeze=False)
    for r, key in enumerate(rows):
        for c, ax in enumerate(axes[r]):
            if c >= len(grid[key]):
                ax.set_axis_off()
                continue
            _image(ax, grid[key][c].mixed, grid[key][c].title, fontsize=7)
        axes[r][0].set_ylabel(f"{key[0]}\n{key[1]}", fontsize=8)
    return fig


def save_figure(fig: Figure, figures_dir: str | Path, name: str, dpi: int = 110) -> Path:
    """Write ``fig`` as ``figures_dir/name`` (PNG, atomically) and return the path."""
    if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
        raise ValueError(f"name: {name!r}; allowed: a plain file name such as 'ratio_histograms.png'")
    path = Path(figures_dir) / (name if name.endswith(".png") else name + ".png")
    if path.suffix != ".png":
        raise ValueError(f"name: {name!r}; allowed: a PNG file name (ending in .png or without suffix)")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())
    return path


def load_notebook_data(profile: str, data: str, data_dir: str, download: bool = True) -> CifarArrays:
    """The dataset a notebook shows: ``data`` with the profile's synthetic sizes (as training uses)."""
    from sdml.training.config import make_config
    from sdml.data.load import dataset_for

    return dataset_for(make_config(profile, data=data, data_dir=data_dir, download=download))
