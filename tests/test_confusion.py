"""Confusions inside and across superclasses, and peer agreement, on hand-made predictions."""
import math
from pathlib import Path

import pytest
import torch
from scipy.stats import entropy

from sdml.results import confusion
from sdml.results.summary import Run
from sdml.training.config import make_config

# 6 classes in superclasses {0, 1, 2}, {3, 4}, {5}
SC = torch.tensor([0, 0, 0, 1, 1, 2])
Y = torch.tensor([0, 0, 1, 2, 3, 3, 4, 5, 5, 1])
PRED = torch.tensor([0, 1, 1, 0, 3, 5, 4, 5, 3, 2])
# right: 0, 2, 4, 6, 7 (5 of 10); sibling errors: 0->1, 2->0, 1->2 (3); across: 3->5, 5->3 (2)


def test_confusion_rates_on_a_hand_made_prediction_set():
    rates = confusion.confusion_rates(PRED, Y, SC)
    assert rates == pytest.approx({"error": 50.0, "sibling": 30.0, "cross": 20.0,
                                   "sibling_share": 60.0})
    perfect = confusion.confusion_rates(Y, Y, SC)
    assert perfect["error"] == 0 and math.isnan(perfect["sibling_share"])


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    cm = confusion.confusion_matrix(PRED, Y, 6)
    hand = torch.zeros(6, 6, dtype=torch.long)
    for t, p in zip(Y.tolist(), PRED.tolist()):
        hand[t, p] += 1
    assert torch.equal(cm, hand) and cm.sum() == 10 and cm.trace() == 5


def test_superclass_order_puts_siblings_side_by_side():
    sc = torch.tensor([2, 0, 1, 0, 2, 1])
    assert confusion.superclass_order(sc).tolist() == [1, 3, 2, 5, 0, 4]


def test_most_confused_pairs_count_both_directions():
    cm = torch.zeros(6, 6, dtype=torch.long)
    cm[0, 1], cm[1, 0], cm[3, 5], cm[5, 3], cm[2, 4] = 4, 3, 5, 1, 2
    names = list("abcdef")
    pairs = confusion.most_confused_pairs(cm, SC, names, top=3)
    assert pairs == [{"a": "a", "b": "b", "count": 7, "siblings": True},
                     {"a": "d", "b": "f", "count": 6, "siblings": False},
                     {"a": "c", "b": "e", "count": 2, "siblings": False}]
    assert len(confusion.most_confused_pairs(cm, SC, top=50)) == 3  # pairs never confused: left out


def test_peer_agreement_against_scipy_entropy():
    p = torch.tensor([[[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]],
                      [[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]],
                      [[0.1, 0.1, 0.8], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6]]])  # (K=3, N=3, C=3)
    got = confusion.peer_agreement(p)
    # predictions: peer 0 [0, 1, 2], peer 1 [0, 0, 2], peer 2 [2, 1, 2]: pairs agree 2/3, 2/3, 1/3
    assert got["same_prediction"] == pytest.approx(100 * (2 / 3 + 2 / 3 + 1 / 3) / 3)
    kls = [entropy(p[j, n].numpy(), p[k, n].numpy()) for j in range(3) for k in range(3) if j != k
           for n in range(3)]
    assert got["kl"] == pytest.approx(sum(kls) / len(kls), rel=1e-6)
    one = confusion.peer_agreement(p[:1])
    assert math.isnan(one["same_prediction"]) and math.isnan(one["kl"])
    same = confusion.peer_agreement(torch.stack([p[0], p[0]]))
    assert same["same_prediction"] == 100.0 and same["kl"] == pytest.approx(0.0, abs=1e-12)


def test_the_superclass_table_comes_from_the_runs_labels():
    coarse = SC[Y]
    table = confusion.superclass_table(Y, coarse, 7)
    assert table.tolist() == SC.tolist() + [-1]  # class 6 has no test sample
    with pytest.raises(ValueError, match="^coarse: class 0 appears under several superclasses"):
        confusion.superclass_table(torch.tensor([0, 0]), torch.tensor([0, 1]), 2)


def run_of(pred_k, weight=1.0, seed=0):
    """A finished run whose K peers predict ``pred_k`` ((K, N)) with probability 0.9."""
    k, n = pred_k.shape
    probs = torch.full((k, n, 6), 0.02)
    probs.scatter_(-1, pred_k.unsqueeze(-1), 0.9)
    cfg = make_config("smoke", method="none", seed=seed, mutual_weight=weight).to_dict()
    return Run(Path("r"), cfg, {}, [{"epoch": 3, "test_acc": [0.0] * k, "ensemble_acc": 0.0}],
               probs, Y, SC[Y], tuple("abcdef"))


def test_group_functions_pool_peers_and_seeds():
    runs_ = [run_of(torch.stack([PRED, Y])), run_of(torch.stack([Y, Y]), seed=1)]
    cm = confusion.group_confusion_matrix(runs_)
    assert cm["names"] == list("abcdef") and cm["order"].tolist() == list(range(6))
    assert cm["matrix"].sum() == 40 and cm["matrix"].trace() == 35
    behaviour = confusion.group_behaviour(runs_)
    assert behaviour["error"] == pytest.approx([25.0, 0.0])  # peers averaged: (50 + 0) / 2
    assert behaviour["sibling"] == pytest.approx([15.0, 0.0])
    assert behaviour["same_prediction"] == pytest.approx([50.0, 100.0])
    assert behaviour["kl"][1] == pytest.approx(0.0, abs=1e-9) and behaviour["kl"][0] > 0
