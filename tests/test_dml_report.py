"""results.md's DML sections: Table 1 in the DML paper's layout, paired statistics, confusions."""
import torch

from sdml.io.atomic import atomic_torch_save, atomic_write_json
from sdml.results import report
from sdml.results import summary as results
from sdml.training import runs
from sdml.training.config import make_config


def write_run(root, method, seed, acc, weight=1.0, right=(0, 1, 2, 3)):
    """A finished 3-epoch run folder; peers' final top-1 ``acc``; both peers get the test samples
    ``right`` of 8 right (the others wrong, inside the true superclass: 0 <-> 1, 5 <-> 6, ...)."""
    cfg = make_config("smoke", method=method, seed=seed, mutual_weight=weight).to_dict()
    run_dir = root / runs.run_name(method, "cifar", seed, weight)
    atomic_write_json(run_dir / runs.CONFIG, {"config": cfg, "provenance": {}, "seed": seed})
    for e in (1, 2, 3):
        runs.append_metrics(run_dir, {"epoch": e, "test_acc": list(acc), "ensemble_acc": max(acc),
                                      "train_loss": [1.0, 1.0], "superclass_acc": [80.0, 80.0],
                                      "ensemble_superclass_acc": 80.0})
    y = torch.tensor([0, 1, 5, 6, 10, 11, 15, 16])
    pred = y.clone()
    wrong = [i for i in range(8) if i not in right]
    pred[wrong] = y[wrong] + torch.where(y[wrong] % 5 == 0, 1, -1)  # the sibling of the pair
    probs = torch.full((2, 8, 100), 0.001)
    probs[:, torch.arange(8), pred] = 0.901
    coarse = y // 5  # superclasses {0, 1}, {5, 6}, ...
    atomic_torch_save({"probs": probs, "y": y, "coarse": coarse}, run_dir / runs.PREDICTIONS)
    return run_dir


def test_results_md_lays_out_independent_and_dml_with_paired_statistics(tmp_path):
    for seed, (a, b) in enumerate([(60.0, 58.0), (62.0, 61.0), (61.0, 61.5)]):
        write_run(tmp_path, "superclass-beta", seed, (a, b))
        write_run(tmp_path, "superclass-beta", seed, (a - 2, b - 1), weight=0.0)
        write_run(tmp_path, "none", seed, (a - 1, b - 1))
    md = report.results_markdown(results.load_runs(tmp_path))
    assert "## Table 1 as the DML paper lays it out: independent peers and DML" in md
    line = next(ln for ln in md.splitlines()
                if ln.startswith("| proposed, Beta distribution | diff_alpha") and "| cifar | 0 1 2 |" in ln)
    cells = [c.strip() for c in line.strip("|").split("|")]
    # model 1: independent 59.00 ± 1.00, DML 61.00 ± 1.00, paired difference +2 every seed (no
    # spread, so no t-test: p is "-")
    assert cells[3:7] == ["0 1 2", "59.00 ± 1.00", "61.00 ± 1.00", "+2.00 [+2.00, +2.00], p = -"]
    assert cells[-2:] == ["73.28", "73.01"]
    assert "| superclass-beta | none | model 1 | 0 1 2 | paired t | +1.00 | [+1.00, +1.00] |" in md
    assert "no interval can be given" not in md
    assert "| proposed, Beta distribution, independent |" in md  # the main table marks the control
    # confusions: 4 of 8 wrong, all into a sibling
    assert "| superclass-beta, independent | 3 | 50.00 ± 0.00 | 50.00 ± 0.00 | 0.00 ± 0.00 |" in md
    csv_text = report.results_csv(results.load_runs(tmp_path))
    assert csv_text.splitlines()[0].endswith(",mutual_weight")


def test_one_seed_says_no_interval_and_uses_mcnemar(tmp_path):
    write_run(tmp_path, "superclass-beta", 0, (62.0, 61.0), right=range(8))
    write_run(tmp_path, "none", 0, (60.0, 60.0), right=(0, 1))
    md = report.results_markdown(results.load_runs(tmp_path))
    assert "**With one seed no interval can be given**" in md
    # 6 samples only superclass-beta gets right, none the other way: p = 2 / 2^6
    assert ("| superclass-beta | none | model 1 | 0 | McNemar exact | +75.00 | none (one seed) "
            "| 0.031 | yes |") in md
    assert "No independent run yet" in md
