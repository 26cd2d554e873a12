"""``python -m sdml`` with one kill point, for the fault tests: ``kill_point.py STEP N ARGV...``.

The ``N``-th time this process reaches ``STEP`` it prints ``[kill-point] STEP N`` and waits for a
signal, so the SIGKILL the test then sends always lands there, however slow the machine is.
Steps: ``epoch`` (an epoch's training starts), ``checkpoint`` (a checkpoint is about to be saved:
its epoch's metrics line is already written), ``rename`` (a checkpoint's temporary file is
written, not yet renamed into place), ``predictions`` (the predictions are about to be saved).
"""
import os
import signal
import sys

from sdml.cli import main
from sdml.training import runs
from sdml.training import train as train_mod


def pause_on(step: str, n: int, fn, when=lambda *a, **k: True):
    count = {"n": 0}

    def wrapped(*args, **kwargs):
        if when(*args, **kwargs):
            count["n"] += 1
            if count["n"] == n:
                print(f"[kill-point] {step} {n}", flush=True)
                while True:
                    signal.pause()
        return fn(*args, **kwargs)

    return wrapped


if __name__ == "__main__":
    step, n, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if step == "epoch":
        train_mod.train_one_epoch = pause_on(step, n, train_mod.train_one_epoch)
    elif step == "checkpoint":
        runs.save_checkpoint = pause_on(step, n, runs.save_checkpoint)
    elif step == "rename":
        os.replace = pause_on(step, n, os.replace,
                              lambda src, dst, *a, **k: str(dst).endswith(runs.CHECKPOINT))
    elif step == "predictions":
        runs.save_predictions = pause_on(step, n, runs.save_predictions)
    else:
        sys.exit(f"kill_point.py: unknown step {step!r}")
    sys.exit(main(argv))
