"""Paired statistics of top-1 accuracy: a method against a baseline, seed by seed.

Runs of two methods with the same seed start from the same weights and see the same batch order
(:func:`sdml.training.train.stream_seed`), so their accuracies are compared *paired*:

- several seeds: the differences d_s = acc_a(s) - acc_b(s) over the shared seeds, their mean, the
  95 % Student t interval ``mean ± t_{0.975, n-1} * sd(d) / sqrt(n)`` and the two-sided paired
  t-test's p-value (:func:`scipy.stats.ttest_rel`, "Student", 1908);
- one seed: no interval can be given (a single difference has no spread); instead McNemar's exact
  test (McNemar, Psychometrika 1947) on the per-sample test predictions: with n_a the test samples
  only ``a`` gets right and n_b those only ``b`` gets right, p is the two-sided binomial test of
  n_a out of n_a + n_b at 1/2 (:func:`scipy.stats.binomtest`).

Beside the test, each comparison over several seeds says whether the difference exceeds the spread
between seeds: ``spread`` is the larger of the two groups' sample standard deviations of that
member's final top-1 over the shared seeds, and ``beyond_spread`` is ``|mean| > 2 * spread`` (the
rule notebook 06 uses for its latent scores). With one seed the spread is unknown (NaN, None).

Two groups are compared only if they share a protocol (dataset, model, schedule, epochs run);
otherwise a ValueError names both groups and the first field where they differ.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from scipy import stats as sps

from sdml.results.summary import (PROTOCOL_FIELDS, Run, group_key, group_label, member_names,
                                  paper_setting, superclass_source)

CONFIDENCE = 0.95
#: What two compared groups must share, beside the epochs they ran (``synthetic_*``: the data).
STATS_PROTOCOL = tuple(f for f in PROTOCOL_FIELDS if f != "temperature") + (
    "synthetic_train_per_class", "synthetic_test_per_class", "synthetic_seed")
BASELINES = ("none", "mixup")
SPREAD_FACTOR = 2.0  # a difference "exceeds the seeds' spread" beyond this many sds


# ----------------------------------------------------------------------------- the tests

def paired_t(a, b, confidence: float = CONFIDENCE) -> dict:
    """Mean of the paired differences a - b, its t interval and the paired t-test's p-value.

    Args:
        a, b: equal-length sequences of numbers, entry s of both from seed s.
    Returns:
        ``n``, ``mean``, ``low``, ``high``, ``p`` (NaN interval and p-value for n < 2; when
        every seed gives the same difference the t statistic is undefined, so the interval is
        that one value and ``p`` is NaN rather than scipy's 0).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"a, b: shapes {a.shape} and {b.shape}; allowed: two equal-length, "
                         f"non-empty lists of paired values")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: {confidence!r}; allowed: a number in (0, 1)")
    d = a - b
    out = {"n": int(d.size), "mean": float(d.mean()), "low": math.nan, "high": math.nan,
           "p": math.nan}
    if d.size < 2:
        return out
    if np.ptp(d) <= 1e-9 * max(1.0, float(np.abs(d).max())):  # no spread: t = ±inf or 0/0
        out.update(low=out["mean"], high=out["mean"])
        return out
    with warnings.catch_warnings():  # nearly equal differences: scipy may warn
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sps.ttest_rel(a, b)
        ci = res.confidence_interval(confidence)
    out.update(low=float(ci.low), high=float(ci.high), p=float(res.pvalue))
    return out


def exceeds_spread(diff: float, sds) -> bool:
    """Whether a difference exceeds :data:`SPREAD_FACTOR` times the largest of ``sds``."""
    return abs(diff) > SPREAD_FACTOR * max(sds)


def seed_spread(a, b) -> tuple[float, bool]:
    """(spread, beyond): the larger sample sd of ``a`` and ``b`` (seed by seed values of two
    groups) and whether the mean paired difference exceeds twice it."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"a, b: shapes {a.shape} and {b.shape}; allowed: two equal-length lists "
                         f"of at least two seeds' values")
    spread = float(max(a.std(ddof=1), b.std(ddof=1)))
    return spread, bool(exceeds_spread(float((a - b).mean()), [spread]))


def mcnemar_exact(correct_a: torch.Tensor, correct_b: torch.Tensor) -> dict:
    """McNemar's exact test on paired per-sample outcomes (bool tensors of one test split).

    Returns ``only_a`` and ``only_b`` (samples only that side gets right), ``n`` (samples),
    ``mean`` (the difference in top-1, in %) and the two-sided ``p``.
    """
    if correct_a.shape != correct_b.shape or correct_a.dim() != 1:
        raise ValueError(f"correct_a, correct_b: shapes {tuple(correct_a.shape)} and "
                         f"{tuple(correct_b.shape)}; allowed: two (N,) outcome vectors")
    a, b = correct_a.bool(), correct_b.bool()
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    discordant = only_a + only_b
    p = 1.0 if discordant == 0 else float(sps.binomtest(only_a, discordant, 0.5).pvalue)
    n = int(a.numel())
    return {"only_a": only_a, "only_b": only_b, "n": n, "mean": 100 * (only_a - only_b) / n, "p": p}


# ----------------------------------------------------------------------------- groups of runs

def check_same_protocol(runs_a: list[Run], runs_b: list[Run]) -> None:
    """ValueError naming both groups and the field where their protocols differ."""
    for ra in runs_a[:1]:
        for rb in runs_b[:1]:
            ea = ra.metrics[-1]["epoch"] if ra.metrics else 0
            eb = rb.metrics[-1]["epoch"] if rb.metrics else 0
            diffs = [(f, ra.config.get(f), rb.config.get(f)) for f in STATS_PROTOCOL
                     if ra.config.get(f) != rb.config.get(f)]
            if ea != eb:
                diffs.insert(0, ("epochs run", ea, eb))
            if diffs:
                f, va, vb = diffs[0]
                raise ValueError(f"groups: {group_label(ra.config)!r} and {group_label(rb.config)!r} "
                                 f"differ in {f} ({va!r} vs {vb!r}); paired statistics need one "
                                 f"protocol")


def member_correct(run: Run, member: int) -> torch.Tensor:
    """(N,) whether peer ``member`` (or the ensemble, for member == K) gets each test sample."""
    probs = run.probs[member] if member < run.probs.shape[0] else run.probs.mean(0)
    return probs.argmax(-1) == run.y


def member_final(run: Run, member: int) -> float:
    last = run.metrics[-1]
    k = len(last["test_acc"])
    return last["test_acc"][member] if member < k else last["ensemble_acc"]


def compare_groups(runs_a: list[Run], runs_b: list[Run]) -> list[dict]:
    """Group a against group b, paired by seed, per peer and for the ensemble (final top-1).

    Returns one row per member: ``compared``, ``baseline``, ``member``, ``seeds``, ``n``, ``test``
    (``paired t`` or ``McNemar exact``), ``mean`` (a - b in points of %), ``low``, ``high``, ``p``,
    ``spread`` and ``beyond_spread`` (see :func:`seed_spread`; NaN and None with one seed).
    """
    check_same_protocol(runs_a, runs_b)
    by_seed_a = {r.config["seed"]: r for r in runs_a}
    by_seed_b = {r.config["seed"]: r for r in runs_b}
    seeds = sorted(set(by_seed_a) & set(by_seed_b))
    name_a, name_b = group_label(runs_a[0].config), group_label(runs_b[0].config)
    if not seeds:
        raise ValueError(f"groups: {name_a!r} (seeds {sorted(by_seed_a)}) and {name_b!r} (seeds "
                         f"{sorted(by_seed_b)}) share no seed; paired statistics need the same seeds")
    k = min(len(r.metrics[-1]["test_acc"]) for r in runs_a + runs_b)
    rows = []
    for i, member in enumerate(member_names(k)):
        j = i if member != "ensemble" else 10 ** 6  # past the last peer: the ensemble
        row = {"compared": name_a, "baseline": name_b, "member": member,
               "seeds": " ".join(map(str, seeds))}
        if len(seeds) >= 2:
            va = [member_final(by_seed_a[s], j) for s in seeds]
            vb = [member_final(by_seed_b[s], j) for s in seeds]
            spread, beyond = seed_spread(va, vb)
            row.update(test="paired t", **paired_t(va, vb), spread=spread, beyond_spread=beyond)
        else:
            ra, rb = by_seed_a[seeds[0]], by_seed_b[seeds[0]]
            if ra.probs is None or rb.probs is None or not torch.equal(ra.y, rb.y):
                raise ValueError(f"groups: {name_a!r} and {name_b!r} have one seed but no shared "
                                 f"test predictions (predictions.pt) for McNemar's test")
            res = mcnemar_exact(member_correct(ra, j), member_correct(rb, j))
            row.update(test="McNemar exact", n=1, mean=res["mean"], low=math.nan, high=math.nan,
                       p=res["p"], only_a=res["only_a"], only_b=res["only_b"], spread=math.nan,
                       beyond_spread=None)
        rows.append(row)
    return rows


def _groups(finished: list[Run]) -> dict[tuple, list[Run]]:
    groups: dict[tuple, list[Run]] = {}
    for run in finished:
        groups.setdefault(group_key(run), []).append(run)
    return groups


def _is_paper_group(runs_: list[Run]) -> bool:
    c = runs_[0].config
    return superclass_source(c) == "cifar" and group_key(runs_[0])[5] == paper_setting(c["method"])


def paired_statistics(finished: list[Run], baselines=BASELINES) -> tuple[list[dict], list[str]]:
    """Every group against each baseline method with its weight of the mutual term, and every
    DML group against its independent control; returns the rows of :func:`compare_groups` and
    notes on the pairs left out (another protocol, no shared seed).

    Groups are matched on dataset, profile and epochs run; a baseline with the paper's constants
    and CIFAR-100's superclasses is preferred when there are several.
    """
    groups = _groups(finished)
    rows, notes = [], []
    pairs = []
    for key, members in groups.items():
        method, w = key[0], key[6]
        for base in baselines:
            if method in baselines and baselines.index(method) <= baselines.index(base):
                continue  # mixup against none, never none against mixup
            cands = [g for k2, g in groups.items() if k2[0] == base and k2[6] == w
                     and k2[2:5] == key[2:5]]
            if cands:
                pairs.append((members, sorted(cands, key=lambda g: not _is_paper_group(g))[0]))
        if w != 0:
            control = [g for k2, g in groups.items() if k2[:6] == key[:6] and k2[6] == 0]
            if control:
                pairs.append((members, control[0]))
    for a, b in pairs:
        try:
            rows += compare_groups(a, b)
        except ValueError as err:
            notes.append(str(err))
    return rows, notes
