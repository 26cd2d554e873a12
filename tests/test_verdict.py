"""The verdict paragraph: paired comparisons against scipy, the regime, and "cannot tell"."""
import pytest
from scipy import stats as sps

from sdml.results import verdict
from tests.test_stats import fake_run


def runs(method, accs, train=None, **kw):
    out = [fake_run(method, s, a, **kw) for s, a in enumerate(accs)]
    for r, t in zip(out, train or []):
        r.metrics[-1]["train_acc"] = list(t)
    return out


def test_each_claim_is_the_paired_t_over_seeds_of_the_peers_mean():
    beta = [(82.0, 81.0), (81.5, 81.9), (83.0, 82.2)]
    none = [(80.0, 80.4), (80.1, 79.7), (80.9, 81.5)]
    groups = verdict.dml_groups(runs("superclass-beta", beta) + runs("none", none))
    got = verdict.compare(groups, "superclass-beta", "none")
    a = [sum(p) / 2 for p in beta]
    b = [sum(p) / 2 for p in none]
    want = sps.ttest_rel(a, b)
    ci = want.confidence_interval(0.95)
    assert got["n"] == 3 and got["mean"] == pytest.approx(sum(a) / 3 - sum(b) / 3)
    assert (got["low"], got["high"]) == pytest.approx((ci.low, ci.high))
    assert got["p"] == pytest.approx(want.pvalue)
    assert got["verdict"] == ("supported" if ci.low > 0 else "not shown")


@pytest.mark.parametrize("shift, word", [(3.0, "supported"), (-3.0, "contradicted"),
                                         (0.0, "not shown")])
def test_the_verdict_word_follows_the_interval(shift, word):
    base = [(80.0, 80.0), (81.0, 80.0), (79.5, 80.5)]
    noise = [0.3, -0.2, 0.1]
    other = [(a + shift + e, b + shift - e) for (a, b), e in zip(base, noise)]
    if shift == 0.0:
        other = [(80.4, 80.0), (80.6, 80.0), (79.8, 80.5)]  # +0.2, -0.2, +0.15: straddles 0
    groups = verdict.dml_groups(runs("mixup", other) + runs("none", base))
    assert verdict.compare(groups, "mixup", "none")["verdict"] == word


def test_one_seed_cannot_tell_and_gives_no_number():
    groups = verdict.dml_groups(runs("superclass-beta", [(82.0, 81.0)]) + runs("none", [(80.0, 80.0)]))
    res = verdict.compare(groups, "superclass-beta", "none")
    assert res == {"n": 1, "verdict": "cannot tell"}
    text = verdict.verdict_markdown(runs("superclass-beta", [(82.0, 81.0)]) + runs("none", [(80.0, 80.0)]))
    assert "cannot tell (1 shared seed" in text and "points" not in text.split("cannot tell")[1][:40]


def test_the_paragraph_names_the_regime_and_its_limits():
    real = dict(data="fashion-mnist")
    fit = runs("none", [(80.0, 80.4), (80.1, 79.7)], train=[(99.0, 98.0), (97.0, 96.0)], **real)
    starved = runs("none", [(80.0, 80.4), (80.1, 79.7)], train=[(74.0, 75.0), (73.0, 76.0)], **real)
    beta = runs("superclass-beta", [(82.0, 81.0), (81.5, 81.9)], **real)
    text = verdict.verdict_markdown(fit + beta)
    assert "no-mixup peers end at 97.5 % training top-1, so the peers fit their data" in text
    assert "fashion-mnist is not CIFAR-100, its wordnet superclasses are not" in text
    assert "are starved" in verdict.verdict_markdown(starved + beta)
    synthetic = runs("none", [(80.0, 80.4), (80.1, 79.7)]) + runs("superclass-beta", [(82.0, 81.0),
                                                                                      (81.5, 81.9)])
    assert "only show that the pipeline works" in verdict.verdict_markdown(synthetic)
    assert verdict.verdict_markdown([]) == ""


def test_independent_runs_are_left_out_of_the_claims():
    dml = runs("none", [(80.0, 80.0), (81.0, 81.0)])
    control = runs("superclass-beta", [(90.0, 90.0), (91.0, 91.0)], weight=0.0)
    groups = verdict.dml_groups(dml + control)
    assert set(groups) == {"none"}
    assert verdict.compare(groups, "superclass-beta", "none") is None


def test_the_convergence_figure_is_the_largest_move_in_the_last_tenth():
    rows = [{"epoch": e, "test_acc": [a, a + 1.0]} for e, a in
            [(10, 50.0), (20, 60.0), (50, 79.0), (54, 80.0), (57, 80.4), (60, 80.1)]]
    rows.insert(3, {"epoch": 53, "train_loss": [0.1, 0.1]})  # not evaluated: no test_acc
    assert verdict.last_tenth_change(rows, 60) == pytest.approx(0.4)  # epochs 54..60
    assert verdict.last_tenth_change(rows[:-2], 60) is None  # one evaluation there
    real = dict(data="fashion-mnist")
    fit = runs("none", [(80.0, 80.4), (80.1, 79.7)], train=[(99.0, 98.0), (97.0, 96.0)], **real)
    for r in fit:  # fake_run's single row is epoch 3 of 3: one evaluation, no figure
        r.metrics.insert(0, {"epoch": 2, "test_acc": [79.0, 79.4], "train_loss": [0.1, 0.1]})
    text = verdict.verdict_markdown(fit + runs("mixup", [(81.0, 81.0), (81.5, 81.5)], **real))
    assert "their test top-1 moved by 0.85 points over the last 10 % of epochs" in text  # 1.0, 0.7
