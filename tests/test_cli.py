"""The command line by the conventions: switches as --x / --no-x, help showing the values of the
profile the command will use, re-running a recorded run with --config, per-dataset defaults."""
import json

import pytest

from sdml import cli
from sdml.training.config import make_config
from tiny_run import assert_same_run, train_argv


def _help(capsys, *argv) -> str:
    with pytest.raises(SystemExit):
        cli.main([*argv, "--help"])
    return " ".join(capsys.readouterr().out.split())


def test_train_help_shows_the_values_of_the_profile_auto_picks(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # a CPU: auto picks cpu
    text = _help(capsys, "train")
    cpu, paper = make_config("cpu"), make_config("paper")
    assert "the values of profile cpu" in text
    assert f"passes over the train split (cpu: {cpu.epochs}; paper: {paper.epochs})" in text
    assert f"(cpu: {' '.join(map(str, cpu.milestones))}; paper: 60 120 180)" in text
    assert f"Nesterov momentum (cpu: {cpu.momentum})" in text  # equal to the paper's: one value


def test_help_follows_a_named_profile(capsys):
    text = _help(capsys, "train", "--profile", "smoke")
    assert f"(smoke: {make_config('smoke').epochs}; paper: 200)" in text
    bench = _help(capsys, "bench")  # bench's default profile is the paper's: one value each
    assert "passes over the train split (paper: 200)" in bench and "; paper: " not in bench


def test_switches_are_spelled_x_and_no_x():
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--out", "r", "--no-augment", "--ddp", "--no-progress"])
    assert (args.augment, args.ddp, args.progress, args.resume, args.download) == (
        False, True, False, False, None)  # None: the profile's value
    assert parser.parse_args(["train", "--out", "r", "--augment"]).augment is True


def test_a_recorded_run_is_trained_again_from_its_config(tmp_path, tiny_data):
    first, again = tmp_path / "first", tmp_path / "again"
    assert cli.main(train_argv(first, tiny_data, 2)) == 0
    assert cli.main(["train", "--config", str(first / "config.json"), "--out", str(again),
                     "--no-progress"]) == 0
    assert_same_run(first, again)
    # options beside --config override the recorded values
    more = tmp_path / "more"
    assert cli.main(["train", "--config", str(first), "--out", str(more), "--epochs", "3",
                     "--no-progress"]) == 0
    recorded = json.loads((more / "config.json").read_text())["config"]
    assert recorded["epochs"] == 3 and recorded["width"] == 4


@pytest.mark.parametrize("content, said", [
    ("{not json", "is not valid JSON"),
    (json.dumps({"model": "resnet"}), "has no 'config' object"),
    (json.dumps({"config": {"depth": 7}}), "its config is not valid"),
])
def test_a_damaged_or_foreign_config_is_one_line_naming_the_file(tmp_path, capsys, content, said):
    path = tmp_path / "other.json"
    path.write_text(content)
    assert cli.main(["train", "--config", str(path), "--out", str(tmp_path / "run")]) == 3
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and str(path) in err and said in err
    assert not (tmp_path / "run").exists()


def test_config_and_profile_together_are_refused(tmp_path, capsys):
    assert cli.main(["train", "--config", str(tmp_path / "c.json"), "--profile", "smoke",
                     "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err.strip().startswith("sdml train: error: profile: --profile smoke with --config")


def test_hierarchy_k_defaults_to_the_datasets_own():
    from sdml.data.datasets import SPECS

    assert cli.hierarchy_k() == {"cifar100": SPECS["cifar100"].wordnet_k,
                                 "cifar10": SPECS["cifar10"].wordnet_k,
                                 "fashion-mnist": SPECS["fashion-mnist"].wordnet_k}
    assert cli.build_parser().parse_args(["hierarchy", "--out", "m.json"]).k is None


def test_hierarchy_k_beyond_the_classes_is_refused(tmp_path, capsys):
    assert cli.main(["hierarchy", "--classes", "cifar10", "--k", "10", "--out", str(tmp_path / "m.json")]) == 2
    assert "k: 10; allowed: an integer 2..9 for cifar10" in capsys.readouterr().err
