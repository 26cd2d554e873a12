"""``analysis.md``, ``latent.csv`` and ``attention.csv``: notebook 06's numbers, laid out.

The numbers come from :mod:`sdml.results.analysis`; this module only phrases and writes them.
"""
from __future__ import annotations

import math
from pathlib import Path

from sdml.io.atomic import atomic_write_text
from sdml.results.latent import METRIC_LABELS, METRICS
from sdml.results.markdown import table as _table
from sdml.results.metrics import format_mean_std
from sdml.results.stats import exceeds_spread

SHOWN_WEIGHTS = (0.1, 0.3, 0.5, 0.7, 0.9)
BASELINE = "none"


def _cell(row) -> str:
    text = format_mean_std(row["mean"], row["std"], 3)
    return text if row["n"] < 2 else f"{text} (n={row['n']})"


def latent_table(spread) -> str:
    """Markdown: one row per group and member, one column per latent score."""
    body = []
    for (group, member), part in spread.groupby(["group", "member"], sort=False):
        cells = {r["metric"]: _cell(r) for _, r in part.iterrows()}
        body.append([group, member] + [cells.get(m, "-") for m in METRICS])
    return _table(["method", "features"] + [METRIC_LABELS[m] for m in METRICS], body)


def attention_table(spread) -> str:
    """Markdown: share of a class's map on its own half at a few weights of that class."""
    body = []
    for (group, cam, relation), part in spread.groupby(["group", "cam", "relation"], sort=False):
        cells = {round(r["weight"], 6): _cell(r) for _, r in part.iterrows()}
        body.append([group, cam, relation] + [cells.get(w, "-") for w in SHOWN_WEIGHTS])
    return _table(["method", "map", "pair"] + [f"weight {w:g}" for w in SHOWN_WEIGHTS], body)


def baseline_of(group: str) -> str:
    """The group without mixup that ``group`` is compared with: the same superclass source
    (``superclass-beta (wordnet)`` -> ``none (wordnet)``; see :func:`summary.group_label`)."""
    suffix = group[group.index(" ("):] if " (" in group else ""
    return BASELINE + suffix


def sibling_verdict(spread, member: str = "pair") -> str:
    """The answer to "does superclass-aware mixup pull siblings together?", from the sibling
    ratio of ``member``'s features: each group beside the baseline (no mixup), with the seeds'
    spread, saying when the runs are too few to tell an effect from chance."""
    rows = spread[(spread["metric"] == "sibling_ratio") & (spread["member"] == member)]
    if rows.empty:
        return "No sibling ratio was computed (no finished run with sibling classes)."
    by_group = {r["group"]: r for _, r in rows.iterrows()}
    lines = [f"Sibling / non-sibling centroid distance ({member} features; below 1: sibling "
             f"classes sit closer than unrelated ones):"]
    missing = []
    for group, r in by_group.items():
        line = f"- {group}: {_cell(r)}"
        baseline = baseline_of(group)
        base = by_group.get(baseline)
        if base is None and group != baseline and baseline not in missing:
            missing.append(baseline)
        if base is not None and group != baseline and not math.isnan(r["mean"]):
            diff = r["mean"] - base["mean"]
            way = "closer together" if diff < 0 else "further apart"
            line += f"; siblings {way} than without mixup by {abs(diff):.3f}"
            spreads = [s for s in (r["std"], base["std"]) if not math.isnan(s)]
            if len(spreads) < 2:
                line += " (one run each: no seeds' spread to tell this from chance)"
            elif not exceeds_spread(diff, spreads):
                line += " (within twice the seeds' spread: not distinguishable from chance)"
            else:
                line += " (more than twice the seeds' spread)"
        lines.append(line)
    lines += [f"- (no run {b!r} to compare with)" for b in missing]
    return "\n".join(lines)


def write_analysis(run_root: str | Path, latent, latent_spread, shares, shares_spread,
                   title: str = "Analysis") -> tuple[Path, Path, Path]:
    """Write ``analysis.md``, ``latent.csv`` (per run) and ``attention.csv`` (per run and peer)
    into ``run_root``, atomically; returns their paths."""
    root = Path(run_root)
    md = "\n\n".join([
        f"# {title}",
        "## Latent space (penultimate features of the test split)",
        "Silhouettes in [-1, 1] (higher: tighter, better separated groups); mean ± std over "
        "seeds where there are several.",
        latent_table(latent_spread),
        sibling_verdict(latent_spread),
        "## Attention on half mixes",
        "Share of a class's map on that class's own half of a half-mixed image, by the weight of "
        "the class in the mix (0.5: what a map spread evenly over the image gives).",
        attention_table(shares_spread),
    ]) + "\n"
    paths = (root / "analysis.md", root / "latent.csv", root / "attention.csv")
    atomic_write_text(paths[0], md)
    atomic_write_text(paths[1], latent.to_csv(index=False))
    atomic_write_text(paths[2], shares.to_csv(index=False))
    return paths
