"""Figures of the hierarchy and of the results. Each function returns a matplotlib ``Figure``.

Figures are built with ``matplotlib.figure.Figure`` rather than pyplot, so nothing is drawn twice
in a notebook and no global figure state is kept; save them with :func:`sdml.notebooks.viz.save_figure`.
:class:`LiveCurves` redraws one run's learning curves in place, epoch after epoch, and
:class:`LiveRuns` those of every run of notebook 04.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from sdml.notebooks.colours import superclass_colours


def superclass_order(superclass_of: torch.Tensor) -> list[int]:
    """Fine labels sorted by superclass id (stable: label order inside a superclass)."""
    return sorted(range(len(superclass_of)), key=lambda i: (int(superclass_of[i]), i))


# ----------------------------------------------------------------------------- hierarchy

def class_table(wn, tree, derived=None):
    """DataFrame for display: each class of the tree's dataset, its own superclass (CIFAR-100),
    its WordNet synset with lemmas and definition, its depth and parent in the tree, and its
    derived superclass."""
    import pandas as pd

    from sdml.hierarchy.superclasses import own_superclasses

    own = own_superclasses(tree.dataset)
    rows = []
    for i, name in enumerate(tree.class_names):
        node = tree.class_nodes[i]
        synset = wn.synset(node)
        row = {"class": name}
        if own is not None:
            row["CIFAR superclass"] = own.superclass_names[int(own.of[i])]
        row.update({"synset": node, "lemmas": ", ".join(synset.lemma_names()[:3]),
                    "definition": synset.definition(), "depth": tree.depth[node],
                    "parent in tree": tree.parent[node]})
        if derived is not None:
            row["derived superclass"] = derived.superclass_names[int(derived.of[i])]
        rows.append(row)
    return pd.DataFrame(rows).set_index("class")


def dendrogram_figure(similarity: torch.Tensor, names, superclass_of: torch.Tensor, superclass_names,
                      k: int | None = None, title: str | None = None) -> Figure:
    """Average-linkage dendrogram of the distance ``1 - similarity`` (the clustering that
    :func:`sdml.hierarchy.wordnet.derive_superclasses` cuts), leaves coloured by their superclass.

    Args:
        similarity: (C, C) symmetric, 1 on the diagonal; names: C class names;
        superclass_of: (C,) ids into ``superclass_names``; k: draw the cut into k groups.
    """
    from scipy.cluster.hierarchy import dendrogram, linkage
    from scipy.spatial.distance import squareform

    dist = 1.0 - np.asarray(similarity, dtype=np.float64)  # (C, C)
    np.fill_diagonal(dist, 0.0)
    z = linkage(squareform(dist, checks=False), method="average")  # (C - 1, 4)
    colors = superclass_colours(len(superclass_names))
    fig = Figure(figsize=(10, 0.17 * len(names) + 1.5), layout="constrained")
    ax = fig.subplots()
    dendrogram(z, labels=list(names), orientation="left", ax=ax, leaf_font_size=7,
               link_color_func=lambda _: "0.35")
    index = {name: i for i, name in enumerate(names)}
    leaves = [label.get_text() for label in ax.get_yticklabels()]
    ax.set_yticks(ax.get_yticks(), [f"{leaf}  ({superclass_names[int(superclass_of[index[leaf]])]})"
                                    for leaf in leaves])
    for label, leaf in zip(ax.get_yticklabels(), leaves):
        label.set_color(colors[int(superclass_of[index[leaf]])])
    if k is not None and 2 <= k < len(names):
        n = len(names)
        cut = (z[n - k - 1, 2] + z[n - k, 2]) / 2  # between the last merge kept and the first undone
        ax.axvline(cut, color="crimson", ls="--", lw=1, label=f"cut into {k} groups")
        ax.legend(loc="upper left", fontsize=8)
    ax.set_xlabel("average WordNet distance (1 - Wu-Palmer similarity)")
    title = title or f"WordNet hierarchy of the {len(names)} classes"
    ax.set_title(f"{title}\nleaf: class (superclass), coloured by superclass")
    return fig


def similarity_heatmap(similarity: torch.Tensor, names, superclass_of: torch.Tensor, superclass_names,
                       title: str = "WordNet similarity (Wu-Palmer), classes ordered by superclass") -> Figure:
    """Seaborn heatmap of a (C, C) similarity, rows and columns grouped by superclass."""
    import seaborn as sns

    order = superclass_order(superclass_of)
    sim = np.asarray(similarity, dtype=np.float64)[np.ix_(order, order)]  # (C, C)
    labels = [names[i] for i in order]
    side = max(5.0, 0.15 * len(names))  # 15 x 13.5 inches for CIFAR-100's 100 classes
    fig = Figure(figsize=(side, 0.9 * side), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(sim, ax=ax, cmap="viridis", square=True, xticklabels=labels, yticklabels=labels,
                cbar_kws={"label": "similarity", "shrink": 0.6})
    ax.tick_params(labelsize=5.5)
    sizes = np.bincount(np.asarray(superclass_of)[order], minlength=len(superclass_names))
    edges = np.cumsum(sizes)[:-1]
    for e in edges:
        ax.axhline(e, color="white", lw=0.8)
        ax.axvline(e, color="white", lw=0.8)
    colors = superclass_colours(len(superclass_names))
    for label, i in zip(ax.get_yticklabels(), order):
        label.set_color(colors[int(superclass_of[i])])
    for label, i in zip(ax.get_xticklabels(), order):
        label.set_color(colors[int(superclass_of[i])])
    ax.set_title(title)
    return fig


def contingency_heatmap(table, row_names, col_names, ari: float, nmi: float,
                        title: str = "Derived superclasses against CIFAR-100's") -> Figure:
    """Counts of classes in (derived group, CIFAR-100 superclass); rows sorted by their peak column."""
    import seaborn as sns

    table = np.asarray(table)  # (K, S)
    rows = sorted(range(table.shape[0]), key=lambda r: (int(table[r].argmax()), -int(table[r].max())))
    fig = Figure(figsize=(0.45 * table.shape[1] + 5, 0.38 * table.shape[0] + 3.5), layout="constrained")
    ax = fig.subplots()
    sns.heatmap(table[rows], ax=ax, annot=True, fmt="d", cmap="Blues", cbar=False,
                xticklabels=list(col_names), yticklabels=[row_names[r] for r in rows],
                annot_kws={"fontsize": 7}, linewidths=0.3, linecolor="0.9")
    ax.tick_params(labelsize=7)
    ax.set_xlabel("CIFAR-100 superclass")
    ax.set_ylabel("derived superclass (WordNet)")
    ax.set_title(f"{title}\nARI = {ari:.3f}, NMI = {nmi:.3f}")
    return fig


# ----------------------------------------------------------------------------- training curves

def draw_run_curves(fig: Figure, rows: list[dict], epochs: int, title: str = "") -> Figure:
    """(Re)draw one run's curves on ``fig``: test top-1 per peer and ensemble, training top-1
    per peer (dotted, on un-augmented training images) on the evaluated epochs; train loss per
    peer on every epoch."""
    fig.clear()
    ax_acc, ax_loss = fig.subplots(1, 2)
    x = [r["epoch"] for r in rows]
    ev = [r for r in rows if "test_acc" in r]
    xe = [r["epoch"] for r in ev]
    k = len(rows[0]["train_loss"]) if rows else 0
    for i in range(k):
        line, = ax_acc.plot(xe, [r["test_acc"][i] for r in ev], marker="o", ms=3,
                            label=f"model {i + 1}")
        fit = [r for r in ev if "train_acc" in r]
        if fit:
            ax_acc.plot([r["epoch"] for r in fit], [r["train_acc"][i] for r in fit], ":",
                        color=line.get_color(), label=f"model {i + 1}, train")
        ax_loss.plot(x, [r["train_loss"][i] for r in rows], marker="o", ms=3, label=f"model {i + 1}")
    if rows:
        ax_acc.plot(xe, [r["ensemble_acc"] for r in ev], "k--", marker="s", ms=3, label="ensemble")
        ax_acc.legend(fontsize=8)
        ax_loss.legend(fontsize=8)
    for ax, ylabel in ((ax_acc, "top-1 [%] (test; dotted: train)"), (ax_loss, "train loss (CE + KL)")):
        ax.set_xlim(0.5, max(epochs, 1) + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    fig.suptitle(title or f"epoch {x[-1] if x else 0}/{epochs}")
    return fig


class LiveCurves:
    """Learning curves shown once and updated in place (no flicker).

    Pass an instance as ``on_epoch`` to :func:`sdml.training.train.train`. A redraw (a PNG rendered for
    the notebook) costs about 0.15 s on a small CPU, which is a real share of an epoch on a GPU,
    so epochs closer than ``min_interval`` seconds to the last redraw only record their row; the
    last epoch is always drawn, and :meth:`flush` draws whatever is pending. In a papermill run
    the executed notebook keeps the last drawing.
    """

    def __init__(self, epochs: int, rows: list[dict] | None = None, title: str = "",
                 min_interval: float = 5.0):
        self.epochs, self.title, self.min_interval = epochs, title, min_interval
        self.rows = list(rows or [])
        self.fig = Figure(figsize=(11, 3.8), layout="constrained")
        self.handle = None
        self.drawn_at = None  # time.monotonic() of the last redraw
        self.pending = False  # rows recorded since the last redraw

    def show(self) -> None:
        from IPython.display import display

        draw_run_curves(self.fig, self.rows, self.epochs, self.title)
        self.drawn_at, self.pending = time.monotonic(), False
        if self.handle is None:
            self.handle = display(self.fig, display_id=True)
        else:
            self.handle.update(self.fig)

    def flush(self) -> None:
        if self.pending:
            self.show()

    def __call__(self, row: dict) -> None:
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        self.pending = True
        recent = self.drawn_at is not None and time.monotonic() - self.drawn_at < self.min_interval
        if row["epoch"] >= self.epochs or not recent:
            self.show()


class LiveRuns:
    """One :class:`LiveCurves` per run folder, each starting from the rows already there; pass
    an instance as ``on_epoch`` to :func:`sdml.training.multirun.train_runs`."""

    def __init__(self, epochs: int, run_dirs, min_interval: float = 5.0):
        from sdml.training.runs import read_metrics

        self.names = [Path(d).name for d in run_dirs]
        self.curves = [LiveCurves(epochs, read_metrics(d), title=name, min_interval=min_interval)
                       for d, name in zip(run_dirs, self.names)]

    def show(self) -> None:
        for live in self.curves:
            live.show()

    def __call__(self, rows: list[dict]) -> None:
        for live, row in zip(self.curves, rows):
            live(row)

    def save(self, folder) -> list[Path]:
        """Each run's figure, with every recorded epoch drawn, as ``learning_curves_<run>.png``."""
        from sdml.notebooks.viz import save_figure

        for live in self.curves:
            live.flush()
        return [save_figure(live.fig, folder, f"learning_curves_{name}.png")
                for live, name in zip(self.curves, self.names)]


def band_note(n_seeds: int, n_peers: int) -> tuple[str, str]:
    """What the learning curves' bands are: (peers and loss panels, ensemble panel)."""
    seeds = f"{n_seeds} seeds" if n_seeds > 1 else "one seed"
    peers = (f"mean and ± 1 sd over {n_peers} peers x {n_seeds} seeds" if n_seeds > 1
             else f"mean and ± 1 sd of the {n_peers} peers ({seeds})")
    ensemble = f"mean and ± 1 sd over {seeds}" if n_seeds > 1 else "one seed: no band"
    return peers, ensemble


def learning_curves(frame, title: str = "Learning curves") -> Figure:
    """Test top-1 of the peers and of the ensemble, and train loss, per group over epochs; the
    panels say what their bands are (:func:`band_note`).

    Args:
        frame: :func:`sdml.results.summary.curves_frame`'s long table.
    """
    import seaborn as sns

    fig = Figure(figsize=(15, 4.4), layout="constrained")
    axes = fig.subplots(1, 3)
    peers = frame[frame["member"] != "ensemble"]
    n_seeds = int(frame.groupby("group")["seed"].nunique().max()) if len(frame) else 0
    n_peers = int(peers.groupby("group")["member"].nunique().max()) if len(peers) else 0
    peer_band, ensemble_band = band_note(n_seeds, n_peers)
    tested = peers.dropna(subset=["test_acc"])
    sns.lineplot(data=tested, x="epoch", y="test_acc", hue="group", errorbar="sd", ax=axes[0], marker="o")
    fitted = peers.dropna(subset=["train_acc"]) if "train_acc" in peers else peers.iloc[:0]
    if len(fitted):  # the regime: top-1 on un-augmented training images, dotted
        sns.lineplot(data=fitted, x="epoch", y="train_acc", hue="group", errorbar=None,
                     ax=axes[0], linestyle=":", legend=False)
    sns.lineplot(data=frame[frame["member"] == "ensemble"].dropna(subset=["test_acc"]), x="epoch",
                 y="test_acc", hue="group", errorbar="sd" if n_seeds > 1 else None, ax=axes[1],
                 marker="o", legend=False)
    sns.lineplot(data=peers, x="epoch", y="train_loss", hue="group", errorbar="sd", ax=axes[2],
                 marker="o", legend=False)
    for ax, t, y in ((axes[0], f"peers: {peer_band}", "top-1 [%] (test; dotted: train)"),
                     (axes[1], f"ensemble of the peers: {ensemble_band}", "test top-1 [%]"),
                     (axes[2], f"train loss of the peers: {peer_band}", "CE + KL on mixed batches")):
        ax.set_title(t, fontsize=9)
        ax.set_ylabel(y)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def superclass_accuracy_bars(frame, title: str = "Test top-1 per CIFAR-100 superclass "
                                                 "(mean over peers and seeds)") -> Figure:
    """Bars of accuracy per superclass, one colour per group (:func:`sdml.results.summary.superclass_accuracy_frame`)."""
    import seaborn as sns

    fig = Figure(figsize=(15, 4.8), layout="constrained")
    ax = fig.subplots()
    sns.barplot(data=frame, x="superclass", y="accuracy", hue="group", errorbar=None, ax=ax)
    ax.tick_params(axis="x", labelrotation=60, labelsize=8)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.set_ylabel("test top-1 [%]")
    ax.set_xlabel("CIFAR-100 superclass")
    ax.set_ylim(0, 100)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    if ax.get_legend() is not None:  # beside the bars, never over them
        sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1.0), title="method", fontsize=8)
    return fig


def reliability_diagram(bins_by_group: dict[str, dict],
                        title: str = "Reliability of the peers (seeds pooled)") -> Figure:
    """Accuracy against confidence per bin, one panel per group (:func:`sdml.results.summary.reliability_by_group`).

    Each non-empty bin is labelled with its number of predictions; bins holding under 1 % of
    them are drawn pale, so a near-empty bin's gap is not read as a calibration failure.
    """
    n = max(len(bins_by_group), 1)
    fig = Figure(figsize=(3.4 * n, 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n, sharey=True))
    for ax, (label, b) in zip(axes, bins_by_group.items()):
        edges = np.asarray(b["edges"])
        width = np.diff(edges)
        acc = np.nan_to_num(np.asarray(b["accuracy"]))
        conf = np.asarray(b["confidence"])
        count = np.asarray(b["count"], dtype=np.float64)
        sparse = count < 0.01 * max(count.sum(), 1)
        ax.bar(edges[:-1], acc, width=width, align="edge", color=np.where(sparse, "#a9c6e8", "tab:blue"),
               edgecolor="white", label="accuracy")
        for left, w_, n, top in zip(edges[:-1], width, count, np.fmax(acc, np.nan_to_num(conf))):
            if n > 0:
                ax.text(left + w_ / 2, min(top + 0.02, 0.97), f"{int(n)}", ha="center", va="bottom",
                        rotation=90, fontsize=5.5, color="0.3")
        ax.bar(edges[:-1], np.nan_to_num(conf), width=width, align="edge", fill=False,
               edgecolor="tab:red", lw=1.2, label="mean confidence")
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence")
        ax.set_title(f"{label}\nECE = {100 * b['ece']:.2f} %", fontsize=9)
    axes[0].set_ylabel("accuracy")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.suptitle(f"{title}\nnumbers: predictions in the bin; pale: a bin with under 1 % of them",
                 fontsize=10)
    return fig


# ----------------------------------------------------------------------------- the sweep

SWEEP_LABELS = {"none": "no mixup", "mixup": "mixup (alpha = 1)",
                "superclass-beta": "superclass Beta (proposed)"}


def mixing_pays(series: list[dict], title: str = "When does mixing pay?") -> Figure:
    """Test top-1 (solid) and training top-1 (dotted) of each method against training length,
    mean ± sd over seeds (error bars), peers' mean per run.

    Args:
        series: :func:`sdml.results.sweep.length_series` of the sweep's rows.
    """
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_test, ax_train = fig.subplots(1, 2)
    methods = list(dict.fromkeys(m for row in series for m in row["methods"]))
    for j, method in enumerate(methods):
        pts = [(row["overrides"]["epochs"], row["methods"][method]) for row in series
               if row["methods"].get(method, {}).get("test_top1")]
        if not pts:
            continue
        x = [e + (j - 1) * 0.6 for e, _ in pts]  # a small offset keeps the bars apart
        for ax, key, style in ((ax_test, "test_top1", "-o"), (ax_train, "train_top1", ":s")):
            mean = [float(np.mean(m[key])) for _, m in pts]
            sd = [float(np.std(m[key], ddof=1)) if len(m[key]) > 1 else 0.0 for _, m in pts]
            ax.errorbar(x, mean, yerr=sd, fmt=style, ms=4, capsize=3,
                        label=SWEEP_LABELS.get(method, method), color=f"C{j}")
    seeds = max((len(m["test_top1"]) for row in series for m in row["methods"].values()), default=0)
    for ax, y in ((ax_test, "test top-1 [%]"), (ax_train, "training top-1 [%] (un-augmented)")):
        ax.set_xlabel("epochs (lr cut 10x at 50 % and 75 %)")
        ax.set_ylabel(y)
        ax.grid(alpha=0.3)
    ax_train.axhline(95, color="grey", lw=0.8, ls="--")
    ax_test.legend(fontsize=8)
    ax_test.set_title(f"test, mean ± sd over {seeds} seeds", fontsize=9)
    ax_train.set_title("training images (the regime: >= 95 % for no mixup)", fontsize=9)
    fig.suptitle(title)
    return fig
