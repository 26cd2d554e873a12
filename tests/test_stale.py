"""Never a stale result: a finished run is reused only when it is the run asked for.

Run folders are written here by hand (a ``config.json`` as training records it, the metric rows
and a predictions file), so that the plan's decisions are tested without training anything.
"""
import json

import pytest

from sdml.notebooks import plan as nbplan
from sdml.notebooks import runner
from sdml.training import resume, runs
from sdml.training.resume import RecordMismatch


def make_plan(tmp_path, methods=("none",), only=("04",), **extra):
    return nbplan.build_plan("smoke", "synthetic", list(methods), [0], only=list(only),
                             runs_root=tmp_path / "runs", figures_root=tmp_path / "figures",
                             data_dir=str(tmp_path / "data"), extra=extra)


def fake_runs(step, epochs=None, edit=lambda record: None, predictions=True):
    """Write ``step``'s runs as training would have left them after ``epochs`` (all) epochs."""
    for d, cfg in zip(step.run_dirs, nbplan.step_configs(step)):
        d.mkdir(parents=True, exist_ok=True)
        record = {"config": cfg.to_dict(), "seed": cfg.seed, **nbplan.run_depends(cfg)}
        edit(record)
        (d / runs.CONFIG).write_text(json.dumps(record))
        n = cfg.epochs if epochs is None else epochs
        runs.write_metrics(d, [{"epoch": e, "test_top1": 1.0} for e in range(1, n + 1)])
        if predictions:
            (d / runs.PREDICTIONS).write_bytes(b"p")


def mismatch(step) -> RecordMismatch:
    with pytest.raises(RecordMismatch) as err:
        nbplan.run_state(step)
    return err.value


def test_the_same_run_is_done_more_epochs_resume_and_unfinished_resumes(tmp_path):
    step, = make_plan(tmp_path)
    assert nbplan.run_state(step) == "new"
    fake_runs(step)
    assert nbplan.run_state(step) == "done"
    longer, = make_plan(tmp_path, epochs=4)
    assert nbplan.run_state(longer) == "resume"
    fake_runs(step, epochs=2)
    assert nbplan.run_state(step) == "resume"


def test_more_peers_over_two_peer_runs_is_refused_as_resume_refuses_it(tmp_path):
    step, = make_plan(tmp_path)
    fake_runs(step)
    asked, = make_plan(tmp_path, peers=3)
    err = mismatch(asked)
    assert (err.run_dir, err.field, err.asked, err.recorded) == (step.run_dirs[0], "peers", 3, 2)
    # sdml train --resume applies the same test to the same folder
    cfg = nbplan.step_configs(asked)[0]
    with pytest.raises(RecordMismatch) as again:
        resume.check_record(asked.run_dirs[0], cfg, True, nbplan.run_depends(cfg))
    assert (again.value.field, again.value.asked, again.value.recorded) == ("peers", 3, 2)


def test_a_mapping_whose_content_changed_since_the_run_is_refused(tmp_path):
    from sdml.hierarchy.superclasses import cifar_superclasses

    mapping = tmp_path / "groups.json"
    mapping.write_text(json.dumps(cifar_superclasses().to_json()))
    step, = make_plan(tmp_path, superclasses=str(mapping))
    fake_runs(step)
    assert nbplan.run_state(step) == "done"
    edited = json.loads(mapping.read_text())
    edited["classes"]["apple"] = (edited["classes"]["apple"] + 1) % len(edited["superclass_names"])
    mapping.write_text(json.dumps(edited))
    err = mismatch(step)
    assert err.field == "superclasses" and err.asked != err.recorded and "apple" in str(err)


def test_a_fashion_mnist_run_is_not_reused_for_synthetic_data_in_the_same_root(tmp_path):
    step, = make_plan(tmp_path, superclasses="wordnet")

    def as_fashion(record):
        record["config"].update(data="fashion-mnist", wordnet_k=3)  # Fashion-MNIST's grouping
        record["dataset"] = {"name": "fashion-mnist", "train": 4000, "test": 1000, "classes": 10,
                             "sha256": "0" * 64}

    fake_runs(step, edit=as_fashion)
    err = mismatch(step)
    assert (err.field, err.asked, err.recorded) == ("data", "synthetic", "fashion-mnist")


def test_other_data_of_the_same_name_is_refused(tmp_path):
    step, = make_plan(tmp_path)
    fake_runs(step, edit=lambda r: r["dataset"].update(sha256="1" * 64))
    err = mismatch(step)
    assert err.field == "data" and "111111111111" in err.recorded


def test_a_run_name_pointing_at_another_methods_run_is_refused(tmp_path):
    step, = make_plan(tmp_path)
    fake_runs(step)
    asked, = make_plan(tmp_path, methods=["superclass-beta"], run_name=step.run_dirs[0].name)
    err = mismatch(asked)
    assert (err.field, err.asked, err.recorded) == ("method", "superclass-beta", "none")


def test_fewer_epochs_than_a_run_has_finished_are_refused(tmp_path):
    step, = make_plan(tmp_path)
    fake_runs(step)
    err = mismatch(make_plan(tmp_path, epochs=2)[0])
    assert (err.field, err.asked, err.recorded) == ("epochs", 2, 3)


def test_the_runner_refuses_a_mismatch_in_one_line_with_the_command_that_trains_afresh(
        tmp_path, capsys, monkeypatch):
    step, other = make_plan(tmp_path, methods=["none", "superclass-beta"])
    fake_runs(step)
    fake_runs(other)

    def refuse(*args, **kwargs):
        raise AssertionError("a notebook was executed")

    monkeypatch.setattr(runner, "execute", refuse)
    argv = ["run", "--profile", "smoke", "--data", "synthetic", "--methods", "none",
            "superclass-beta", "--only", "04",
            "--runs-root", str(tmp_path / "runs"), "--figures-root", str(tmp_path / "figures"),
            "--data-dir", str(tmp_path / "data"), "-p", "peers=3"]
    assert runner.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    run = str(step.run_dirs[0])
    assert f"peers: 3 differs from the run in {run!r} (2)" in err
    second = str(other.run_dirs[0])
    assert "(and 1 other run(s) of this plan)" in err
    assert (f"mv {run} {run}.old && mv {second} {second}.old && python -m sdml.notebooks run "
            in err) and err.strip().endswith("-p peers=3")


# ----------------------------------------------------------------------------- what a notebook reads

def test_every_notebook_declares_what_it_reads():
    from sdml.notebooks import params as nbparams
    from sdml.notebooks import stamps

    on_disk = sorted(p.stem for p in runner.NOTEBOOK_DIR.glob("*.ipynb"))
    assert on_disk and sorted(nbparams.READS) == on_disk == sorted(nbparams.NOTEBOOKS)
    assert all(set(kinds) <= set(stamps.KINDS) for kinds in nbparams.READS.values())
    with pytest.raises(ValueError, match="'07_new' declares no inputs"):
        stamps.read_files("07_new", {})


def test_06_reads_every_runs_files_and_the_data_and_02_03_the_mappings(tmp_path):
    from sdml.notebooks import stamps

    step, = make_plan(tmp_path, methods=["none", "superclass-beta"], only=["06"])
    trained = make_plan(tmp_path, methods=["none", "superclass-beta"])
    for s in trained:
        fake_runs(s)
        (s.run_dirs[0] / runs.CHECKPOINT).write_bytes(b"c")
    read = set(stamps.read_files("06_analysis", step.params))
    expected = {s.run_dirs[0] / name for s in trained for name in
                (runs.CONFIG, runs.METRICS, runs.CHECKPOINT, runs.PREDICTIONS)}
    data = set((tmp_path / "data").glob("synthetic-*/*"))
    assert data and read == expected | data | set(stamps.MAPPINGS.rglob("*.json"))
    tree = stamps.MAPPINGS / "wordnet_tree.json"
    for nb in ("02_mixing_preview", "03_ratio_distributions"):
        assert tree in stamps.read_files(nb, step.params)
    library = stamps.library_files()
    assert tree in library and stamps.MAPPINGS / "fashion-mnist" / "wordnet_k3.json" in library
    assert not any(p.suffix == ".pyc" for p in library)


def test_06s_stamp_changes_when_a_run_is_removed_added_or_extended(tmp_path):
    import shutil

    from sdml.notebooks import stamps

    step, = make_plan(tmp_path, methods=["none", "superclass-beta"], only=["06"])
    source = runner.NOTEBOOK_DIR / "06_analysis.ipynb"
    first, second = make_plan(tmp_path, methods=["none", "superclass-beta"])
    fake_runs(first)
    one = stamps.inputs(source, step.notebook, step.params)
    fake_runs(second)  # a run added
    two = stamps.inputs(source, step.notebook, step.params)
    fake_runs(second, epochs=4)  # a run extended
    extended = stamps.inputs(source, step.notebook, step.params)
    shutil.rmtree(second.run_dirs[0])  # and removed again
    assert len({json.dumps(x, sort_keys=True) for x in (one, two, extended)}) == 3
    assert stamps.inputs(source, step.notebook, step.params) == one


def test_a_fashion_mnist_data_dir_is_read_where_the_reader_finds_it(tmp_path):
    from sdml.notebooks import stamps

    folder = tmp_path / "fm" / "fashion-mnist"
    folder.mkdir(parents=True)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"x")
    (tmp_path / "fm" / "unrelated.bin").write_bytes(b"y")
    found = stamps.data_files("fashion-mnist", tmp_path / "fm")
    assert folder / "train-images-idx3-ubyte.gz" in found
    assert tmp_path / "fm" / "unrelated.bin" not in found


# ----------------------------------------------------------------------------- one root, one protocol

def test_the_runner_keeps_another_datasets_runs_in_their_own_root(tmp_path):
    own = nbplan.build_plan("smoke", "synthetic", ["none"], [0], only=["05"])[0].params
    other = nbplan.build_plan("smoke", "fashion-mnist", ["none"], [0], only=["05"])[0].params
    assert own["run_root"].endswith("/runs/smoke") and own["figures_dir"].endswith("/figures/smoke")
    assert other["run_root"].endswith("/runs/smoke-fashion-mnist")
    assert other["figures_dir"].endswith("/figures/smoke-fashion-mnist")


def test_a_report_refuses_runs_of_two_protocols_and_names_them(tmp_path):
    from sdml.results import summary

    first, second = make_plan(tmp_path, methods=["none", "superclass-beta"])
    fake_runs(first, predictions=False)
    fake_runs(second, predictions=False)
    both = summary.load_runs(tmp_path / "runs")
    assert summary.runs_heading(both) == "profile smoke, data synthetic"
    fake_runs(second, predictions=False, edit=lambda r: r["config"].update(peers=3))
    with pytest.raises(ValueError) as err:
        summary.load_runs(tmp_path / "runs")
    assert "different protocols" in str(err.value)
    assert "(peers 2: none-cifar-seed0; 3: superclass-beta-cifar-seed0)" in str(err.value)
    # the same protocol on other data of the same name is refused as well
    fake_runs(second, predictions=False, edit=lambda r: r["dataset"].update(sha256="f" * 64))
    with pytest.raises(ValueError, match="dataset sha256 .*ffffffffffff: superclass-beta-cifar-seed0"):
        summary.load_runs(tmp_path / "runs")


# ----------------------------------------------------------------------------- 06's caches

def test_06_refuses_data_other_than_the_runs_before_reading_any_cache(tmp_path):
    from sdml.results import features

    step, = make_plan(tmp_path)
    fake_runs(step, edit=lambda r: r["dataset"].update(sha256="e" * 64))
    run = step.run_dirs[0]
    with pytest.raises(RecordMismatch) as err:
        features.load_trained(run)
    assert err.value.field == "data" and "eeeeeeeeeeee" in err.value.recorded
    fake_runs(step)  # the run's own data: it goes on to the (missing) checkpoint
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        features.load_trained(run)


# ----------------------------------------------------------------------------- --data-dir

@pytest.mark.parametrize("data", ["cifar100", "cifar10", "fashion-mnist", "synthetic"])
def test_a_data_dir_that_is_a_file_is_refused_for_every_dataset(tmp_path, data, capsys, monkeypatch):
    from sdml.data.load import ensure_files, load_dataset

    afile = tmp_path / "README.md"
    afile.write_text("not a folder\n")
    for read in (lambda: load_dataset(data, afile, download=False),
                 lambda: ensure_files(data, afile, download=False)):
        with pytest.raises(NotADirectoryError, match="data_dir is a file, not a folder") as err:
            read()
        assert err.value.filename == str(afile)

    def refuse(*args, **kwargs):
        raise AssertionError("a notebook was executed")

    monkeypatch.setattr(runner, "execute", refuse)
    argv = ["run", "--profile", "smoke", "--data", data, "--only", "02", "--data-dir", str(afile),
            "--runs-root", str(tmp_path / "runs"), "--figures-root", str(tmp_path / "figures")]
    assert runner.main(argv) == 3
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{afile}: data_dir is a file, not a folder" in err


@pytest.mark.parametrize("nb", ["05_results", "06_analysis"])
def test_report_titles_come_from_the_runs_not_the_notebooks_profile(nb):
    import nbformat

    cells = nbformat.read(runner.NOTEBOOK_DIR / f"{nb}.ipynb", as_version=4).cells
    titled = [c.source for c in cells if c.cell_type == "code" and "title=" in c.source]
    assert titled and all("runs_heading(all_runs)" in s and "params['profile']" not in s
                          for s in titled)
