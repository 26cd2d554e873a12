"""Uses of the class similarity: derived superclasses, agreement of mappings, soft Beta parameter.

:func:`derive_superclasses` cuts a dataset's C classes into k groups by **agglomerative clustering
with average linkage** (UPGMA) on the distance 1 - similarity: start from C singletons and merge
the two groups at the smallest average pairwise distance until k groups remain. Ties (common:
tree similarities take few values) go to the pair whose smallest fine labels (i, j), i < j, come
first in lexicographic order; distances are compared after rounding to 1e-9 so that float noise
cannot break a tie differently on another machine. Groups are numbered in the order of their
smallest fine label, and named by their members' lowest common ancestor in the WordNet tree.

:func:`agreement` compares two mappings with the adjusted Rand index (Hubert & Arabie 1985) and
normalised mutual information with arithmetic-mean normalisation (as in scikit-learn's default).

:func:`normalised_similarity` rescales the off-diagonal similarities to [0, 1] and
:func:`soft_beta_alpha` turns them into a Beta parameter for the ``superclass-soft`` mixup.
"""
from __future__ import annotations

import math
from collections import Counter

import numpy as np
import torch

from sdml.hierarchy.classes import CLASS_NAMES, class_names
from sdml.hierarchy.superclasses import Superclasses
from sdml.hierarchy.wordnet_tree import Tree

_DECIMALS = 9  # distances are compared at this precision (see the module docstring)


def _check_k(k, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 2 <= k <= n - 1:
        raise ValueError(f"k: {k!r} is not a number of groups; allowed: an integer in 2..{n - 1}")
    return int(k)


def average_linkage(sim: np.ndarray, k: int) -> np.ndarray:
    """(n,) group id of each item after average-linkage clustering of ``1 - sim`` into k groups.

    Lance-Williams update for average linkage: d(a+b, c) = (n_a d(a, c) + n_b d(b, c)) / (n_a + n_b).
    A merged group keeps the row of its smaller index, which is always its smallest member.
    """
    n = sim.shape[0]
    dist = 1.0 - np.asarray(sim, dtype=np.float64)  # (n, n)
    size = np.ones(n)
    active = np.ones(n, dtype=bool)
    label = np.arange(n)
    for _ in range(n - k):
        masked = np.where(np.triu(active[:, None] & active[None, :], 1), np.round(dist, _DECIMALS), np.inf)
        i, j = np.unravel_index(np.argmin(masked), masked.shape)  # first minimum in (i, j) order
        merged = (size[i] * dist[i] + size[j] * dist[j]) / (size[i] + size[j])  # (n,)
        dist[i, :], dist[:, i] = merged, merged
        size[i] += size[j]
        active[j] = False
        label[label == j] = i
    _, ids = np.unique(label, return_inverse=True)  # ids ordered by smallest member
    return ids


def _group_names(groups: list[list[int]], tree: Tree | None,
                 fine: tuple[str, ...] | None = None) -> list[str]:
    """Groups named by their members' lowest common ancestor in ``tree``, or ``group:<first
    class>`` without a tree; ``fine`` are the class names (default: the tree's)."""
    fine = tree.class_names if fine is None else fine
    if tree is None:
        return [f"group:{fine[g[0]]}" for g in groups]
    names = [tree.lca_of([fine[i] for i in g]) for g in groups]
    counts = Counter(names)
    return [f"{name}/{fine[g[0]]}" if counts[name] > 1 else name for name, g in zip(names, groups)]


def derive_superclasses(tree_or_similarity, k: int = 20, kind: str = "wup",
                        dataset: str = "cifar100") -> Superclasses:
    """Cut the classes into exactly k non-empty groups (see the module docstring for the method).

    Args:
        tree_or_similarity: a :class:`Tree` (its ``kind`` similarity is used, and groups are named
            by their lowest common ancestor synset, duplicates suffixed ``/<first class>``) or a
            (C, C) symmetric similarity of ``dataset``'s classes (groups named
            ``group:<first class>``).
        k: number of groups, 2..C-1.
        dataset: the class set of a similarity (a tree knows its own).
    Returns:
        Superclasses named ``wordnet_k<k>`` (from a tree) or ``similarity_k<k>``.
    """
    if isinstance(tree_or_similarity, Tree):
        tree, dataset = tree_or_similarity, tree_or_similarity.dataset
        sim, name = tree.similarity_numpy(kind), "wordnet_k{k}"
    else:
        tree, name = None, "similarity_k{k}"
        sim = _check_similarity(tree_or_similarity, "tree_or_similarity", len(class_names(dataset)))
    k = _check_k(k, len(sim))
    ids = average_linkage(sim, k)
    groups = [np.flatnonzero(ids == g).tolist() for g in range(k)]
    return Superclasses(name.format(k=k), tuple(_group_names(groups, tree, class_names(dataset))),
                        torch.as_tensor(ids, dtype=torch.long), dataset)


def contingency_table(a: np.ndarray, b: np.ndarray, ka: int | None = None, kb: int | None = None) -> np.ndarray:
    """(ka, kb) int64 counts n_ij of items with label i in ``a`` and j in ``b``."""
    a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"labels: need two non-empty 1-D label arrays of one length, got {a.shape} and {b.shape}")
    if a.min() < 0 or b.min() < 0:
        raise ValueError("labels: must be non-negative integers")
    ka = int(a.max()) + 1 if ka is None else ka
    kb = int(b.max()) + 1 if kb is None else kb
    table = np.zeros((ka, kb), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    return table


def _pairs(x: np.ndarray) -> float:
    return float((x * (x - 1) / 2).sum())


def adjusted_rand_index(table: np.ndarray) -> float:
    """ARI = (sum_ij C(n_ij, 2) - E) / (M - E), E = sum_i C(a_i, 2) sum_j C(b_j, 2) / C(n, 2),
    M = (sum_i C(a_i, 2) + sum_j C(b_j, 2)) / 2. Two trivial partitions (M = E) score 1."""
    table = np.asarray(table, dtype=np.float64)
    n = table.sum()
    if n < 2:
        raise ValueError(f"labels: the adjusted Rand index needs at least 2 items, got {int(n)}")
    index, rows, cols = _pairs(table), _pairs(table.sum(1)), _pairs(table.sum(0))
    expected = rows * cols / (n * (n - 1) / 2)
    top = (rows + cols) / 2
    return 1.0 if top == expected else (index - expected) / (top - expected)


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_info(table: np.ndarray) -> float:
    """NMI = I(A; B) / ((H(A) + H(B)) / 2), natural logs; two one-group partitions score 1."""
    table = np.asarray(table, dtype=np.float64)
    n = table.sum()
    pa, pb = table.sum(1) / n, table.sum(0) / n
    nz = table > 0
    pab = table[nz] / n
    mi = float((pab * np.log(pab / np.outer(pa, pb)[nz])).sum())
    ha, hb = _entropy(table.sum(1)), _entropy(table.sum(0))
    if ha + hb == 0:
        return 1.0
    return max(mi, 0.0) / ((ha + hb) / 2)


def agreement(a: Superclasses, b: Superclasses) -> dict:
    """How well two superclass mappings agree: ``ari``, ``nmi`` and the ``contingency`` table
    (list of lists, rows = a's superclasses, columns = b's), with both mappings' names."""
    table = contingency_table(a.of.numpy(), b.of.numpy(), a.k, b.k)
    return {"a": a.name, "b": b.name, "ari": adjusted_rand_index(table),
            "nmi": normalized_mutual_info(table), "contingency": table.tolist(),
            "rows": list(a.superclass_names), "cols": list(b.superclass_names)}


def _check_similarity(sim, field: str = "sim", n: int | None = None) -> np.ndarray:
    """``sim`` as a float64 array, checked: (n, n), finite and symmetric; without ``n``, the
    size of any known class set (10 or 100 classes)."""
    s = np.asarray(torch.as_tensor(sim).detach().cpu().to(torch.float64))
    sizes = sorted({len(names) for names in CLASS_NAMES.values()})
    if n is None:
        n = s.shape[0] if s.ndim == 2 and s.shape[0] in sizes else sizes[-1]
    if s.shape != (n, n):
        raise ValueError(f"{field}: shape {tuple(s.shape)}; allowed: ({n}, {n})")
    if not np.isfinite(s).all() or not np.allclose(s, s.T, rtol=0, atol=1e-6):
        raise ValueError(f"{field}: must be a finite symmetric matrix")
    return s


def normalised_similarity(sim) -> torch.Tensor:
    """(C, C) similarity rescaled to [0, 1]: t = clip((s - s_min) / (s_max - s_min), 0, 1).

    s_min and s_max are the smallest and largest *off-diagonal* similarities, so the least similar
    pair of distinct classes gets 0, the most similar gets 1, and the diagonal (s = 1 >= s_max)
    is clipped to 1. Returns the input's float dtype (float32 for other inputs).
    """
    s = _check_similarity(sim)
    off = s[~np.eye(len(s), dtype=bool)]
    lo, hi = off.min(), off.max()
    if not hi > lo:
        raise ValueError(f"sim: all off-diagonal similarities equal {lo}; nothing to normalise")
    t = np.clip((s - lo) / (hi - lo), 0.0, 1.0)
    dtype = sim.dtype if isinstance(sim, torch.Tensor) and sim.is_floating_point() else torch.float32
    return torch.from_numpy(t).to(dtype)


def soft_beta_alpha(similarity_pairs: torch.Tensor, same_alpha: float = 8.0,
                    diff_alpha: float = 0.2) -> torch.Tensor:
    """Beta parameter of each pair for ``superclass-soft`` mixup, log-interpolated on similarity.

    log a = log diff_alpha + t * (log same_alpha - log diff_alpha),   t in [0, 1]

    with t the pair's *normalised* similarity (:func:`normalised_similarity`): t = 0 (the least
    similar classes) gives diff_alpha, t = 1 (the most similar distinct classes, and a class with
    itself) gives same_alpha, both returned exactly. The ratio is then lam ~ Beta(a, a).

    Args:
        similarity_pairs: (...) float tensor of t values in [0, 1] (checked when on the CPU).
    Returns:
        (...) tensor of a, in the input's float dtype (float64 for integer input).
    """
    for name, value in (("same_alpha", same_alpha), ("diff_alpha", diff_alpha)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: {value!r} must be a finite positive number")
    t = torch.as_tensor(similarity_pairs)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    # Checked on the CPU only: on an accelerator the check would stall every step on a host sync
    # (the values normally come from normalised_similarity, which is in [0, 1] by construction).
    if t.device.type == "cpu" and t.numel() and not bool(((t >= 0) & (t <= 1)).all()):
        raise ValueError(f"similarity_pairs: values in [{t.min().item()}, {t.max().item()}]; allowed: "
                         "normalised similarities in [0, 1] (see normalised_similarity)")
    lo, hi = math.log(diff_alpha), math.log(same_alpha)
    a = torch.exp(lo + t * (hi - lo))
    a = torch.where(t == 0, torch.full_like(t, diff_alpha), a)
    return torch.where(t == 1, torch.full_like(t, same_alpha), a)
