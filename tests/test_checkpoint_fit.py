"""A checkpoint that parses but does not fit its run is a damaged file, found before anything in
the run folder is written: exit 3, one line naming the file, every file byte for byte as before.

Each case below is damage that ``read_checkpoint``'s own checks cannot see (they know the file,
not the run): only loading into the run's model and optimizer, or comparing with the run's
config, shows it. Without the check, some of these were an "unexpected" error in the first step
(exit 1), or a diverged run (exit 5), or exit 3 with ``config.json`` already rewritten.
"""
import copy
import shutil

import pytest
import torch

from sdml.cli import main
from sdml.training import runs
from tiny_run import checksums, train_argv


@pytest.fixture(scope="module")
def base(tmp_path_factory, tiny_data):
    """A tiny run of one epoch, and its checkpoint as read back."""
    run = tmp_path_factory.mktemp("fit") / "run"
    assert main(train_argv(run, tiny_data, 1)) == 0
    return run, torch.load(run / runs.CHECKPOINT, weights_only=True)


def _first_state(ck):
    return ck["optimizer"]["state"][next(iter(ck["optimizer"]["state"]))]


def _momentum_shape(ck):
    _first_state(ck)["momentum_buffer"] = torch.zeros(3)


def _momentum_inf(ck):
    _first_state(ck)["momentum_buffer"].fill_(float("inf"))


def _no_momentum(ck):
    ck["optimizer"]["state"] = {}


def _one_param_short(ck):
    ck["optimizer"]["param_groups"][0]["params"].pop()


def _weight_decay(ck):
    ck["optimizer"]["param_groups"][0]["weight_decay"] = 1e30


def _nan_weights(ck):
    ck["peers"][1]["conv1.weight"].fill_(float("nan"))


def _double_peers(ck):
    ck["peers"] = [{k: v.double() if v.is_floating_point() else v for k, v in p.items()}
                   for p in ck["peers"]]


def _extra_peer(ck):
    ck["peers"].append(copy.deepcopy(ck["peers"][0]))


def _epoch_huge(ck):
    ck["epoch"] = 10 ** 30


DAMAGE = {
    "momentum buffer of another shape": (_momentum_shape, "shape and dtype"),
    "momentum buffer infinite": (_momentum_inf, "NaN or infinite"),
    "no momentum buffers after an epoch": (_no_momentum, "lacks a momentum buffer"),
    "one parameter short": (_one_param_short, "does not fit this run's model"),
    "another weight decay": (_weight_decay, "weight_decay"),
    "NaN weights": (_nan_weights, "NaN or infinite"),
    "float64 peers": (_double_peers, "dtype torch.float64"),
    "a third peer": (_extra_peer, "does not fit this run's model"),
    "an epoch count of 10**30": (_epoch_huge, "has finished 1000000000000000000000000000000"),
}


@pytest.mark.parametrize("case", DAMAGE)
def test_a_checkpoint_that_does_not_fit_its_run_changes_nothing(base, tiny_data, tmp_path, capsys,
                                                                case):
    damage, words = DAMAGE[case]
    src, ck = base
    run = tmp_path / "run"
    shutil.copytree(src, run)
    ck = copy.deepcopy(ck)
    damage(ck)
    torch.save(ck, run / runs.CHECKPOINT)
    before = checksums(run)
    capsys.readouterr()
    assert main(train_argv(run, tiny_data, 2, "--resume")) == 3
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "unexpected" not in err and "Traceback" not in err, err
    assert str(run) in lines[0] and words in lines[0], lines[0]
    assert checksums(run) == before


def test_the_undamaged_checkpoint_still_resumes(base, tiny_data, tmp_path):
    """The check refuses damage only: the same folder, undamaged, resumes to epoch 2."""
    src, _ = base
    run = tmp_path / "run"
    shutil.copytree(src, run)
    assert main(train_argv(run, tiny_data, 2, "--resume")) == 0
    assert [r["epoch"] for r in runs.read_metrics(run)] == [1, 2]
