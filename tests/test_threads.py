"""The CPU thread rule of ``threads = 0`` (sdml.training.threads)."""
import subprocess
import sys

import pytest

from sdml.training.threads import MAX_AUTO, busy_cores, choose_threads, cpu_threads


@pytest.mark.parametrize("cores, busy, expected", [
    (2, 0.0, 2), (2, 0.4, 2),   # idle: every core
    (2, 1.0, 1), (2, 0.6, 1),   # one core held: one thread, not two that wait for each other
    (2, 6.0, 1),                # heavily loaded: never fewer than one
    (1, 0.0, 1),
    (16, 3.0, MAX_AUTO),        # a large idle share is capped
    (16, 12.0, 4),
    (4, None, 4),               # unknown load (no /proc/stat): all cores up to the cap
    (32, None, MAX_AUTO),
])
def test_the_rule_takes_the_free_cores(cores, busy, expected):
    assert choose_threads(cores, busy) == expected


def test_a_requested_count_is_kept():
    assert cpu_threads(3) == 3


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_a_spinning_process_counts_as_busy():
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        busy = busy_cores(0.5)
    finally:
        spinner.kill()
        spinner.wait()
    assert busy is not None and busy >= 0.5  # the spinner alone keeps most of a core busy
