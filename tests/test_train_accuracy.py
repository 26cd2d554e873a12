"""Training top-1 (the regime metric) and sparse evaluation (``eval_every``)."""
import pytest
import torch

from sdml.data.batches import to_device
from sdml.data.load import dataset_for
from sdml.models.resnet import resnet_cifar
from sdml.training import train as train_mod
from tiny_run import tiny_config


def tiny(tmp_path, **kw):
    return tiny_config(tmp_path, **{"eval_batch_size": 64, **kw})


def quiet(*_):
    pass


def test_train_eval_index_takes_every_nth_image_up_to_the_cap():
    assert train_mod.train_eval_index(7).tolist() == list(range(7))
    n = 3 * train_mod.TRAIN_EVAL_MAX + 1  # 30,001 -> every 4th
    idx = train_mod.train_eval_index(n)
    assert idx.tolist() == list(range(0, n, 4))
    assert len(idx) <= train_mod.TRAIN_EVAL_MAX


def test_training_top1_equals_a_manual_forward_of_each_peer(tmp_path):
    """The metric against each peer rebuilt alone, one image at a time, on the raw training
    images normalised by hand (no augmentation, no mixing)."""
    cfg = tiny(tmp_path)
    arrays = dataset_for(cfg)
    data = to_device(arrays, "cpu")
    model = train_mod.build_model(cfg, len(arrays.fine_names), torch.device("cpu"), "loop",
                                  arrays.train_x.shape[1])
    # make the peers disagree and the BatchNorm statistics non-trivial
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1)))
    got = train_mod.evaluate_runs(model, data, cfg, torch.device("cpu"),
                                  torch.zeros(100, dtype=torch.long))[0]
    x = torch.from_numpy(arrays.train_x).float() / 255
    y = torch.from_numpy(arrays.train_y)
    want, votes = [], []
    for state in model.peer_state_dicts():
        peer = resnet_cifar(depth=cfg.depth, num_classes=100, width=cfg.width, in_channels=3)
        peer.load_state_dict(state)
        peer.eval()
        with torch.no_grad():
            probs = torch.cat([torch.softmax(peer(((x[i:i + 1] - data.mean) / data.std)), -1)
                               for i in range(len(x))])
        votes.append(probs)
        want.append(100.0 * (probs.argmax(-1) == y).float().mean().item())
    assert got["train_acc"] == pytest.approx(want, abs=1e-4)
    ens = torch.stack(votes).mean(0).argmax(-1)
    assert got["ensemble_train_acc"] == pytest.approx(100.0 * (ens == y).float().mean().item(), abs=1e-4)


def test_train_accuracy_of_known_probabilities():
    probs = torch.tensor([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]],
                          [[0.4, 0.6], [0.1, 0.9], [0.7, 0.3], [0.45, 0.55]]])  # (K=2, N=4, C=2)
    y = torch.tensor([0, 1, 1, 1])
    got = train_mod.train_accuracy(probs, y)
    assert got["train_acc"] == pytest.approx([75.0, 50.0])
    # ensemble: mean probs [0.65, 0.35], [0.15, 0.85], [0.65, 0.35], [0.375, 0.625] -> 0, 1, 0, 1
    assert got["ensemble_train_acc"] == pytest.approx(75.0)


def test_eval_every_evaluates_every_nth_and_the_last_epoch_and_leaves_training_alone(tmp_path):
    sparse = train_mod.train(tiny(tmp_path, epochs=5, eval_every=2), tmp_path / "sparse",
                             progress=False, log=quiet)
    dense = train_mod.train(tiny(tmp_path, epochs=5), tmp_path / "dense", progress=False, log=quiet)
    assert [r["epoch"] for r in sparse if "test_acc" in r] == [2, 4, 5]
    assert [r["epoch"] for r in sparse if "train_acc" in r] == [2, 4, 5]
    assert all("train_acc" in r and "test_acc" in r for r in dense)
    # evaluating never touches the training: the same losses, and the same metrics where both
    # evaluated
    assert [r["train_loss"] for r in sparse] == [r["train_loss"] for r in dense]
    for s, d in zip(sparse, dense):
        if "test_acc" in s:
            assert (s["test_acc"], s["train_acc"]) == (d["test_acc"], d["train_acc"])


def test_results_read_runs_evaluated_every_few_epochs(tmp_path):
    from sdml.results.summary import Run, curves_frame, run_summary

    cfg = tiny(tmp_path, epochs=4, eval_every=3)
    rows = train_mod.train(cfg, tmp_path / "run", progress=False, log=quiet)
    run = Run(path=tmp_path / "run", config=cfg.to_dict(), provenance={}, metrics=rows, probs=None,
              y=None, coarse=None)
    s = run_summary(run)
    evaluated = [r for r in rows if "test_acc" in r]
    assert s["final"] == rows[-1]["test_acc"] + [rows[-1]["ensemble_acc"]]
    assert s["train_acc"] == rows[-1]["train_acc"] + [rows[-1]["ensemble_train_acc"]]
    assert set(s["best_epoch"]) <= {r["epoch"] for r in evaluated}
    frame = curves_frame([run])
    assert frame.dropna(subset=["test_acc"])["epoch"].unique().tolist() == [3, 4]
    assert frame["train_loss"].notna().sum() == 4 * cfg.peers


def test_a_fused_job_records_training_top1_as_its_runs_alone(tmp_path):
    from sdml.training.multirun import train_many

    cfgs = [tiny(tmp_path, epochs=2, method=m, fuse="grouped") for m in ("none", "mixup")]
    rows = train_many(cfgs, [tmp_path / "a", tmp_path / "b"], progress=False, log=quiet)
    alone = train_mod.train(cfgs[1], tmp_path / "c", progress=False, log=quiet)
    assert rows[1][-1]["train_acc"] == pytest.approx(alone[-1]["train_acc"], abs=1e-6)
    assert all(len(r[-1]["train_acc"]) == 2 for r in rows)
