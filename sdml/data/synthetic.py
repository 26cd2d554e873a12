"""A synthetic stand-in for CIFAR-100, written in the real archive's format.

Each of the 20 superclasses draws its images from its own shape or texture family (stripes,
rings, checkerboard, disc, ...), in its own colour scheme; its 5 classes differ in hue, scale or
frequency, and orientation (or count, for radial patterns). Every sample then gets its own
position, phase, orientation, scale and colour jitter plus Gaussian pixel noise. So classes of one
superclass look alike and are partly confusable, the property superclass-aware mixup relies on.

Images are a pure function of the parameters and the seed, and the archive is byte-for-byte
reproducible (fixed tar and gzip timestamps), so its md5 identifies it.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from sdml.data.cifar import ARCHIVE_NAME, MEMBERS
from sdml.hierarchy.superclasses import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE
from sdml.io.readback import DamagedFile, read_json
from sdml.io.atomic import atomic_write_bytes, atomic_write_json

VERSION = 1  # bump when the images change, so cached archives are not reused
DEFAULTS = {"n_train_per_class": 500, "n_test_per_class": 100, "seed": 0, "size": 32}

_W = 3 * np.pi  # base angular frequency: 1.5 periods per unit length (the image spans 2 units)


def _sig(z):
    return 1 / (1 + np.exp(-z))


def _ridge(z):
    return ((1 + np.cos(z)) / 2) ** 6  # thin bright lines where z is a multiple of 2*pi


# Pattern families, one per superclass (COARSE_NAMES order). Each maps sample geometry g
# (X, Y, R, A: rotated, shifted coordinates (n, S, S); f: scale/frequency factor, ph, ph2: phases,
# k: edge sharpness, count: integer count, all (n, 1, 1)) to a foreground weight in [0, 1].
_FAMILIES = (
    lambda g: 0.5 + 0.5 * np.sin(_W * g.f * g.X + g.ph),                          # stripes
    lambda g: 0.5 + 0.5 * np.sin(_W * g.f * g.R + g.ph),                          # rings
    lambda g: 0.5 + 0.5 * np.tanh(3 * np.sin(0.7 * _W * g.f * g.X + g.ph)
                                  * np.sin(0.7 * _W * g.f * g.Y + g.ph2)),        # checkerboard
    lambda g: _sig(g.k * (0.5 * g.f - g.R)),                                      # disc
    lambda g: _sig(g.k * (0.45 * g.f - np.maximum(abs(g.X), abs(g.Y)))),          # square
    lambda g: _sig(g.k * (0.3 * g.f - np.maximum.reduce(
        [g.X * np.cos(a) + g.Y * np.sin(a) for a in np.pi / 2 + 2 * np.pi / 3 * np.arange(3)]))),
    lambda g: 0.5 + 0.5 * np.tanh(1.5 * g.f * (g.X + 0.3 * np.sin(g.ph))),        # smooth ramp
    lambda g: _sig(10 * (np.cos(_W * g.f * g.X + g.ph)
                         * np.cos(_W * g.f * g.Y + g.ph2) - 0.5)),                # dot grid
    lambda g: _sig(g.k * (0.15 * g.f - np.minimum(abs(g.X), abs(g.Y))))
    * _sig(g.k * (0.6 - np.maximum(abs(g.X), abs(g.Y)))),                         # plus sign
    lambda g: 0.5 + 0.5 * np.sin(_W * g.f * g.R + 2 * g.A + g.ph),                # spiral
    lambda g: 0.5 + 0.5 * np.sin(g.count * g.A + g.ph),                           # sunburst
    lambda g: 0.5 + 0.5 * np.sin(_W * g.f * g.X + 1.5 * np.sin(0.5 * _W * g.Y + g.ph2) + g.ph),
    lambda g: np.exp(-(((g.R - 0.45 * g.f) / 0.1) ** 2)),                         # annulus
    lambda g: np.maximum(np.exp(-((g.X - 0.35 * g.f) ** 2 + g.Y**2) / 0.05),
                         np.exp(-((g.X + 0.35 * g.f) ** 2 + g.Y**2) / 0.05)),      # two blobs
    lambda g: _sig(g.k * (0.55 * g.f - abs(g.X) - abs(g.Y))),                     # diamond
    lambda g: _sig(g.k * (0.15 * g.f - abs(g.X))),                                # bar
    lambda g: np.maximum(_ridge(0.7 * _W * g.f * g.X + g.ph),
                         _ridge(0.7 * _W * g.f * g.Y + g.ph2)),                   # grid lines
    lambda g: _sig(g.k * 0.25 * g.f * (1 - np.hypot(g.X / (0.6 * g.f), g.Y / (0.25 * g.f)))),
    lambda g: 0.5 + 0.5 * np.sin(2 * _W * g.f * g.X * g.Y + g.ph),               # saddle waves
    lambda g: _sig(g.k * (0.45 * g.f * (1 + 0.35 * np.cos(g.count * g.A)) - g.R)),  # star
)
assert len(_FAMILIES) == len(COARSE_NAMES)


def _hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB; h, s, v broadcast together, result has a trailing axis of 3."""
    k = (np.array([5.0, 3.0, 1.0]) + 6 * np.asarray(h)[..., None]) % 6
    return np.asarray(v)[..., None] * (
        1 - np.asarray(s)[..., None] * np.clip(np.minimum(k, 4 - k), 0, 1))


def class_design() -> dict[str, np.ndarray]:
    """Per-class constants (index = fine label): orientation, scale factor, count, hues.

    The c-th class (0..4) of superclass s gets orientation c*pi/5, scale factor 0.75..1.25
    (step 0.125, in the order 2c mod 5), count 4 + (2c mod 5), foreground hue
    h_s + 0.025 (c - 2) around its superclass's hue h_s = 7s/20 mod 1, and background hue h_s + 0.5.
    """
    coarse = np.asarray(FINE_TO_COARSE)
    within = np.array([list(coarse[:i]).count(s) for i, s in enumerate(coarse)])  # 0..4
    step = (2 * within) % 5
    hue = (7 * coarse / 20) % 1
    return {"theta": within * np.pi / 5, "f": 0.75 + 0.125 * step, "count": 4.0 + step,
            "fg_hue": hue + 0.025 * (within - 2), "bg_hue": hue + 0.5,
            "bg_value": np.where(coarse % 2 == 0, 0.25, 0.55)}


class _Geometry:
    """Sample geometry handed to the pattern families (see ``_FAMILIES``)."""

    def __init__(self, X, Y, f, ph, ph2, count, k):
        self.X, self.Y, self.f, self.ph, self.ph2, self.count, self.k = X, Y, f, ph, ph2, count, k
        self.R, self.A = np.hypot(X, Y), np.arctan2(Y, X)


def generate_images(labels: np.ndarray, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """uint8 images (N, 3, size, size) of the given fine labels, drawn with ``rng``."""
    n = len(labels)
    design = {k: v[labels] for k, v in class_design().items()}
    # Per-sample jitter, drawn in one fixed order so the result depends only on rng's state.
    cx, cy = rng.uniform(-0.25, 0.25, (2, n))
    theta = design["theta"] + rng.normal(0, 0.2, n)
    f = design["f"] * rng.uniform(0.9, 1.1, n)
    ph, ph2 = rng.uniform(0, 2 * np.pi, (2, n))
    fg = _hsv_to_rgb(design["fg_hue"] + rng.normal(0, 0.012, n), 0.75, 0.9)  # (N, 3)
    bg = _hsv_to_rgb(design["bg_hue"], 0.35, design["bg_value"])
    brightness = rng.uniform(0.85, 1.15, (n, 1))
    fg, bg = (fg * brightness).astype(np.float32), (bg * brightness).astype(np.float32)
    cx, cy, theta, f, ph, ph2, count = (a.astype(np.float32)[:, None, None]  # (N, 1, 1) each
                                        for a in (cx, cy, theta, f, ph, ph2, design["count"]))

    axis = ((np.arange(size) + 0.5) / size * 2 - 1).astype(np.float32)  # pixel centres in [-1, 1]
    out = np.empty((n, 3, size, size), np.uint8)
    coarse = np.asarray(FINE_TO_COARSE)[labels]
    for family, pattern in enumerate(_FAMILIES):
        i = np.nonzero(coarse == family)[0]
        if i.size == 0:
            continue
        u, v = axis[None, None, :] - cx[i], axis[None, :, None] - cy[i]  # (n, S, S)
        c, s = np.cos(theta[i]), np.sin(theta[i])
        g = _Geometry(X=c * u + s * v, Y=c * v - s * u, f=f[i], ph=ph[i], ph2=ph2[i],
                      count=count[i], k=0.6 * size)
        p = np.clip(pattern(g), 0, 1)[:, None]  # (n, 1, S, S)
        img = bg[i, :, None, None] * (1 - p) + fg[i, :, None, None] * p  # (n, 3, S, S)
        img += rng.standard_normal(img.shape, dtype=np.float32) * 0.07
        out[i] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    return out


def _pack_archive(members: dict[str, dict]) -> bytes:
    """A reproducible .tar.gz holding each member dict pickled under ``MEMBERS[key]``."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=6, mtime=0, filename="") as gz:
        with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
            folder = tarfile.TarInfo(MEMBERS["meta"].split("/")[0])
            folder.type, folder.mode, folder.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(folder)
            for key, obj in members.items():
                payload = pickle.dumps(obj, protocol=4)
                info = tarfile.TarInfo(MEMBERS[key])
                info.size, info.mode, info.mtime = len(payload), 0o644, 0
                tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _check_params(n_train_per_class, n_test_per_class, seed, size) -> None:
    for field, value, low in (("n_train_per_class", n_train_per_class, 1),
                              ("n_test_per_class", n_test_per_class, 1),
                              ("seed", seed, 0), ("size", size, 8)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"synthetic.{field} = {value!r}; allowed: an integer >= {low}")


def write_synthetic_archive(path: str | Path, n_train_per_class: int, n_test_per_class: int,
                            seed: int, size: int = 32) -> str:
    """Write a synthetic dataset as ``cifar-100-python.tar.gz`` (atomically); return its md5."""
    _check_params(n_train_per_class, n_test_per_class, seed, size)
    rng = np.random.default_rng(seed)
    members = {"meta": {"fine_label_names": list(FINE_NAMES),
                        "coarse_label_names": list(COARSE_NAMES)}}
    for split, per_class in (("train", n_train_per_class), ("test", n_test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(len(FINE_NAMES)), per_class))
        images = generate_images(labels, rng, size)
        members[split] = {"batch_label": f"synthetic {split} (seed {seed})",
                          "fine_labels": labels.tolist(),
                          "coarse_labels": np.asarray(FINE_TO_COARSE)[labels].tolist(),
                          "data": images.reshape(len(labels), -1)}
    blob = _pack_archive(members)
    atomic_write_bytes(path, blob)
    return hashlib.md5(blob, usedforsecurity=False).hexdigest()


def ensure_synthetic(root: str | Path, n_train_per_class: int = DEFAULTS["n_train_per_class"],
                     n_test_per_class: int = DEFAULTS["n_test_per_class"],
                     seed: int = DEFAULTS["seed"], size: int = DEFAULTS["size"]
                     ) -> tuple[Path, str]:
    """Archive path and md5 of a synthetic dataset under ``root``, generating it if missing.

    It lives in ``root/synthetic-v<version>-train<n>-test<m>-seed<seed>-size<size>/`` with a
    ``manifest.json`` recording its md5 and parameters; readers check the archive against that md5.
    """
    _check_params(n_train_per_class, n_test_per_class, seed, size)
    params = {"version": VERSION, "n_train_per_class": int(n_train_per_class),
              "n_test_per_class": int(n_test_per_class), "seed": int(seed), "size": int(size)}
    folder = Path(root) / (f"synthetic-v{VERSION}-train{n_train_per_class}-"
                           f"test{n_test_per_class}-seed{seed}-size{size}")
    archive, manifest = folder / ARCHIVE_NAME, folder / "manifest.json"
    if archive.is_file() and manifest.is_file():
        fix = f"delete {folder} to generate the dataset again"
        recorded = read_json(manifest, fix)
        if recorded.get("params") != params or not isinstance(recorded.get("md5"), str):
            raise DamagedFile(manifest, f"does not describe {params}", fix)
        return archive, recorded["md5"]
    # The archive first, then its manifest: an interrupted run leaves no manifest, so the next
    # call generates again.
    md5 = write_synthetic_archive(archive, n_train_per_class, n_test_per_class, seed, size)
    atomic_write_json(manifest, {"md5": md5, "params": params})
    return archive, md5
