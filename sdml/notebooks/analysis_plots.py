"""Notebook 06's figures: activation maps on mixed images, their measured shares, latent spaces.

Every function takes what :mod:`sdml.results.analysis` returns and gives back a matplotlib
``Figure`` (no pyplot); save it with :func:`sdml.notebooks.viz.save_figure`.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from sdml.notebooks.colours import superclass_colours as _colors
from sdml.results.latent import METRIC_LABELS, METRICS

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "p", "h")
PROJECTION_LABELS = {"pca": "PCA", "tsne": "t-SNE"}


def superclass_colors(k: int) -> list:
    """k distinct colours, the kit's one superclass palette (:mod:`sdml.notebooks.colours`)."""
    return _colors(k)


def display_image(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> np.ndarray:
    """(H, W, 3) or (H, W) floats in [0, 1] from a normalised (C, H, W) image."""
    img = (x.cpu() * std.reshape(-1, 1, 1) + mean.reshape(-1, 1, 1)).clamp(0, 1)
    return img[0].numpy() if img.shape[0] == 1 else img.permute(1, 2, 0).numpy()


def _show(ax, img: np.ndarray, overlay: np.ndarray | None = None) -> None:
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    if overlay is not None:
        ax.imshow(overlay, cmap="jet", alpha=0.5, vmin=0, vmax=1, interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])


# ----------------------------------------------------------------------------- attention

def attention_grid(runs: list[dict], cam: str, cams: tuple[str, ...]) -> Figure:
    """One row per run and peer; per example mix three panels: the mixed image, then the map of
    class a and of class b drawn over it (``runs`` from :func:`sdml.results.analysis.examples`)."""
    c = cams.index(cam)
    examples = runs[0]["examples"]
    rows = [(r, k) for r in runs for k in range(r["examples"][0]["maps"].shape[0])]
    ncols = 3 * len(examples)
    fig = Figure(figsize=(1.25 * ncols + 1.2, 1.3 * len(rows) + 0.9), layout="constrained")
    axes = fig.subplots(len(rows), ncols, squeeze=False)
    for r, (run, k) in enumerate(rows):
        for e, ex in enumerate(run["examples"]):
            img = display_image(ex["mixed"], run["mean"], run["std"])
            panels = (None, ex["maps"][k, c, 0].numpy(), ex["maps"][k, c, 1].numpy())
            for p, overlay in enumerate(panels):
                ax = axes[r, 3 * e + p]
                _show(ax, img, overlay)
                if r == 0:
                    title = (f"{ex['name_a']} + {ex['name_b']}\nlam = {ex['lam']:g}" if p == 0
                             else f"map: {ex['name_a'] if p == 1 else ex['name_b']}")
                    ax.set_title(title, fontsize=8)
        group = run["group"].replace(" (", "\n(")  # the superclass source on a line of its own
        axes[r, 0].set_ylabel(f"{group}\nmodel {k + 1}", fontsize=7)
    fig.suptitle(f"{cam} of each peer for both classes of a mix (red: where the map is high)")
    return fig


def attention_shares(spread) -> Figure:
    """Mean share of a class's map on its own half against the class's weight in the half mix,
    per method (band: ± 1 std over seeds); one panel per map method and pair relation."""
    cams = list(dict.fromkeys(spread["cam"]))
    relations = list(dict.fromkeys(spread["relation"]))
    groups = list(dict.fromkeys(spread["group"]))
    colors = dict(zip(groups, _colors(max(len(groups), 2))))
    fig = Figure(figsize=(4.2 * len(cams), 3.2 * len(relations)), layout="constrained")
    axes = fig.subplots(len(relations), len(cams), squeeze=False, sharex=True, sharey=True)
    for i, relation in enumerate(relations):
        for j, cam in enumerate(cams):
            ax = axes[i, j]
            ax.axhline(0.5, color="0.6", ls="--", lw=1)
            for group in groups:
                part = spread[(spread["group"] == group) & (spread["cam"] == cam)
                              & (spread["relation"] == relation)].sort_values("weight")
                if part.empty:
                    continue
                w, m, s = part["weight"].to_numpy(), part["mean"].to_numpy(), part["std"].to_numpy()
                ax.plot(w, m, marker="o", ms=3, color=colors[group], label=group)
                if not np.isnan(s).all():
                    ax.fill_between(w, m - s, m + s, color=colors[group], alpha=0.15, lw=0)
            ax.set_title(f"{cam}, {relation}", fontsize=9)
            ax.set_ylim(0, 1)
            if i == len(relations) - 1:
                ax.set_xlabel("weight of the class in the mix")
            if j == 0:
                ax.set_ylabel("share of its map on its own half")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Does a peer's map of a class follow that class's image? (dashed: an even spread)")
    return fig


# ----------------------------------------------------------------------------- latent space

def latent_scatter(projections: list[dict], kind: str, members=("model 1", "pair")) -> Figure:
    """2D projections of the test features, one row per run and one column per member;
    colour: superclass, marker: the class's place inside its superclass."""
    first = projections[0]
    sc = first["superclass_of"]
    k = int(sc.max()) + 1
    colors = superclass_colors(k)
    place = {}
    for label in range(len(sc)):  # a class's rank among its siblings, in label order
        place[label] = sum(1 for other in range(label) if int(sc[other]) == int(sc[label]))
    fig = Figure(figsize=(4.0 * len(members) + 2.6, 3.7 * len(projections)), layout="constrained")
    axes = fig.subplots(len(projections), len(members), squeeze=False)
    for r, proj in enumerate(projections):
        y = proj["y"].tolist()
        for c, member in enumerate(members):
            ax = axes[r, c]
            pts = proj["points"][member][kind].numpy()
            for marker_rank in sorted(set(place.values())):
                chosen = [n for n, label in enumerate(y) if place[label] == marker_rank]
                if not chosen:
                    continue
                ax.scatter(pts[chosen, 0], pts[chosen, 1], s=14, lw=0.1, edgecolor="0.3",
                           marker=MARKERS[marker_rank % len(MARKERS)],
                           c=[colors[int(sc[y[n]])] for n in chosen])
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{proj['group']}: {member}", fontsize=9)
    names = first["superclass_names"]
    if len(sc) <= 12:  # few classes: one legend entry per class, under its superclass's name
        handles = [Line2D([], [], ls="", marker=MARKERS[place[c] % len(MARKERS)],
                          color=colors[int(sc[c])],
                          label=f"{first['class_names'][c]} ({names[int(sc[c])]})")
                   for c in sorted(range(len(sc)), key=lambda c: (int(sc[c]), c))]
    else:
        handles = [Line2D([], [], ls="", marker="o", color=colors[s], label=names[s]) for s in range(k)]
        handles += [Line2D([], [], ls="", marker=MARKERS[m % len(MARKERS)], color="0.3",
                           label=f"class {m + 1} of its superclass") for m in sorted(set(place.values()))]
    fig.legend(handles=handles, loc="outside right upper", fontsize=6, frameon=False)
    fig.suptitle(f"{PROJECTION_LABELS.get(kind, kind)} of the penultimate features "
                 f"({len(first['y'])} test images)")
    return fig


def latent_scores(spread) -> Figure:
    """The latent scores per method and member (bars: mean over seeds, whiskers: ± 1 std)."""
    groups = list(dict.fromkeys(spread["group"]))
    members = list(dict.fromkeys(spread["member"]))
    colors = _colors(max(len(members), 2))
    fig = Figure(figsize=(4.0 * len(METRICS), 3.4), layout="constrained")
    axes = fig.subplots(1, len(METRICS), squeeze=False)[0]
    width = 0.8 / len(members)
    for ax, metric in zip(axes, METRICS):
        for m, member in enumerate(members):
            part = spread[(spread["metric"] == metric) & (spread["member"] == member)]
            values = {r["group"]: r for _, r in part.iterrows()}
            means = [values[g]["mean"] if g in values else math.nan for g in groups]
            stds = [values[g]["std"] if g in values else math.nan for g in groups]
            xs = np.arange(len(groups)) + (m - (len(members) - 1) / 2) * width
            spread_known = not all(math.isnan(v) for v in stds)
            ax.bar(xs, means, width, color=colors[m], label=member,
                   yerr=np.nan_to_num(stds) if spread_known else None, capsize=2)
        if metric == "sibling_ratio":
            ax.axhline(1.0, color="0.5", ls="--", lw=1)
        ax.set_xticks(range(len(groups)), groups, rotation=25, ha="right", fontsize=8)
        ax.set_title(METRIC_LABELS[metric], fontsize=9)
    axes[0].legend(fontsize=7)
    return fig
