"""The plan's time estimate and the refusal of a plan far too long for a CPU."""
import pytest

from sdml.notebooks.runner import main as runner_main
from sdml.training.config import make_config
from sdml.training.estimate import check_plan_time, run_images, split_sizes, spread_seconds


def test_split_sizes_follow_the_declaration_and_the_subset():
    assert split_sizes(make_config("cpu")) == (1000, 5000)
    assert split_sizes(make_config("quick")) == (4000, 2000)
    assert split_sizes(make_config("paper")) == (50000, 10000)
    assert split_sizes(make_config("fashion")) == (60000, 10000)
    smoke = make_config("smoke")  # generated: 40 / 10 per class of 100, under the 300 / 100 cap
    assert split_sizes(smoke) == (4000, 1000)


def test_run_images_counts_training_and_evaluations():
    cfg = make_config("cpu")  # 60 epochs of 15 batches of 64; evaluated at 6, 12, ..., 60
    trained = 60 * (1000 // 64) * 64
    evaluated = 10 * (5000 + 1000)
    assert run_images(cfg) == trained + 0.5 * evaluated
    every = make_config("cpu", eval_every=7)  # 7, 14, ..., 56 and the last, 60
    assert run_images(every) == trained + 0.5 * 9 * 6000


def test_runs_go_longest_first_to_the_least_loaded_process():
    assert spread_seconds([3, 3, 2, 2, 2], 1.0, 2) == 7
    assert spread_seconds([5, 1, 1, 1], 1.0, 2) == 5
    assert spread_seconds([4] * 12, 2.0, 2) == 12
    assert spread_seconds([4] * 12, 2.0, 1) == 24
    with pytest.raises(ValueError, match="^images_per_s:"):
        spread_seconds([1], 0.0)


def test_a_cpu_plan_beyond_the_limit_is_refused_naming_the_way_out():
    assert check_plan_time(3 * 3600, "cpu") == "estimated training time: 3 h 00 min"
    assert check_plan_time(100 * 3600, "cuda").endswith("100 h 00 min")
    with pytest.raises(ValueError, match=r"^epochs: .* 49 h 00 min on this CPU.*--max-hours 49"):
        check_plan_time(49 * 3600, "cpu")
    assert check_plan_time(49 * 3600, "cpu", max_hours=50).startswith("estimated")
    with pytest.raises(ValueError, match="^max_hours:"):
        check_plan_time(1.0, "cpu", max_hours=-1)


def test_the_paper_profile_on_a_cpu_is_refused_before_anything_is_written(tmp_path, capsys):
    code = runner_main(["run", "--profile", "paper", "--data", "synthetic",
                        "--runs-root", str(tmp_path / "runs"), "--figures-root", str(tmp_path / "fig"),
                        "--data-dir", str(tmp_path / "data"), "-p", "device='cpu'"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("sdml.notebooks: error: epochs: this plan would take about")
    assert "--max-hours" in err[0]
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()
