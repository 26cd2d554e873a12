"""The DML study's sections of ``results.md``: Table 1 as the DML paper lays it out (independent
peers beside mutual ones), the paired statistics, and the confusions the method targets.

Numbers come from :mod:`sdml.results.summary`, :mod:`sdml.results.stats` and
:mod:`sdml.results.confusion`; this module lays them out as Markdown and as DataFrames.
"""
from __future__ import annotations

import math

from sdml.results.confusion import group_behaviour
from sdml.results.markdown import table as _table
from sdml.results.metrics import format_mean_std, mean_std
from sdml.results.stats import CONFIDENCE, SPREAD_FACTOR, paired_statistics
from sdml.results.summary import (METHOD_LABELS, PAPER_TABLE1, Run, _ordered, group_key,
                                  group_label, member_names, paper_setting, row_key, setting_text,
                                  summarise)

ALPHA = 1 - CONFIDENCE  # "significant": p below this


def _p(p: float) -> str:
    if math.isnan(p):
        return "-"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def difference_text(row: dict) -> str:
    """``+1.20 [0.40, 2.00], p = 0.012`` (several seeds) or ``+1.20, McNemar p = 0.03`` (one)."""
    if row["test"] == "paired t":
        interval = "" if math.isnan(row["low"]) else f" [{row['low']:+.2f}, {row['high']:+.2f}]"
        return f"{row['mean']:+.2f}{interval}, p = {_p(row['p'])}"
    return f"{row['mean']:+.2f}, McNemar p = {_p(row['p'])}"


# ----------------------------------------------------------------------------- Table 1, DML's layout

def dml_table(finished: list[Run], stat_rows: list[dict]) -> str:
    """One row per mixing method: each member's final top-1 for independent peers and for DML
    (mean ± std over seeds), DML minus independent (paired), and the paper's DML numbers."""
    rows = summarise(finished)
    keys = list(dict.fromkeys(group_key(r)[:6] for r in _ordered(finished)))
    k = min([len(r.metrics[-1]["test_acc"]) for r in finished] or [2])
    members = member_names(k)
    labels = {group_key(r): group_label(r.config) for r in finished}

    def cell(key6, weight, member):
        for r in rows:
            if (row_key(r) == (*key6[:5], setting_text(key6[5]), weight) and r["metric"] == "final"
                    and r["member"] == member):
                return format_mean_std(r["mean"], r["std"])
        return "-"

    header = ["method", "constants", "superclasses", "seeds"]
    for m in members:
        header += [f"{m} independent", f"{m} DML", f"{m} DML − ind."]
    header += ["paper model 1 (DML)", "paper model 2 (DML)"]
    body = []
    for key6 in keys:
        method, source = key6[0], key6[1]
        dml_label, ind_label = labels.get((*key6, 1.0)), labels.get((*key6, 0.0))
        seeds = sorted({r.config["seed"] for r in finished if group_key(r)[:6] == key6})
        line = [METHOD_LABELS[method], setting_text(key6[5]), source, " ".join(map(str, seeds))]
        for m in members:
            diff = next((difference_text(s) for s in stat_rows if s["compared"] == dml_label
                         and s["baseline"] == ind_label and s["member"] == m), "-")
            line += [cell(key6, 0.0, m), cell(key6, 1.0, m), diff]
        paper = (PAPER_TABLE1.get(method) if source == "cifar" and key6[5] == paper_setting(method)
                 else None)
        body.append(line + ([f"{v:.2f}" for v in paper] if paper else ["-", "-"]))
    return _table(header, body)


# ----------------------------------------------------------------------------- paired statistics

def _beyond(row: dict) -> str:
    return {True: "yes", False: "no"}.get(row.get("beyond_spread"), "unknown (one seed)")


def stats_table(stat_rows: list[dict]) -> str:
    header = ["compared", "baseline", "member", "seeds", "test", "difference [points]",
              f"{100 * CONFIDENCE:.0f} % interval", "p", f"p < {ALPHA:g}", "seeds' sd [points]",
              f"beyond {SPREAD_FACTOR:g} sd"]
    body = [[r["compared"], r["baseline"], r["member"], r["seeds"], r["test"], f"{r['mean']:+.2f}",
             "none (one seed)" if r["n"] < 2 else f"[{r['low']:+.2f}, {r['high']:+.2f}]",
             _p(r["p"]), "yes" if r["p"] < ALPHA else "no",
             "-" if math.isnan(r.get("spread", math.nan)) else f"{r['spread']:.2f}", _beyond(r)]
            for r in stat_rows]
    return _table(header, body)


def seed_verdict(stat_rows: list[dict]) -> str:
    """One plain line per comparison: its differences, and whether they exceed the seeds' spread."""
    pairs: dict[tuple[str, str], list[dict]] = {}
    for r in stat_rows:
        pairs.setdefault((r["compared"], r["baseline"]), []).append(r)
    lines = []
    for (compared, baseline), rows in pairs.items():
        diffs = ", ".join(f"{r['member']} {r['mean']:+.2f}" for r in rows)
        known = [r for r in rows if r.get("beyond_spread") is not None]
        if not known:
            tail = ("one seed, so whether this exceeds the spread between seeds is unknown "
                    "(train two or more seeds: `--seeds 0 1`)")
        else:
            spread = max(r["spread"] for r in known)
            beyond = [r["member"] for r in known if r["beyond_spread"]]
            within = [r["member"] for r in known if not r["beyond_spread"]]
            if not within:
                tail = f"**beyond** twice the seeds' spread for every member (sd at most {spread:.2f})"
            elif not beyond:
                tail = (f"**within** twice the seeds' spread for every member (sd up to "
                        f"{spread:.2f}): not distinguishable from seed to seed variation")
            else:
                tail = (f"beyond twice the seeds' spread for {', '.join(beyond)}; within it for "
                        f"{', '.join(within)} (sd up to {spread:.2f})")
        lines.append(f"- {compared} − {baseline}: {diffs} points; {tail}.")
    return "\n".join(lines)


def stats_note(stat_rows: list[dict], notes: list[str]) -> str:
    parts = ["Differences in final top-1, *compared* minus *baseline*, in points of %, paired by "
             "seed (same seed: same initial weights and batch order). Several seeds: the mean "
             f"difference with its {100 * CONFIDENCE:.0f} % Student t interval and the paired "
             "t-test's p-value."]
    if any(r["n"] < 2 for r in stat_rows):
        parts.append("**With one seed no interval can be given**: a single difference has no "
                     "spread over seeds. Its p-value is McNemar's exact test on the per-sample test "
                     "predictions of that one pair of runs; it measures the test split's sampling "
                     "noise only, not the variation between training runs.")
    if notes:
        parts.append("Left out: " + "; ".join(notes) + ".")
    return " ".join(parts)


def stats_frame(stat_rows: list[dict]):
    import pandas as pd

    return pd.DataFrame(stat_rows)


# ----------------------------------------------------------------------------- confusions

BEHAVIOUR = (("error", "errors [%]"), ("sibling", "sibling confusions [%]"),
             ("cross", "cross-superclass confusions [%]"), ("sibling_share", "sibling share of errors [%]"),
             ("same_prediction", "peers agree [%]"), ("kl", "peer KL [nats]"))


def groups_of(finished: list[Run]) -> dict[str, list[Run]]:
    """Finished runs with predictions, by group label, in the tables' order."""
    out: dict[str, list[Run]] = {}
    for run in _ordered(finished):
        if run.probs is not None:
            out.setdefault(group_label(run.config), []).append(run)
    return out


def behaviour_rows(finished: list[Run]) -> list[dict]:
    """Per group: each :data:`BEHAVIOUR` quantity's mean and std over seeds (peers averaged)."""
    rows = []
    for label, group in groups_of(finished).items():
        values = group_behaviour(group)
        row = {"group": label, "seeds": len(group)}
        for key, _ in BEHAVIOUR:
            vals = [v for v in values[key] if not math.isnan(v)]
            row[key], row[f"{key}_std"], _ = mean_std(vals) if vals else (math.nan, math.nan, 0)
        rows.append(row)
    return rows


def behaviour_table(rows: list[dict]) -> str:
    header = ["group", "seeds"] + [title for _, title in BEHAVIOUR]
    body = [[r["group"], str(r["seeds"])] + [format_mean_std(r[key], r[f"{key}_std"], 3 if key == "kl" else 2)
                                             for key, _ in BEHAVIOUR] for r in rows]
    return _table(header, body)


def dml_sections(finished: list[Run]) -> list[str]:
    """The Markdown lines of the three sections, for :func:`sdml.results.report.results_markdown`."""
    stat_rows, notes = paired_statistics(finished)
    has_control = any(group_key(r)[6] == 0 for r in finished)
    return [
        "## Table 1 as the DML paper lays it out: independent peers and DML", "",
        dml_table(finished, stat_rows), "",
        "Final top-1 [%] of each peer and of their ensemble; *independent*: the same peers trained "
        "side by side on the same mixed batches with cross entropy alone (mutual_weight 0); *DML "
        "− ind.*: the paired difference (see below). The paper gives only the DML column."
        + ("" if has_control else " No independent run yet: train it with `--independent` "
           "(runner, train-many) or `mutual_weight = 0` (notebook 04)."), "",
        "## Do the methods differ by more than the seeds do?", "",
        seed_verdict(stat_rows) if stat_rows else "No pair of groups to compare yet.", "",
        f"Final top-1, *compared* − *baseline*, in points of %, mean over the shared seeds. *The "
        f"seeds' spread*: the larger of the two groups' sample standard deviations over seeds; a "
        f"difference counts as beyond it when it is more than {SPREAD_FACTOR:g} times that sd. "
        f"Each sd rests on as many values as there are seeds, so with few seeds this is a coarse "
        f"screen, not a test; the paired tests below give intervals and p-values.", "",
        "## Paired statistics", "",
        stats_table(stat_rows) if stat_rows else "No pair of groups to compare yet.", "",
        stats_note(stat_rows, notes), "",
        "## Confusions inside and across superclasses, and peer agreement", "",
        behaviour_table(behaviour_rows(finished)), "",
        "Per test sample, peers averaged, mean ± std over seeds. *Sibling confusions*: a wrong "
        "class of the true class's superclass (the dataset's own superclasses); "
        "*cross-superclass*: a class of another superclass; the two add up to the errors. *Peers "
        "agree*: the same predicted class; *peer KL*: the mean KL divergence between the peers' "
        "predicted distributions on the test split (DML's mutual term lowers it).", "",
    ]


def confusion_matrices(finished: list[Run]) -> dict[str, dict]:
    """:func:`sdml.results.confusion.group_confusion_matrix` of every group, by group label."""
    from sdml.results.confusion import group_confusion_matrix

    return {label: group_confusion_matrix(group) for label, group in groups_of(finished).items()}


def behaviour_frame(finished: list[Run]):
    """:func:`behaviour_rows` as a DataFrame indexed by group."""
    import pandas as pd

    return pd.DataFrame(behaviour_rows(finished)).set_index("group")


def confused_pairs_frame(finished: list[Run], top: int = 10):
    """The ``top`` most confused class pairs of each group (peers and seeds pooled), with whether
    the two classes are siblings."""
    import pandas as pd

    from sdml.results.confusion import most_confused_pairs

    rows = []
    for label, cm in confusion_matrices(finished).items():
        names = [cm["names"][i] for i in cm["order"].tolist()]
        ordered_sc = cm["superclass_of"][cm["order"]]
        for rank, pair in enumerate(most_confused_pairs(cm["matrix"], ordered_sc, names, top), 1):
            rows.append({"group": label, "rank": rank, **pair})
    return pd.DataFrame(rows)
