"""Claiming a run folder and deciding, before anything is written, whether and where a run goes on.

A folder is claimed by one process for the run's life (:func:`claimed`, an exclusive lock). Then
everything is checked while nothing in it has changed yet: :func:`check_record` (a new folder, or
a ``config.json`` that matches the config, the superclass mapping's content and the dataset's),
:func:`check_progress` (a readable checkpoint, a metrics log that agrees with it, no fewer epochs
than are done). Only then :func:`begin` writes: the config record, the repaired log, and the
removal of temporary files a kill left behind. A folder holding run files without a valid
``config.json`` is never taken over.
"""
from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass
from pathlib import Path

from sdml.io.atomic import atomic_write_json
from sdml.io.lock import LOCK, FolderLock
from sdml.io.readback import DamagedFile, json_sha256
from sdml.training import runs
from sdml.training.config import Config, from_dict


def run_folder(path, field: str = "out") -> Path:
    """``path`` as a run folder; an empty path (which would mean the working folder) is refused."""
    if path is None or not str(path).strip():
        raise ValueError(f"{field}: {str(path or '')!r} is empty; allowed: the path of a run folder")
    return Path(path)


@contextlib.contextmanager
def claimed(run_dirs: list[Path], field: str = "out"):
    """Create (if need be) and lock every folder for the block; refuse paths that are files.
    A folder this call created is removed again if the block fails before writing into it."""
    for d in run_dirs:
        if d.exists() and not d.is_dir():
            raise ValueError(f"{field}: {str(d)!r} is a file, not a folder; allowed: a new folder "
                             f"or one holding a run")
    created = [d for d in run_dirs if not d.exists()]
    locks: list[FolderLock] = []
    try:
        for d in run_dirs:
            d.mkdir(parents=True, exist_ok=True)
        for d in sorted(run_dirs, key=lambda p: str(p.resolve())):  # one order: no deadlock
            locks.append(FolderLock(d).acquire())
        yield
    finally:
        for lock in reversed(locks):
            lock.release()
        for d in created:
            with contextlib.suppress(OSError):
                d.rmdir()  # only if still empty


# ----------------------------------------------------------------------------- what a run depends on

def mapping_content(mapping: dict) -> dict:
    return {"superclass_names": mapping.get("superclass_names"), "classes": mapping.get("classes")}


def dataset_identity(name: str, arrays) -> dict:
    """The dataset's name, sizes and a sha256 of its images and labels (any dataset reader's
    arrays: the identity does not depend on where or how the data was stored)."""
    digest = hashlib.sha256()
    for field in ("train_x", "train_y", "test_x", "test_y"):
        a = getattr(arrays, field)
        digest.update(f"{field}{tuple(a.shape)}{a.dtype}".encode())
        digest.update(memoryview(a.reshape(-1).copy() if not a.flags.c_contiguous else a).cast("B"))
    return {"name": name, "train": int(len(arrays.train_y)), "test": int(len(arrays.test_y)),
            "classes": len(arrays.fine_names), "sha256": digest.hexdigest()}


def depends(sc, dataset: dict) -> dict:
    """What ``config.json`` records beside the config and checks on resume: the superclass
    mapping with its content hash, and the :func:`dataset_identity`."""
    mapping = sc.to_json()
    return {"superclasses": mapping, "superclasses_sha256": json_sha256(mapping_content(mapping)),
            "dataset": dataset}


# ----------------------------------------------------------------------------- checks (no writes)

def _leftover(name: str) -> bool:
    return name == LOCK or (name.startswith(".") and name.endswith(".tmp"))


@dataclass
class Record:
    cfg: Config       # the config the run continues with
    write: dict | None  # the config.json to write (None: unchanged)
    new: bool


def check_record(run_dir: Path, cfg: Config, resume: bool, deps: dict) -> Record:
    """The folder holds nothing, or a run this config may continue; raises otherwise."""
    path = run_dir / runs.CONFIG
    if not path.exists():
        files = sorted(p.name for p in run_dir.iterdir() if not _leftover(p.name))
        if files:
            raise ValueError(f"out: {str(run_dir)!r} holds {', '.join(files[:4])}"
                             f"{' ...' if len(files) > 4 else ''} but no {runs.CONFIG}, so it is not "
                             f"a run that can be continued; nothing was changed. Move those files "
                             f"away or choose another folder")
        record = {"config": cfg.to_dict(), "provenance": runs.provenance(), "seed": cfg.seed, **deps}
        return Record(cfg, record, True)
    if not resume:
        raise ValueError(f"out: {str(run_dir)!r} already holds a run; pass --resume to continue "
                         f"it, or choose another --out")
    record = runs.read_record(run_dir)
    try:
        compare_record(run_dir, record, cfg, deps)
    except RecordMismatch as err:
        raise RecordMismatch(err.run_dir, err.field, err.asked, err.recorded,
                             f"{err}; to train it afresh, choose another --out (without "
                             f"--resume)") from None
    saved, mine = record["config"], cfg.to_dict()
    merged = {**saved, **{n: mine[n] for n in runs.RESUMABLE}}
    resumed = from_dict(merged)
    out = dict(record)
    out.update({k: v for k, v in deps.items() if k not in record})  # older records gain them
    out["config"] = resumed.to_dict()
    if out == record:
        return Record(resumed, None, False)
    out["resumed_with"] = record.get("resumed_with", []) + [runs.provenance()]
    return Record(resumed, out, False)


class RecordMismatch(ValueError):
    """A run's ``config.json`` records another value of a field than the one asked for; the
    run can be neither reused nor continued (:func:`compare_record`)."""

    def __init__(self, run_dir: Path, field: str, asked, recorded, message: str):
        super().__init__(message)
        self.run_dir, self.field, self.asked, self.recorded = Path(run_dir), field, asked, recorded


def compare_record(run_dir: Path, record: dict, cfg: Config, deps: dict) -> None:
    """The one test of whether the run recorded in ``record`` is the run ``cfg`` asks for: every
    config field but the :data:`sdml.training.runs.RESUMABLE` ones (and the profile's name, a
    label), the superclass mapping's content (sha256) and the dataset's identity. ``sdml train
    --resume`` and the notebook runner's plan (:func:`sdml.notebooks.plan.run_state`) both call it.
    Raises :class:`RecordMismatch` naming the first field that differs and both values."""
    saved, mine = record["config"], cfg.to_dict()
    for name, value in mine.items():
        if name not in runs.RESUMABLE and name != "profile" and saved.get(name) != value:
            raise RecordMismatch(run_dir, name, value, saved.get(name),
                                 f"{name}: {value!r} differs from the run in {str(run_dir)!r} "
                                 f"({saved.get(name)!r}); only {', '.join(runs.RESUMABLE)} may "
                                 f"change")
    check_mapping(run_dir, cfg, record, deps)
    check_dataset(run_dir, record, cfg.data_dir, deps["dataset"])


def check_dataset(run_dir: Path, record: dict, data_dir, identity: dict) -> None:
    """The data read from ``data_dir`` (its :func:`dataset_identity`) must be the data the run's
    ``record`` says it was trained on (a record without one has nothing to compare)."""
    old = record.get("dataset")
    if old is not None and old != identity:
        raise RecordMismatch(run_dir, "data", _describe(identity), _describe(old),
                             f"data: the dataset in {str(data_dir)!r} ({_describe(identity)}) "
                             f"is not the one the run in {str(run_dir)!r} was trained on "
                             f"({_describe(old)}); give the run's data with --data-dir")


def check_epochs(run_dir: Path, asked: int, done: int) -> None:
    """A run is never cut back: ``asked`` epochs must be at least the ``done`` ones."""
    if done > asked:
        raise RecordMismatch(run_dir, "epochs", asked, done,
                             f"epochs: {asked} is fewer than the {done} epochs the run in "
                             f"{str(run_dir)!r} has finished; allowed: {done} or more (nothing "
                             f"was changed)")


def _describe(identity: dict) -> str:
    if not isinstance(identity, dict):
        return repr(identity)
    return (f"{identity.get('name')}, {identity.get('train')} train / {identity.get('test')} test, "
            f"sha256 {str(identity.get('sha256'))[:12]}")


def check_mapping(run_dir: Path, cfg: Config, record: dict, deps: dict) -> None:
    """The superclass mapping must have the content the run started with, not just its name."""
    if "superclasses" not in record and "superclasses_sha256" not in record:
        return  # a record from before mappings were recorded: nothing to compare with
    old = record.get("superclasses_sha256") or json_sha256(mapping_content(record["superclasses"]))
    new = deps["superclasses_sha256"]
    if old == new:
        return
    diff = ""
    before = record.get("superclasses", {}).get("classes", {})
    now = deps["superclasses"]["classes"]
    changed = [c for c in now if before.get(c) != now[c]]
    if changed:
        diff = f", e.g. {changed[0]!r} is in superclass {now[changed[0]]}, was {before.get(changed[0])}"
    raise RecordMismatch(run_dir, "superclasses", f"sha256 {new[:12]}", f"sha256 {old[:12]}",
                         f"superclasses: the mapping {cfg.superclasses!r} now has content sha256 "
                         f"{new[:12]}, but the run in {str(run_dir)!r} started with {old[:12]}"
                         f"{diff}; restore the mapping the run used")


@dataclass
class Progress:
    done: int            # finished epochs (the checkpoint's)
    state: dict | None   # the checkpoint, read and checked
    rows: list[dict]     # the metric rows of those epochs
    repair: bool         # the log holds more than that (or a cut line): rewrite it


def check_progress(run_dir: Path, cfg: Config, fuse: str | None = None) -> Progress:
    """Where the run stands; the checkpoint and the metrics log must agree, and the checkpoint
    must hold peers of the ``fuse`` mode this process trains (when given)."""
    path = run_dir / runs.CHECKPOINT
    state = runs.read_checkpoint(path) if path.exists() else None
    done = state["epoch"] if state else 0
    if state and fuse is not None and state["fuse"] != fuse:
        raise ValueError(f"fuse: this run would train {fuse!r} peers but {path} holds "
                         f"{state['fuse']!r} ones; resume with --fuse {state['fuse']}"
                         + (" --device cpu" if state["fuse"] == "loop" else ""))
    log = run_dir / runs.METRICS
    rows, cut = runs.read_metrics_cut(run_dir)
    keep = [r for r in rows if r["epoch"] <= done]
    if done and not log.exists():
        raise DamagedFile(log, f"is missing but {runs.CHECKPOINT} has finished {done} epochs",
                          runs.METRICS_FIX)
    epochs = [r["epoch"] for r in keep]
    if len(epochs) != done or epochs != list(range(1, len(epochs) + 1)):  # no list of `done` items
        raise DamagedFile(log, f"holds the epochs {epochs} but "
                               f"{runs.CHECKPOINT} has finished {done}", runs.METRICS_FIX)
    check_epochs(run_dir, cfg.epochs, done)  # after the files are found to agree: a damaged
    # epoch count is a damaged file, not an option to change
    unterminated = bool(rows) and not log.read_bytes().endswith(b"\n")  # the next line would join it
    return Progress(done, state, keep, cut or unterminated or len(keep) != len(rows))


# ----------------------------------------------------------------------------- writes

def begin(run_dir: Path, record: Record, progress: Progress | None) -> None:
    """Write what the checks decided: leftovers of a kill removed, the log repaired, the record."""
    for p in run_dir.iterdir():
        if p.name != LOCK and _leftover(p.name):
            p.unlink(missing_ok=True)  # a temporary file of an interrupted atomic write
    if record.new:
        (run_dir / runs.METRICS).unlink(missing_ok=True)
    elif progress is not None and progress.repair:
        runs.write_metrics(run_dir, progress.rows)
    if record.write is not None:
        atomic_write_json(run_dir / runs.CONFIG, record.write)
