"""`make` alone prints help, and the help names every target and every variable a user can set."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text()


def _make(*args):
    if shutil.which("make") is None:
        pytest.skip("needs make")
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args],
                          capture_output=True, text=True, timeout=60, check=True).stdout


def test_make_alone_prints_help_naming_every_target_and_variable():
    shown = _make()
    assert shown == _make("help")
    targets = set(re.findall(r"^([a-z][a-z-]*):", MAKEFILE, re.M))
    variables = set(re.findall(r"^([A-Z_]+) \?=", MAKEFILE, re.M))
    assert targets and variables
    listed_targets = set(re.findall(r"^   ([a-z][a-z-]*) ", shown, re.M))
    assert listed_targets == targets
    for name in variables:
        assert re.search(rf"\b{name}=", shown), f"make help does not list {name}"


def test_clean_keeps_runs_unless_asked():
    plan = _make("-n", "clean")
    removed = [line for line in plan.splitlines() if line.startswith("rm -rf")]
    assert removed and not any(re.search(r"\bruns\b", line) for line in removed)
    assert "CLEAN_RUNS" in plan  # the removal of runs/ sits behind the question
