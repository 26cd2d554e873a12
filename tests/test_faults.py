"""Fault injection: SIGKILL at fixed points of a run and of its resumes, a full disk, two
processes on one folder, Ctrl-C, divergence, a cut metrics line and leftovers of a killed write.
Every interrupted run, once resumed, must equal an uninterrupted one tensor by tensor."""
import json
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from sdml.cli import main
from sdml.io.failures import EXIT_BUSY, EXIT_DIVERGED, EXIT_FILE, EXIT_INTERRUPTED
from sdml.io.lock import FolderBusy, FolderLock
from sdml.training import runs
from sdml.training import train as train_mod
from tiny_run import assert_same_run, python, subprocess_env, train_argv

EPOCHS = 3


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_data):
    """An uninterrupted run (in this process): (the folder holding it, the run)."""
    root = tmp_path_factory.mktemp("faults")
    (root / "data").symlink_to(tiny_data)
    assert main(train_argv(root / "ref", root / "data", EPOCHS)) == 0
    return root, root / "ref"


def start_paused(run, data, step: str, n: int, *extra):
    """A ``train --resume`` of ``run`` in a child that waits at its kill point (see
    tests/kill_point.py) until it is killed; returns once it waits there."""
    proc = subprocess.Popen([python(), str(Path(__file__).with_name("kill_point.py")), step, str(n),
                             *train_argv(run, data, EPOCHS, "--resume", *extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=subprocess_env())
    if not any(line.startswith(f"[kill-point] {step} {n}") for line in proc.stdout):
        proc.wait()
        pytest.fail(f"no kill point {step} {n}: {proc.stderr.read()}")
    return proc


def start(argv):
    return subprocess.Popen([python(), "-m", "sdml", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=subprocess_env())


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


#: (step, n): where each start is killed (see tests/kill_point.py). Each start after the first
#: is a resume of what the kill before left: a run cut in its second epoch; an epoch's metrics
#: line written and its checkpoint not; a checkpoint's temporary file written and not renamed;
#: every epoch done and the predictions not written.
KILLS = [("epoch", 2), ("checkpoint", 1), ("rename", 2), ("predictions", 1)]


def test_sigkill_at_fixed_points_then_resume_equals_uninterrupted(reference):
    root, ref = reference
    run = root / "killed"
    for step, n in KILLS:
        # the child waits at its kill point until it is killed: the kill always lands there
        proc = start_paused(run, root / "data", step, n)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        # what a kill leaves must always be something a resume can continue
        assert runs.read_record(run) and runs.read_metrics(run)
        if step == "rename":
            assert [p for p in run.iterdir() if p.name.endswith(".tmp")]
        if step == "predictions":
            assert runs.load_checkpoint_epoch(run) == EPOCHS and not (run / runs.PREDICTIONS).exists()
    assert main(train_argv(run, root / "data", EPOCHS, "--resume")) == 0
    assert_same_run(ref, run)


def test_a_second_process_is_refused_while_the_first_holds_the_folder(reference, capsys):
    root, _ = reference
    run = root / "busy"
    first = start_paused(run, root / "data", "epoch", 1)  # holds the folder until killed
    try:
        for extra in ([], ["--resume"]):
            assert main(train_argv(run, root / "data", EPOCHS, *extra)) == EXIT_BUSY
            line = one_error_line(capsys)
            assert f"pid {first.pid}" in line and str(run) in line
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    # the kernel dropped the dead holder's lock: the folder can be claimed at once
    FolderLock(run).acquire().release()


def test_two_processes_started_together_on_a_new_folder(reference):
    root, _ = reference
    run = root / "race"
    procs = [start(train_argv(run, root / "data", 2)) for _ in range(2)]
    codes = sorted(p.wait() for p in procs)
    errors = [p.stderr.read() for p in procs]
    assert codes in ([0, 2], [0, 4]), errors  # one trains; the other is refused (busy or taken)
    rows = runs.read_metrics(run)
    assert [r["epoch"] for r in rows] == [1, 2]  # one run's log, not two interleaved
    assert torch.load(run / runs.CHECKPOINT, weights_only=True)["epoch"] == 2


def test_lock_names_its_holder_and_is_released():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with FolderLock(d):
            with pytest.raises(FolderBusy, match=r"in use by pid \d+ on "):
                FolderLock(d).acquire()
        assert not list(Path(d).iterdir())  # released: no lock file left
        FolderLock(d).acquire().release()


def test_full_disk_is_one_line_and_the_run_resumes(reference, capsys, tmp_path):
    import os

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs the tests as root)")
    root, ref = reference
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)]).returncode:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        # leave room for config.json, the lock and a metrics line, not for a checkpoint
        checkpoint = (ref / runs.CHECKPOINT).stat().st_size
        size = (ref / runs.CONFIG).stat().st_size + 4 * 4096 + checkpoint // 2
        assert checkpoint // 2 > 4 * 4096
        (mnt / "filler").write_bytes(b"")
        with open(mnt / "filler", "wb") as f:
            while shutil.disk_usage(mnt).free > size:
                f.write(b"\0" * 4096)
        run = mnt / "run"
        assert main(train_argv(run, root / "data", EPOCHS)) == EXIT_FILE
        line = one_error_line(capsys)
        assert "No space left on device" in line and str(run) in line and "--resume" in line
        assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]
        (mnt / "filler").unlink()
        assert main(train_argv(run, root / "data", EPOCHS, "--resume")) == 0
        assert_same_run(ref, run)
    finally:
        subprocess.run(["umount", str(mnt)])


def test_ctrl_c_gives_the_exact_resume_command(reference, capsys, monkeypatch):
    root, ref = reference
    real, calls = train_mod.train_one_epoch, {"n": 0}

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_one_epoch", interrupted)
    argv = train_argv(root / "ctrl-c", root / "data", EPOCHS)
    assert main(argv) == EXIT_INTERRUPTED
    line = one_error_line(capsys)
    command = line.split("continue with: ", 1)[1]
    assert command == "python -m sdml " + shlex.join(argv + ["--resume"])
    monkeypatch.setattr(train_mod, "train_one_epoch", real)
    assert main(shlex.split(command)[3:]) == 0
    assert_same_run(ref, root / "ctrl-c")


def test_divergence_is_one_line_that_tells_the_truth_about_checkpoints(reference, capsys):
    root, _ = reference
    run = root / "diverged"
    assert main(train_argv(run, root / "data", 2, "--lr", "1e6")) == EXIT_DIVERGED
    line = one_error_line(capsys)
    assert "non-finite loss in epoch 1" in line and "no checkpoint was written" in line
    assert not (run / runs.CHECKPOINT).exists()


def test_cut_metrics_line_and_stale_temporary_files_are_repaired(reference):
    root, ref = reference
    run = root / "cut"
    assert main(train_argv(run, root / "data", 2)) == 0
    # a kill during epoch 3's append, and one during a checkpoint write
    with open(run / runs.METRICS, "a") as f:
        f.write('{"epoch": 3, "lr": 0.0')
    (run / ".checkpoint.pt.k1ll3d.tmp").write_bytes(b"half a checkpoint")
    (run / runs.PREDICTIONS).unlink()
    assert len(runs.read_metrics(run)) == 2  # readers skip the cut line
    assert main(train_argv(run, root / "data", EPOCHS, "--resume")) == 0
    assert not (run / ".checkpoint.pt.k1ll3d.tmp").exists()
    assert_same_run(ref, run)
    assert json.loads((run / runs.METRICS).read_text().splitlines()[2])["epoch"] == 3
