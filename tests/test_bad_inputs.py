"""A table of bad inputs: command-line options, run folders and damaged files, notebook parameters.

Each one must end in a one-line message naming the field or file, the right exit code, no
traceback, and not one byte changed on disk (checksums before and after)."""
import json
import os
import pickle
import random
import shutil

import pytest
import torch

from sdml.cli import main
from sdml.hierarchy.superclasses import cifar_superclasses
from sdml.notebooks import params as nbparams
from sdml.notebooks import runner
from tiny_run import checksums, train_argv

EPOCHS = 2


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_data):
    """Data, a superclass mapping, a plain file, and a finished 2-epoch run that uses the mapping."""
    root = tmp_path_factory.mktemp("bad-inputs")
    (root / "map.json").write_text(json.dumps(cifar_superclasses().to_json()))
    (root / "afile").write_text("not a folder\n")
    assert main(train_argv(root / "done", tiny_data, EPOCHS, "--superclasses", str(root / "map.json"))) == 0
    return {"root": root, "data": tiny_data, "map": root / "map.json", "file": root / "afile",
            "done": root / "done"}


def new_run(w, case, *extra):
    """A fresh run folder (which must not be created) with extra options."""
    return train_argv(case / "new", w["data"], EPOCHS, "--superclasses", str(w["map"]), *extra)


def clone(w, case, edit=None, *extra):
    """A copy of the finished run (with its own copy of the mapping), ``edit`` applied to it;
    returns the argv that resumes it."""
    run = case / "run"
    shutil.copytree(w["done"], run)
    shutil.copy(w["map"], case / "map.json")
    record = json.loads((run / "config.json").read_text())
    record["config"]["superclasses"] = str(case / "map.json")
    (run / "config.json").write_text(json.dumps(record))
    if edit is not None:
        edit(run, case)
    return train_argv(run, w["data"], EPOCHS, "--resume", "--superclasses", str(case / "map.json"),
                      *extra)


# ----------------------------------------------------------------------------- damage

def write(name, data):
    def edit(run, case):
        path = run / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return edit


def truncate(name, keep=0.5):
    def edit(run, case):
        path = run / name
        path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])
    return edit


def record_edit(fn):
    def edit(run, case):
        record = json.loads((run / "config.json").read_text())
        fn(record)
        (run / "config.json").write_text(json.dumps(record))
    return edit


def metrics_edit(fn):
    def edit(run, case):
        lines = (run / "metrics.jsonl").read_text().splitlines()
        (run / "metrics.jsonl").write_text("".join(line + "\n" for line in fn(lines)))
    return edit


def checkpoint_edit(fn):
    def edit(run, case):
        state = torch.load(run / "checkpoint.pt", weights_only=True)
        fn(state)
        torch.save(state, run / "checkpoint.pt")
    return edit


def remove(*names):
    def edit(run, case):
        for name in names:
            (run / name).unlink()
    return edit


class Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def pickled_payload(run, case):
    (run / "checkpoint.pt").write_bytes(pickle.dumps({"epoch": 2, "x": Payload(case / "EXECUTED")}))


def reshaped_peer(state):
    key = next(iter(state["peers"][0]))
    state["peers"][0][key] = torch.zeros(3)


def edited_mapping(run, case):
    mapping = json.loads((case / "map.json").read_text())
    mapping["classes"]["apple"], mapping["classes"]["bear"] = mapping["classes"]["bear"], mapping["classes"]["apple"]
    (case / "map.json").write_text(json.dumps(mapping))


def orphan(*names):
    """A copy of the finished run without its config.json (or, with ``names``, holding only
    those stray files)."""
    def build(w, case, resume):
        run = case / "run"
        shutil.copytree(w["done"], run)
        (run / "config.json").unlink()
        for name in names:
            (run / name).write_text("notes\n")
        if names:
            for p in ("checkpoint.pt", "metrics.jsonl", "predictions.pt"):
                (run / p).unlink()
        return train_argv(run, w["data"], EPOCHS, *(["--resume"] if resume else []))
    return build


def other_dataset(w, case):
    """The run's data folder with a different archive of the same name and a matching manifest."""
    from sdml.data.synthetic import ensure_synthetic

    data = case / "data2"
    shutil.copytree(w["data"], data)
    archive, _ = ensure_synthetic(case / "gen", n_train_per_class=4, n_test_per_class=2, seed=1)
    (folder,) = [p for p in data.iterdir() if p.is_dir()]
    shutil.copy(archive, folder / archive.name)
    shutil.copy(archive.parent / "manifest.json", folder / "manifest.json")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["params"]["seed"] = 0
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return data


def mapping_file(text):
    def build(w, case):
        (case / "m.json").write_bytes(text if isinstance(text, bytes) else text.encode())
        return new_run(w, case, "--superclasses", str(case / "m.json"))
    return build


def mapping_with(fn):
    mapping = cifar_superclasses().to_json()
    fn(mapping)
    return mapping_file(json.dumps(mapping))


# ----------------------------------------------------------------------------- the table

OPTIONS = [  # (option, value(s), what the message names)
    ("--depth", "7", "depth"), ("--depth", "0", "depth"), ("--depth", "abc", "--depth"),
    ("--width", "0", "width"), ("--peers", "1", "peers"), ("--peers", "-2", "peers"),
    ("--epochs", "0", "epochs"), ("--epochs", "-1", "epochs"), ("--epochs", "2.5", "--epochs"),
    ("--epochs", "99999999999", "epochs"),
    ("--epochs", [], "--epochs"), ("--batch-size", "1", "batch_size"),
    ("--batch-size", "100000", "batch_size"), ("--eval-batch-size", "0", "eval_batch_size"),
    ("--max-steps-per-epoch", "-1", "max_steps_per_epoch"), ("--lr", "0", "lr"),
    ("--lr", "-0.1", "lr"), ("--lr", "nan", "lr"), ("--lr", "inf", "lr"), ("--lr", "-1e-3", "lr"),
    ("--lr", "abc", "--lr"), ("--momentum", "1.5", "momentum"), ("--momentum", "-0.1", "momentum"),
    ("--weight-decay", "-1e-4", "weight_decay"), ("--weight-decay", "nan", "weight_decay"),
    ("--gamma", "0", "gamma"), ("--gamma", "-1E-2", "gamma"), ("--temperature", "0", "temperature"),
    ("--temperature", "-inf", "temperature"), ("--alpha", "0", "alpha"), ("--alpha", "-1e+2", "alpha"),
    ("--same-ratio", "2", "same_ratio"), ("--diff-ratio", "-0.5", "diff_ratio"),
    ("--same-alpha", "0", "same_alpha"), ("--diff-alpha", "-1", "diff_alpha"),
    ("--milestones", ["2", "1"], "milestones"), ("--milestones", ["0"], "milestones"),
    ("--milestones", ["1", "1"], "milestones"), ("--milestones", ["50"], "milestones"),
    ("--milestones", ["-1"], "milestones"), ("--milestones", ["x"], "--milestones"),
    ("--data", "foo", "data"), ("--method", "foo", "method"), ("--device", "foo", "device"),
    ("--device", "cuda", "device"), ("--fuse", "foo", "fuse"), ("--compile", "foo", "compile"),
    ("--shortcut", "C", "shortcut"), ("--superclasses", "foo", "superclasses"),
    ("--superclasses", "missing.json", "superclasses"), ("--wordnet-k", "1", "wordnet_k"),
    ("--wordnet-k", "100", "wordnet_k"), ("--seed", "-1", "seed"), ("--threads", "-1", "threads"),
    ("--synthetic-train-per-class", "0", "synthetic_train_per_class"),
    ("--synthetic-test-per-class", "0", "synthetic_test_per_class"),
    ("--synthetic-seed", "-1", "synthetic_seed"), ("--augment=maybe", [], "--augment"),
    ("--download=no", [], "--download"), ("--profile", "huge", "--profile"),
    ("--no-such-option", "1", "--no-such-option"), ("--out", "", "out"), ("--data-dir", "", "data_dir"),
]

CASES = [  # (id, build(world, case) -> argv, exit code, what the message names)
    *[(f"option {opt} {' '.join(v) if isinstance(v, list) else v!r}",
       lambda w, c, opt=opt, v=v: new_run(w, c, opt, *(v if isinstance(v, list) else [v])), 2, name)
      for opt, v, name in OPTIONS],
    # paths
    ("out is a file", lambda w, c: train_argv(w["file"], w["data"]), 2, "afile"),
    ("out under a file", lambda w, c: train_argv(w["file"] / "run", w["data"]), 3, "afile"),
    ("data-dir is a file", lambda w, c: new_run(w, c, "--data-dir", str(w["file"])), 3, "afile"),
    # superclass mappings
    ("mapping not JSON", mapping_file("{nope"), 3, "m.json"),
    ("mapping empty", mapping_file(""), 3, "m.json"),
    ("mapping a list", mapping_file("[1, 2]"), 2, "m.json"),
    ("mapping not UTF-8", mapping_file(b"\xff\xfe"), 3, "m.json"),
    ("mapping unknown class", mapping_with(lambda m: m["classes"].update(unicorn=0)), 2, "m.json"),
    ("mapping bad id", mapping_with(lambda m: m["classes"].update(apple=99)), 2, "m.json"),
    ("mapping missing class", mapping_with(lambda m: m["classes"].pop("apple")), 2, "m.json"),
    ("mapping no names", mapping_with(lambda m: m.pop("superclass_names")), 2, "m.json"),
    # a folder holding a run
    ("run without --resume", lambda w, c: train_argv(w["done"], w["data"], EPOCHS, "--superclasses",
                                                       str(w["map"])), 2, "already holds a run"),
    ("resume with fewer epochs than done", lambda w, c: clone(w, c, None, "--epochs", "1"), 2, "epochs"),
    ("resume another method", lambda w, c: clone(w, c, None, "--method", "mixup"), 2, "method"),
    ("resume another seed", lambda w, c: clone(w, c, None, "--seed", "1"), 2, "seed"),
    ("resume another lr", lambda w, c: clone(w, c, None, "--lr", "0.1"), 2, "lr"),
    ("resume more peers", lambda w, c: clone(w, c, None, "--peers", "3"), 2, "peers"),
    ("resume another width", lambda w, c: clone(w, c, None, "--width", "8"), 2, "width"),
    ("resume other superclasses", lambda w, c: clone(w, c, None, "--superclasses", "cifar"), 2,
     "superclasses"),
    ("resume with an edited mapping", lambda w, c: clone(w, c, edited_mapping), 2, "sha256"),
    ("resume on another dataset", lambda w, c: clone(w, c, None, "--data-dir", str(other_dataset(w, c))),
     2, "data:"),
    ("run files without config.json", lambda w, c: orphan()(w, c, False), 2, "no config.json"),
    ("run files without config.json, --resume", lambda w, c: orphan()(w, c, True), 2, "no config.json"),
    ("a stray file", lambda w, c: orphan("notes.txt")(w, c, True), 2, "notes.txt"),
    # damaged config.json
    ("config truncated", lambda w, c: clone(w, c, truncate("config.json")), 3, "config.json"),
    ("config empty", lambda w, c: clone(w, c, write("config.json", "")), 3, "config.json"),
    ("config a list", lambda w, c: clone(w, c, write("config.json", "[]")), 3, "config.json"),
    ("config not UTF-8", lambda w, c: clone(w, c, write("config.json", b"\xff\xfe{")), 3, "config.json"),
    ("config without config", lambda w, c: clone(w, c, record_edit(lambda r: r.pop("config"))), 3,
     "config.json"),
    ("config unknown field", lambda w, c: clone(w, c, record_edit(lambda r: r["config"].update(zap=1))),
     3, "config.json"),
    ("config bad value", lambda w, c: clone(w, c, record_edit(lambda r: r["config"].update(depth=7))),
     3, "config.json"),
    ("config wrong type", lambda w, c: clone(w, c, record_edit(lambda r: r.update(config=[]))), 3,
     "config.json"),
    # damaged metrics.jsonl
    ("metrics bad middle line", lambda w, c: clone(w, c, metrics_edit(lambda ls: ["{x", *ls[1:]])), 3,
     "metrics.jsonl"),
    ("metrics row without epoch", lambda w, c: clone(w, c, metrics_edit(
        lambda ls: [json.dumps({"lr": 1}), *ls[1:]])), 3, "metrics.jsonl"),
    ("metrics row a list", lambda w, c: clone(w, c, metrics_edit(lambda ls: ["[1]", *ls[1:]])), 3,
     "metrics.jsonl"),
    ("metrics epoch a string", lambda w, c: clone(w, c, metrics_edit(
        lambda ls: [json.dumps({**json.loads(ls[0]), "epoch": "1"}), *ls[1:]])), 3, "metrics.jsonl"),
    ("metrics row missing", lambda w, c: clone(w, c, metrics_edit(lambda ls: ls[1:])), 3, "metrics.jsonl"),
    ("metrics row twice", lambda w, c: clone(w, c, metrics_edit(lambda ls: [ls[0], *ls])), 3,
     "metrics.jsonl"),
    ("metrics deleted", lambda w, c: clone(w, c, remove("metrics.jsonl")), 3, "metrics.jsonl"),
    # damaged checkpoint.pt
    ("checkpoint truncated", lambda w, c: clone(w, c, truncate("checkpoint.pt")), 3, "checkpoint.pt"),
    ("checkpoint cut to a byte", lambda w, c: clone(w, c, truncate("checkpoint.pt", 0.0001)), 3,
     "checkpoint.pt"),
    # seeded random bytes; torch.load raises on them, in turn, UnpicklingError (seed 0),
    # IndexError (2), KeyError (20) and UnicodeDecodeError (195, an exception that cannot be
    # rebuilt from one message)
    *[(f"checkpoint random bytes, seed {seed}",
       lambda w, c, seed=seed: clone(w, c, write("checkpoint.pt", random.Random(seed).randbytes(4096))),
       3, "checkpoint.pt") for seed in (0, 2, 20, 195)],
    ("checkpoint empty", lambda w, c: clone(w, c, write("checkpoint.pt", b"")), 3, "checkpoint.pt"),
    ("checkpoint is JSON", lambda w, c: clone(w, c, write("checkpoint.pt", '{"epoch": 2}')), 3,
     "checkpoint.pt"),
    ("checkpoint a tensor", lambda w, c: clone(w, c, lambda r, _: torch.save(torch.zeros(2), r / "checkpoint.pt")),
     3, "checkpoint.pt"),
    ("checkpoint without peers", lambda w, c: clone(w, c, checkpoint_edit(lambda s: s.pop("peers"))), 3,
     "checkpoint.pt"),
    ("checkpoint epoch a string", lambda w, c: clone(w, c, checkpoint_edit(lambda s: s.update(epoch="x"))),
     3, "checkpoint.pt"),
    ("checkpoint epoch negative", lambda w, c: clone(w, c, checkpoint_edit(lambda s: s.update(epoch=-1))),
     3, "checkpoint.pt"),
    # a checkpoint past its metrics is damage (the files disagree), not an --epochs to raise
    ("checkpoint past the run", lambda w, c: clone(w, c, checkpoint_edit(lambda s: s.update(epoch=5))),
     3, "metrics.jsonl: holds the epochs [1, 2] but checkpoint.pt has finished 5"),
    ("--epochs fewer than the run finished", lambda w, c: clone(w, c, None, "--epochs", "1"), 2,
     "epochs: 1 is fewer than the 2 epochs the run"),
    ("checkpoint of another fuse mode", lambda w, c: clone(w, c, checkpoint_edit(lambda s: s.update(fuse="grouped"))),
     2, "fuse"),
    ("checkpoint of another shape", lambda w, c: clone(w, c, checkpoint_edit(reshaped_peer)), 3,
     "checkpoint.pt"),
    ("checkpoint with a pickled payload", lambda w, c: clone(w, c, pickled_payload), 3, "checkpoint.pt"),
    # the other commands
    ("train-many --method", lambda w, c: ["train-many", "--out-root", str(c / "r"), "--method", "none"], 2,
     "method"),
    ("train-many --methods foo", lambda w, c: ["train-many", "--out-root", str(c / "r"), "--methods", "foo"],
     2, "--methods"),
    ("train-many --out-root ''", lambda w, c: ["train-many", "--out-root", ""], 2, "out_root"),
    ("train-many methods twice", lambda w, c: ["train-many", "--out-root", str(c / "r"), "--profile",
                                               "smoke", "--methods", "none", "none"], 2, "methods"),
    ("train-many seeds twice", lambda w, c: ["train-many", "--out-root", str(c / "r"), "--profile", "smoke",
                                             "--seeds", "0", "0"], 2, "seeds"),
    ("train-many --fuse loop", lambda w, c: ["train-many", "--out-root", str(c / "r"), "--profile", "smoke",
                                             "--data-dir", str(w["data"]), "--fuse", "loop"], 2, "fuse"),
    ("train-many no --out-root", lambda w, c: ["train-many"], 2, "--out-root"),
    ("hierarchy --k 1", lambda w, c: ["hierarchy", "--k", "1", "--out", str(c / "h.json")], 2, "k"),
    ("hierarchy --k 100", lambda w, c: ["hierarchy", "--k", "100", "--out", str(c / "h.json")], 2, "k"),
    ("hierarchy --k abc", lambda w, c: ["hierarchy", "--k", "abc", "--out", str(c / "h.json")], 2, "--k"),
    ("hierarchy --out ''", lambda w, c: ["hierarchy", "--out", ""], 2, "out"),
    ("bench --steps abc", lambda w, c: ["bench", "--steps", "abc"], 2, "--steps"),
    ("data --data foo", lambda w, c: ["data", "--data", "foo"], 2, "data"),
    ("data --data-dir a file", lambda w, c: ["data", "--profile", "smoke", "--data-dir", str(w["file"])], 3,
     "afile"),
    ("wordnet --cache-dir ''", lambda w, c: ["wordnet", "--cache-dir", ""], 2, "cache_dir"),
    ("no command", lambda w, c: [], 2, "command"),
    ("unknown command", lambda w, c: ["trian"], 2, "trian"),
]


@pytest.mark.parametrize("build, code, names", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_command_line_input(world, tmp_path, capsys, build, code, names):
    case = tmp_path / "case"
    case.mkdir()
    argv = build(world, case)
    before = checksums(world["root"]), checksums(case)
    assert main(argv) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert names in lines[0], lines[0]
    assert (checksums(world["root"]), checksums(case)) == before  # nothing written, nothing lost
    assert not (case / "new").exists() and not (case / "EXECUTED").exists()


NOTEBOOK_PARAMS = [  # (notebook, parameter, bad value)
    ("04_train_dml", "run_name", "/abs/run"), ("04_train_dml", "run_name", "../outside"),
    ("04_train_dml", "run_name", "a/../../b"), ("04_train_dml", "run_name", ".."),
    ("04_train_dml", "run_name", ""), ("04_train_dml", "run_name", "~/x"),
    ("04_train_dml", "run_name", "a\\b"), ("04_train_dml", "method", "foo"),
    ("04_train_dml", "peers", 1), ("04_train_dml", "epochs", -1), ("04_train_dml", "device", "tpu"),
    ("04_train_dml", "seed", -1), ("04_train_dml", "seed", 1.5), ("04_train_dml", "threads", -1),
    ("04_train_dml", "superclasses", "foo"), ("04_train_dml", "methods", ["foo"]),
    ("04_train_dml", "methods", ["none", "none"]), ("04_train_dml", "lr", 0.1),
    ("04_train_dml", "profile", "huge"), ("04_train_dml", "data", "imagenet"),
    ("02_mixing_preview", "interactive", "yes"), ("04_train_dml", "run_root", ""),
    ("05_results", "run_root", "runs/smoke"), ("03_ratio_distributions", "run_root", "runs/x"),
    ("01_superclass_hierarchy", "wordnet_k", 1), ("02_mixing_preview", "grid_pairs", 0),
    ("03_ratio_distributions", "n_samples", 10), ("05_results", "methods", []),
]


@pytest.mark.parametrize("notebook, name, value", NOTEBOOK_PARAMS)
def test_bad_notebook_parameter(notebook, name, value):
    with pytest.raises(ValueError) as err:
        nbparams.validate(notebook, **{name: value})
    message = str(err.value)
    assert message.startswith(f"{name}:") and "\n" not in message, message


RUNNER = [  # (argv, what the message names)
    (["run", "--dry-run", "-p", "run_name=../x"], "run_name"),
    (["run", "--dry-run", "-p", "run_name=/tmp/x"], "run_name"),
    (["run", "--dry-run", "-p", "foo=1"], "foo"),
    (["run", "--dry-run", "--only", "09"], "only"),
    (["run", "--dry-run", "--seeds", "0", "0"], "seeds"),
    (["run", "--dry-run", "--fuse-runs", "maybe"], "--fuse-runs"),
    (["run", "--dry-run", "--profile", "huge"], "profile"),
    (["run", "--dry-run", "--seeds", "x"], "--seeds"),
]


@pytest.mark.parametrize("argv, names", RUNNER)
def test_bad_runner_input(argv, names, capsys):
    assert runner.main(["run", "--profile", "smoke", *argv[1:]]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and names in lines[0], err


def test_runner_finds_a_missing_notebook_before_running_any(tmp_path, monkeypatch, capsys):
    for nb in nbparams.NOTEBOOKS:
        if nb != "05_results":
            shutil.copy(runner.NOTEBOOK_DIR / f"{nb}.ipynb", tmp_path / f"{nb}.ipynb")
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", tmp_path)
    monkeypatch.setattr(runner, "execute", lambda *a, **k: pytest.fail("a notebook was started"))
    monkeypatch.setattr(runner, "prepare_data", lambda *a, **k: pytest.fail("data was prepared"))
    assert runner.main(["run", "--profile", "smoke", "--runs-root", str(tmp_path / "runs")]) == 3
    line = capsys.readouterr().err.strip()
    assert "05_results.ipynb" in line and "\n" not in line
    assert not (tmp_path / "runs").exists()


def test_the_table_is_large():
    assert len(CASES) + len(NOTEBOOK_PARAMS) + len(RUNNER) + 1 >= 100


def test_a_fused_job_refuses_before_any_folder_is_made_or_changed(world, tmp_path, capsys):
    from tiny_run import TINY

    orphan_dir = tmp_path / "none-cifar-seed0"
    orphan_dir.mkdir()
    (orphan_dir / "checkpoint.pt").write_bytes(b"someone else's")
    argv = ["train-many", "--out-root", str(tmp_path), "--methods", "none", "mixup", "--epochs", "2",
            "--data-dir", str(world["data"]), "--fuse", "grouped", *TINY]
    for extra in ([], ["--resume"]):
        assert main(argv + extra) == 2
        line = capsys.readouterr().err.strip()
        assert "none-cifar-seed0" in line and "no config.json" in line and "\n" not in line
        assert sorted(p.name for p in tmp_path.iterdir()) == ["none-cifar-seed0"]
        assert (orphan_dir / "checkpoint.pt").read_bytes() == b"someone else's"
