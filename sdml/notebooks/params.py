"""The notebooks' parameters: one spec, validated by the cell after each ``parameters`` cell.

papermill only warns about parameter names a notebook does not declare; the runner and the
notebooks call :func:`validate` so that a typo or a bad value stops the run at once with a
message that names the parameter and what is allowed.

Relative folders (``data_dir``, ``run_root``, ``figures_dir``, a ``superclasses`` JSON file) are
resolved against the project root (the folder holding the ``sdml`` package and ``notebooks/``),
not the working folder: papermill runs a notebook from the project root, JupyterLab from
``notebooks/``, and both must read and write the same ``data/``, ``runs/`` and ``figures/``.

A notebook's ``profile`` and ``data`` default to ``auto``, resolved as ``make reproduce`` resolves
them on this machine (:func:`sdml.notebooks.auto.resolve_profile`, ``resolve_data``), and its
``run_root`` and ``figures_dir`` to ``auto``: ``runs/<profile>`` and ``figures/<profile>``. So a
notebook opened in JupyterLab and run as committed shows the runs the main job made. A folder
named after another profile or dataset than the notebook's is refused, naming both.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from sdml.training.config import DATASETS, DEVICES, PROFILES
from sdml.method.mixup import METHODS, TABLE1_METHODS
from sdml.training.runs import run_name
from sdml.notebooks.auto import default_folder, resolve_data, resolve_profile

#: The project root: relative folders in a notebook's parameters are taken from here.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
PATHS = ("data_dir", "run_root", "figures_dir")  # parameters naming a folder

NOTEBOOKS = ("01_superclass_hierarchy", "02_mixing_preview", "03_ratio_distributions",
             "04_train_dml", "05_results", "06_analysis")


@dataclass(frozen=True)
class Param:
    default: Any
    check: Callable[[Any], bool]
    allowed: str  # what the error message says is allowed


def _one_of(values) -> Param:
    return lambda default: Param(default, lambda v: v in values, "one of " + ", ".join(map(str, values)))


def _int(lo: int, hi: int | None = None) -> Callable[[int], Param]:
    span = f"an integer >= {lo}" if hi is None else f"an integer in {lo}..{hi}"
    return lambda default: Param(default, lambda v: isinstance(v, int) and not isinstance(v, bool)
                                 and v >= lo and (hi is None or v <= hi), span)


def _bool(default: bool) -> Param:
    return Param(default, lambda v: isinstance(v, bool), "True or False")


def _str(default: str) -> Param:
    return Param(default, lambda v: isinstance(v, str) and v != "", "a non-empty string")


def _run_name(default: str) -> Param:
    return Param(default, lambda v: isinstance(v, str) and v.strip() == v and v not in ("", ".", "..")
                 and "/" not in v and "\\" not in v and not v.startswith("~"),
                 "auto or a folder name (no '/', not '..'), so the run stays under run_root")


def _superclasses(default: str) -> Param:
    return Param(default, lambda v: isinstance(v, str) and (v in ("auto", "cifar", "wordnet")
                                                            or v.endswith(".json")),
                 "auto, cifar, wordnet or a path to a JSON mapping ending in .json")


def _fused_methods(default: list) -> Param:
    return Param(default, lambda v: isinstance(v, (list, tuple)) and len(set(v)) == len(v)
                 and all(m in METHODS for m in v),
                 "[] (train `method` alone) or a list of distinct methods among " + ", ".join(METHODS))


def _weight(default: float) -> Param:
    return Param(default, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                 and math.isfinite(v) and v >= 0, "a finite number >= 0 (1: DML, 0: independent peers)")


def _independent(default: list) -> Param:
    return Param(default, lambda v: isinstance(v, (list, tuple)) and len(set(v)) == len(v)
                 and all(m in METHODS for m in v),
                 "[] or a list of distinct methods among " + ", ".join(METHODS)
                 + " (each also trained with mutual_weight 0 in the fused job)")


def _methods(default: list) -> Param:
    return Param(default, lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(m in METHODS for m in v),
                 "a non-empty list of " + ", ".join(METHODS))


def _auto_folder(default: str) -> Param:
    return Param(default, lambda v: isinstance(v, str) and v != "",
                 "auto (the profile's own folder) or a folder")


COMMON: dict[str, Param] = {
    "profile": _one_of(("auto", *PROFILES))("auto"),  # config preset; auto: as make reproduce
    "data": _one_of(("auto", *DATASETS))("auto"),      # dataset; auto: the profile's own
    "data_dir": _str("data"),                          # where archives live
    "seed": _int(0)(0),                                # random seed
    "run_root": _auto_folder("auto"),                  # run folder of this profile; auto: runs/<profile>
    "figures_dir": _auto_folder("auto"),               # where PNG figures go; auto: figures/<profile>
    "interactive": _bool(False),                       # widgets (JupyterLab) or static figures
}

#: The shared parameters each notebook takes (it uses every one of them).
USES: dict[str, tuple[str, ...]] = {
    "01_superclass_hierarchy": ("profile", "data", "run_root", "figures_dir"),
    "02_mixing_preview": ("profile", "data", "data_dir", "seed", "figures_dir", "interactive"),
    "03_ratio_distributions": ("profile", "data", "data_dir", "seed", "figures_dir"),
    "04_train_dml": ("profile", "data", "data_dir", "seed", "run_root", "figures_dir"),
    "05_results": ("profile", "run_root", "figures_dir"),
    "06_analysis": ("profile", "data_dir", "seed", "run_root", "figures_dir"),
}

SPECS: dict[str, dict[str, Param]] = {
    "01_superclass_hierarchy": {"wordnet_k": Param(0, lambda v: isinstance(v, int) and not isinstance(v, bool)
                                                   and (v == 0 or 2 <= v <= 99),
                                                   "0 (the dataset's default k) or an integer in 2..99")},
    "02_mixing_preview": {"grid_pairs": _int(1, 12)(4),
                          "interactive": _bool(True)},  # sliders on a plain Run All; runner: False
    "03_ratio_distributions": {"n_samples": _int(100)(20000)},
    "04_train_dml": {
        "method": _one_of(METHODS)("superclass-beta"),
        "superclasses": _superclasses("auto"),         # auto: the dataset's own, else wordnet
        "peers": _int(1)(2),                           # 1 only with mutual_weight 0
        "epochs": _int(0)(0),                          # 0: the profile's
        "device": _one_of(DEVICES)("auto"),
        "threads": _int(0)(0),                         # CPU threads for torch, 0: auto (free cores)
        "run_name": _run_name("auto"),                 # auto: <method>-<superclasses>-seed<seed>
        "methods": _fused_methods([]),                 # several: one fused job (sdml.training.multirun)
        "mutual_weight": _weight(1.0),                 # weight of the KL term; 0: independent peers
        "independent": _independent([]),               # methods of the job also trained with weight 0
    },
    "05_results": {"methods": _methods(list(TABLE1_METHODS))},
    "06_analysis": {
        "methods": _methods(list(TABLE1_METHODS)),
        "device": _one_of(DEVICES)("auto"),
        "threads": _int(0)(0),                         # CPU threads for torch and scikit-learn, 0: auto (free cores)
        "attention_pairs": _int(2, 10000)(48),         # half-mixed test pairs per run for the shares
        "projection_points": _int(20, 20000)(500),     # test images projected to 2D (balanced by class)
    },
}


#: What each notebook reads besides its own file and the library (every file of the ``sdml``
#: package), by kind; :mod:`sdml.notebooks.stamps` hashes these files to decide whether a
#: notebook's last result still holds. Kinds: ``data`` (the dataset's files), ``mappings`` (the
#: committed superclass mappings and WordNet trees), ``runs`` (every run's ``config.json``,
#: ``metrics.jsonl`` and ``predictions.pt`` under ``run_root``), ``checkpoints`` (every run's
#: ``checkpoint.pt``). A notebook added to ``notebooks/`` needs an entry (tests check this).
READS: dict[str, tuple[str, ...]] = {
    "01_superclass_hierarchy": ("mappings",),          # and WordNet 3.0, which does not change
    "02_mixing_preview": ("data", "mappings"),
    "03_ratio_distributions": ("data", "mappings"),
    "04_train_dml": (),  # its runs' config.json records the data and mapping (plan.run_state)
    "05_results": ("runs", "sweep"),
    "06_analysis": ("runs", "checkpoints", "data", "mappings"),
}


def spec(notebook: str) -> dict[str, Param]:
    if notebook not in SPECS:
        raise ValueError(f"notebook: {notebook!r} is not a notebook of the kit; allowed: {', '.join(NOTEBOOKS)}")
    return {**{name: COMMON[name] for name in USES[notebook]}, **SPECS[notebook]}


def defaults(notebook: str) -> dict[str, Any]:
    return {name: p.default for name, p in spec(notebook).items()}


def validate(notebook: str, **params) -> dict[str, Any]:
    """Check every parameter's name and value; returns the full set with defaults filled in."""
    allowed = spec(notebook)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"{unknown[0]}: not a parameter of notebook {notebook}; allowed: "
                         f"{', '.join(allowed)}")
    out = {**defaults(notebook), **params}
    for name, value in out.items():
        if not allowed[name].check(value):
            raise ValueError(f"{name}: {value!r} is not allowed in notebook {notebook}; "
                             f"allowed: {allowed[name].allowed}")
    resolve_auto(out)
    if notebook == "04_train_dml":
        check_train_params(out)
    for name in PATHS:
        if name in out:
            out[name] = project_path(out[name])
    if out.get("superclasses", "").endswith(".json"):
        out["superclasses"] = project_path(out["superclasses"])
    return out


def resolve_auto(out: dict, log=print) -> None:
    """Resolve ``auto`` in place: ``profile`` and ``data`` as ``make reproduce`` does on this
    machine, ``run_root`` / ``figures_dir`` as the profile's folders; refuses a folder named
    after another profile or dataset than the notebook's, naming both."""
    out["profile"] = profile = resolve_profile(out["profile"], log=log)
    if "data" in out:
        out["data"] = resolve_data(out["data"], profile)
    for name, top in (("run_root", "runs"), ("figures_dir", "figures")):
        if name not in out:
            continue
        if out[name] == "auto":  # the runner's folder: runs/<profile>[-<data>]
            out[name] = f"{top}/{default_folder(profile, out['data']) if 'data' in out else profile}"
            continue
        folder = Path(out[name]).name
        if folder in PROFILES and folder != profile:
            raise ValueError(f"{name}: {out[name]!r} is the folder of profile {folder!r}, but profile "
                             f"is {profile!r}; allowed: auto ({top}/{profile}) or a folder not named "
                             f"after another profile")
        if "data" in out and folder in DATASETS and folder != out["data"]:
            raise ValueError(f"{name}: {out[name]!r} is named after dataset {folder!r}, but data is "
                             f"{out['data']!r}; allowed: auto ({top}/{profile}) or a folder not named "
                             f"after another dataset")


def check_train_params(out: dict) -> None:
    """Notebook 04's parameters that must agree with each other."""
    if out["methods"] and out["run_name"] != "auto":
        raise ValueError(f"run_name: {out['run_name']!r} with methods {out['methods']!r}; allowed "
                         f"with several methods: auto (each run gets its own folder)")
    if out["independent"] and not out["methods"]:
        raise ValueError(f"independent: {out['independent']!r} without methods; allowed: [] for one "
                         f"run (set mutual_weight = 0 for an independent one), or a fused job's "
                         f"methods")
    if out["peers"] == 1 and out["mutual_weight"] != 0:
        raise ValueError(f"peers: 1 is not allowed in notebook 04_train_dml with mutual_weight "
                         f"{out['mutual_weight']!r}; allowed: 2 or more, or mutual_weight = 0")
    if out["independent"] and out["mutual_weight"] == 0:
        raise ValueError(f"independent: {out['independent']!r} with mutual_weight 0; the job's runs "
                         f"would be independent twice; allowed: [] or mutual_weight > 0")


def project_path(path: str | Path) -> str:
    """``path`` if absolute, else ``path`` under :data:`PROJECT_ROOT` (whatever the working folder)."""
    path = Path(path).expanduser()
    return str(path if path.is_absolute() else PROJECT_ROOT / path)


def superclasses_of(params: dict) -> str:
    """Notebook 04's superclass source with ``auto`` resolved for its dataset (as the config
    resolves it), so that a run folder names the superclasses actually used."""
    if params["superclasses"] != "auto":
        return params["superclasses"]
    return train_config(params).superclasses


def run_dir(params: dict) -> Path:
    """Notebook 04's run folder: ``run_root/<run_name>`` (``auto``: see :func:`run_name`)."""
    name = params["run_name"]
    if name == "auto":
        name = run_name(params["method"], superclasses_of(params), params["seed"],
                        params["mutual_weight"])
    return Path(params["run_root"]) / name


def job_runs(params: dict) -> list[tuple[str, float]]:
    """A fused job's runs as (method, weight of the mutual term): every method of ``methods``
    with ``mutual_weight``, then every method of ``independent`` with 0 (the control)."""
    return ([(m, params["mutual_weight"]) for m in params["methods"]]
            + [(m, 0.0) for m in params["independent"]])


def run_dirs(params: dict) -> list[Path]:
    """Notebook 04's run folders: one, or one per run of a fused job (:func:`job_runs`)."""
    if not params["methods"]:
        return [run_dir(params)]
    source = superclasses_of(params)
    return [Path(params["run_root"]) / run_name(m, source, params["seed"], w)
            for m, w in job_runs(params)]


def train_plan(params: dict) -> tuple[list, list[Path]]:
    """Notebook 04's configs and run folders: the run of ``method``, or with ``methods`` one run
    per :func:`job_runs` entry, trained as one fused job by
    :func:`sdml.training.multirun.train_runs`."""
    import dataclasses

    cfg = train_config(params)
    cfgs = [dataclasses.replace(cfg, method=m, mutual_weight=w).validate()
            for m, w in job_runs(params)] or [cfg]
    return cfgs, run_dirs(params)


def train_config(params: dict):
    """Notebook 04's training config: the profile with the notebook's parameters applied
    (``epochs = 0`` keeps the profile's)."""
    from sdml.training.config import make_config

    return make_config(params["profile"], data=params["data"], data_dir=params["data_dir"],
                       method=params["method"], peers=params["peers"], seed=params["seed"],
                       device=params["device"], superclasses=params["superclasses"],
                       threads=params["threads"], epochs=params["epochs"] or None,
                       mutual_weight=params["mutual_weight"])
