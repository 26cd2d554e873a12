"""The results' figures say what they draw: band labels, legends beside the data, distinct colours,
bin counts."""
import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb

from sdml.hierarchy.superclasses import COARSE_NAMES
from sdml.notebooks import colours, plots


def curves(n_seeds: int, n_peers: int = 2) -> pd.DataFrame:
    rows = []
    for group in ("no mixup", "superclass Beta"):
        for seed in range(n_seeds):
            for epoch in (1, 2, 3):
                for member in [f"model {i + 1}" for i in range(n_peers)] + ["ensemble"]:
                    rows.append({"group": group, "method": group, "seed": seed, "epoch": epoch,
                                 "member": member, "test_acc": 10.0 * epoch + seed, "train_loss": 1.0 / epoch})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_learning_curve_titles_say_what_the_band_is(n_seeds):
    fig = plots.learning_curves(curves(n_seeds))
    titles = [ax.get_title() for ax in fig.axes[:3]]
    if n_seeds == 1:
        assert titles[0] == "peers: mean and ± 1 sd of the 2 peers (one seed)"
        assert titles[1] == "ensemble of the peers: one seed: no band"
        assert not fig.axes[1].collections  # no band drawn where there is nothing to spread
    else:
        assert titles[0] == "peers: mean and ± 1 sd over 2 peers x 3 seeds"
        assert titles[1] == "ensemble of the peers: mean and ± 1 sd over 3 seeds"
        assert fig.axes[1].collections
    assert "seeds; band" not in fig.get_suptitle()


def test_superclass_bars_have_an_x_label_and_a_legend_beside_the_bars():
    frame = pd.DataFrame([{"group": g, "seed": 0, "member": "model 1", "superclass": s, "accuracy": 90.0}
                          for g in ("no mixup", "mixup", "superclass Beta") for s in COARSE_NAMES])
    fig = plots.superclass_accuracy_bars(frame)
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    ax = fig.axes[0]
    assert ax.get_xlabel() == "CIFAR-100 superclass"
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the axes: covers no bar


def test_superclass_colours_are_distinct():
    palette = np.array([to_rgb(c) for c in colours.superclass_colours(20)])
    distances = np.linalg.norm(palette[:, None] - palette[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() > 0.15  # no two superclasses share (or nearly share) a colour
    assert all(colours.contrast_on_white(c) >= 3.0 for c in palette)  # readable as text on white
    assert colours.contrast_on_white("black") == pytest.approx(21.0)
    assert colours.contrast_on_white("white") == pytest.approx(1.0)


def test_reliability_bins_are_labelled_with_their_counts():
    count = torch.tensor([0.0, 2.0, 10.0, 988.0])
    bins = {"count": count, "edges": torch.linspace(0, 1, 5),
            "accuracy": torch.tensor([float("nan"), 0.5, 0.4, 0.9]),
            "confidence": torch.tensor([float("nan"), 0.3, 0.6, 0.85]), "ece": 0.05}
    fig = plots.reliability_diagram({"mixup": bins})
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert labels == ["2", "10", "988"]  # the empty bin has none
    faces = [p.get_facecolor() for p in fig.axes[0].patches[:4]]
    assert faces[1] != faces[2] == faces[3]  # the bin under 1 % of predictions is pale
