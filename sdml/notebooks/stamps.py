"""When the runner may skip a notebook: nothing it reads changed and everything it wrote is there.

A notebook other than 04 (whose runs have their own state, :func:`sdml.notebooks.plan.run_state`)
counts as **unchanged** when, since its last successful run,

- the notebook file (its bytes), its parameters and the library's sources (``sdml/**/*.py``) are
  the same,
- the files it reads have the same SHA-256: the dataset folder for 02 and 03 (``data_dir``), and
  for 05 every run's ``config.json``, ``metrics.jsonl`` and ``predictions.pt`` under ``run_root``
  (01 reads only WordNet 3.0, which does not change),
- and its outputs are present with the same SHA-256: the executed copy and every file it wrote
  into ``figures_dir`` and ``run_root``.

The record of the last run is ``<executed copy>.stamp.json``, written after the notebook succeeded.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from sdml.io.atomic import atomic_write_json
from sdml.notebooks.params import PROJECT_ROOT

READS_DATA = ("02_mixing_preview", "03_ratio_distributions")
RUN_FILES = ("config.json", "metrics.jsonl", "predictions.pt")  # what 05 reads of each run


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hashes(paths) -> dict[str, str]:
    return {str(p): sha256(p) for p in sorted(paths) if p.is_file()}


def read_files(notebook: str, params: dict) -> list[Path]:
    """The files ``notebook`` reads (besides itself and the library)."""
    if notebook in READS_DATA:
        folder = Path(params["data_dir"])
        return [p for p in folder.rglob("*") if p.is_file()] if folder.is_dir() else []
    if notebook == "05_results":
        root = Path(params["run_root"])
        return [d / name for d in sorted(root.glob("*/")) if (d / "config.json").is_file()
                for name in RUN_FILES]
    return []


def inputs(notebook_file: Path, notebook: str, params: dict) -> dict:
    """Everything a notebook's result depends on, as hashes (see the module's docstring)."""
    library = hashlib.sha256()
    for path in sorted((PROJECT_ROOT / "sdml").rglob("*.py")):
        library.update(path.relative_to(PROJECT_ROOT).as_posix().encode() + b"\0" + path.read_bytes())
    return {"notebook": sha256(notebook_file), "params": json.loads(json.dumps(params, default=str)),
            "library": library.hexdigest(), "reads": _hashes(read_files(notebook, params))}


def stamp_path(output: Path) -> Path:
    return Path(output).with_suffix(".stamp.json")


def written_since(params: dict, since: float) -> list[Path]:
    """Files under ``figures_dir`` and ``run_root`` (not inside run folders) modified after ``since``."""
    found = []
    for folder in {Path(params[name]) for name in ("figures_dir", "run_root") if name in params}:
        if folder.is_dir():
            found += [p for p in folder.iterdir() if p.is_file() and p.stat().st_mtime >= since - 0.01]
    return found


def record(notebook_file: Path, notebook: str, params: dict, output: Path, started: float) -> None:
    """After a successful run: what it read and what it wrote (started: ``time.time()`` at start)."""
    outputs = [Path(output)] + written_since(params, started)
    atomic_write_json(stamp_path(output), {"inputs": inputs(notebook_file, notebook, params),
                                           "outputs": _hashes(outputs), "at": time.time()})


def unchanged(notebook_file: Path, notebook: str, params: dict, output: Path) -> bool:
    """True when the last run's record matches today's inputs and its outputs are all present."""
    path = stamp_path(output)
    if not path.is_file() or not Path(output).is_file():
        return False
    try:
        saved = json.loads(path.read_text())
        saved_inputs, saved_outputs = saved["inputs"], saved["outputs"]
    except (ValueError, KeyError, TypeError):
        return False  # a damaged record: run again
    if saved_inputs != inputs(notebook_file, notebook, params):
        return False
    return all(Path(p).is_file() and sha256(Path(p)) == h for p, h in saved_outputs.items())
