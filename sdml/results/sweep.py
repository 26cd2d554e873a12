"""What the regime sweep (``benchmarks/regime_sweep.py``) says: the seed count, the series of
training lengths, whether a setting is in the paper's regime.

Pure functions over the sweep's rows (its JSON): per setting and method, the seeds' final
training and test top-1 (peers' mean) and the convergence figure.
"""
from __future__ import annotations

import math
import statistics
from pathlib import Path

from sdml.io.readback import DamagedFile, read_json
from sdml.results.power import seeds_for_effect
from sdml.results.verdict import CONVERGED, FIT_THRESHOLD
SERIES_KEYS = ("epochs", "milestones", "eval_every")  # what varies along the length series


def pooled_paired_sd(rows: list[dict], baseline: str = "none") -> tuple[float, int]:
    """The pooled sd of paired differences (a method's test top-1 minus the baseline's, seed by
    seed) over every setting and method of the sweep, and its degrees of freedom (the sum of
    n - 1 over the pairs of groups: each group's variance is pooled with its weight)."""
    num, df = 0.0, 0
    for row in rows:
        base = row["methods"].get(baseline)
        if not base:
            continue
        for method, m in row["methods"].items():
            n = min(len(m["test_top1"]), len(base["test_top1"]))
            if method == baseline or n < 2:
                continue
            d = [a - b for a, b in zip(m["test_top1"][:n], base["test_top1"][:n])]
            num += statistics.variance(d) * (n - 1)
            df += n - 1
    if df == 0:
        raise ValueError("rows: no setting has two seeds of a method and its baseline; the "
                         "spread of paired differences cannot be told")
    return math.sqrt(num / df), df


def seed_rule(rows: list[dict], effect: float | None = None) -> dict:
    """The default seed count: :func:`sdml.results.power.seeds_for_effect` at the sweep's
    pooled sd of paired differences (80 % power, p < 0.05, at least 3 seeds)."""
    sd, df = pooled_paired_sd(rows)
    kw = {} if effect is None else {"effect": effect}
    return {"sd": sd, "df": df, "seeds": seeds_for_effect(max(sd, 1e-6), **kw)}


def in_regime(row: dict) -> bool:
    """No-mixup peers at >= 95 % training top-1 and a test top-1 that moved by less than 0.5
    points over the last 10 % of epochs (mean over seeds)."""
    none = row["methods"].get("none")
    if not none or not none["train_top1"] or none["last_tenth_move"] is None:
        return False
    return (statistics.fmean(none["train_top1"]) >= FIT_THRESHOLD
            and none["last_tenth_move"] < CONVERGED)


def length_series(rows: list[dict]) -> list[dict]:
    """The longest run of settings that differ only in their length (epochs and the schedule
    that scales with them), sorted by epochs: the x axis of "when does mixing pay"."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        rest = {k: v for k, v in row["overrides"].items() if k not in SERIES_KEYS}
        groups.setdefault(repr(sorted(rest.items())), []).append(row)
    best = max(groups.values(), key=len, default=[])
    return sorted(best, key=lambda r: r["overrides"]["epochs"])


#: The committed sweep behind the ``cpu`` profile (written by ``benchmarks/regime_sweep.py``).
SWEEP_FILE = Path(__file__).resolve().parents[2] / "benchmarks" / "regime_sweep.json"
SWEEP_FIX = "restore it with git checkout, or rerun benchmarks/regime_sweep.py --json"


def read_sweep(path: str | Path = SWEEP_FILE) -> dict:
    """The sweep's JSON (``machine`` and ``rows``), checked: every row names its setting,
    overrides with ``epochs``, and per method lists of finished top-1 values."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the regime sweep's results are missing; {SWEEP_FIX}")
    data = read_json(path, SWEEP_FIX)
    rows = data.get("rows")
    if not isinstance(rows, list) or not rows:
        raise DamagedFile(path, "holds no 'rows' list", SWEEP_FIX)
    for i, row in enumerate(rows):
        ok = (isinstance(row, dict) and isinstance(row.get("setting"), str)
              and isinstance(row.get("overrides"), dict)
              and isinstance(row["overrides"].get("epochs"), int)
              and isinstance(row.get("methods"), dict)
              and all(isinstance(m, dict) and all(
                  isinstance(m.get(k), list) and all(isinstance(v, (int, float))
                                                     and math.isfinite(v) for v in m[k])
                  for k in ("train_top1", "test_top1")) for m in row["methods"].values()))
        if not ok:
            raise DamagedFile(path, f"row {i + 1} is not a sweep row (setting, overrides with "
                                    f"epochs, methods with train_top1 and test_top1)", SWEEP_FIX)
    return data
