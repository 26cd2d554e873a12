"""Results: ECE against a hand computation, aggregation over seeds, superclass errors, results.md."""
import csv
import io
import json
import math

import pytest
import torch

from sdml.results import metrics
from sdml.results import report
from sdml.results import summary as results
from sdml.training import runs
from sdml.training.config import make_config
from sdml.io.atomic import atomic_torch_save, atomic_write_json


def probs_with_confidence(conf, pred, c=3):
    """(N, C) rows whose top class is ``pred`` with probability ``conf``; the rest shared evenly."""
    rows = []
    for p, k in zip(conf, pred):
        row = [(1 - p) / (c - 1)] * c
        row[k] = p
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


def test_ece_matches_a_hand_computation():
    # confidences 0.9 | 0.62, 0.65 | 0.45, 0.45 fall in bins 13, 9 and 6 of 15
    probs = probs_with_confidence([0.9, 0.62, 0.65, 0.45, 0.45], [0, 1, 2, 0, 1])
    y = torch.tensor([0, 0, 2, 1, 1])  # correct: yes, no, yes, no, yes
    # bin 13: acc 1, conf .9; bin 9: acc .5, conf .635; bin 6: acc .5, conf .45
    hand = 1 / 5 * abs(1 - 0.9) + 2 / 5 * abs(0.5 - 0.635) + 2 / 5 * abs(0.5 - 0.45)
    assert metrics.ece(probs, y) == pytest.approx(hand, abs=1e-12)
    bins = metrics.reliability_bins(probs, y)
    assert bins["count"].tolist() == [0] * 6 + [2] + [0] * 2 + [2] + [0] * 3 + [1, 0]
    assert bins["accuracy"][9].item() == pytest.approx(0.5)
    assert torch.isnan(bins["accuracy"][0])


def test_ece_extremes_and_bin_edges():
    onehot = torch.eye(4, dtype=torch.float64)
    assert metrics.ece(onehot, torch.arange(4)) == 0.0          # sure and right
    assert metrics.ece(onehot, torch.tensor([1, 2, 3, 0])) == 1.0  # sure and wrong
    # a confidence exactly on an edge belongs to the bin it closes: (0.2 - 1/15, 0.2]
    bins = metrics.reliability_bins(probs_with_confidence([3 / 15, 1.0], [0, 0], c=6), torch.tensor([0, 0]))
    assert bins["count"][2] == 1 and bins["count"][14] == 1
    with pytest.raises(ValueError, match="probs"):
        metrics.ece(torch.ones(3), torch.zeros(3, dtype=torch.long))


def test_within_superclass_error_share_on_a_hand_example():
    superclass_of = torch.tensor([0, 0, 1, 1])
    y = torch.tensor([0, 0, 2, 3, 1])
    pred = torch.tensor([1, 0, 3, 0, 1])
    # errors: 0 -> 1 (same superclass), 2 -> 3 (same), 3 -> 0 (different)
    assert metrics.within_superclass_error_share(pred, y, superclass_of) == pytest.approx(2 / 3)
    assert math.isnan(metrics.within_superclass_error_share(y, y, superclass_of))


def test_accuracy_per_superclass_and_ensemble():
    y = torch.tensor([0, 1, 2, 3])
    coarse = torch.tensor([0, 0, 1, 1])
    pred = torch.tensor([0, 0, 2, 2])
    acc = metrics.accuracy_per_superclass(pred, y, coarse, 3)
    assert acc[:2].tolist() == [50.0, 50.0] and torch.isnan(acc[2])
    probs = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[0.5, 0.5]]])  # (K=3, N=1, C=2)
    assert metrics.ensemble(probs).tolist() == [[0.5, 0.5]]


def test_mean_std_is_the_sample_standard_deviation():
    mean, std, n = metrics.mean_std([70.0, 72.0, 74.0])
    assert (mean, n) == (72.0, 3) and std == pytest.approx(2.0)
    mean, std, n = metrics.mean_std([71.5])
    assert mean == 71.5 and math.isnan(std) and n == 1
    assert metrics.format_mean_std(72.0, 2.0) == "72.00 ± 2.00"
    assert metrics.format_mean_std(71.5, float("nan")) == "71.50"
    with pytest.raises(ValueError, match="values"):
        metrics.mean_std([])


# ----------------------------------------------------------------------------- fake run folders

def write_run(root, method, seed, accs, profile="smoke", finished=True, name=None, **overrides):
    """A run folder as notebook 04 leaves it; ``accs``: per epoch, the two peers' test top-1."""
    cfg = make_config(profile, method=method, seed=seed, epochs=len(accs) + (0 if finished else 1),
                      **overrides).to_dict()
    run_dir = root / (name or f"{method}-cifar-seed{seed}")
    atomic_write_json(run_dir / runs.CONFIG, {"config": cfg, "provenance": {"torch": "x", "platform": "test"},
                                              "seed": seed})
    for e, (a1, a2) in enumerate(accs, 1):
        runs.append_metrics(run_dir, {"epoch": e, "test_acc": [a1, a2], "ensemble_acc": (a1 + a2) / 2 + 1,
                                      "train_loss": [1.0, 1.1], "superclass_acc": [80.0, 81.0],
                                      "ensemble_superclass_acc": 82.0})
    if finished:
        y = torch.tensor([0, 0, 5, 6])  # 0 (apple) and 57 (pear): both fruit_and_vegetables
        probs = torch.zeros(2, 4, 100)
        probs[:, torch.arange(4), torch.tensor([0, 57, 5, 6])] = 0.8  # one error, inside the superclass
        probs += 0.2 / 100
        atomic_torch_save({"probs": probs.half(), "y": y, "coarse": torch.zeros(4, dtype=torch.long)},
                          run_dir / runs.PREDICTIONS)
    return run_dir


def test_summary_over_seeds_final_and_best(tmp_path):
    write_run(tmp_path, "superclass-beta", 0, [(50.0, 40.0), (60.0, 45.0), (58.0, 47.0)])
    write_run(tmp_path, "superclass-beta", 1, [(52.0, 44.0), (62.0, 49.0), (61.0, 51.0)])
    write_run(tmp_path, "none", 0, [(30.0, 31.0)], finished=False)
    run_list = results.load_runs(tmp_path)
    assert [r.finished for r in run_list] == [False, True, True]
    rows = {(r["method"], r["metric"], r["member"]): r for r in results.summarise(run_list)}
    assert ("none", "final", "model 1") not in rows  # unfinished runs are left out
    final = rows[("superclass-beta", "final", "model 1")]
    assert (final["mean"], final["n"]) == (59.5, 2) and final["std"] == pytest.approx(3 / math.sqrt(2))
    assert final["paper"] == 73.28
    best = rows[("superclass-beta", "best", "model 1")]
    assert best["mean"] == 61.0 and rows[("superclass-beta", "best_epoch", "model 1")]["mean"] == 2.0
    assert rows[("superclass-beta", "best", "model 2")]["mean"] == 49.0
    share = rows[("superclass-beta", "within_superclass_errors", "model 1")]
    assert share["mean"] == pytest.approx(100.0)  # the one error (pear for apple) stays inside


def test_results_md_and_csv_for_synthetic_runs_say_not_comparable(tmp_path):
    write_run(tmp_path, "superclass-beta", 0, [(50.0, 40.0), (58.0, 47.0)])
    write_run(tmp_path, "none", 0, [(30.0, 31.0)], finished=False)
    md_path, csv_path = report.write_results(tmp_path, results.load_runs(tmp_path), "Results: smoke")
    md = md_path.read_text()
    for number in ("71.51", "71.46", "71.37", "71.08", "72.23", "71.93", "73.28", "73.01"):
        assert number in md
    assert "Not comparable with Table 1" in md and "data synthetic (paper: cifar100)" in md
    assert "unfinished (left out): none-cifar-seed0" in md
    assert ("| proposed, Beta distribution | diff_alpha=0.2 same_alpha=8 | cifar | synthetic | 2 | 0 "
            "| 58.00 | 47.00 | 58.00 (ep 2) |") in md
    table = list(csv.DictReader(io.StringIO(csv_path.read_text())))
    final1 = [r for r in table if r["metric"] == "final" and r["member"] == "model 1"]
    assert len(final1) == 1 and float(final1[0]["mean"]) == 58.0 and float(final1[0]["paper"]) == 73.28


def test_paper_protocol_runs_are_called_comparable(tmp_path):
    run_dir = write_run(tmp_path, "none", 0, [(70.0, 71.0)], profile="paper")
    saved = json.loads((run_dir / runs.CONFIG).read_text())
    saved["config"]["epochs"] = 200  # as if all 200 epochs ran (only the last row matters here)
    atomic_write_json(run_dir / runs.CONFIG, saved)
    rows = runs.read_metrics(run_dir)
    rows[-1]["epoch"] = 200
    (run_dir / runs.METRICS).write_text(json.dumps(rows[-1]) + "\n")
    md = report.results_markdown(results.load_runs(tmp_path))
    assert "Not comparable" not in md and "follow Table 1's protocol" in md


def test_load_runs_refuses_an_empty_folder(tmp_path):
    with pytest.raises(ValueError, match="run_root: no run folder"):
        results.load_runs(tmp_path)
    with pytest.raises(ValueError, match="run_root"):
        results.load_runs(tmp_path / "missing")


def test_runs_with_other_constants_are_their_own_group_without_the_papers_numbers(tmp_path):
    write_run(tmp_path, "mixup", 0, [(50.0, 40.0)])
    write_run(tmp_path, "mixup", 1, [(60.0, 45.0)], alpha=0.4, name="mixup-alpha04")
    rows = [r for r in results.summarise(results.load_runs(tmp_path))
            if r["metric"] == "final" and r["member"] == "model 1"]
    by_setting = {r["setting"]: r for r in rows}
    assert set(by_setting) == {"alpha=1", "alpha=0.4"}
    assert by_setting["alpha=1"]["n"] == 1 and by_setting["alpha=1"]["paper"] == 71.37
    assert math.isnan(by_setting["alpha=0.4"]["paper"])
    other = next(r for r in results.load_runs(tmp_path) if r.config["alpha"] == 0.4)
    assert results.protocol_differences(other.config)["alpha"] == (0.4, 1.0)
