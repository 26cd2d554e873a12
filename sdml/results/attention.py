"""Where the peers look in mixed images: class activation maps from the ``grad-cam`` package.

Maps come from ``pytorch_grad_cam`` (Gildenblat et al.), not written here: Grad-CAM (Selvaraju et
al., ICCV 2017) and Grad-CAM++ (Chattopadhay et al., WACV 2018), on the last residual block of a
peer (the feature map its head averages), for a class asked per image. The package returns each
map rectified, scaled to [0, 1] and resized to the image.

To measure how much of a class's map falls on that class's own image, the two images must not
overlap, so the summary uses a **half mix**: image a's half of the canvas (left or right) and image
b's other half, blended as mixup blends them, ``x = lam * m * a + (1 - lam) * (1 - m) * b`` with
``m`` the mask of a's half, in normalised units (so a weight below 1 fades an image towards the
dataset's mean colour). Class a's own region is its half, class b's the other; a map that ignores
where its class is puts half its mass on each. The pictures use plain mixup of whole images.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

CAMS = ("Grad-CAM", "Grad-CAM++")
CAM_FILES = {"Grad-CAM": "gradcam", "Grad-CAM++": "gradcampp"}  # names in figure file names
#: lam of image a in the half mixes of the summary; class b's weight is 1 - lam, so together
#: the two classes cover the weights 0, 0.1, ..., 1.
SUMMARY_LAMS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: The paper's Figure 3: (class a, class b, lam), used when the dataset has these classes.
PAPER_EXAMPLES = (("orchid", "tulip", 0.5), ("tulip", "trout", 0.9), ("tulip", "trout", 0.1))


def _cam_class(name: str):
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

    classes = {"Grad-CAM": GradCAM, "Grad-CAM++": GradCAMPlusPlus}
    if name not in classes:
        raise ValueError(f"cam: {name!r}; allowed: {', '.join(CAMS)}")
    return classes[name]


def target_layers(peer: nn.Module) -> list[nn.Module]:
    """The layer whose activations the maps weigh: a CIFAR ResNet's last residual block."""
    return [peer.layer3[-1]]


def class_maps(peer: nn.Module, x: torch.Tensor, classes, cam: str = "Grad-CAM",
               batch_size: int = 256) -> torch.Tensor:
    """(B, H, W) float32 map of ``classes[b]`` on image ``x[b]`` (normalised, (B, C, H, W)).

    Images are independent (the peer is in eval mode), so batching does not change a map.
    """
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes = [int(c) for c in torch.as_tensor(classes).flatten().tolist()]
    if len(classes) != x.shape[0]:
        raise ValueError(f"classes: {len(classes)} given for {x.shape[0]} images; one per image")
    engine = _cam_class(cam)(model=peer, target_layers=target_layers(peer))
    try:
        maps = [engine(input_tensor=x[s:s + batch_size],
                       targets=[ClassifierOutputTarget(c) for c in classes[s:s + batch_size]])
                for s in range(0, x.shape[0], batch_size)]
    finally:
        engine.activations_and_grads.release()  # the package's hooks stay on the peer otherwise
    peer.zero_grad(set_to_none=True)
    return torch.from_numpy(np.concatenate(maps)).float()


# ----------------------------------------------------------------------------- half mixes

def half_masks(height: int, width: int, a_left: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: True on image a's half, the left half where ``a_left[b]`` else the right."""
    left = torch.arange(width, device=a_left.device) < width // 2  # (W,)
    rows = torch.where(a_left[:, None], left[None, :], ~left[None, :])  # (B, W)
    return rows[:, None, :].expand(-1, height, -1)


def half_mix(a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor, a_left: torch.Tensor) -> torch.Tensor:
    """x = lam * m * a + (1 - lam) * (1 - m) * b, m the mask of a's half (:func:`half_masks`).

    Args:
        a, b: (B, C, H, W) normalised images; lam: (B,) weight of a; a_left: (B,) bool.
    """
    m = half_masks(a.shape[-2], a.shape[-1], a_left)[:, None].to(a.dtype)  # (B, 1, H, W)
    w = lam.to(a.dtype).reshape(-1, 1, 1, 1)
    return w * m * a + (1 - w) * (1 - m) * b


def region_share(maps: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(B,) share of each map's mass inside ``region`` (B, H, W); NaN for an all-zero map."""
    total = maps.sum(dim=(1, 2)).double()
    inside = (maps * region).sum(dim=(1, 2)).double()
    return torch.where(total > 0, inside / total.clamp_min(1e-30), torch.full_like(total, math.nan))


def sample_pairs(y: torch.Tensor, superclass_of: torch.Tensor, n: int, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` pairs of test images (i, j) of different classes: half of them siblings (classes of one
    superclass), half of different superclasses, i uniform among the images that have a partner of
    the kind and j uniform among those partners. Returns (i, j, same), each (n',); fewer sibling
    pairs (none) when no class present has a sibling present."""
    y = y.cpu()
    sc = superclass_of.cpu()[y]  # (N,)
    in_class = torch.bincount(y)[y]  # (N,) images of each image's class
    in_superclass = torch.bincount(sc)[sc]  # (N,) images of each image's superclass
    has = {True: in_superclass > in_class, False: in_superclass < len(y)}
    out_i, out_j, out_same = [], [], []
    for same, count in ((True, n // 2), (False, n - n // 2)):
        starts = torch.nonzero(has[same]).flatten()
        if len(starts) == 0 or count == 0:
            continue
        i = starts[torch.randint(len(starts), (count,), generator=generator)]
        if same:  # (count, N) allowed partners of each chosen image
            allowed = (sc[None, :] == sc[i, None]) & (y[None, :] != y[i, None])
        else:
            allowed = sc[None, :] != sc[i, None]
        j = torch.multinomial(allowed.float(), 1, generator=generator).flatten()
        out_i.append(i), out_j.append(j), out_same.append(torch.full((count,), same))
    if not out_i:
        raise ValueError("y: the test split has no two images of different classes to pair")
    return torch.cat(out_i), torch.cat(out_j), torch.cat(out_same)


def half_mix_shares(peer: nn.Module, x: torch.Tensor, y: torch.Tensor, i: torch.Tensor,
                    j: torch.Tensor, a_left: torch.Tensor, lams=SUMMARY_LAMS, cams=CAMS
                    ) -> torch.Tensor:
    """(len(cams), len(lams), 2, P) share of each class's map on its own half, for class a (the
    image of weight lam, index 0) and class b (weight 1 - lam, index 1) of the P pairs (i, j)."""
    p = len(i)
    a, b = x[i], x[j]
    batch, classes, regions = [], [], []
    for lam in lams:
        mixed = half_mix(a, b, torch.full((p,), float(lam), device=x.device), a_left.to(x.device))
        own_a = half_masks(x.shape[-2], x.shape[-1], a_left.cpu())
        batch += [mixed, mixed]
        classes += [y[i], y[j]]
        regions += [own_a, ~own_a]
    batch, classes, regions = torch.cat(batch), torch.cat(classes), torch.cat(regions)
    out = []
    for cam in cams:
        shares = region_share(class_maps(peer, batch, classes, cam), regions)  # (L*2*P,)
        out.append(shares.reshape(len(lams), 2, p))
    return torch.stack(out).float()


# ----------------------------------------------------------------------------- pictures

def example_pairs(class_names, superclass_of: torch.Tensor, preferred=PAPER_EXAMPLES
                  ) -> tuple[tuple[str, str, float], ...]:
    """Three mixes to show: siblings at lam = 0.5, then one pair of different superclasses at 0.9
    and at 0.1. ``preferred`` (by default the paper's Figure 3) where the dataset has its classes
    with those relations, else the first class (label order) with a sibling, that sibling, and
    the first class outside its superclass."""
    names = list(class_names)
    sc = superclass_of.tolist()
    if preferred and all(c in names for pair in preferred for c in pair[:2]):
        (a, b, _), (c, d, _) = preferred[0], preferred[1]
        a, b, c, d = (names.index(n) for n in (a, b, c, d))
        if sc[a] == sc[b] and sc[c] != sc[d]:
            return tuple(preferred)
    for a in range(len(names)):
        sibs = [b for b in range(len(names)) if b != a and sc[b] == sc[a]]
        others = [b for b in range(len(names)) if sc[b] != sc[a]]
        if sibs and others:
            return ((names[a], names[sibs[0]], 0.5), (names[a], names[others[0]], 0.9),
                    (names[a], names[others[0]], 0.1))
    raise ValueError("superclasses: no class has a sibling and a class outside its superclass; "
                     "allowed: a mapping with at least one superclass of two classes and two superclasses")


def example_maps(peers: list[nn.Module], x: torch.Tensor, y: torch.Tensor, class_names,
                 examples, cams=CAMS) -> list[dict]:
    """For each (class a, class b, lam) of ``examples``: the first test image of each class, their
    mixup ``lam * a + (1 - lam) * b`` and every peer's map of both classes.

    Returns dicts with ``name_a``, ``name_b``, ``lam``, ``mixed`` (C, H, W) normalised, and
    ``maps`` (K, len(cams), 2, H, W): class a's map at index 0, class b's at 1.
    """
    from sdml.method.mixup import mix_images

    names = list(class_names)
    out = []
    for name_a, name_b, lam in examples:
        first = []
        for name in (name_a, name_b):
            where = torch.nonzero(y.cpu() == names.index(name)).flatten()
            if len(where) == 0:
                raise ValueError(f"class: no test image of {name!r} to show")
            first.append(int(where[0]))
        pair = x[first]  # (2, C, H, W)
        mixed = mix_images(pair, torch.tensor([1, 0], device=x.device),
                           torch.full((2,), float(lam), device=x.device))[:1]  # (1, C, H, W)
        both = mixed.expand(2, -1, -1, -1)
        targets = [names.index(name_a), names.index(name_b)]
        maps = torch.stack([torch.stack([class_maps(p, both, targets, cam) for cam in cams])
                            for p in peers])  # (K, n_cams, 2, H, W)
        out.append({"name_a": name_a, "name_b": name_b, "lam": float(lam),
                    "mixed": mixed[0].cpu(), "maps": maps})
    return out
