"""The laws of the mixing ratio: theoretical densities, sampled histograms, batch statistics.

For a pair (y, y') the paper's ratio lam follows (lam is the weight of y's image and label):

- ``mixup``:             Beta(alpha, alpha), whatever the pair;
- ``superclass-choice``: same superclass -> 0.5; different -> 0.9 or 0.1 with probability 1/2;
- ``superclass-beta``:   same superclass -> Beta(8, 8); different -> Beta(0.2, 0.2);
- ``superclass-soft``:   Beta(a(t), a(t)) with t the pair's normalised WordNet similarity
  (:func:`sdml.hierarchy.wordnet.soft_beta_alpha`); over a group of pairs it is a mixture of Betas.

:class:`RatioLaw` holds such a law as point masses plus weighted Beta components, so one type
covers all methods. Sampling always goes through :func:`sdml.method.mixup.sample_ratios`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure
from scipy import stats

from sdml.method.mixup import DEFAULTS, resolve_params, same_superclass, sample_ratios
from sdml.training.step import plan_epoch
from sdml.notebooks.viz import PAIR_GROUPS, sample_class_pairs

#: Methods whose ratio law the figures show (``superclass-soft`` only with a similarity matrix).
RATIO_METHODS = ("mixup", "superclass-choice", "superclass-beta", "superclass-soft")
GRID = np.linspace(0.002, 0.998, 499)  # where densities are drawn (Beta(0.2, 0.2) is infinite at 0, 1)


def beta_pdf(x, a: float, b: float) -> np.ndarray:
    """Beta(a, b) density at ``x`` (scipy.stats)."""
    return stats.beta.pdf(np.asarray(x, dtype=np.float64), a, b)


@dataclass(frozen=True)
class RatioLaw:
    """A law of lam on [0, 1]: point masses (value, probability) plus Beta components (a, b, weight)."""

    points: tuple[tuple[float, float], ...] = ()
    betas: tuple[tuple[float, float, float], ...] = ()
    label: str = ""

    def density(self, x=GRID) -> np.ndarray:
        """Density of the Beta part at ``x`` (point masses have none; see ``points``)."""
        out = np.zeros(np.shape(x))
        for a, b, w in self.betas:
            out += w * beta_pdf(x, a, b)
        return out


def _fmt(v: float) -> str:
    return f"{v:g}"


def _points(values_probs: dict[float, float], label: str) -> RatioLaw:
    return RatioLaw(points=tuple(sorted(values_probs.items())), label=label)


def pair_law(method: str, same: bool, t: float | None = None, **params) -> RatioLaw:
    """The law of lam for one pair: ``same`` superclass or not; ``t`` its normalised similarity
    (``superclass-soft`` only). ``params`` override :data:`sdml.method.mixup.DEFAULTS`."""
    params = {k: v for k, v in params.items() if k != "similarity"}
    if method == "superclass-soft":
        if t is None:
            raise ValueError("t: method 'superclass-soft' needs the pair's normalised similarity t in [0, 1]")
        p = resolve_params(method, {**params, "similarity": t})
    else:
        p = resolve_params(method, params)
    if method == "none":
        return _points({1.0: 1.0}, "no mixing: lam = 1")
    if method == "mixup":
        return RatioLaw(betas=((p["alpha"], p["alpha"], 1.0),), label=f"Beta({_fmt(p['alpha'])}, {_fmt(p['alpha'])})")
    if method == "superclass-choice":
        if same:
            return _points({float(p["same_ratio"]): 1.0}, f"lam = {_fmt(p['same_ratio'])}")
        hi, lo = float(p["diff_ratio"]), 1.0 - float(p["diff_ratio"])
        return _points({hi: 1.0} if hi == lo else {hi: 0.5, lo: 0.5},
                       f"lam = {_fmt(hi)} or {_fmt(round(lo, 6))} (p = 1/2)")
    if method == "superclass-beta":
        a = float(p["same_alpha"] if same else p["diff_alpha"])
        return RatioLaw(betas=((a, a, 1.0),), label=f"Beta({_fmt(a)}, {_fmt(a)})")
    from sdml.hierarchy.wordnet import soft_beta_alpha

    a = float(soft_beta_alpha(torch.tensor(float(t), dtype=torch.float64), p["same_alpha"], p["diff_alpha"]))
    return RatioLaw(betas=((a, a, 1.0),), label=f"Beta({a:.3g}, {a:.3g}), t = {float(t):.2f}")


def group_law(method: str, same: bool, superclass_of: torch.Tensor, **params) -> RatioLaw:
    """The law of lam over the pairs of :func:`sdml.notebooks.viz.sample_class_pairs` (uniform class, uniform
    partner in the same / other superclasses). Only ``superclass-soft`` depends on the pair: there
    it is the mixture of the pairs' Beta(a(t), a(t)), each weighted by the pair's probability."""
    if method != "superclass-soft":
        return pair_law(method, same, **params)
    sim = params.get("similarity")
    resolve_params(method, params)  # checks the alphas and that a similarity is given
    from sdml.hierarchy.wordnet import soft_beta_alpha

    sc = superclass_of.long()
    allowed = (sc[:, None] == sc[None, :]) if same else (sc[:, None] != sc[None, :])  # (C, C)
    weight = allowed.double() / allowed.sum(1, keepdim=True).clamp_min(1) / len(sc)   # P(y, y')
    alpha = soft_beta_alpha(torch.as_tensor(sim, dtype=torch.float64),
                            float(params.get("same_alpha", DEFAULTS[method]["same_alpha"])),
                            float(params.get("diff_alpha", DEFAULTS[method]["diff_alpha"])))
    keep = weight > 0
    values, inverse = torch.unique(alpha[keep].round(decimals=6), return_inverse=True)
    mass = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, weight[keep])
    mass = mass / mass.sum()
    return RatioLaw(betas=tuple((a, a, w) for a, w in zip(values.tolist(), mass.tolist())),
                    label=f"mixture of {len(values)} Beta(a(t), a(t)) over the pairs")


def method_params(similarity=None) -> dict[str, dict]:
    """{method: parameter overrides} for the figures: the paper's defaults, plus
    ``superclass-soft`` with ``similarity`` (normalised, (C, C)) when one is given."""
    out = {m: {} for m in RATIO_METHODS if m != "superclass-soft"}
    if similarity is not None:
        out["superclass-soft"] = {"similarity": similarity}
    return out


def load_soft_similarity(dataset: str = "cifar100") -> tuple[torch.Tensor | None, str]:
    """(normalised WordNet similarity (C, C) of a class set, note), or (None, why) when WordNet
    is unavailable."""
    try:
        from sdml.hierarchy.wordnet import load_similarity, normalised_similarity
        return (normalised_similarity(load_similarity(dataset=dataset)),
                "WordNet similarity loaded (superclass-soft shown)")
    except (ImportError, FileNotFoundError) as err:
        return None, f"superclass-soft skipped: no WordNet similarity ({type(err).__name__}: {err})"


# ----------------------------------------------------------------------------- sampling

def ratio_table(methods: dict[str, dict], n: int, superclass_of: torch.Tensor,
                generator: torch.Generator) -> pd.DataFrame:
    """Sampled ratios: ``n`` pairs per method and pair group, columns method, pairs, lam."""
    frames = []
    for method, params in methods.items():
        for group, same in zip(PAIR_GROUPS, (True, False)):
            y, y_partner = sample_class_pairs(n, same, superclass_of, generator)
            lam = sample_ratios(method, y, y_partner, superclass_of, generator, **params)  # (n,)
            frames.append(pd.DataFrame({"method": method, "pairs": group, "lam": lam.numpy()}))
    return pd.concat(frames, ignore_index=True)


def ratio_summary(table: pd.DataFrame, balanced: float = 0.2, dominant: float = 0.1) -> pd.DataFrame:
    """Per method and pair group: mean lam, the share of balanced mixes (|lam - 0.5| <= balanced)
    and the share where one image dominates (lam <= dominant or lam >= 1 - dominant)."""
    lam = table["lam"]
    flags = table.assign(balanced=(lam - 0.5).abs() <= balanced,
                         dominated=(lam <= dominant) | (lam >= 1 - dominant))
    out = flags.groupby(["method", "pairs"], sort=False).agg(
        mean_lam=("lam", "mean"), balanced=("balanced", "mean"), one_dominant=("dominated", "mean"))
    return out.rename(columns={"balanced": f"share |lam-0.5|<={balanced:g}",
                               "one_dominant": f"share lam<={dominant:g} or >={1 - dominant:g}"}).round(3)


def soft_table(similarity: torch.Tensor, n: int, superclass_of: torch.Tensor, generator: torch.Generator,
               **params) -> pd.DataFrame:
    """``superclass-soft`` ratios of ``n`` uniformly random class pairs: columns t, lam, pairs."""
    c = len(superclass_of)
    y = torch.randint(c, (n,), generator=generator)
    y_partner = torch.randint(c, (n,), generator=generator)
    lam = sample_ratios("superclass-soft", y, y_partner, superclass_of, generator,
                        similarity=similarity, **params)
    same = same_superclass(y, y_partner, superclass_of)
    return pd.DataFrame({"t": torch.as_tensor(similarity)[y, y_partner].numpy(), "lam": lam.numpy(),
                         "pairs": np.where(same.numpy(), PAIR_GROUPS[0], PAIR_GROUPS[1])})


def batch_same_shares(labels, superclass_of: torch.Tensor, batch_size: int, n_batches: int,
                      generator: torch.Generator) -> torch.Tensor:
    """(n_batches,) share of same-superclass pairs in training batches, drawn as training draws
    them: whole epochs of :func:`sdml.training.step.plan_epoch` (shuffled batches of ``labels``, the last
    partial batch dropped, partner = a random permutation of positions in the batch)."""
    labels = torch.as_tensor(labels).long()
    if not 2 <= batch_size <= len(labels):
        raise ValueError(f"batch_size: {batch_size!r}; allowed: an integer in 2..{len(labels)}")
    steps = len(labels) // batch_size  # a full epoch, as sdml.training.train.steps_per_epoch
    shares, done = [], 0
    while done < n_batches:
        plan = plan_epoch(labels, batch_size, steps, "none", superclass_of, generator, {},
                          augment=False)
        y = labels[plan.index]  # (S, B)
        same = same_superclass(y, y.gather(1, plan.partner), superclass_of)  # (S, B)
        shares.append(same.double().mean(1)[:n_batches - done])
        done += steps
    return torch.cat(shares)


def expected_same_share(labels, superclass_of: torch.Tensor, batch_size: int) -> float:
    """Expected share of same-superclass pairs in a batch of ``batch_size`` distinct samples.

    E = 1/B + (1 - 1/B) q,  q = sum_s n_s (n_s - 1) / (N (N - 1)):
    the partner is a uniformly random permutation of the batch's positions (as in
    :func:`sdml.training.step.plan_epoch`), so a sample is its own partner with probability 1/B; otherwise
    its partner is a uniformly random other sample of the dataset (n_s samples in superclass s,
    N in all).
    """
    sc = superclass_of.long()[torch.as_tensor(labels).long()]
    n_s = torch.bincount(sc).double()
    n = float(n_s.sum())
    q = float((n_s * (n_s - 1)).sum()) / (n * (n - 1))
    return 1.0 / batch_size + (1.0 - 1.0 / batch_size) * q


# ----------------------------------------------------------------------------- plots

def _overlay(ax, law: RatioLaw, bin_width: float, color: str = "crimson") -> None:
    """Draw ``law`` over a density histogram: Beta part as a curve, point masses as stems of
    height p / bin width (the height the histogram's bar reaches for a mass p)."""
    if law.betas:
        ax.plot(GRID, law.density(GRID), color=color, lw=1.6, label=law.label)
    if law.points:
        values, probs = zip(*law.points)
        heights = np.asarray(probs) / bin_width
        ax.vlines(values, 0, heights, color=color, lw=2, label=law.label)
        ax.plot(values, heights, "o", color=color, ms=4)


def plot_ratio_histograms(table: pd.DataFrame, methods: dict[str, dict], superclass_of: torch.Tensor,
                          bins: int = 50) -> Figure:
    """Rows: methods; columns: same / different superclass. Histogram (density) of the sampled
    ratios with the theoretical law overlaid (:func:`group_law`)."""
    rows = [m for m in methods if m in set(table["method"])]
    fig = Figure(figsize=(9, 2.3 * len(rows) + 0.5), layout="constrained")
    axes = fig.subplots(len(rows), 2, squeeze=False, sharex=True)
    for r, method in enumerate(rows):
        for c, (group, same) in enumerate(zip(PAIR_GROUPS, (True, False))):
            ax = axes[r][c]
            sub = table[(table["method"] == method) & (table["pairs"] == group)]
            sns.histplot(data=sub, x="lam", bins=bins, binrange=(0, 1), stat="density", ax=ax,
                         color="steelblue", edgecolor="none", alpha=0.7)
            top = max((p.get_height() for p in ax.patches), default=1.0)
            _overlay(ax, group_law(method, same, superclass_of, **methods[method]), 1.0 / bins)
            ax.set_ylim(0, top * 1.15)
            ax.set_xlim(0, 1)
            ax.set_title(f"{method}: {group} ({len(sub)} pairs)", fontsize=9)
            ax.legend(fontsize=7, loc="upper center")
            ax.set_xlabel("lam (weight of the sample's own class)")
    return fig


def plot_same_share(shares: torch.Tensor, expected: float, batch_size: int) -> Figure:
    """Histogram of the per-batch share of same-superclass pairs, with its mean and the analytic
    expectation (:func:`expected_same_share`)."""
    fig = Figure(figsize=(6, 3.2), layout="constrained")
    ax = fig.subplots()
    values = shares.numpy()
    sns.histplot(x=values, discrete=False, binwidth=1.0 / batch_size, binrange=(-0.5 / batch_size, values.max()
                 + 0.5 / batch_size), stat="probability", ax=ax, color="steelblue", edgecolor="white")
    ax.axvline(values.mean(), color="black", ls="--", label=f"mean over {len(values)} batches: {values.mean():.2%}")
    ax.axvline(expected, color="crimson", label=f"expected: {expected:.2%}")
    ax.set_xlabel(f"share of same-superclass pairs in a batch of {batch_size}")
    ax.set_ylabel("fraction of batches")
    ax.legend(fontsize=8)
    return fig


def plot_soft_ratios(table: pd.DataFrame, same_alpha: float = DEFAULTS["superclass-soft"]["same_alpha"],
                     diff_alpha: float = DEFAULTS["superclass-soft"]["diff_alpha"]) -> Figure:
    """``superclass-soft``: sampled lam against the pair's normalised similarity t, with the
    central 50 % and 90 % intervals of Beta(a(t), a(t)) and a(t) itself on a second panel."""
    from sdml.hierarchy.wordnet import soft_beta_alpha

    t = np.linspace(0, 1, 101)
    a = soft_beta_alpha(torch.from_numpy(t), same_alpha, diff_alpha).numpy()
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax, ax_a = fig.subplots(1, 2, width_ratios=(2.2, 1))
    for (lo, hi), shade in (((0.05, 0.95), 0.15), ((0.25, 0.75), 0.3)):
        ax.fill_between(t, stats.beta.ppf(lo, a, a), stats.beta.ppf(hi, a, a), color="crimson",
                        alpha=shade, lw=0, label=f"Beta(a(t), a(t)): central {hi - lo:.0%}")
    sns.scatterplot(data=table, x="t", y="lam", hue="pairs", hue_order=list(PAIR_GROUPS), s=4,
                    alpha=0.25, linewidth=0, ax=ax)
    for q in (0.05, 0.25, 0.75, 0.95):  # band edges on top of the dots
        ax.plot(t, stats.beta.ppf(q, a, a), color="crimson", lw=0.8)
    ax.set_xlabel("normalised WordNet similarity t of the pair")
    ax.set_ylabel("lam")
    ax.set_title(f"superclass-soft: {len(table)} random pairs", fontsize=9)
    ax.legend(fontsize=7, loc="lower left", markerscale=2)
    ax_a.semilogy(t, a, color="crimson")
    ax_a.set_xlabel("t")
    ax_a.set_ylabel("a(t) (log scale)")
    ax_a.set_title(f"a(t): {diff_alpha:g} at t = 0 to {same_alpha:g} at t = 1", fontsize=9)
    return fig
