"""The notebooks and their runner: committed clean, parameters as specified, executed end to end.

The end-to-end test runs every notebook through ``python -m sdml.notebooks``'s functions with
papermill, in the smoke profile on synthetic data, into a temporary folder.
"""
import ast
import re

import nbformat
import pytest

from sdml.notebooks import params as nbparams
from sdml.notebooks import runner as notebooks
from sdml.notebooks import stamps
from sdml.training import runs

METHODS = ["none", "superclass-beta"]  # two 04 runs keep the test short
FAST = {"threads": 1,  # one torch thread: much faster than two on a shared 2-core machine
        "attention_pairs": 4, "projection_points": 100}  # notebook 06 on a few images
NOTEBOOK_FILES = {nb: notebooks.NOTEBOOK_DIR / f"{nb}.ipynb" for nb in nbparams.NOTEBOOKS}


def read(nb):
    return nbformat.read(NOTEBOOK_FILES[nb], as_version=4)


def code_cells(nb):
    return [c for c in read(nb).cells if c.cell_type == "code"]


# ----------------------------------------------------------------------------- committed notebooks

@pytest.mark.parametrize("nb", nbparams.NOTEBOOKS)
def test_committed_without_outputs(nb):
    notebook = read(nb)
    nbformat.validate(notebook)
    assert notebook.metadata["kernelspec"]["name"] == "python3"
    for cell in code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("nb", nbparams.NOTEBOOKS)
def test_one_parameters_cell_declaring_the_spec_then_validation(nb):
    cells = code_cells(nb)
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    source = cells[tagged[0]].source
    names, values = [], {}
    for stmt in ast.parse(source).body:
        assert isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name), ast.dump(stmt)
        names.append(stmt.targets[0].id)
        values[stmt.targets[0].id] = ast.literal_eval(stmt.value)
    assert set(names) == set(nbparams.spec(nb)) and len(names) == len(set(names))
    assert values == nbparams.defaults(nb)
    assert all("#" in line for line in source.splitlines() if line.strip()), "every parameter has a comment"
    check = cells[tagged[0] + 1].source
    assert f'sdml.notebooks.params.validate(\n    "{nb}"' in check
    for name in names:
        assert f"{name}={name}" in check


@pytest.mark.parametrize("nb", nbparams.NOTEBOOKS)
def test_no_function_or_class_defined_in_a_notebook(nb):
    for cell in code_cells(nb):
        assert not re.search(r"^\s*(async\s+)?(def|class)\s", cell.source, re.M), cell.source[:80]


# ----------------------------------------------------------------------------- the runner, without running

def runner_args(tmp_path, *extra):
    return ["run", "--profile", "smoke", "--data", "synthetic", "--runs-root", str(tmp_path / "runs"),
            "--figures-root", str(tmp_path / "figures"), "--data-dir", str(tmp_path / "data"), *extra]


@pytest.fixture
def no_execution(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a notebook was executed")

    monkeypatch.setattr(notebooks, "execute", refuse)


@pytest.mark.parametrize("extra, named", [
    (["-p", "epoch=2"], "epoch: not a parameter of any notebook"),
    (["--methods", "none", "superclas-beta"], "method: 'superclas-beta' is not allowed"),
    (["-p", "peers=1"], "peers: 1 is not allowed"),
    (["-p", "seed=3"], "seed: set by the runner; use --seeds"),
    (["--only", "09"], "only: '09' matches no notebook"),
])
def test_runner_refuses_bad_input_before_running_anything(tmp_path, capsys, no_execution, extra, named):
    assert notebooks.main(runner_args(tmp_path, *extra)) == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_missing_cifar_archive_stops_the_run_before_any_notebook(tmp_path, capsys, no_execution, monkeypatch):
    import sdml.data.cifar

    def offline(root, download=True):
        raise FileNotFoundError(f"CIFAR-100 archive not found: {root}/cifar-100-python.tar.gz")

    monkeypatch.setattr(sdml.data.cifar, "ensure_cifar100", offline)
    argv = runner_args(tmp_path, "--only", "04")
    argv[argv.index("synthetic")] = "cifar100"
    assert notebooks.main(argv) == 3  # a file problem (see sdml.io.failures)
    assert "CIFAR-100 archive not found" in capsys.readouterr().err


def test_dry_run_prints_the_plan(tmp_path, capsys, no_execution):
    argv = runner_args(tmp_path, "--methods", *METHODS, "--seeds", "0", "1", "--dry-run")
    assert notebooks.main(argv) == 0
    out = capsys.readouterr().out
    labels = re.findall(r"^\s*\d+\. (\S+(?: \[\S+\])?)", out, re.M)
    assert labels == ["01_superclass_hierarchy", "02_mixing_preview", "03_ratio_distributions",
                      "04_train_dml [none-cifar-seed0]", "04_train_dml [none-cifar-seed1]",
                      "04_train_dml [superclass-beta-cifar-seed0]",
                      "04_train_dml [superclass-beta-cifar-seed1]", "05_results", "06_analysis"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("profile, data, seeds", [
    ("cpu", "fashion-mnist", ["seed0", "seed1", "seed2", "seed3"]),  # the seed rule's four
    ("fashion", "fashion-mnist", ["seed0", "seed1"]),       # results read as findings: two
    ("smoke", "synthetic", ["seed0"]),                      # a quick preset: one
])
def test_default_seeds_follow_the_profile(tmp_path, capsys, no_execution, profile, data, seeds):
    argv = runner_args(tmp_path, "--methods", "none", "--dry-run")
    argv[argv.index("smoke")], argv[argv.index("synthetic")] = profile, data
    assert notebooks.main(argv) == 0
    planned = re.findall(r"04_train_dml \[none-\S+-(seed\d+)\]", capsys.readouterr().out)
    assert planned == seeds


@pytest.mark.parametrize("profile, data, want", [
    ("cpu", "fashion-mnist", []), ("smoke", "synthetic", ["none", "superclass-beta"])])
def test_independent_auto_follows_the_profile(tmp_path, capsys, no_execution, profile, data, want):
    argv = runner_args(tmp_path, "--methods", "none", "--seeds", "0", "--independent", "auto",
                       "--dry-run")
    argv[argv.index("smoke")], argv[argv.index("synthetic")] = profile, data
    assert notebooks.main(argv) == 0
    controls = re.findall(r"04_train_dml \[(none|superclass-beta)-\w+-kl0-seed0\]",
                          capsys.readouterr().out)
    assert controls == want


def test_dry_run_with_fused_runs_plans_one_04_per_seed(tmp_path, capsys, no_execution):
    argv = runner_args(tmp_path, "--methods", *METHODS, "--seeds", "0", "1", "--fuse-runs", "on",
                       "--dry-run")
    assert notebooks.main(argv) == 0
    out = capsys.readouterr().out
    assert "04_train_dml [fused: none-cifar-seed0, superclass-beta-cifar-seed0]" in out
    assert "04_train_dml [fused: none-cifar-seed1, superclass-beta-cifar-seed1]" in out
    assert out.count("04_train_dml") == 2 and not (tmp_path / "runs").exists()


def test_fuse_runs_auto_follows_the_device_and_the_number_of_methods(monkeypatch):
    import torch

    said = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert notebooks.resolve_fuse_runs("auto", METHODS, said.append) is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert notebooks.resolve_fuse_runs("auto", METHODS, said.append) is True and "CUDA" in said[-1]
    assert notebooks.resolve_fuse_runs("auto", METHODS[:1], said.append) is False
    assert notebooks.resolve_fuse_runs("off", METHODS) is False
    assert notebooks.resolve_fuse_runs("on", METHODS) is True
    with pytest.raises(ValueError, match="fuse_runs: 'yes'; allowed: auto, on, off"):
        notebooks.resolve_fuse_runs("yes", METHODS)


@pytest.mark.parametrize("params, named", [
    ({"methods": ["none", "none"]}, "methods: ['none', 'none'] is not allowed"),
    ({"methods": ["cutmix"]}, "methods: ['cutmix'] is not allowed"),
    ({"methods": ["none", "mixup"], "run_name": "mine"}, "run_name: 'mine' with methods"),
])
def test_notebook_04_refuses_bad_fused_methods(params, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        nbparams.validate("04_train_dml", **params)


def test_auto_profile_and_data(monkeypatch):
    import torch

    said = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # without a GPU the main job trains on real Fashion-MNIST (issue 16), not on synthetic data
    assert notebooks.resolve_profile("auto", said.append) == "cpu" and "no CUDA GPU" in said[-1]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Test GPU")
    assert notebooks.resolve_profile("auto", said.append) == "paper" and "Test GPU" in said[-1]
    assert notebooks.resolve_profile("smoke", said.append) == "smoke"
    assert notebooks.resolve_data("auto", "paper") == "cifar100"
    assert notebooks.resolve_data("auto", "demo") == "synthetic"
    assert notebooks.resolve_data("auto", "cpu") == "fashion-mnist"
    assert notebooks.resolve_data("synthetic", "paper") == "synthetic"


@pytest.mark.parametrize("gpu, profile, data", [(False, "cpu", "fashion-mnist"),
                                                 (True, "paper", "cifar100")])
def test_committed_defaults_resolve_as_make_reproduce_does(monkeypatch, gpu, profile, data):
    """Run as committed, every notebook takes the profile and data `make reproduce` takes on this
    machine, and the profile's run and figure folders: notebook 05 finds the main job's runs."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpu)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Test GPU")
    assert notebooks.resolve_profile("auto", log=lambda m: None) == profile  # what the Makefile runs
    assert notebooks.resolve_data("auto", profile) == data
    for nb in nbparams.NOTEBOOKS:
        params = nbparams.validate(nb)
        assert params["profile"] == profile
        assert params.get("data", data) == data
        for name, top in (("run_root", "runs"), ("figures_dir", "figures")):
            if name in params:
                assert params[name] == str(nbparams.PROJECT_ROOT / top / profile)


@pytest.mark.parametrize("nb, given, named", [
    ("05_results", {"profile": "cpu", "run_root": "runs/smoke"},
     "run_root: 'runs/smoke' is the folder of profile 'smoke', but profile is 'cpu'"),
    ("02_mixing_preview", {"profile": "demo", "figures_dir": "figures/cpu"},
     "figures_dir: 'figures/cpu' is the folder of profile 'cpu', but profile is 'demo'"),
    ("04_train_dml", {"profile": "smoke", "data": "synthetic", "run_root": "runs/fashion-mnist"},
     "run_root: 'runs/fashion-mnist' is named after dataset 'fashion-mnist', but data is 'synthetic'"),
    ("01_superclass_hierarchy", {"profile": "cpu", "data": "cifar10", "run_root": "out/cifar100"},
     "run_root: 'out/cifar100' is named after dataset 'cifar100', but data is 'cifar10'"),
])
def test_contradictory_folders_are_refused_naming_both(nb, given, named):
    with pytest.raises(ValueError, match=re.escape(named)):
        nbparams.validate(nb, **given)


def test_folders_follow_the_profile_unless_given():
    params = nbparams.validate("05_results", profile="demo")
    assert params["run_root"] == str(nbparams.PROJECT_ROOT / "runs" / "demo")
    assert params["figures_dir"] == str(nbparams.PROJECT_ROOT / "figures" / "demo")
    params = nbparams.validate("04_train_dml", profile="smoke", run_root="runs/mine")
    assert params["run_root"] == str(nbparams.PROJECT_ROOT / "runs" / "mine")
    assert params["data"] == "synthetic"  # the smoke profile's own


@pytest.mark.parametrize("nb", [nb for nb in nbparams.NOTEBOOKS if nb != "04_train_dml"])
def test_every_parameter_a_notebook_takes_is_used(nb):
    """No parameter kept only for uniformity: each (but ``profile``, which picks the preset and
    the folders) is read after validation. Notebook 04 hands ``params`` whole to the library."""
    code = "\n".join(c.source for c in code_cells(nb)[1:])
    for name in set(nbparams.spec(nb)) - {"profile"}:
        assert re.search(rf"params\[[\"']{name}[\"']\]", code), f"{nb} never reads {name}"


def test_failure_names_the_notebook_and_the_cell_and_stops(tmp_path, monkeypatch):
    failing = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                "display_name": "Python 3"}})
    params = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}  # x" for k, v in nbparams.defaults("05_results").items()))
    params.metadata["tags"] = ["parameters"]
    failing.cells = [params, nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0")]
    (tmp_path / "nbs").mkdir()
    nbformat.write(failing, tmp_path / "nbs" / "05_results.ipynb")
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", tmp_path / "nbs")
    plan = notebooks.build_plan("smoke", "synthetic", only=["05"], runs_root=tmp_path / "runs")
    plan.append(notebooks.Step("05_results", plan[0].params, tmp_path / "never.ipynb"))
    with pytest.raises(notebooks.NotebookFailed) as err:
        notebooks.run_plan(plan, log=lambda *_: None)
    message = str(err.value)
    assert "notebook 05_results failed in cell 3 ('1 / 0')" in message  # counted as committed, from 1
    assert "ZeroDivisionError" in message and str(plan[0].output) in message
    assert plan[0].output.is_file() and not (tmp_path / "never.ipynb").exists()


def failing_notebook(tmp_path, monkeypatch, source):
    """A stand-in for notebook 05 whose third cell runs ``source``."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                           "display_name": "Python 3"}})
    params = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}  # x" for k, v in nbparams.defaults("05_results").items()))
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell(source)]
    (tmp_path / "nbs").mkdir()
    nbformat.write(nb, tmp_path / "nbs" / "05_results.ipynb")
    monkeypatch.setattr(notebooks, "NOTEBOOK_DIR", tmp_path / "nbs")


def test_a_kit_error_inside_a_notebook_keeps_its_exit_code_and_one_line(tmp_path, monkeypatch, capsys):
    failing_notebook(tmp_path, monkeypatch, "from sdml.io.readback import DamagedFile\n"
                     "raise DamagedFile('runs/x/predictions.pt', 'is truncated', 'train it again')")
    assert notebooks.main(runner_args(tmp_path, "--only", "05")) == 3  # a damaged file
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("sdml.notebooks: error: runs/x/predictions.pt: is truncated; train it again "
                          "(notebook 05_results, cell 3 ('from sdml.io.readback import DamagedFile')")
    assert [notebooks.kit_exit_code(name) for name in
            ("ValueError", "RecordMismatch", "DamagedFile", "FileNotFoundError", "FolderBusy",
             "ZeroDivisionError", "NoSuchError")] == [2, 2, 3, 3, 4, 1, 1]


def test_a_dead_kernel_names_the_notebook_and_cell_and_how_to_continue(tmp_path, monkeypatch, capsys):
    failing_notebook(tmp_path, monkeypatch, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    argv = runner_args(tmp_path, "--only", "05")
    assert notebooks.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "notebook 05_results: its kernel died in cell 3 ('import os, signal')" in err
    assert err.endswith("resumed): python -m sdml.notebooks " + " ".join(argv))


# ----------------------------------------------------------------------------- executing everything

@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    root = tmp_path_factory.mktemp("kit")
    plan = notebooks.build_plan("smoke", "synthetic", METHODS, [0], runs_root=root / "runs",
                                figures_root=root / "figures", data_dir=str(root / "data"), extra=FAST)
    log = []
    notebooks.run_plan(plan, log=log.append)
    return root, plan, log


def test_every_notebook_executes_and_writes_what_it_promises(executed):
    root, plan, log = executed
    assert [s.label for s in plan] == ["01_superclass_hierarchy", "02_mixing_preview",
                                       "03_ratio_distributions", "04_train_dml [none-cifar-seed0]",
                                       "04_train_dml [superclass-beta-cifar-seed0]", "05_results",
                                       "06_analysis"]
    for step in plan:
        assert step.output.parent == root / "runs" / "executed"
        cells = nbformat.read(step.output, as_version=4).cells
        assert any(c.get("outputs") for c in cells if c.cell_type == "code"), step.label
    figures = root / "figures"
    for name in ("hierarchy_dendrogram.png", "similarity_by_superclass.png",
                 "superclasses_wordnet_k20_vs_cifar.png",
                 "learning_curves_none-cifar-seed0.png", "learning_curves_superclass-beta-cifar-seed0.png",
                 "learning_curves.png", "accuracy_per_superclass.png", "reliability.png",
                 "latent_scores.png", "latent_pca.png", "latent_tsne.png", "attention_gradcam.png",
                 "attention_gradcampp.png", "attention_shares.png"):
        assert (figures / name).stat().st_size > 1000, name
    assert len(list(figures.glob("*.png"))) >= 12  # notebooks 02 and 03 add their own
    assert '"classes"' in (root / "runs" / "wordnet_k20.json").read_text()
    assert (root / "runs" / "class_synsets.csv").read_text().count("\n") == 101
    for method in METHODS:
        run_dir = root / "runs" / f"{method}-cifar-seed0"
        assert len(runs.read_metrics(run_dir)) == 3
        for name in (runs.CONFIG, runs.CHECKPOINT, runs.PREDICTIONS):
            assert (run_dir / name).stat().st_size > 0
    md = (root / "runs" / "results.md").read_text()
    assert "Not comparable with Table 1" in md and "73.28" in md
    assert "| no mixup | - | cifar | synthetic | 3 | 0 |" in md
    csv_lines = (root / "runs" / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,") and len(csv_lines) > 10
    analysis = (root / "runs" / "analysis.md").read_text()
    assert "| superclass-beta | pair |" in analysis and "siblings" in analysis
    assert (root / "runs" / "latent.csv").read_text().count("\n") == 1 + 2 * 3 * 3  # runs x members x scores
    assert (root / "runs" / "attention.csv").read_text().startswith("run,group,seed,peer,cam,")
    for method in METHODS:
        for name in ("features.pt", "projections.pt", "attention.pt"):
            assert (root / "runs" / f"{method}-cifar-seed0" / name).stat().st_size > 0


def test_the_console_shows_every_epoch_of_every_run_while_it_trains(executed):
    _, _, log = executed
    for method in METHODS:
        label = f"04_train_dml [{method}-cifar-seed0]"
        epochs = [int(m.group(1)) for line in log
                  for m in [re.match(rf"\[sdml\]   {re.escape(label)}: .*epoch +(\d+)/3 ", line)] if m]
        assert epochs == [1, 2, 3], (label, log)
    assert not any("without encryption" in line for line in log)


def test_progress_lines_pass_epoch_lines_only():
    got = []
    sink = notebooks.ProgressLines("04 [x]", got.append)
    sink.write("loading...\nepoch   1/3 lr 0.1 loss 2.0 | test top-1 9.0\nrun-a: epoch   2/3 lr")
    assert got == ["[sdml]   04 [x]: epoch   1/3 lr 0.1 loss 2.0 | test top-1 9.0"]
    sink.write(" 0.1 loss 1.0\n\rprogress 50%\rrun-a: epoch   3/3 lr 0.1\nsaved figures\n")
    assert got[1:] == ["[sdml]   04 [x]: run-a: epoch   2/3 lr 0.1 loss 1.0",
                       "[sdml]   04 [x]: run-a: epoch   3/3 lr 0.1"]


def test_a_rerun_skips_unchanged_notebooks_and_reruns_05_when_a_run_changes(executed):
    root, plan, _ = executed
    others = [s for s in plan if not s.run_dirs]
    before = {s.output: s.output.stat().st_mtime_ns for s in others}
    log = []
    notebooks.run_plan(others, log=log.append)
    assert len(log) == len(others) + 1 == 6, log  # 01, 02, 03, 05 and 06, then the total
    assert all(line.endswith("inputs and outputs unchanged, skipped") for line in log[:-1]), log
    assert re.fullmatch(r"\[sdml\] all 5 notebook run\(s\) in 0 min \d+ s \(0 executed, 5 skipped\)",
                        log[-1]), log
    assert {s.output: s.output.stat().st_mtime_ns for s in others} == before
    results = next(s for s in others if s.notebook == "05_results")
    source = notebooks.NOTEBOOK_DIR / "05_results.ipynb"
    metrics = root / "runs" / "none-cifar-seed0" / runs.METRICS
    text = metrics.read_text()
    try:
        metrics.write_text(text + "\n")  # a run file it reads changed
        assert not stamps.unchanged(source, results.notebook, results.params, results.output)
    finally:
        metrics.write_text(text)
    assert stamps.unchanged(source, results.notebook, results.params, results.output)
    figure = root / "figures" / "reliability.png"
    data = figure.read_bytes()
    figure.unlink()  # an output gone
    try:
        assert not stamps.unchanged(source, results.notebook, results.params, results.output)
    finally:
        figure.write_bytes(data)
    changed = {**results.params, "methods": ["none"]}  # other parameters
    assert not stamps.unchanged(source, results.notebook, changed, results.output)


def test_a_rerun_skips_finished_runs_and_resumes_unfinished_ones(executed):
    root, plan, _ = executed
    steps = [s for s in plan if s.run_dirs]
    before = {s.run_dirs: ((s.run_dirs[0] / runs.CHECKPOINT).stat().st_mtime_ns, s.output.stat().st_mtime_ns)
              for s in steps}
    log = []
    again = notebooks.build_plan("smoke", "synthetic", METHODS, [0], only=["04"], runs_root=root / "runs",
                                 figures_root=root / "figures", data_dir=str(root / "data"), extra=FAST)
    notebooks.run_plan(again, log=log.append)
    assert len(log) == 3 and all(line.endswith("finished run, skipped") for line in log[:2])
    assert log[2].endswith("(0 executed, 2 skipped)")
    after = {s.run_dirs: ((s.run_dirs[0] / runs.CHECKPOINT).stat().st_mtime_ns, s.output.stat().st_mtime_ns)
             for s in steps}
    assert after == before
    # asking for more epochs turns a finished run into one to resume
    longer = notebooks.build_plan("smoke", "synthetic", METHODS[:1], [0], only=["04"], runs_root=root / "runs",
                                  data_dir=str(root / "data"), extra={"epochs": 4})
    assert notebooks.run_state(longer[0]) == "resume"


def test_fused_04_trains_every_method_as_one_job_into_the_single_runs_folders(executed, tmp_path):
    root, plan, _ = executed
    fused = notebooks.build_plan("smoke", "synthetic", METHODS, [0], only=["04"],
                                 runs_root=tmp_path / "runs", figures_root=tmp_path / "figures",
                                 data_dir=str(root / "data"), extra={**FAST, "epochs": 1},
                                 fuse_runs=True)  # one epoch: grouped convolutions are slow on a CPU
    assert [s.label for s in fused] == [
        "04_train_dml [fused: none-cifar-seed0, superclass-beta-cifar-seed0]"]
    assert notebooks.run_state(fused[0]) == "new"
    notebooks.run_plan(fused, log=lambda *_: None)
    assert notebooks.run_state(fused[0]) == "done"
    for method in METHODS:
        name = f"{method}-cifar-seed0"
        fused_dir, single_dir = tmp_path / "runs" / name, root / "runs" / name
        assert len(runs.read_metrics(fused_dir)) == 1
        for part in (runs.CONFIG, runs.CHECKPOINT, runs.PREDICTIONS):
            assert (fused_dir / part).stat().st_size > 0
        assert (tmp_path / "figures" / f"learning_curves_{name}.png").stat().st_size > 1000
        # the same run as notebook 04 trains alone, but for the fused (grouped) peers
        got, alone = (runs.read_config(d).to_dict() for d in (fused_dir, single_dir))
        assert got.pop("fuse") == "grouped" and alone.pop("fuse") == "auto"
        assert (got.pop("epochs"), alone.pop("epochs")) == (1, 3)
        assert got == alone
    cells = nbformat.read(fused[0].output, as_version=4).cells
    tables = [o for c in cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "text/html" in o.get("data", {})]
    assert any("superclass-beta-cifar-seed0" in o["data"]["text/html"] for o in tables)


def test_a_deleted_figure_is_drawn_again_and_nothing_else_runs(executed):
    root, plan, _ = executed
    gone = [root / "figures" / "soft_ratio_vs_similarity.png",  # notebook 03's
            root / "figures" / "learning_curves_none-cifar-seed0.png"]  # 04's, of a finished run
    for figure in gone:
        figure.unlink()
    log = []
    notebooks.run_plan(plan, log=log.append)
    executed_steps = [re.match(r"\[sdml\] \d+/\d+ (.+?)(?: \(.*\))? \.\.\.$", line).group(1)
                      for line in log if line.endswith("...")]
    assert executed_steps == ["03_ratio_distributions", "04_train_dml [none-cifar-seed0]"], log
    assert all(figure.stat().st_size > 1000 for figure in gone)
    assert log[-1].endswith(f"(2 executed, {len(plan) - 2} skipped)")
    again = []
    notebooks.run_plan(plan, log=again.append)  # and a second run of an unchanged tree skips all
    assert again[-1].endswith(f"(0 executed, {len(plan)} skipped)"), again
