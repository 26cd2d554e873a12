"""Figures (sdml.notebooks.viz, sdml.notebooks.viz_ratios) and the mixing preview widget (sdml.notebooks.widgets), on the CPU."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from sdml.notebooks import viz
from sdml.notebooks import viz_ratios
from sdml.notebooks import widgets
from sdml.data.cifar import CifarArrays
from sdml.hierarchy.superclasses import FINE_NAMES, FINE_TO_COARSE, superclass_of
from sdml.method.mixup import mix_images, sample_ratios

PER_CLASS = 2


def fake_arrays(size: int = 8) -> CifarArrays:
    """100 classes x 2 samples; every pixel of sample k of class c is 2c + k (so images name their source)."""
    y = np.repeat(np.arange(100), PER_CLASS)                          # (200,)
    k = np.tile(np.arange(PER_CLASS), 100)
    x = np.broadcast_to((2 * y + k)[:, None, None, None], (len(y), 3, size, size)).astype(np.uint8).copy()
    coarse = np.asarray(FINE_TO_COARSE)[y]
    return CifarArrays(x, y, coarse, x[:10], y[:10], coarse[:10], FINE_NAMES, tuple(f"s{i}" for i in range(20)))


def source_class(img) -> int:
    return int(torch.as_tensor(img).flatten()[0]) // 2


@pytest.fixture(scope="module")
def arrays():
    return fake_arrays()


@pytest.fixture(scope="module")
def similarity():
    # A stand-in normalised similarity: 1 within a superclass, 0.3 across (t in [0, 1], symmetric).
    sc = superclass_of()
    return torch.where(sc[:, None] == sc[None, :], 1.0, 0.3)


# ----------------------------------------------------------------------------- pure helpers

def test_mix_pair_equals_the_formula():
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (3, 8, 8), generator=g, dtype=torch.uint8)
    b = torch.randint(0, 256, (3, 8, 8), generator=g, dtype=torch.uint8)
    for lam in (0.0, 0.1, 0.5, 0.9, 1.0):
        expected = lam * a.double() + (1 - lam) * b.double()
        assert torch.allclose(viz.mix_pair(a, b, lam).double(), expected, atol=1e-4)


def test_top_classes_is_the_mixed_label():
    names = FINE_NAMES
    top = viz.top_classes(names.index("tulip"), names.index("trout"), 0.9, k=3, names=names)
    assert [n for n, _ in top] == ["tulip", "trout"]
    assert [w for _, w in top] == pytest.approx([0.9, 0.1])
    assert viz.top_classes(3, 3, 0.3, names=names) == [(names[3], pytest.approx(1.0))]
    assert [n for n, _ in viz.top_classes(4, 7, 0.2)] == [7, 4]


def test_figure3_picks_samples_of_the_right_classes(arrays):
    pairs = viz.figure3_pairs(arrays, torch.Generator().manual_seed(1))
    assert [(p.name_a, p.name_b, p.lam) for p in pairs] == list(viz.FIGURE3)
    for p in pairs:
        assert source_class(p.image_a) == FINE_NAMES.index(p.name_a)
        assert source_class(p.image_b) == FINE_NAMES.index(p.name_b)
        assert torch.allclose(p.mixed, p.lam * p.image_a.float() + (1 - p.lam) * p.image_b.float())
    assert torch.equal(pairs[1].image_a, pairs[0].image_b)  # one tulip sample for the whole figure
    with pytest.raises(ValueError, match="class"):
        viz.class_index(FINE_NAMES, "tulips")


def test_class_pairs_respect_superclasses():
    sc = superclass_of()
    g = torch.Generator().manual_seed(2)
    y, yp = viz.sample_class_pairs(2000, True, sc, g, distinct=True)
    assert bool((sc[y] == sc[yp]).all()) and bool((y != yp).all())
    y, yp = viz.sample_class_pairs(2000, False, sc, g)
    assert bool((sc[y] != sc[yp]).all())


def test_mixing_grid_ratios_follow_each_method(arrays):
    grid = viz.mixing_grid(arrays, superclass_of(), viz_ratios.method_params(), 5, torch.Generator().manual_seed(3))
    assert set(grid) == {(m, g) for m in ("mixup", "superclass-choice", "superclass-beta") for g in viz.PAIR_GROUPS}
    assert all(ex.lam == pytest.approx(0.5) for ex in grid[("superclass-choice", "same superclass")])
    assert all(min(abs(ex.lam - 0.1), abs(ex.lam - 0.9)) < 1e-6
               for ex in grid[("superclass-choice", "different superclass")])
    sc = superclass_of()
    for (method, group), examples in grid.items():
        for ex in examples:
            same = bool(sc[FINE_NAMES.index(ex.name_a)] == sc[FINE_NAMES.index(ex.name_b)])
            assert same == (group == "same superclass")
            assert torch.allclose(ex.mixed, viz.mix_pair(ex.image_a, ex.image_b, ex.lam))


# ----------------------------------------------------------------------------- ratio laws

def test_laws_match_the_paper():
    sc = superclass_of()
    assert viz_ratios.pair_law("superclass-choice", True).points == ((0.5, 1.0),)
    assert viz_ratios.pair_law("superclass-choice", False).points == (
        (pytest.approx(0.1), 0.5), (0.9, 0.5))
    assert viz_ratios.pair_law("superclass-beta", True).betas == ((8.0, 8.0, 1.0),)
    assert viz_ratios.pair_law("superclass-beta", False, diff_alpha=0.3).betas == ((0.3, 0.3, 1.0),)
    law = viz_ratios.group_law("mixup", False, sc, alpha=2.0)
    x = np.linspace(0.05, 0.95, 7)
    assert np.allclose(law.density(x), stats.beta.pdf(x, 2.0, 2.0))
    with pytest.raises(ValueError, match="alpha"):
        viz_ratios.pair_law("mixup", True, alpha=-1.0)


def test_soft_group_law_is_a_mixture_that_integrates_to_one(similarity):
    sc = superclass_of()
    same = viz_ratios.group_law("superclass-soft", True, sc, similarity=similarity)
    diff = viz_ratios.group_law("superclass-soft", False, sc, similarity=similarity)
    assert same.betas == ((8.0, 8.0, pytest.approx(1.0)),)  # every same-superclass pair has t = 1
    a = math.exp(math.log(0.2) + 0.3 * (math.log(8.0) - math.log(0.2)))
    assert len(diff.betas) == 1 and diff.betas[0][0] == pytest.approx(a, rel=1e-5)
    x = np.linspace(0.0005, 0.9995, 20000)
    assert np.trapezoid(same.density(x), x) == pytest.approx(1.0, abs=1e-3)


def test_sampled_ratios_follow_their_laws(similarity):
    sc = superclass_of()
    methods = viz_ratios.method_params(similarity)
    table = viz_ratios.ratio_table(methods, 2000, sc, torch.Generator().manual_seed(4))
    assert len(table) == 4 * 2 * 2000
    summary = viz_ratios.ratio_summary(table)
    assert summary.iloc[:, 1][("superclass-choice", "same superclass")] == 1.0    # all at 0.5
    assert summary.iloc[:, 2][("superclass-choice", "different superclass")] == 1.0  # all 0.1 / 0.9
    for method in methods:
        for group, same in zip(viz.PAIR_GROUPS, (True, False)):
            lam = table[(table.method == method) & (table.pairs == group)].lam.to_numpy()
            law = viz_ratios.group_law(method, same, sc, **methods[method])
            if law.points:
                values = np.array([v for v, _ in law.points])
                assert np.abs(lam[:, None] - values[None]).min(1).max() < 1e-6
            else:
                (a, b, _), = law.betas
                assert stats.kstest(lam, stats.beta(a, b).cdf).pvalue > 1e-3


def test_same_superclass_share_matches_its_expectation(arrays):
    sc = superclass_of()
    labels = torch.as_tensor(arrays.train_y)
    expected = viz_ratios.expected_same_share(labels, sc, 64)
    q = 20 * 10 * 9 / (200 * 199)  # 10 samples per superclass, 200 in all
    assert expected == pytest.approx(1 / 64 + 63 / 64 * q)
    shares = viz_ratios.batch_same_shares(labels, sc, 64, 3000, torch.Generator().manual_seed(5))
    assert shares.shape == (3000,)
    assert float(shares.mean()) == pytest.approx(expected, abs=0.004)  # std of the mean ~ 0.0006


# ----------------------------------------------------------------------------- figures

def test_saved_figures_exist_and_are_pngs(arrays, similarity, tmp_path):
    sc = superclass_of()
    g = torch.Generator().manual_seed(6)
    methods = viz_ratios.method_params(similarity)
    figures = {
        "figure3_mixed_pairs.png": viz.plot_examples(viz.figure3_pairs(arrays, g)),
        "mixing_grid_by_method": viz.plot_mixing_grid(viz.mixing_grid(arrays, sc, methods, 2, g)),
        "ratio_histograms.png": viz_ratios.plot_ratio_histograms(
            viz_ratios.ratio_table(methods, 500, sc, g), methods, sc),
        "same_superclass_share.png": viz_ratios.plot_same_share(
            viz_ratios.batch_same_shares(arrays.train_y, sc, 64, 50, g), 0.06, 64),
        "soft_ratio_vs_similarity.png": viz_ratios.plot_soft_ratios(
            viz_ratios.soft_table(similarity, 300, sc, g)),
    }
    for name, fig in figures.items():
        path = viz.save_figure(fig, tmp_path / "figs", name, dpi=30)
        assert path.name == (name if name.endswith(".png") else name + ".png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    with pytest.raises(ValueError, match="name"):
        viz.save_figure(figures["figure3_mixed_pairs.png"], tmp_path, "../escape.png")


# ----------------------------------------------------------------------------- the widget

def test_widget_slider_and_dropdowns_drive_the_mixed_image(arrays):
    preview = widgets.MixingPreview(arrays, seed=0)
    first_png = bytes(preview.image.value)
    assert first_png[:4] == b"\x89PNG"
    a = preview.result["image_a"]
    assert source_class(a) == FINE_NAMES.index(preview.class_a.value)

    preview.lam.value = 0.25
    r = preview.result
    assert r["lam"] == 0.25
    expected = mix_images(torch.stack([r["image_a"], r["image_b"]]).float(), torch.tensor([1, 0]),
                          torch.tensor([0.25, 0.25]))[0]
    assert torch.equal(r["mixed_image"], expected)
    assert r["top_classes"] == [(preview.class_b.value, 0.75), (preview.class_a.value, 0.25)]
    assert bytes(preview.image.value) != first_png  # the one view was redrawn

    before = r["mixed_image"]
    preview.class_b.value = "trout"
    assert source_class(preview.result["image_b"]) == FINE_NAMES.index("trout")
    assert not torch.equal(preview.result["mixed_image"], before)
    assert preview.result["same"] is False


def test_widget_sample_button_draws_from_the_methods_law(arrays):
    preview = widgets.MixingPreview(arrays, seed=1)
    preview.class_a.value, preview.class_b.value = "tulip", "trout"  # different superclasses
    preview.method.value = "superclass-choice"
    drawn = set()
    for _ in range(10):
        preview.sample_button.click()
        assert preview.lam.value == preview.result["lam"]
        drawn.add(round(preview.result["lam"], 6))
    assert drawn == {0.1, 0.9}
    assert preview.result["density_kind"] == "points"

    preview.class_b.value = "rose"  # same superclass as tulip
    preview.sample_button.click()
    assert preview.result["lam"] == pytest.approx(0.5)

    preview.method.value = "superclass-beta"
    preview.same_alpha.value = 30.0  # Beta(30, 30): sd 0.064
    twin = torch.Generator().manual_seed(0)
    twin.set_state(preview.generator.get_state())
    draws = [preview.sample_ratio() for _ in range(8)]
    y, y_partner = torch.tensor([FINE_NAMES.index("tulip")]), torch.tensor([FINE_NAMES.index("rose")])
    independent = [float(sample_ratios("superclass-beta", y, y_partner, superclass_of(), twin,
                                       same_alpha=30.0, diff_alpha=preview.diff_alpha.value)[0])
                   for _ in range(8)]
    # the slider's alpha reached the sampler; each draw is shown on the slider's 0.01 step
    assert draws == [widgets.on_step(d, 0.0, 1.0, 0.01) for d in independent]
    assert all(0.2 < d < 0.8 for d in draws)
    x, y = preview.result["density_x"], preview.result["density_y"]
    assert np.allclose(y, stats.beta.pdf(x, 30.0, 30.0))


def test_sampled_ratios_sit_exactly_on_the_slider_step():
    assert widgets.on_step(0.10000000149, 0.0, 1.0, 0.01) == 0.1  # what the browser would send back
    assert widgets.on_step(0.996, 0.0, 1.0, 0.01) == 1.0
    assert widgets.on_step(-0.2, 0.0, 1.0, 0.01) == 0.0
    values = np.random.default_rng(0).random(500)
    for v in values:
        snapped = widgets.on_step(float(v), 0.0, 1.0, 0.01)
        assert snapped == round(round(v * 100) / 100, 2) and abs(snapped - v) <= 0.005 + 1e-12


def test_concurrent_redraws_never_leave_a_broken_picture(arrays):
    """Two threads driving the preview at once (as ipykernel 7's comm thread and the shell do):
    the picture left is the one a single thread draws for the final state."""
    import threading

    preview = widgets.MixingPreview(arrays, seed=3)
    values = [round(0.05 * i, 2) for i in range(1, 19)]

    def drive(chunk):
        for v in chunk:
            preview.lam.value = v

    threads = [threading.Thread(target=drive, args=(values[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shown = bytes(preview.image.value)
    twin = widgets.MixingPreview(arrays, seed=3)
    twin.lam.value = preview.lam.value
    assert shown == bytes(twin.image.value)


def test_widget_labels_are_not_cut(arrays):
    preview = widgets.MixingPreview(arrays, seed=0)
    for control in (preview.alpha, preview.same_alpha, preview.diff_alpha, preview.lam, preview.method):
        assert control.style.description_width == "initial", control.description


def test_widget_static_figure_and_bad_settings(arrays):
    preview = widgets.MixingPreview(arrays, seed=2)
    fig = preview.static_figure([dict(class_a="orchid", class_b="tulip", method="superclass-choice"),
                                 dict(class_a="tulip", class_b="trout", method="mixup", lam=0.3)])
    assert len(fig.axes) == 6
    assert "superclass-soft" not in preview.method.options  # no similarity given
    with pytest.raises(ValueError, match="colour"):
        preview.static_figure([dict(colour="red")])
    with pytest.raises(ValueError, match="method"):
        preview.compute({**preview.state, "method": "superclass-soft"})


# ----------------------------------------------------------------------------- live learning curves

def curve_row(epoch: int) -> dict:
    return {"epoch": epoch, "lr": 0.1, "train_loss": [2.0 / epoch, 2.1 / epoch],
            "train_loss_total": 4.1 / epoch, "test_acc": [10.0 * epoch, 9.0 * epoch],
            "ensemble_acc": 11.0 * epoch}


@pytest.fixture
def draws(monkeypatch):
    """Every redraw of the live curves, as (title, epochs drawn); no IPython display needed."""
    from IPython import display as ipd

    from sdml.notebooks import plots

    seen = []
    real = plots.draw_run_curves

    def counting(fig, rows, epochs, title=""):
        seen.append((title, [r["epoch"] for r in rows]))
        return real(fig, rows, epochs, title)

    class Handle:
        def update(self, fig):
            pass

    monkeypatch.setattr(plots, "draw_run_curves", counting)
    monkeypatch.setattr(ipd, "display", lambda *a, **k: Handle())
    return seen


def test_live_curves_skip_redraws_closer_than_min_interval_but_draw_the_last_epoch(draws):
    from sdml.notebooks.plots import LiveCurves

    live = LiveCurves(5, title="run", min_interval=1e9)
    live.show()
    for epoch in range(1, 5):
        live(curve_row(epoch))
    assert draws == [("run", [])] and live.pending  # recorded, not redrawn
    live(curve_row(5))
    assert draws[-1] == ("run", [1, 2, 3, 4, 5]) and not live.pending


def test_live_curves_redraw_every_epoch_without_an_interval(draws):
    from sdml.notebooks.plots import LiveCurves

    live = LiveCurves(3, min_interval=0.0)
    for epoch in (1, 2, 3):
        live(curve_row(epoch))
    assert [epochs for _, epochs in draws] == [[1], [1, 2], [1, 2, 3]]


def test_live_runs_start_from_saved_rows_and_save_every_recorded_epoch(draws, tmp_path):
    from sdml.training import runs
    from sdml.notebooks.plots import LiveRuns

    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    runs.append_metrics(dirs[0], curve_row(1))  # a resumed run
    live = LiveRuns(6, dirs, min_interval=1e9)
    live.show()
    live([curve_row(2), curve_row(1)])
    live([curve_row(3), curve_row(2)])
    assert [title for title, _ in draws] == ["a", "b"]  # only the first show
    paths = live.save(tmp_path / "figures")
    assert draws[2:] == [("a", [1, 2, 3]), ("b", [1, 2])]  # pending rows drawn before saving
    assert [p.name for p in paths] == ["learning_curves_a.png", "learning_curves_b.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
