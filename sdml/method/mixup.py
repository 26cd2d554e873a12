"""Superclass-aware mixup (the paper's method) and plain mixup, as pure tensor functions.

mixup (Zhang et al., ICLR 2018) mixes a sample i with a partner j::

    x~ = lam * x_i + (1 - lam) * x_j,      y~ = lam * y_i + (1 - lam) * y_j

Plain mixup draws lam ~ Beta(alpha, alpha) whatever the classes are. The paper ("mixup using
superclasses for Deep Mutual Learning") draws lam from the *superclasses* of the two classes:

- ``superclass-choice``: same superclass -> lam = 0.5; different -> lam = 0.9 or 0.1 (p = 1/2 each).
- ``superclass-beta``:   same superclass -> lam ~ Beta(8, 8); different -> lam ~ Beta(0.2, 0.2).
- ``superclass-soft`` (beyond the paper): lam ~ Beta(a, a) with a moving smoothly, on a log
  scale, from the "different" value to the "same" value with the WordNet similarity of the pair
  (see :func:`sdml.hierarchy.wordnet.soft_beta_alpha`).

Everywhere, lam is the weight of the sample's *own* image and label. All randomness comes from an
explicit ``torch.Generator``; nothing here touches global random state or assumes a device.
"""
from __future__ import annotations

import torch

METHODS = ("none", "mixup", "superclass-choice", "superclass-beta", "superclass-soft")
#: The methods of the paper's Table 1, in its order (``superclass-soft`` is not in the paper).
TABLE1_METHODS = ("none", "mixup", "superclass-choice", "superclass-beta")

#: The paper's constants; each can be overridden through ``**params``.
DEFAULTS: dict[str, dict[str, float]] = {
    "none": {},
    "mixup": {"alpha": 1.0},
    "superclass-choice": {"same_ratio": 0.5, "diff_ratio": 0.9},
    "superclass-beta": {"same_alpha": 8.0, "diff_alpha": 0.2},
    "superclass-soft": {"same_alpha": 8.0, "diff_alpha": 0.2},
}


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method: {method!r} is not a mixing method; allowed: {', '.join(METHODS)}")


def resolve_params(method: str, params: dict) -> dict:
    """The method's defaults updated with ``params``; unknown or invalid values raise ValueError."""
    _check_method(method)
    allowed = dict(DEFAULTS[method])
    if method == "superclass-soft":
        allowed["similarity"] = None
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"{unknown[0]}: not a parameter of method {method!r}; "
                         f"allowed: {', '.join(sorted(allowed)) or 'none'}")
    out = {**allowed, **params}
    for name in ("alpha", "same_alpha", "diff_alpha"):
        if name in out and not float(out[name]) > 0:
            raise ValueError(f"{name}: {out[name]!r} must be a positive number")
    for name in ("same_ratio", "diff_ratio"):
        if name in out and not 0.0 <= float(out[name]) <= 1.0:
            raise ValueError(f"{name}: {out[name]!r} must lie in [0, 1]")
    if method == "superclass-soft" and out["similarity"] is None:
        raise ValueError("similarity: method 'superclass-soft' needs the (C, C) class similarity "
                         "matrix, normalised to [0, 1] (sdml.hierarchy.wordnet.normalised_similarity)")
    return out


def _standard_gamma_log(shape: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """log of Gamma(shape, 1) samples, float64, drawn with ``generator``.

    Marsaglia & Tsang (2000) for shape >= 1; shapes below 1 use the boost
    Gamma(a) = Gamma(a + 1) * U^(1/a), kept in log space so that tiny shapes (0.2) do not underflow.
    """
    shape = shape.to(torch.float64)
    boost = shape < 1
    d = torch.where(boost, shape + 1, shape) - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    out = torch.empty_like(shape)
    pending = torch.ones_like(shape, dtype=torch.bool)
    while bool(pending.any()):  # acceptance is > 95 % per round, so this ends in a few rounds
        idx = pending.nonzero().flatten()
        z = torch.randn(idx.numel(), generator=generator, dtype=torch.float64, device=shape.device)
        u = torch.rand(idx.numel(), generator=generator, dtype=torch.float64, device=shape.device)
        v = (1.0 + c[idx] * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d[idx] - d[idx] * v
                        + d[idx] * torch.log(v.clamp_min(1e-300)))
        out[idx[ok]] = torch.log(d[idx[ok]] * v[ok])
        pending[idx[ok]] = False
    u = torch.rand(shape.shape, generator=generator, dtype=torch.float64, device=shape.device)
    return torch.where(boost, out + torch.log(u) / shape, out)


def sample_beta(a: torch.Tensor, b: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One Beta(a, b) sample per element: X / (X + Y) with X ~ Gamma(a), Y ~ Gamma(b).

    Computed as sigmoid(log X - log Y) in float64, which stays exact in (0, 1) for small a, b.
    Returns float32.
    """
    a, b = torch.broadcast_tensors(a.to(torch.float64), b.to(torch.float64))
    log_x = _standard_gamma_log(a.reshape(-1), generator)
    log_y = _standard_gamma_log(b.reshape(-1), generator)
    return torch.sigmoid(log_x - log_y).reshape(a.shape).to(torch.float32)


def same_superclass(y: torch.Tensor, y_partner: torch.Tensor, superclass_of: torch.Tensor) -> torch.Tensor:
    """(B,) bool: whether each sample and its partner share a superclass."""
    sc = superclass_of.to(y.device)
    return sc[y] == sc[y_partner]


def sample_ratios(method: str, y: torch.Tensor, y_partner: torch.Tensor, superclass_of: torch.Tensor,
                  generator: torch.Generator | None = None, **params) -> torch.Tensor:
    """One mixing ratio per sample (the weight of the sample's own image and label).

    Args:
        method: one of :data:`METHODS`.
        y, y_partner: (B,) int64 fine labels of the samples and of their partners.
        superclass_of: (C,) int64 superclass id of each fine label.
        generator: the only source of randomness.
        **params: overrides of :data:`DEFAULTS` (``alpha``; ``same_ratio``, ``diff_ratio``;
            ``same_alpha``, ``diff_alpha``; ``similarity`` for ``superclass-soft``).
    Returns:
        (B,) float32 ratios in [0, 1].
    """
    p = resolve_params(method, params)
    n, dev = y.shape[0], y.device
    if method == "none":
        return torch.ones(n, device=dev)
    if method == "mixup":
        alpha = torch.full((n,), float(p["alpha"]), dtype=torch.float64, device=dev)
        return sample_beta(alpha, alpha, generator)
    if method == "superclass-choice":
        same = same_superclass(y, y_partner, superclass_of)
        high = torch.rand(n, generator=generator, device=dev) < 0.5
        diff = torch.where(high, float(p["diff_ratio"]), 1.0 - float(p["diff_ratio"]))
        return torch.where(same, torch.full((n,), float(p["same_ratio"]), device=dev), diff).float()
    if method == "superclass-beta":
        same = same_superclass(y, y_partner, superclass_of)
        alpha = torch.where(same, float(p["same_alpha"]), float(p["diff_alpha"])).to(torch.float64)
        return sample_beta(alpha, alpha, generator)
    from sdml.hierarchy.wordnet import soft_beta_alpha

    sim = torch.as_tensor(p["similarity"], device=dev)[y, y_partner]
    alpha = soft_beta_alpha(sim, same_alpha=float(p["same_alpha"]), diff_alpha=float(p["diff_alpha"]))
    return sample_beta(alpha.to(torch.float64), alpha.to(torch.float64), generator)


def partners(batch_size: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
    """(B,) a random permutation of the batch: sample i is mixed with sample ``perm[i]``."""
    return torch.randperm(batch_size, generator=generator, device=device)


def mix_images(x: torch.Tensor, perm: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """x~_i = lam_i * x_i + (1 - lam_i) * x_perm[i]   (x: (B, ...), lam: (B,))."""
    w = lam.to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
    return w * x + (1 - w) * x[perm]


def mix_batch(x: torch.Tensor, y: torch.Tensor, method: str, superclass_of: torch.Tensor,
              generator: torch.Generator | None = None, **params):
    """Mix a batch with a random permutation of itself.

    Returns:
        (x_mixed (B, ...), y (B,), y_partner (B,), lam (B,)); the mixed target is
        ``lam * onehot(y) + (1 - lam) * onehot(y_partner)``.
    """
    _check_method(method)
    perm = partners(x.shape[0], generator, x.device)
    y_partner = y[perm]
    lam = sample_ratios(method, y, y_partner, superclass_of, generator, **params)
    if method == "none":
        return x, y, y_partner, lam
    return mix_images(x, perm, lam), y, y_partner, lam


def mixed_target(y: torch.Tensor, y_partner: torch.Tensor, lam: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B, C) soft target lam * onehot(y) + (1 - lam) * onehot(y_partner)."""
    lam = lam.reshape(-1, 1).float()
    eye = torch.nn.functional.one_hot
    return lam * eye(y, num_classes).float() + (1 - lam) * eye(y_partner, num_classes).float()
