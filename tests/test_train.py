"""The training loop: run folders, resume equivalence, non-finite losses, the command line."""
import json

import pytest
import torch

from sdml.training import runs
from sdml.training import train as train_mod
from sdml.cli import main
from sdml.training.config import make_config
from tiny_run import tiny_config


tiny = tiny_config


def weights(run_dir):
    return torch.load(run_dir / runs.CHECKPOINT, weights_only=True)["peers"]


def test_run_folder_contents_and_metrics(tmp_path):
    cfg = tiny(tmp_path)
    rows = train_mod.train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["lr"] for r in rows] == pytest.approx([0.05, 0.05, 0.005])  # milestone 2: drop after 2 epochs
    for r in rows:
        assert len(r["test_acc"]) == 2 and all(0 <= a <= 100 for a in r["test_acc"])
        assert r["steps"] == 3
    saved = json.loads((tmp_path / "run" / runs.CONFIG).read_text())
    assert saved["config"]["method"] == "superclass-beta" and saved["seed"] == 0
    assert {"torch", "python", "git"} <= set(saved["provenance"])
    pred = torch.load(tmp_path / "run" / runs.PREDICTIONS, weights_only=True)
    assert pred["probs"].shape == (2, 200, 100)
    assert torch.allclose(pred["probs"].float().sum(-1), torch.ones(2, 200), atol=1e-2)


def test_killed_and_resumed_run_equals_uninterrupted(tmp_path, monkeypatch):
    cfg = tiny(tmp_path)
    train_mod.train(cfg, tmp_path / "full", progress=False, log=lambda *_: None)

    real_save = runs.save_checkpoint
    calls = {"n": 0}

    def dying_save(*args, **kwargs):  # killed after epoch 2's metrics line, before its checkpoint
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real_save(*args, **kwargs)

    monkeypatch.setattr(runs, "save_checkpoint", dying_save)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, tmp_path / "cut", progress=False, log=lambda *_: None)
    assert len(runs.read_metrics(tmp_path / "cut")) == 2  # the line without a checkpoint
    monkeypatch.setattr(runs, "save_checkpoint", real_save)
    rows = train_mod.train(cfg, tmp_path / "cut", resume=True, progress=False, log=lambda *_: None)

    assert [r["epoch"] for r in rows] == [1, 2, 3]
    full, cut = weights(tmp_path / "full"), weights(tmp_path / "cut")
    for a, b in zip(full, cut):
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    full_rows = runs.read_metrics(tmp_path / "full")
    assert [r["test_acc"] for r in rows] == [r["test_acc"] for r in full_rows]


def test_existing_run_is_not_overwritten(tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    train_mod.train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    with pytest.raises(ValueError, match="already holds a run"):
        train_mod.train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    with pytest.raises(ValueError, match="method"):
        train_mod.train(tiny(tmp_path, epochs=1, method="mixup"), tmp_path / "run", resume=True,
                        progress=False, log=lambda *_: None)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before


def test_resume_of_a_finished_run_trains_nothing(tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    train_mod.train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    ckpt = (tmp_path / "run" / runs.CHECKPOINT).read_bytes()
    rows = train_mod.train(cfg, tmp_path / "run", resume=True, progress=False, log=lambda *_: None)
    assert len(rows) == 1 and (tmp_path / "run" / runs.CHECKPOINT).read_bytes() == ckpt


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = tiny(tmp_path)
    from sdml.training import step as step_mod

    real = step_mod.dml_losses
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        out = real(*args, **kwargs)
        return out * float("nan") if calls["n"] > 4 else out  # epoch 2 (3 steps an epoch)

    monkeypatch.setattr(step_mod, "dml_losses", poisoned)
    with pytest.raises(FloatingPointError, match="epoch 2"):
        train_mod.train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    assert runs.load_checkpoint_epoch(tmp_path / "run") == 1
    assert len(runs.read_metrics(tmp_path / "run")) == 1


def test_lr_schedule_is_the_dml_protocol():
    lrs = train_mod.lr_schedule(make_config("paper"))
    assert len(lrs) == 200
    assert lrs[0] == lrs[59] == 0.1
    assert lrs[60] == pytest.approx(0.01) and lrs[119] == pytest.approx(0.01)
    assert lrs[120] == pytest.approx(0.001) and lrs[180] == pytest.approx(0.0001)


@pytest.mark.parametrize("argv, field", [
    (["--method", "mixupp"], "method"),
    (["--profile", "huge"], "profile"),
    (["--data", "imagenet"], "data"),
    (["--device", "tpu"], "device"),
    (["--alpha", "0"], "alpha"),
    (["--lr", "-0.1"], "lr"),
    (["--depth", "30"], "depth"),
    (["--peers", "1"], "peers"),
    (["--batch-size", "1"], "batch_size"),
])
def test_cli_bad_input_names_the_field(tmp_path, capsys, argv, field):
    out = tmp_path / "run"
    try:
        code = main(["train", "--out", str(out), "--data-dir", str(tmp_path / "d")] + argv)
    except SystemExit as exc:  # argparse's own choices (profile)
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert field in err
    assert not out.exists()


def test_missing_cuda_is_a_clear_error(tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    code = main(["train", "--profile", "smoke", "--device", "cuda", "--out", str(tmp_path / "r")])
    assert code == 2 and "device" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_cli_help_documents_every_field(capsys):
    from sdml.training.config import field_names

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for name in field_names():
        if name != "profile":
            assert "--" + name.replace("_", "-") in text
    from sdml.cli import field_help

    assert set(field_help()) >= set(field_names()) - {"profile"}


def test_resuming_with_more_epochs_records_them(tmp_path):
    cfg = tiny(tmp_path, epochs=1)
    train_mod.train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    rows = train_mod.train(tiny(tmp_path, epochs=2), tmp_path / "run", resume=True, progress=False,
                           log=lambda *_: None)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert runs.read_config(tmp_path / "run").epochs == 2


@pytest.mark.parametrize("method, superclasses", [("superclass-beta", "wordnet"),
                                                  ("superclass-soft", "cifar")])
def test_wordnet_superclasses_and_the_soft_method_train(tmp_path, method, superclasses):
    cfg = tiny(tmp_path, epochs=1, method=method, superclasses=superclasses)
    rows = train_mod.train(cfg, tmp_path / "run", progress=False, log=lambda *_: None)
    saved = json.loads((tmp_path / "run" / runs.CONFIG).read_text())
    assert len(rows) == 1 and all(0 <= a <= 100 for a in rows[0]["test_acc"])
    assert len(saved["superclasses"]["superclass_names"]) == 20
    if superclasses == "wordnet":
        assert saved["superclasses"]["name"] != "cifar"
    else:
        assert 0 < rows[0]["mean_lam"] < 1


def test_a_loss_broken_by_the_last_update_is_caught_before_the_checkpoint(tmp_path, monkeypatch):
    real = train_mod.evaluate
    calls = {"n": 0}

    def broken(*args, **kwargs):  # the test loss after epoch 2 is NaN: broken weights
        calls["n"] += 1
        row = real(*args, **kwargs)
        if calls["n"] == 2:
            row["test_loss"] = [float("nan")] * len(row["test_loss"])
        return row

    monkeypatch.setattr(train_mod, "evaluate", broken)
    with pytest.raises(FloatingPointError, match="epoch 2"):
        train_mod.train(tiny(tmp_path), tmp_path / "run", progress=False, log=lambda *_: None)
    assert runs.load_checkpoint_epoch(tmp_path / "run") == 1


def test_a_batch_larger_than_the_data_fails_before_the_run_folder(tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        train_mod.train(tiny(tmp_path, batch_size=5000), tmp_path / "run", progress=False,
                        log=lambda *_: None)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("first, then", [("off", "on"), ("on", "off")])
def test_resume_across_compile_gives_the_step_the_lr_type_it_wants(tmp_path, monkeypatch, first, then):
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)  # the compiled path, run eagerly
    seen = []
    real = train_mod.train_one_epoch

    def spy(stepper, *args, **kwargs):
        seen.append({type(g["lr"]) for g in stepper.optimizer.param_groups})
        return real(stepper, *args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", spy)
    train_mod.train(tiny(tmp_path, epochs=1, compile=first), tmp_path / "run", progress=False,
                    log=lambda *_: None)
    train_mod.train(tiny(tmp_path, epochs=2, compile=then), tmp_path / "run", resume=True,
                    progress=False, log=lambda *_: None)
    want = {"on": {torch.Tensor}, "off": {float}}
    assert seen == [want[first], want[then]]


def test_every_option_has_its_whole_help(capsys):
    from sdml.cli import field_help

    helps = field_help()
    assert helps["compile"].endswith("graphs: on, plus CUDA graphs (mode reduce-overhead) where they hold")
    assert "---" not in " ".join(helps.values())  # section comments are not taken as help
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "CUDA graphs (mode reduce-overhead) where they hold" in text


def test_train_without_a_profile_picks_it_as_make_reproduce_does(capsys):
    from sdml.cli import build_parser, config_from_args

    args = build_parser().parse_args(["train", "--out", "unused"])
    cfg = config_from_args(args)
    err = capsys.readouterr().err
    from sdml.notebooks.plan import resolve_profile

    expected = resolve_profile("auto")  # paper with a CUDA GPU, else the CPU main job's
    assert cfg.profile == expected and f"profile auto -> {expected}" in err
    bench = build_parser().parse_args(["bench"])
    assert config_from_args(bench).profile == "paper"  # bench keeps Table 1's step
