"""The Deep Mutual Learning loss on mixed samples.

For K peers with logits z_k on the same mixed batch, peer k minimises (Zhang, Xiang, Hospedales
& Lu, "Deep Mutual Learning", CVPR 2018; mixed targets from Zhang et al., "mixup", ICLR 2018)::

    L_k = 1/B sum_b [ lam_b CE(z_kb, y_b) + (1 - lam_b) CE(z_kb, y'_b) ]
        + w T^2 / (K - 1) sum_{j != k} 1/B sum_b KL( p_jb || p_kb )

with p = softmax(z / T) and the peers' p_j treated as constants (detached), so that each peer's
loss sends gradient into that peer only. With T = 1 (the default and the paper's setting) the
KL term is DML's exactly; T^2 keeps gradient scales comparable for other T (Hinton et al., 2015).
The weight w of the mutual term is 1 in DML; w = 0 is the DML paper's "independent" control: the
K peers train side by side on the same mixed batches with cross entropy alone (K = 1 allowed).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _at_least_fp32(logits: torch.Tensor) -> torch.Tensor:
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def mixed_cross_entropy(logits: torch.Tensor, y: torch.Tensor, y_partner: torch.Tensor,
                        lam: torch.Tensor) -> torch.Tensor:
    """(K,) batch mean of lam * CE(z, y) + (1 - lam) * CE(z, y') per peer; logits (K, B, C)."""
    log_p = F.log_softmax(_at_least_fp32(logits), dim=-1)  # (K, B, C)
    k = logits.shape[0]
    nll_y = -log_p.gather(-1, y.expand(k, -1).unsqueeze(-1)).squeeze(-1)  # (K, B)
    nll_p = -log_p.gather(-1, y_partner.expand(k, -1).unsqueeze(-1)).squeeze(-1)  # (K, B)
    lam = lam.to(log_p.dtype)
    return (lam * nll_y + (1 - lam) * nll_p).mean(dim=1)


def mutual_kl(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(K,) mean over peers j != k of the batch-mean KL(p_j || p_k), p_j detached; times T^2."""
    k = logits.shape[0]
    if not temperature > 0:
        raise ValueError(f"temperature: {temperature!r}; allowed: a positive number")
    if k < 2:
        raise ValueError(f"peers: {k} given; mutual learning needs at least 2")
    log_p = F.log_softmax(_at_least_fp32(logits) / temperature, dim=-1)  # (K, B, C)
    log_q = log_p.detach()
    q = log_q.exp()
    neg_entropy = (q * log_q).sum(-1)  # (K, B): sum_c p_j log p_j, per teacher j
    cross = torch.einsum("jbc,kbc->jkb", q, log_p)  # (K, K, B): sum_c p_j log p_k
    kl = neg_entropy.unsqueeze(1) - cross  # (K, K, B): KL(p_j || p_k)
    off_diag = ~torch.eye(k, dtype=torch.bool, device=logits.device)
    kl = (kl.mean(-1) * off_diag).sum(0) / (k - 1)  # (K,)
    return kl * temperature ** 2


def check_mutual_weight(mutual_weight: float, k: int) -> None:
    """A weight of the mutual term is a finite number >= 0; K = 1 peer allows only 0."""
    if (isinstance(mutual_weight, bool) or not isinstance(mutual_weight, (int, float))
            or not math.isfinite(mutual_weight) or mutual_weight < 0):
        raise ValueError(f"mutual_weight: {mutual_weight!r}; allowed: a finite number >= 0 "
                         f"(0: independent peers, 1: DML)")
    if k < 2 and mutual_weight != 0:
        raise ValueError(f"peers: {k} given with mutual_weight {mutual_weight!r}; allowed: peers >= 2 "
                         f"for mutual learning, or mutual_weight 0 (one peer trains alone)")


def dml_losses(logits: torch.Tensor, y: torch.Tensor, y_partner: torch.Tensor, lam: torch.Tensor,
               temperature: float = 1.0, mutual_weight: float = 1.0) -> torch.Tensor:
    """(K,) per-peer DML loss on a mixed batch (formula in the module docstring).

    Args:
        logits: (K, B, C) logits of K peers on the same mixed batch (computed in fp32 here).
        y, y_partner: (B,) labels of each sample and of its mixing partner.
        lam: (B,) weight of y in the mixed target.
        temperature: softmax temperature of the KL term.
        mutual_weight: weight w of the KL term; 0 leaves it out (independent peers).
    """
    if logits.dim() != 3:
        raise ValueError(f"logits: shape {tuple(logits.shape)}; expected (K, B, C)")
    b = logits.shape[1]
    for name, t in (("y", y), ("y_partner", y_partner), ("lam", lam)):
        if tuple(t.shape) != (b,):
            raise ValueError(f"{name}: shape {tuple(t.shape)}; expected ({b},), one entry per sample "
                             f"of logits {tuple(logits.shape)}")
    check_mutual_weight(mutual_weight, logits.shape[0])
    ce = mixed_cross_entropy(logits, y, y_partner, lam)  # (K,)
    if mutual_weight == 0:  # a Python number: the independent control never builds the KL graph
        if not temperature > 0:
            raise ValueError(f"temperature: {temperature!r}; allowed: a positive number")
        return ce
    return ce + mutual_weight * mutual_kl(logits, temperature)
