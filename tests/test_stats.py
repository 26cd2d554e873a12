"""Paired statistics over seeds: the t interval and p-value against known numbers, McNemar's
exact test on hand-made tables, and the pairing of groups of runs."""
import math
from pathlib import Path

import pytest
import torch
from scipy import stats as sps

from sdml.results import stats
from sdml.results.summary import Run
from sdml.training.config import make_config

# Student's sleep data (Cushny & Peebles 1905, as in "Student" 1908): extra hours of sleep of
# 10 patients under two drugs. R's t.test(extra ~ group, data = sleep, paired = TRUE) gives
# t = -4.0621, df = 9, p-value = 0.002833, 95 % CI -2.4598858 .. -0.7001142, mean -1.58.
SLEEP_1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
SLEEP_2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]


def test_paired_t_on_the_sleep_data_matches_the_published_numbers():
    res = stats.paired_t(SLEEP_1, SLEEP_2)
    assert res["n"] == 10 and res["mean"] == pytest.approx(-1.58)
    assert res["p"] == pytest.approx(0.002833, abs=5e-7)
    assert res["low"] == pytest.approx(-2.4598858, abs=1e-6)
    assert res["high"] == pytest.approx(-0.7001142, abs=1e-6)


def test_paired_t_equals_the_textbook_formula():
    a, b = [72.1, 71.5, 73.0, 72.4, 71.9], [71.2, 71.4, 71.9, 71.0, 71.8]
    d = torch.tensor(a, dtype=torch.float64) - torch.tensor(b, dtype=torch.float64)
    n, mean, sd = d.numel(), float(d.mean()), float(d.std(unbiased=True))
    half = sps.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    t = mean / (sd / math.sqrt(n))
    res = stats.paired_t(a, b)
    assert res["mean"] == pytest.approx(mean)
    assert (res["low"], res["high"]) == pytest.approx((mean - half, mean + half))
    assert res["p"] == pytest.approx(2 * sps.t.sf(abs(t), n - 1))
    wide = stats.paired_t(a, b, confidence=0.99)
    assert wide["low"] < res["low"] and wide["high"] > res["high"]


def test_paired_t_with_one_pair_gives_no_interval_and_refuses_unpaired_input():
    res = stats.paired_t([71.0], [70.0])
    assert res["mean"] == 1.0 and res["n"] == 1
    assert math.isnan(res["low"]) and math.isnan(res["high"]) and math.isnan(res["p"])
    with pytest.raises(ValueError, match="^a, b: shapes"):
        stats.paired_t([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="^confidence:"):
        stats.paired_t([1.0, 2.0], [1.0, 3.0], confidence=95)


def outcomes(both, only_a, only_b, neither):
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return torch.tensor(a), torch.tensor(b)


@pytest.mark.parametrize("table, p", [
    ((50, 1, 6, 43), 2 * (1 + 7) / 2 ** 7),                # P(X <= 1), X ~ Bin(7, 1/2), doubled
    ((30, 10, 2, 8), 2 * (1 + 12 + 66) / 2 ** 12),         # P(X <= 2), X ~ Bin(12, 1/2), doubled
    ((40, 3, 3, 4), 1.0),                                  # balanced: no evidence either way
    ((40, 0, 0, 10), 1.0),                                 # no discordant sample
])
def test_mcnemar_exact_on_hand_made_tables(table, p):
    a, b = outcomes(*table)
    res = stats.mcnemar_exact(a, b)
    assert (res["only_a"], res["only_b"], res["n"]) == (table[1], table[2], sum(table))
    assert res["p"] == pytest.approx(p)
    assert res["mean"] == pytest.approx(100 * (table[1] - table[2]) / sum(table))
    assert stats.mcnemar_exact(b, a)["p"] == pytest.approx(p)  # symmetric


# ----------------------------------------------------------------------------- groups of runs

def fake_run(method, seed, acc, weight=1.0, epochs=3, correct=None, **overrides):
    """A finished run in memory: peers' final top-1 ``acc`` (two values) and, with ``correct``
    ((2, N) bool), test probabilities that get exactly those samples right."""
    cfg = make_config("smoke", method=method, seed=seed, epochs=epochs, mutual_weight=weight,
                      **overrides).to_dict()
    metrics = [{"epoch": epochs, "test_acc": list(acc), "ensemble_acc": max(acc) + 1.0}]
    probs = y = coarse = None
    if correct is not None:
        n = correct.shape[1]
        y = torch.arange(n) % 4
        pred = torch.where(correct, y, (y + 1) % 4)  # (2, N)
        probs = torch.full((2, n, 4), 0.1)
        probs.scatter_(-1, pred.unsqueeze(-1), 0.7)
        coarse = y // 2
    return Run(Path(f"{method}-{weight}-{seed}"), cfg, {}, metrics, probs, y, coarse)


def test_compare_groups_pairs_by_seed_per_peer_and_ensemble():
    a = [fake_run("superclass-beta", s, (70.0 + s, 69.0 + 2 * s)) for s in (0, 1, 2)]
    b = [fake_run("none", s, (69.5 + s * s, 69.0)) for s in (2, 1, 0, 7)]  # seed 7 has no pair
    rows = {r["member"]: r for r in stats.compare_groups(a, b)}
    assert set(rows) == {"model 1", "model 2", "ensemble"}
    want = stats.paired_t([70.0, 71.0, 72.0], [69.5, 70.5, 73.5])
    got = rows["model 1"]
    assert got["test"] == "paired t" and got["seeds"] == "0 1 2"
    assert (got["mean"], got["low"], got["high"], got["p"]) == pytest.approx(
        (want["mean"], want["low"], want["high"], want["p"]))
    assert rows["ensemble"]["mean"] == pytest.approx(stats.paired_t([71, 72, 74], [70.5, 71.5, 74.5])["mean"])
    assert got["compared"] == "superclass-beta" and got["baseline"] == "none"


def test_one_seed_uses_mcnemar_on_the_predictions():
    g = torch.Generator().manual_seed(0)
    ca, cb = torch.rand(2, 200, generator=g) < 0.7, torch.rand(2, 200, generator=g) < 0.6
    a = [fake_run("mixup", 0, (70.0, 71.0), correct=ca)]
    b = [fake_run("none", 0, (60.0, 61.0), correct=cb)]
    rows = {r["member"]: r for r in stats.compare_groups(a, b)}
    assert rows["model 2"]["test"] == "McNemar exact"
    assert math.isnan(rows["model 2"]["low"])  # one seed: no interval
    want = stats.mcnemar_exact(ca[1], cb[1])
    assert rows["model 2"]["p"] == want["p"] and rows["model 2"]["mean"] == want["mean"]
    ens_a = a[0].probs.mean(0).argmax(-1) == a[0].y
    ens_b = b[0].probs.mean(0).argmax(-1) == b[0].y
    assert rows["ensemble"]["p"] == stats.mcnemar_exact(ens_a, ens_b)["p"]


@pytest.mark.parametrize("other, field", [
    (dict(epochs=5), "epochs run"), (dict(depth=20), "depth"), (dict(data="cifar100"), "data"),
    (dict(lr=0.2), "lr"),
])
def test_groups_of_other_protocols_are_refused_naming_both(other, field):
    a = [fake_run("superclass-beta", s, (70.0, 70.0), **other) for s in (0, 1)]
    b = [fake_run("none", s, (69.0, 69.0)) for s in (0, 1)]
    with pytest.raises(ValueError) as err:
        stats.compare_groups(a, b)
    msg = str(err.value)
    assert msg.startswith("groups: 'superclass-beta' and 'none' differ in " + field), msg
    assert "\n" not in msg


def test_groups_without_a_shared_seed_are_refused():
    with pytest.raises(ValueError, match="share no seed"):
        stats.compare_groups([fake_run("mixup", 0, (1.0, 1.0))], [fake_run("none", 1, (1.0, 1.0))])


def test_paired_statistics_compares_with_none_mixup_and_the_independent_control():
    finished = [fake_run(m, s, (70.0 + i + s, 70.0 + s), weight=w)
                for i, (m, w) in enumerate([("none", 1.0), ("mixup", 1.0), ("superclass-beta", 1.0),
                                            ("none", 0.0), ("superclass-beta", 0.0)])
                for s in (0, 1)]
    finished.append(fake_run("superclass-choice", 0, (70.0, 70.0), lr=0.3))  # another protocol
    rows, notes = stats.paired_statistics(finished)
    pairs = {(r["compared"], r["baseline"]) for r in rows}
    assert pairs == {("mixup", "none"), ("superclass-beta", "none"), ("superclass-beta", "mixup"),
                     ("superclass-beta, independent", "none, independent"),
                     ("none", "none, independent"), ("superclass-beta", "superclass-beta, independent")}
    assert len(notes) == 2 and all("superclass-choice" in n and "lr" in n for n in notes)
    dml_vs_ind = next(r for r in rows if r["compared"] == "superclass-beta"
                      and r["baseline"] == "superclass-beta, independent" and r["member"] == "model 1")
    assert dml_vs_ind["mean"] == pytest.approx(2.0 - 4.0)  # model 1: 70 + i + s, i = 2 and 4



# ----------------------------------------------------------------------------- the seeds' spread

def test_seed_spread_is_the_larger_sample_sd_and_twice_it_the_bar():
    import statistics

    a, b = [70.0, 72.0, 71.0], [69.0, 69.5, 69.2]  # mean difference 1.77, sds 1.0 and 0.25
    spread, beyond = stats.seed_spread(a, b)
    assert spread == pytest.approx(max(statistics.stdev(a), statistics.stdev(b)))
    assert beyond is False  # 1.77 < 2 x 1.0
    spread, beyond = stats.seed_spread([71.0, 71.4, 71.2], b)  # difference 2.0, sds 0.2, 0.25
    assert spread == pytest.approx(statistics.stdev(b)) and beyond is True
    spread, beyond = stats.seed_spread(b, [71.0, 71.4, 71.2])  # the sign does not matter
    assert beyond is True
    with pytest.raises(ValueError, match="at least two seeds"):
        stats.seed_spread([70.0], [69.0])


def test_compare_groups_and_the_verdict_say_whether_differences_exceed_the_seeds_spread():
    from sdml.results import dml_report

    a = [fake_run("superclass-beta", s, (75.0 + 0.1 * s, 70.0 + 3 * s)) for s in (0, 1)]
    b = [fake_run("none", s, (70.0 - 0.1 * s, 69.0)) for s in (0, 1)]
    rows = {r["member"]: r for r in stats.compare_groups(a, b)}
    import statistics
    assert rows["model 1"]["spread"] == pytest.approx(statistics.stdev([75.0, 75.1]))
    assert rows["model 1"]["beyond_spread"] is True        # +5.1 against sd 0.07
    assert rows["model 2"]["spread"] == pytest.approx(statistics.stdev([70.0, 73.0]))
    assert rows["model 2"]["beyond_spread"] is False       # +2.5 against sd 2.12
    text = dml_report.seed_verdict(list(rows.values()))
    assert text.startswith("- superclass-beta − none: model 1 +5.10, model 2 +2.50")
    assert "beyond twice the seeds' spread for model 1" in text and "within it for model 2" in text
    table = dml_report.stats_table(list(rows.values()))
    assert "| 0.07 | yes |" in table and "| 2.12 | no |" in table

    g = torch.Generator().manual_seed(1)
    one = stats.compare_groups([fake_run("mixup", 0, (70.0, 71.0), correct=torch.rand(2, 50, generator=g) < .7)],
                               [fake_run("none", 0, (60.0, 61.0), correct=torch.rand(2, 50, generator=g) < .6)])
    assert all(r["beyond_spread"] is None and math.isnan(r["spread"]) for r in one)
    assert "one seed, so whether this exceeds the spread between seeds is unknown" in \
        dml_report.seed_verdict(one)
    assert "unknown (one seed)" in dml_report.stats_table(one)


def test_equal_differences_over_seeds_give_no_p_value_instead_of_zero():
    res = stats.paired_t([72.3, 71.0], [72.65, 71.35])  # -0.35 on both seeds
    assert res["mean"] == pytest.approx(-0.35) and res["low"] == res["high"] == res["mean"]
    assert math.isnan(res["p"])
    assert not math.isnan(stats.paired_t([72.3, 71.0], [72.65, 71.40])["p"])
