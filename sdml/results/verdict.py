"""The verdict paragraph that opens ``results.md``: what the runs say about the paper's claim.

The paper claims that under DML, mixup whose ratio follows the superclasses beats no mixup and
plain mixup, and that the Beta law beats the fixed selection. Each claim is one paired
comparison over seeds of the peers' mean final test top-1 (runs of one seed share initial
weights and batch order, :func:`sdml.training.train.stream_seed`): the mean difference, its 95 %
t interval and the paired t-test's p (:func:`sdml.results.stats.paired_t`). A claim is
*supported* when the interval lies above 0, *contradicted* when it lies below, and *not shown*
otherwise; with fewer than two shared seeds the answer is "cannot tell", never a number.

The paragraph also names the regime (the no-mixup peers' training top-1, epochs, training
images) and what the setting cannot say (dataset, superclass count, model size).
"""
from __future__ import annotations

import math
import statistics

from sdml.results.stats import paired_t
from sdml.results.summary import METHOD_LABELS, Run, mutual_weight, superclass_source

#: The paper's claims, as (method, baseline) pairs, in the order the paragraph gives them.
CLAIMS = (("superclass-beta", "none"), ("superclass-beta", "mixup"),
          ("superclass-choice", "none"), ("superclass-choice", "mixup"),
          ("superclass-beta", "superclass-choice"), ("mixup", "none"))
FIT_THRESHOLD = 95.0  # training top-1 [%] of the no-mixup peers that counts as "fits its data"
CONVERGED = 0.5  # points: the most the test top-1 may move over the last 10 % of epochs


def peers_mean(run: Run) -> float:
    """The peers' mean final test top-1 [%] of a run."""
    return statistics.fmean(run.metrics[-1]["test_acc"])


def dml_groups(finished: list[Run]) -> dict[str, dict[int, Run]]:
    """DML runs (KL weight 1) by method and seed; with several superclass sources, the
    dataset's own or its default one (the group the paired statistics prefer)."""
    out: dict[str, dict[int, Run]] = {}
    for run in finished:
        if mutual_weight(run.config) != 1:
            continue
        out.setdefault(run.config["method"], {}).setdefault(run.config["seed"], run)
    return out


def compare(groups: dict[str, dict[int, Run]], method: str, baseline: str) -> dict | None:
    """``method`` against ``baseline`` paired by seed: n, mean, low, high, p and the verdict
    word; None when either was not run."""
    a, b = groups.get(method), groups.get(baseline)
    if not a or not b:
        return None
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return {"n": len(seeds), "verdict": "cannot tell"}
    res = paired_t([peers_mean(a[s]) for s in seeds], [peers_mean(b[s]) for s in seeds])
    if math.isnan(res["low"]):
        word = "cannot tell"
    elif res["low"] > 0:
        word = "supported"
    elif res["high"] < 0:
        word = "contradicted"
    else:
        word = "not shown"
    return {**res, "verdict": word}


def _claim_text(method: str, baseline: str, res: dict) -> str:
    name = f"{METHOD_LABELS[method]} against {METHOD_LABELS[baseline]}"
    if res["verdict"] == "cannot tell" and res["n"] < 2:
        return (f"{name}: cannot tell ({res['n']} shared seed; a paired test needs at least 2)")
    p = "p not defined (equal differences)" if math.isnan(res["p"]) else f"p = {res['p']:.3f}"
    return (f"{name}: {res['mean']:+.2f} points (95 % interval {res['low']:+.2f} to "
            f"{res['high']:+.2f}, {p}, {res['n']} seeds): **{res['verdict']}**")


def last_tenth_change(rows: list[dict], epochs: int) -> float | None:
    """Largest move of the peers' mean test top-1 between the evaluated epochs inside the last
    10 % of ``epochs`` (None when fewer than two evaluations fall there): the convergence figure."""
    start = epochs - max(1, round(0.1 * epochs))
    accs = [statistics.fmean(r["test_acc"]) for r in rows if "test_acc" in r and r["epoch"] >= start]
    return max(accs) - min(accs) if len(accs) >= 2 else None


def regime_text(finished: list[Run]) -> str:
    """The no-mixup DML peers' final training top-1 and whether they fit their data."""
    none = [r for r in finished if r.config["method"] == "none" and mutual_weight(r.config) == 1
            and "train_acc" in r.metrics[-1]]
    c = finished[0].config
    setting = (f"{c['peers']} x ResNet-{c['depth']} (width {c['width']}), {c['epochs']} epochs, "
               f"{'crop+flip' if c.get('augment', True) else 'no augmentation'}")
    if not none:
        return f"{setting}; the training top-1 of the no-mixup peers was not recorded"
    fit = statistics.fmean(statistics.fmean(r.metrics[-1]["train_acc"]) for r in none)
    where = ("so the peers fit their data, the regime the paper's protocol is in"
             if fit >= FIT_THRESHOLD else
             f"below the {FIT_THRESHOLD:.0f} % at which the peers count as fitting their data, "
             f"so the peers are starved and any regulariser, mixing included, is expected to cost "
             f"accuracy")
    moves = [m for m in (last_tenth_change(r.metrics, r.config["epochs"]) for r in none)
             if m is not None]
    converged = ("" if not moves else
                 f"; their test top-1 moved by {statistics.fmean(moves):.2f} points over the last "
                 f"10 % of epochs (mean over seeds; converged below {CONVERGED:g})")
    return f"{setting}; the no-mixup peers end at {fit:.1f} % training top-1, {where}{converged}"


def limits_text(finished: list[Run]) -> str:
    """What the setting cannot say about the paper's CIFAR-100 claim."""
    c = finished[0].config
    if c["data"] == "cifar100" and c["depth"] == 32 and c["epochs"] >= 200:
        return ("The setting is the paper's protocol; the paper does not state its seeds, so its "
                "single numbers cannot be set against a spread.")
    if c["data"] == "synthetic":
        return ("What it cannot say: on synthetic data the numbers only show that the pipeline "
                "works, not how the methods compare on real images.")
    shares = [statistics.fmean(m["same_superclass_share"] for m in r.metrics)
              for r in finished if r.config["method"] == "superclass-beta"
              and all("same_superclass_share" in m for m in r.metrics)]
    share = f" (a partner shares it {100 * statistics.fmean(shares):.0f} % of the time)" if shares else ""
    return (f"What it cannot say: {c['data']} is not CIFAR-100, its "
            f"{superclass_source(c)} superclasses{share} are not CIFAR-100's 20 superclasses of 5 "
            f"classes (about 5 % of random partners share one), and these models are far smaller "
            f"and train far shorter than the paper's two ResNet-32 over 200 epochs.")


def verdict_markdown(finished: list[Run]) -> str:
    """The opening paragraph of ``results.md`` (empty without finished DML runs)."""
    groups = dml_groups(finished)
    if not groups:
        return ""
    claims = [(m, b, compare(groups, m, b)) for m, b in CLAIMS]
    claims = [(m, b, r) for m, b, r in claims if r is not None]
    seeds = sorted({s for g in groups.values() for s in g})
    lines = ["## What these runs say about the paper's claim", "",
             f"Under DML on `{finished[0].config['data']}`, {regime_text(finished)}. "
             f"Seeds {', '.join(map(str, seeds))}; each comparison is paired by seed on the peers' "
             f"mean final test top-1."]
    if not claims:
        lines += ["", "No pair of the paper's methods was run, so there is no claim to test."]
    else:
        lines += [""] + [f"- {_claim_text(m, b, r)}" for m, b, r in claims]
    lines += ["", limits_text(finished), ""]
    return "\n".join(lines)
