"""When the runner may skip a notebook: nothing it reads changed and everything it wrote is there.

A notebook other than 04 (whose runs have their own state, :func:`sdml.notebooks.plan.run_state`)
counts as **unchanged** when, since its last successful run,

- the notebook file (its bytes), its parameters and the library (every file of the ``sdml``
  package: its sources and the committed mappings it ships) are the same,
- the files it reads, as its entry in :data:`sdml.notebooks.params.READS` declares them, have the
  same SHA-256 (:func:`read_files`),
- and its outputs are present with the same SHA-256: the executed copy and every file it wrote
  into ``figures_dir`` and ``run_root``. A finished 04 step whose outputs (its executed copy,
  its learning curves) are gone or changed is executed again, which redraws them.

The record of the last run is ``<executed copy>.stamp.json``, written after the notebook succeeded.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

from sdml.io.atomic import atomic_write_json
from sdml.io.readback import DamagedFile, check, read_json
from sdml.notebooks.params import PROJECT_ROOT

RUN_FILES = ("config.json", "metrics.jsonl", "predictions.pt")  # what "runs" means, per run
MAPPINGS = PROJECT_ROOT / "sdml" / "hierarchy" / "mappings"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hashes(paths) -> dict[str, str]:
    return {str(p): sha256(p) for p in sorted(paths) if p.is_file()}


def data_files(data: str, data_dir: str | Path) -> list[Path]:
    """The files a dataset is read from: a real dataset's declared files where its reader finds
    them, the generated synthetic sets under ``data_dir``."""
    from sdml.data.datasets import get_spec

    folder = Path(data_dir)
    if data == "synthetic":
        return [p for p in folder.glob("synthetic-*/*") if p.is_file()]
    if data == "fashion-mnist":
        from sdml.data.fashion_mnist import find_file, search_dirs

        spec = get_spec(data)
        found = [find_file(f.name, search_dirs(spec, folder)) for f in spec.files]
        return [p for p in found if p is not None]
    return [folder / f.name for f in get_spec(data).files]


def _run_folders(params: dict) -> list[Path]:
    return [d for d in sorted(Path(params["run_root"]).glob("*/")) if (d / "config.json").is_file()]


def _datasets(params: dict) -> list[str]:
    """The datasets a notebook reads: its ``data`` parameter, else (06) those its runs name."""
    if "data" in params:
        return [params["data"]]
    from sdml.training.runs import read_record

    return sorted({read_record(d)["config"]["data"] for d in _run_folders(params)})


#: Each kind of :data:`sdml.notebooks.params.READS` as the files it names for a parameter set.
KINDS = {
    "data": lambda params: [p for d in _datasets(params) for p in data_files(d, params["data_dir"])],
    "mappings": lambda params: sorted(MAPPINGS.rglob("*.json")),
    "runs": lambda params: [d / name for d in _run_folders(params) for name in RUN_FILES],
    "checkpoints": lambda params: [d / "checkpoint.pt" for d in _run_folders(params)],
    "sweep": lambda params: [PROJECT_ROOT / "benchmarks" / "regime_sweep.json"],
}


def read_files(notebook: str, params: dict) -> list[Path]:
    """The files ``notebook`` reads (besides itself and the library), from its declaration."""
    from sdml.notebooks.params import READS

    if notebook not in READS:
        raise ValueError(f"notebook: {notebook!r} declares no inputs; add it to "
                         f"sdml.notebooks.params.READS")
    return [path for kind in READS[notebook] for path in KINDS[kind](params)]


def library_files() -> list[Path]:
    """Every file of the ``sdml`` package (sources and the data it ships), not bytecode."""
    return sorted(p for p in (PROJECT_ROOT / "sdml").rglob("*") if p.is_file()
                  and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo"))


def inputs(notebook_file: Path, notebook: str, params: dict) -> dict:
    """Everything a notebook's result depends on, as hashes (see the module's docstring)."""
    library = hashlib.sha256()
    for path in library_files():
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


def _saved(output: Path) -> dict | None:
    path = stamp_path(output)
    if not path.is_file() or not Path(output).is_file():
        return None
    try:
        return read_stamp(path)
    except DamagedFile:
        return None  # a damaged record: run again (a successful run writes it anew)


def outputs_intact(output: Path) -> bool:
    """Every output the last run recorded is there with the same SHA-256 (False without a record)."""
    saved = _saved(output)
    return saved is not None and all(Path(p).is_file() and sha256(Path(p)) == h
                                     for p, h in saved["outputs"].items())


def unchanged(notebook_file: Path, notebook: str, params: dict, output: Path) -> bool:
    """True when the last run's record matches today's inputs and its outputs are all present."""
    saved = _saved(output)
    if saved is None or saved["inputs"] != inputs(notebook_file, notebook, params):
        return False
    return outputs_intact(output)


STAMP_FIX = "delete it; the notebook runs again and writes it anew"


def read_stamp(path: Path) -> dict:
    """A stamp read and checked: ``inputs`` an object of the fields :func:`inputs` writes (its
    ``reads`` a map of path to SHA-256), ``outputs`` a map of path to SHA-256, ``at`` a finite
    time; else :class:`~sdml.io.readback.DamagedFile` naming it."""
    saved = read_json(path, STAMP_FIX)

    def digests(obj) -> bool:
        return isinstance(obj, dict) and all(
            isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)
            for v in obj.values())

    ins = saved.get("inputs")
    check(isinstance(ins, dict) and set(ins) == {"notebook", "params", "library", "reads"}
          and isinstance(ins["params"], dict) and digests(ins["reads"])
          and digests({"notebook": ins["notebook"], "library": ins["library"]}), path,
          "its 'inputs' is not the record of a notebook's inputs", STAMP_FIX)
    check(digests(saved.get("outputs")), path, "its 'outputs' is not a map of file to SHA-256",
          STAMP_FIX)
    at = saved.get("at")
    check(isinstance(at, (int, float)) and not isinstance(at, bool) and math.isfinite(at) and at >= 0,
          path, f"its time 'at' {str(at)[:40]} is not a finite time", STAMP_FIX)
    return saved
