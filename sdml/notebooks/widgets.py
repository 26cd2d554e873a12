"""An interactive mixing preview for JupyterLab (ipywidgets, no ipympl needed).

Pick two classes, a method and its Beta parameters; move the ratio or draw one from the method's
law for that pair. The view shows the mixed image, the mixed label's top classes and the law of
lam with the current ratio marked.

Computing and drawing are apart: :meth:`MixingPreview.compute` is a pure function of a state dict
(what the tests drive); :class:`PreviewView` owns one off-screen matplotlib figure whose artists
are updated in place and rendered to PNG bytes for a ``widgets.Image``, so an update swaps one
picture and never flickers, whatever matplotlib backend the kernel uses.
"""
from __future__ import annotations

import io

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from sdml.data.cifar import CifarArrays
from sdml.method.mixup import DEFAULTS, METHODS, sample_ratios
from sdml.notebooks.viz import (class_index, figure3_for, mix_pair, superclass_of_arrays, to_display,
                                top_classes)
from sdml.notebooks.viz_ratios import GRID, pair_law

TOP_K = 3  # bars in the label panel (a mixed label has at most two non-zero classes)


class PreviewView:
    """One row of three panels (mixed image, top classes, law of lam) whose artists are updated."""

    def __init__(self, axes, size: int = 32):
        self.ax_img, self.ax_bar, self.ax_law = axes
        self.image = self.ax_img.imshow(np.zeros((size, size, 3)), interpolation="nearest")
        self.ax_img.set_xticks([])
        self.ax_img.set_yticks([])
        self.bars = self.ax_bar.barh(range(TOP_K), [0] * TOP_K, color="steelblue")
        self.ax_bar.set_xlim(0, 1)
        self.ax_bar.set_yticks(range(TOP_K))
        self.ax_bar.invert_yaxis()
        self.ax_bar.set_xlabel("weight in the mixed label")
        (self.curve,) = self.ax_law.plot([], [], color="crimson", lw=1.6)
        self.stems = self.ax_law.vlines([], 0, 1, color="crimson", lw=2)
        self.marker = self.ax_law.axvline(0.5, color="black", ls="--", lw=1.2)
        self.ax_law.set_xlim(0, 1)
        self.ax_law.set_xlabel("lam")

    def update(self, result: dict) -> None:
        """Put a :meth:`MixingPreview.compute` result into the artists."""
        self.image.set_data(to_display(result["mixed_image"]))
        self.ax_img.set_title(f"mixed, lam = {result['lam']:.2f}\n{result['class_a']} + {result['class_b']}",
                              fontsize=8)
        names = [name for name, _ in result["top_classes"]]
        weights = [w for _, w in result["top_classes"]]
        for i, bar in enumerate(self.bars):
            bar.set_width(weights[i] if i < len(weights) else 0.0)
        self.ax_bar.set_yticklabels([names[i] if i < len(names) else "" for i in range(TOP_K)], fontsize=8)
        self.ax_bar.set_title("mixed label: top classes", fontsize=9)
        x, y = result["density_x"], result["density_y"]
        if result["density_kind"] == "points":
            self.curve.set_data([], [])
            self.stems.set_segments([[(v, 0.0), (v, p)] for v, p in zip(x, y)])
            top = 1.0
            self.ax_law.set_ylabel("probability")
        else:
            self.curve.set_data(x, y)
            self.stems.set_segments([])
            top = float(np.max(y[(x > 0.01) & (x < 0.99)]))
            self.ax_law.set_ylabel("density")
        self.ax_law.set_ylim(0, top * 1.15)
        self.marker.set_xdata([result["lam"], result["lam"]])
        pairs = "same superclass" if result["same"] else "different superclasses"
        self.ax_law.set_title(f"{result['method']}, {pairs}:\n{result['law']}", fontsize=8)


def preview_figure(results: list[dict]) -> Figure:
    """Static figure: one :class:`PreviewView` row per result (what papermill runs show)."""
    fig = Figure(figsize=(10, 2.9 * len(results)), layout="constrained")
    axes = fig.subplots(len(results), 3, squeeze=False, width_ratios=(1, 1.2, 1.5))
    for row, result in zip(axes, results):
        PreviewView(row, size=result["mixed_image"].shape[-1]).update(result)
    return fig


class MixingPreview:
    """Widgets and state of the interactive preview; ``.widget`` is what a notebook displays.

    Args:
        arrays: the dataset (training images are shown).
        superclass_of: (C,) superclass id of each class (default: the dataset's reference
            superclasses, as its coarse labels give them).
        similarity: (C, C) normalised similarity; enables ``superclass-soft``.
        seed: seed of the generator that draws ratios and images.
    """

    def __init__(self, arrays: CifarArrays, superclass_of: torch.Tensor | None = None,
                 similarity: torch.Tensor | None = None, seed: int = 0):
        import ipywidgets as w

        self.arrays, self.similarity = arrays, similarity
        self.superclass_of = superclass_of_arrays(arrays) if superclass_of is None else superclass_of
        self.names = tuple(arrays.fine_names)
        pair = _figure3_or_none(self.names)
        self.generator = torch.Generator().manual_seed(seed)
        self.methods = tuple(m for m in METHODS if m != "superclass-soft" or similarity is not None)
        # the k-th training sample of each class is shown; "new images" draws other ones
        self.members = [torch.nonzero(torch.as_tensor(arrays.train_y) == c).flatten()
                        for c in range(len(self.names))]
        log_slider = dict(base=10, min=-1.5, max=1.5, step=0.05, readout_format=".2f", continuous_update=False)
        self.class_a = w.Dropdown(options=self.names, value=_default(self.names, pair[0], 0), description="class A")
        self.class_b = w.Dropdown(options=self.names, value=_default(self.names, pair[1], 1), description="class B")
        self.method = w.Dropdown(options=self.methods, value="superclass-beta", description="method")
        self.lam = w.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.01, description="ratio lam")
        self.alpha = w.FloatLogSlider(value=DEFAULTS["mixup"]["alpha"], description="mixup alpha", **log_slider)
        self.same_alpha = w.FloatLogSlider(value=DEFAULTS["superclass-beta"]["same_alpha"],
                                           description="same alpha", **log_slider)
        self.diff_alpha = w.FloatLogSlider(value=DEFAULTS["superclass-beta"]["diff_alpha"],
                                           description="diff alpha", **log_slider)
        self.sample_button = w.Button(description="sample ratio", tooltip="draw lam from the method's law")
        self.images_button = w.Button(description="new images", tooltip="other samples of the two classes")
        self.image = w.Image(format="png")
        self.index = {"a": 0, "b": 0}
        # fixed margins: a layout engine would re-solve the layout on every redraw (3x slower)
        fig = Figure(figsize=(10, 2.9))
        FigureCanvasAgg(fig)
        self.figure = fig
        axes = fig.subplots(1, 3, gridspec_kw=dict(width_ratios=(1, 1.2, 1.5), left=0.02, right=0.98,
                                                   bottom=0.17, top=0.84, wspace=0.42))
        self.view = PreviewView(axes, size=arrays.train_x.shape[-1])
        for control in (self.class_a, self.class_b, self.method, self.lam, self.alpha, self.same_alpha,
                        self.diff_alpha):
            control.observe(lambda change: self.refresh(), names="value")
        self.sample_button.on_click(lambda _: self.sample_ratio())
        self.images_button.on_click(lambda _: self.new_images())
        self.widget = w.VBox([w.HBox([self.class_a, self.class_b, self.method]),
                              w.HBox([self.lam, self.sample_button, self.images_button]),
                              w.HBox([self.alpha, self.same_alpha, self.diff_alpha]), self.image])
        self.result: dict = {}
        self.refresh()

    # ------------------------------------------------------------------ state and computation
    @property
    def state(self) -> dict:
        """The controls' current values."""
        return {"class_a": self.class_a.value, "class_b": self.class_b.value, "method": self.method.value,
                "lam": float(self.lam.value), "alpha": float(self.alpha.value),
                "same_alpha": float(self.same_alpha.value), "diff_alpha": float(self.diff_alpha.value),
                "index_a": self.index["a"], "index_b": self.index["b"]}

    def method_params(self, state: dict) -> dict:
        """The overrides :func:`sdml.method.mixup.sample_ratios` takes for ``state``'s method."""
        method = state["method"]  # constants without a slider keep the paper's values
        params = {name: state[name] for name in DEFAULTS[method] if name in state}
        if method == "superclass-soft":
            params["similarity"] = self.similarity
        return params

    def sample_of(self, name: str, k: int) -> int:
        """Dataset index of the k-th (cyclically) training sample of class ``name``."""
        members = self.members[class_index(self.names, name)]
        if members.numel() == 0:
            raise ValueError(f"class: {name!r} has no training sample in this dataset")
        return int(members[k % members.numel()])

    def compute(self, state: dict) -> dict:
        """Everything the view shows for ``state``: mixed_image (3, H, W), lam, top_classes,
        the law of lam for the pair (density_x, density_y, density_kind, law) and ``same``."""
        ya, yb = class_index(self.names, state["class_a"]), class_index(self.names, state["class_b"])
        if state["method"] not in self.methods:
            raise ValueError(f"method: {state['method']!r}; allowed: {', '.join(self.methods)}")
        img_a = torch.from_numpy(self.arrays.train_x[self.sample_of(state["class_a"], state["index_a"])])
        img_b = torch.from_numpy(self.arrays.train_x[self.sample_of(state["class_b"], state["index_b"])])
        same = bool(self.superclass_of[ya] == self.superclass_of[yb])
        params = self.method_params(state)
        t = float(self.similarity[ya, yb]) if state["method"] == "superclass-soft" else None
        law = pair_law(state["method"], same, t, **params)
        if law.points:
            x, y, kind = np.array([v for v, _ in law.points]), np.array([p for _, p in law.points]), "points"
        else:
            x, y, kind = GRID, law.density(GRID), "density"
        return {"mixed_image": mix_pair(img_a, img_b, state["lam"]), "image_a": img_a, "image_b": img_b,
                "lam": float(state["lam"]), "top_classes": top_classes(ya, yb, state["lam"], TOP_K, self.names),
                "density_x": x, "density_y": y, "density_kind": kind, "law": law.label, "same": same,
                "method": state["method"], "class_a": state["class_a"], "class_b": state["class_b"]}

    def draw_ratio(self, state: dict) -> float:
        """One lam from ``state``'s method for its pair, drawn with the preview's generator."""
        ya, yb = class_index(self.names, state["class_a"]), class_index(self.names, state["class_b"])
        lam = sample_ratios(state["method"], torch.tensor([ya]), torch.tensor([yb]), self.superclass_of,
                            self.generator, **self.method_params(state))
        return float(lam[0])

    # ------------------------------------------------------------------ actions
    def refresh(self) -> None:
        """Recompute from the controls and redraw the one figure into the image widget."""
        self.result = self.compute(self.state)
        self.view.update(self.result)
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=90)
        self.image.value = buf.getvalue()

    def sample_ratio(self) -> float:
        """Draw lam from the chosen method's law and move the ratio slider there."""
        lam = self.draw_ratio(self.state)
        self.lam.value = lam  # the observer redraws
        return lam

    def new_images(self) -> None:
        """Show other random training samples of the two classes."""
        for key in self.index:
            self.index[key] = int(torch.randint(1 << 30, (1,), generator=self.generator))
        self.refresh()

    def static_figure(self, changes: list[dict]) -> Figure:
        """The same views drawn once, one row per dict of state changes (e.g. class_a, class_b,
        method); without ``lam`` a ratio is drawn from the method's law."""
        results = []
        for change in changes:
            unknown = sorted(set(change) - set(self.state))
            if unknown:
                raise ValueError(f"{unknown[0]}: not a preview setting; allowed: {', '.join(self.state)}")
            state = {**self.state, **change}
            if "lam" not in change:
                state["lam"] = self.draw_ratio(state)
            results.append(self.compute(state))
        return preview_figure(results)


def _figure3_or_none(names) -> tuple[str, str]:
    """The first Figure 3 pair of the class set (same superclass), or none for other names."""
    try:
        return figure3_for(names)[0][:2]
    except ValueError:
        return ("", "")


def _default(names, wanted: str, fallback: int) -> str:
    return wanted if wanted in names else names[fallback]
