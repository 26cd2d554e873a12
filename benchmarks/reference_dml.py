"""A Deep Mutual Learning step written the typical way: the baseline of ``dml_bench.py``.

This is deliberately how DML with mixup is commonly written, not how sdml writes it:

- a ``torch.utils.data.Dataset`` that turns each uint8 image into a PIL image and applies
  torchvision transforms (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize),
  read through a ``DataLoader`` with shuffling, worker processes and pinned memory on CUDA;
- K separate ``resnet_cifar`` networks, each with its own SGD (Nesterov) optimiser, in fp32;
- per peer: mixed cross entropy plus the mean KL divergence to the other peers' *detached*
  predictions (Zhang et al., "Deep Mutual Learning", CVPR 2018), then that peer's own
  ``zero_grad`` / ``backward`` / ``step``, one peer after another;
- the loss read back with ``.item()`` every step, as loss meters do.

The work per step is the same as sdml's: the same networks, batch, augmentation and mixing
(:func:`sdml.method.mixup.mix_batch`, so the same ratios are drawn by the same method).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from sdml.method.mixup import mix_batch
from sdml.models.resnet import resnet_cifar


class UInt8ImageDataset(Dataset):
    """(N, 3, H, W) uint8 images and (N,) labels, served as transformed PIL images."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):
        self.images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # (N, H, W, 3) for PIL
        self.labels = labels.astype(np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def train_transform(mean: tuple[float, ...], std: tuple[float, ...]):
    """The usual CIFAR training pipeline on PIL images."""
    return transforms.Compose([
        transforms.RandomCrop(32, padding=4),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(mean, std),
    ])


def default_workers() -> int:
    """Loader worker processes: min(4, CPUs available to this process)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return min(4, cpus)


def make_loader(images: np.ndarray, labels: np.ndarray, batch_size: int, device: torch.device,
                workers: int, seed: int = 0) -> DataLoader:
    """A shuffling loader that drops the last partial batch; workers persist across epochs.

    The normalisation constants are the training images' per-channel mean and std.
    """
    scaled = images.astype(np.float64) / 255
    mean = tuple(scaled.mean(axis=(0, 2, 3)).tolist())
    std = tuple(scaled.std(axis=(0, 2, 3)).tolist())
    dataset = UInt8ImageDataset(images, labels, train_transform(mean, std))
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                      num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0,
                      generator=torch.Generator().manual_seed(seed))


def kl_to_peers(logits: list[torch.Tensor], k: int) -> torch.Tensor:
    """Mean over j != k of KL(p_j || p_k), the peers' p_j detached (batch mean)."""
    log_p = F.log_softmax(logits[k], dim=1)
    terms = [F.kl_div(log_p, F.softmax(logits[j].detach(), dim=1), reduction="batchmean")
             for j in range(len(logits)) if j != k]
    return sum(terms) / len(terms)


def mixed_ce(logits: torch.Tensor, y: torch.Tensor, y_partner: torch.Tensor,
             lam: torch.Tensor) -> torch.Tensor:
    """Batch mean of lam * CE(z, y) + (1 - lam) * CE(z, y')."""
    ce_y = F.cross_entropy(logits, y, reduction="none")
    ce_p = F.cross_entropy(logits, y_partner, reduction="none")
    return (lam * ce_y + (1 - lam) * ce_p).mean()


@dataclass
class ReferenceDML:
    """K separate networks and optimisers, fed by a PIL/torchvision ``DataLoader``."""

    models: list[torch.nn.Module]
    optimizers: list[torch.optim.Optimizer]
    loader: DataLoader
    device: torch.device
    method: str
    mix_params: dict
    superclass_of: torch.Tensor  # (C,) on the device
    generator: torch.Generator   # on the device: mixing partners and ratios
    _batches: object = None      # the running loader iterator

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next training batch on the device; a new epoch starts when one ends."""
        if self._batches is None:
            self._batches = iter(self.loader)
        try:
            x, y = next(self._batches)
        except StopIteration:
            self._batches = iter(self.loader)
            x, y = next(self._batches)
        nb = self.device.type == "cuda"
        return x.to(self.device, non_blocking=nb), y.to(self.device, non_blocking=nb)

    def step(self) -> list[float]:
        """One DML step on the next batch; returns each peer's loss."""
        x, y = self.next_batch()
        xm, y, y_partner, lam = mix_batch(x, y, self.method, self.superclass_of, self.generator,
                                          **self.mix_params)
        logits = [model(xm) for model in self.models]  # K x (B, C)
        values = []
        for k, optimizer in enumerate(self.optimizers):
            loss = mixed_ce(logits[k], y, y_partner, lam) + kl_to_peers(logits, k)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            values.append(loss.item())
        return values


def build_reference(images: np.ndarray, labels: np.ndarray, *, peers: int, batch_size: int,
                    depth: int, width: int, shortcut: str, num_classes: int, method: str,
                    mix_params: dict, superclass_of: torch.Tensor, device: torch.device,
                    workers: int, lr: float = 0.1, momentum: float = 0.9,
                    weight_decay: float = 5e-4, seed: int = 0) -> ReferenceDML:
    """The reference trainer on ``device``; ``images`` (N, 3, H, W) uint8, ``labels`` (N,)."""
    init = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # layer constructors draw default weights globally
        models = [resnet_cifar(depth, num_classes, width, shortcut, generator=init).to(device)
                  for _ in range(peers)]
    optimizers = [torch.optim.SGD(m.parameters(), lr=lr, momentum=momentum, nesterov=True,
                                  weight_decay=weight_decay) for m in models]
    loader = make_loader(images, labels, batch_size, device, workers, seed)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    return ReferenceDML(models, optimizers, loader, device, method, dict(mix_params),
                        superclass_of.to(device), gen)
