"""A dataset on its device, and whole-batch augmentation.

On the device (:func:`to_device`), images stay uint8 (N, C, H, W) beside the normalisation
statistics and the crop padding of the dataset. :func:`crop_flip` crops (zero padding: 4 pixels
for CIFAR, 2 for Fashion-MNIST's 28x28) and mirrors a whole batch at given
offsets and flips, :func:`normalize` turns uint8 into normalised float32, and
:func:`eval_batches` walks the test set in order. Training batches, their crop offsets and flips
included, are drawn by :func:`sdml.training.step.plan_epoch` and augmented in
:func:`sdml.training.step.forward_losses`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from sdml.data.datasets import SPECS
from sdml.data.spec import DatasetArrays

PAD = 4  # pixels of zero padding before the random crop, where the dataset does not say


@dataclass(frozen=True)
class DeviceData:
    """A dataset on its device: uint8 images plus per-channel statistics and crop padding."""

    train_x: torch.Tensor      # (N, C, H, W) uint8
    train_y: torch.Tensor      # (N,) int64
    test_x: torch.Tensor       # (M, C, H, W) uint8
    test_y: torch.Tensor       # (M,) int64
    test_coarse: torch.Tensor  # (M,) int64
    mean: torch.Tensor         # (1, C, 1, 1) float32, per channel, pixel values in [0, 1]
    std: torch.Tensor          # (1, C, 1, 1) float32
    pad: int = PAD             # pixels of zero padding before the random crop

    @property
    def device(self) -> torch.device:
        return self.train_x.device


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std of uint8 images (N, C, H, W), in [0, 1] units.

    Exact and light on memory: computed from each channel's 256-bin histogram.
    """
    values = torch.arange(256, device=x.device, dtype=torch.float64) / 255
    hist = torch.stack([torch.bincount(x[:, c].reshape(-1), minlength=256)
                        for c in range(x.shape[1])]).double()  # (C, 256)
    count = hist.sum(1)
    mean = (hist * values).sum(1) / count
    var = (hist * (values - mean[:, None]) ** 2).sum(1) / count
    shape = (1, x.shape[1], 1, 1)
    return mean.float().reshape(shape), var.sqrt().float().reshape(shape)


def to_device(arrays: DatasetArrays, device: torch.device | str) -> DeviceData:
    """Copy a dataset to ``device`` (images stay uint8), with its declared statistics and crop
    padding (:mod:`sdml.data.datasets`; the same whatever subset is trained on), or the train
    split's own statistics where none are declared (synthetic data)."""
    def put(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device)

    spec = SPECS.get(getattr(arrays, "dataset", None))
    c = arrays.train_x.shape[1]
    if spec is not None and spec.mean is not None and len(spec.mean) == c:
        mean = torch.tensor(spec.mean, dtype=torch.float32).reshape(1, c, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32).reshape(1, c, 1, 1)
    else:  # statistics on the host, where bincount works for every backend
        mean, std = channel_stats(torch.from_numpy(np.ascontiguousarray(arrays.train_x)))
    pad = spec.crop_pad if spec is not None else PAD
    return DeviceData(put(arrays.train_x), put(arrays.train_y), put(arrays.test_x),
                      put(arrays.test_y), put(arrays.test_coarse), mean.to(device), std.to(device),
                      pad)


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 images (B, C, H, W) -> float32 ``(x / 255 - mean) / std``."""
    return (x.float() / 255 - mean) / std


def denormalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`normalize`: float images with pixel values in [0, 1] (for display)."""
    return x * std + mean


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor,
              pad: int = PAD) -> torch.Tensor:
    """Crop each image at offset (dy, dx) of its ``pad``-zero-padded self, then mirror if ``flip``.

    Args:
        x: (B, C, H, W) images; dy, dx: (B,) ints in 0..2*pad; flip: (B,) bool.
    Returns:
        (B, C, H, W), same dtype: out[b, :, i, j] = padded[b, :, dy + i, dx + j'] with
        j' = W - 1 - j where ``flip[b]`` and j' = j elsewhere.
    """
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p), zeros
    i = torch.arange(h, device=x.device)
    j = torch.arange(w, device=x.device)
    rows = dy[:, None] + i  # (B, H)
    cols = dx[:, None] + torch.where(flip[:, None], w - 1 - j, j)  # (B, W)
    # one gather over the flattened padded image: position rows * (W + 2 pad) + cols
    idx = (rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]).reshape(b, 1, h * w)
    return padded.reshape(b, c, -1).gather(2, idx.expand(b, c, h * w)).reshape(b, c, h, w)


def eval_batches(data: DeviceData, batch_size: int
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The test set in order: (x normalised (B, C, H, W), fine labels (B,), coarse labels (B,))."""
    if batch_size < 1:
        raise ValueError(f"batch_size = {batch_size!r} must be a positive integer")
    for start in range(0, data.test_x.shape[0], batch_size):
        end = start + batch_size
        yield (normalize(data.test_x[start:end], data.mean, data.std),
               data.test_y[start:end], data.test_coarse[start:end])
