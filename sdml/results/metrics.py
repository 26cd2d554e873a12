"""Metrics of predicted probabilities: calibration (ECE), ensembles, superclass errors, and
mean ± std over seeds. Pure functions of tensors and numbers.

ECE (Guo et al., ICML 2017, "On Calibration of Modern Neural Networks"): with the confidence
c_i = max_k p_ik and M equal-width bins B_m = ((m-1)/M, m/M],
``ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|``; M = 15.
"""
from __future__ import annotations

import math

import torch

ECE_BINS = 15


def reliability_bins(probs: torch.Tensor, y: torch.Tensor, n_bins: int = ECE_BINS) -> dict:
    """Confidence histogram of top-1 predictions in ``n_bins`` equal bins ((m-1)/M, m/M].

    Args:
        probs: (N, C) probabilities; y: (N,) labels.
    Returns:
        ``count`` (M,), ``confidence`` (M,) mean confidence and ``accuracy`` (M,) in each bin
        (NaN for empty bins), and ``edges`` (M + 1,).
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins: {n_bins!r}; allowed: an integer >= 1")
    if probs.dim() != 2 or y.shape != probs.shape[:1]:
        raise ValueError(f"probs: shape {tuple(probs.shape)} with y {tuple(y.shape)}; "
                         f"allowed: probs (N, C) and y (N,)")
    conf, pred = probs.double().max(-1)  # (N,), (N,)
    correct = (pred == y).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)  # (M + 1,)
    # bin m holds (edges[m], edges[m+1]]: the number of inner edges strictly below c
    idx = torch.searchsorted(edges[1:-1], conf, right=False)  # (N,) in 0..M-1
    count = torch.bincount(idx, minlength=n_bins).double()
    conf_sum = torch.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = torch.bincount(idx, weights=correct, minlength=n_bins)
    nan = torch.full_like(count, float("nan"))
    return {"count": count, "edges": edges,
            "confidence": torch.where(count > 0, conf_sum / count.clamp_min(1), nan),
            "accuracy": torch.where(count > 0, acc_sum / count.clamp_min(1), nan)}


def ece(probs: torch.Tensor, y: torch.Tensor, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error in [0, 1]: sum_m |B_m|/N * |acc(B_m) - conf(B_m)|."""
    bins = reliability_bins(probs, y, n_bins)
    gap = (bins["accuracy"] - bins["confidence"]).abs().nan_to_num(0.0)
    return float((bins["count"] * gap).sum() / bins["count"].sum())


def ensemble(probs: torch.Tensor) -> torch.Tensor:
    """(K, N, C) -> (N, C): the peers' averaged probabilities."""
    return probs.mean(0)


def accuracy_per_superclass(pred: torch.Tensor, y: torch.Tensor, coarse: torch.Tensor,
                            n_superclasses: int) -> torch.Tensor:
    """(S,) top-1 accuracy [%] over the test samples of each true superclass (NaN if none)."""
    correct = (pred == y).double()
    count = torch.bincount(coarse, minlength=n_superclasses).double()
    hits = torch.bincount(coarse, weights=correct, minlength=n_superclasses)
    return torch.where(count > 0, 100 * hits / count.clamp_min(1), torch.full_like(count, float("nan")))


def within_superclass_error_share(pred: torch.Tensor, y: torch.Tensor,
                                  superclass_of: torch.Tensor) -> float:
    """Share (in [0, 1]) of the errors whose predicted class lies in the true class's superclass.

    With 20 superclasses of 5 classes, errors spread uniformly would give 4/99 ~ 0.04.
    NaN when there is no error.
    """
    wrong = pred != y
    if not bool(wrong.any()):
        return float("nan")
    same = superclass_of[pred[wrong]] == superclass_of[y[wrong]]
    return float(same.double().mean())


def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (NaN for a single value) and count."""
    v = torch.tensor([float(x) for x in values], dtype=torch.float64)
    if v.numel() == 0:
        raise ValueError("values: empty; allowed: at least one number")
    std = float(v.std(unbiased=True)) if v.numel() > 1 else float("nan")
    return float(v.mean()), std, int(v.numel())


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"
