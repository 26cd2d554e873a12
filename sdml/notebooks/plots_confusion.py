"""Figures of what the method is meant to change: confusion matrices ordered by superclass, and
sibling against cross-superclass confusions per group. Each function returns a ``Figure``."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

MAX_TICK_CLASSES = 40  # above this many classes the class names are left off the axes


def confusion_figure(cms: dict[str, dict], title: str = "Confusions ordered by superclass "
                                                        "(peers and seeds pooled)") -> Figure:
    """One panel per group of :func:`sdml.results.confusion.group_confusion_matrix`: the share of
    each true class's test samples predicted as each other class, the diagonal (correct
    predictions) left blank so that the confusions show; lines mark the superclasses' blocks,
    so sibling confusions fall in the blocks along the diagonal."""
    n = max(len(cms), 1)
    fig = Figure(figsize=(4.6 * n, 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n))
    image = None
    vmax = max([float(np.nanmax(_offdiagonal(cm["matrix"]), initial=0)) for cm in cms.values()]
               + [1e-9])  # one colour scale for all panels
    for ax, (label, cm) in zip(axes, cms.items()):
        rates = _offdiagonal(cm["matrix"])
        image = ax.imshow(np.ma.masked_invalid(rates), cmap="magma_r", vmin=0, vmax=vmax,
                          interpolation="nearest")
        sc = cm["superclass_of"][cm["order"]].numpy()
        for edge in np.flatnonzero(np.diff(sc)) + 0.5:  # block boundaries
            ax.axhline(edge, color="tab:blue", lw=0.4)
            ax.axvline(edge, color="tab:blue", lw=0.4)
        c = len(sc)
        if c <= MAX_TICK_CLASSES:
            names = [cm["names"][i] for i in cm["order"].tolist()]
            ax.set_xticks(range(c), names, rotation=90, fontsize=6)
            ax.set_yticks(range(c), names, fontsize=6)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        ax.set_title(label, fontsize=9)
    if image is not None:
        fig.colorbar(image, ax=list(axes), shrink=0.8, label="share of the true class's samples [%]")
    fig.suptitle(title)
    return fig


def _offdiagonal(matrix) -> np.ndarray:
    """Row-normalised counts in %, the diagonal NaN."""
    m = matrix.numpy().astype(np.float64)
    rows = m.sum(1, keepdims=True)
    rates = 100 * m / np.where(rows > 0, rows, 1)
    np.fill_diagonal(rates, np.nan)
    return rates


def confusion_kinds_bars(rows: list[dict], title: str = "Where the errors go, and how the peers "
                                                        "agree") -> Figure:
    """Per group of :func:`sdml.results.dml_report.behaviour_rows`: stacked bars of sibling and
    cross-superclass confusions (% of test samples), and the peers' agreement and mean KL."""
    fig = Figure(figsize=(11, 3.8), layout="constrained")
    ax_err, ax_agree, ax_kl = fig.subplots(1, 3)
    labels = [r["group"] for r in rows]
    x = np.arange(len(rows))
    sibling = np.array([r["sibling"] for r in rows])
    cross = np.array([r["cross"] for r in rows])
    ax_err.bar(x, sibling, color="tab:green", label="sibling (same superclass)")
    ax_err.bar(x, cross, bottom=sibling, color="tab:gray", label="another superclass")
    ax_err.set_ylabel("test samples [%]")
    ax_err.legend(fontsize=7)
    ax_agree.bar(x, [r["same_prediction"] for r in rows],
                 yerr=np.nan_to_num([r["same_prediction_std"] for r in rows]), color="tab:blue")
    ax_agree.set_ylabel("peers predict the same class [%]")
    ax_kl.bar(x, [r["kl"] for r in rows], yerr=np.nan_to_num([r["kl_std"] for r in rows]),
              color="tab:purple")
    ax_kl.set_ylabel("mean KL between peers [nats]")
    for ax in (ax_err, ax_agree, ax_kl):
        ax.set_xticks(x, labels, rotation=40, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return fig
