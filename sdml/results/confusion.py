"""What superclass-aware mixup is meant to change: confusions between sibling classes, and how
closely the peers agree. Pure functions of predictions, labels and a superclass table.

Definitions (N test samples, prediction p_i, true class y_i, superclass s(c) of class c):

- *sibling confusions*: ``#{i: p_i != y_i and s(p_i) = s(y_i)} / N`` (a wrong class of the true
  superclass); *cross-superclass confusions*: ``#{i: s(p_i) != s(y_i)} / N``; the two add up to
  the error rate. *sibling share*: sibling confusions / errors.
- *peer agreement*: over the pairs of peers j < k, the mean share of test samples where they
  predict the same class; *peer KL*: over the ordered pairs j != k, the mean over test samples of
  KL(p_j || p_k) of the predicted distributions (at temperature 1), the quantity DML's mutual term
  lowers during training. Computed from the stored float32 probabilities: where a probability
  underflowed to 0 it is taken as 1e-30 inside the logarithm (a bound on what is lost).

The superclass table is the dataset's own, read from the run's test labels and superclass labels
(:func:`superclass_table`), so that nothing here assumes CIFAR-100; a class without test samples
has no known superclass, and a prediction of it counts as a cross-superclass confusion.
"""
from __future__ import annotations

import itertools

import torch

TINY = 1e-30  # the floor of a probability inside log (float32 underflow)


def superclass_table(y: torch.Tensor, coarse: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C,) superclass of every class, from paired (fine, coarse) test labels; -1 for a class
    without test samples. A class seen under two superclasses is an error."""
    table = torch.full((num_classes,), -1, dtype=torch.long)
    table[y] = coarse
    if not torch.equal(table[y], coarse):
        bad = int(y[table[y] != coarse][0])
        raise ValueError(f"coarse: class {bad} appears under several superclasses; allowed: one "
                         f"superclass per class")
    return table


def confusion_matrix(pred: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts, row = true class, column = predicted class.

    One ``bincount`` of the pair index y * C + pred; scikit-learn's ``confusion_matrix`` gives the
    same but is not a dependency of the kit, and this keeps the tensors in torch.
    """
    idx = y.long() * num_classes + pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def superclass_order(superclass_of: torch.Tensor) -> torch.Tensor:
    """(C,) the classes sorted by superclass, then by class index: siblings side by side."""
    c = superclass_of.numel()
    return torch.tensor(sorted(range(c), key=lambda i: (int(superclass_of[i]), i)), dtype=torch.long)


def confusion_rates(pred: torch.Tensor, y: torch.Tensor, superclass_of: torch.Tensor) -> dict:
    """Error, sibling and cross-superclass confusion rates in %, and the sibling share of errors
    in % (NaN without errors); see the module docstring."""
    wrong = pred != y
    same_sc = superclass_of[pred] == superclass_of[y]
    n = y.numel()
    errors = int(wrong.sum())
    sibling = int((wrong & same_sc).sum())
    return {"error": 100 * errors / n, "sibling": 100 * sibling / n,
            "cross": 100 * int((~same_sc).sum()) / n,
            "sibling_share": 100 * sibling / errors if errors else float("nan")}


def most_confused_pairs(cm: torch.Tensor, superclass_of: torch.Tensor, names=None,
                        top: int = 10) -> list[dict]:
    """The ``top`` unordered class pairs {a, b} by confusions either way, cm[a, b] + cm[b, a];
    each with ``a``, ``b`` (names when given), ``count``, ``siblings`` (same superclass)."""
    both = cm + cm.T  # (C, C) symmetric
    iu = torch.triu_indices(cm.shape[0], cm.shape[0], offset=1)
    counts = both[iu[0], iu[1]]
    order = torch.argsort(counts, descending=True, stable=True)[:top]
    out = []
    for idx in order.tolist():
        a, b, n = int(iu[0, idx]), int(iu[1, idx]), int(counts[idx])
        if n == 0:
            break
        out.append({"a": names[a] if names is not None else a, "b": names[b] if names is not None else b,
                    "count": n, "siblings": bool(superclass_of[a] == superclass_of[b])})
    return out


def peer_agreement(probs: torch.Tensor) -> dict:
    """``same_prediction`` (in %) and ``kl`` (nats) between the peers of (K, N, C) probabilities;
    NaN for a single peer."""
    k = probs.shape[0]
    if k < 2:
        return {"same_prediction": float("nan"), "kl": float("nan")}
    pred = probs.argmax(-1)  # (K, N)
    same = [float((pred[j] == pred[m]).double().mean()) for j, m in itertools.combinations(range(k), 2)]
    p = probs.double()
    log_p = p.clamp_min(TINY).log()  # (K, N, C)
    neg_entropy = (p * log_p).sum(-1)  # (K, N)
    cross = torch.einsum("jnc,knc->jkn", p, log_p)  # (K, K, N): sum_c p_j log p_k
    kl = (neg_entropy.unsqueeze(1) - cross).mean(-1).clamp_min(0)  # (K, K): KL(p_j || p_k) >= 0
    off = ~torch.eye(k, dtype=torch.bool)
    return {"same_prediction": 100 * sum(same) / len(same), "kl": float(kl[off].mean())}


# ----------------------------------------------------------------------------- per group of runs

def _run_table(run) -> torch.Tensor:
    return superclass_table(run.y, run.coarse, run.probs.shape[-1])


def class_names(run) -> list[str]:
    """The run's class names when its folder records them, else the class indices as text."""
    c = run.probs.shape[-1]
    names = getattr(run, "class_names", None)
    return list(names) if names is not None and len(names) == c else [str(i) for i in range(c)]


def group_confusion_matrix(group_runs) -> dict:
    """The confusions of a group's peers, summed over peers and seeds, ordered by superclass:
    ``matrix`` (C, C) in that order, ``order`` (C,) class indices, ``superclass_of`` (C,) and
    ``names`` (in the original class order)."""
    table = _run_table(group_runs[0])
    c = table.numel()
    cm = torch.zeros(c, c, dtype=torch.long)
    for run in group_runs:
        for p in run.probs:
            cm += confusion_matrix(p.argmax(-1), run.y, c)
    order = superclass_order(table)
    return {"matrix": cm[order][:, order], "order": order, "superclass_of": table,
            "names": class_names(group_runs[0])}


def group_behaviour(group_runs) -> dict:
    """Per-run confusion rates (peers averaged) and peer agreement of a group, one list entry per
    seed: ``error``, ``sibling``, ``cross``, ``sibling_share``, ``same_prediction``, ``kl``."""
    out: dict[str, list[float]] = {}
    for run in group_runs:
        table = _run_table(run)
        rates = [confusion_rates(p.argmax(-1), run.y, table) for p in run.probs]
        values = {key: sum(r[key] for r in rates) / len(rates) for key in rates[0]}
        values.update(peer_agreement(run.probs))
        for key, v in values.items():
            out.setdefault(key, []).append(v)
    return out
