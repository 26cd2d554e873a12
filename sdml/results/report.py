"""``results.md`` and ``results.csv``: the paper's Table 1 beside a profile's runs.

The numbers come from :mod:`sdml.results.summary`; this module only lays them out and writes them.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from sdml.data.datasets import get_spec
from sdml.io.atomic import atomic_write_text
from sdml.results.dml_report import dml_sections
from sdml.results.markdown import machine_text, table as _table
from sdml.results.metrics import format_mean_std
from sdml.results.summary import (ECE_BINS, METHOD_LABELS, PAPER_CITATION, PAPER_TABLE1, Run,
                                  _ordered, group_key, member_names, paper_setting,
                                  protocol_differences, reference_of, row_key, setting_text,
                                  summarise, text_key, uniform_error_share)
from sdml.results.timing import time_section
from sdml.results.verdict import verdict_markdown


def method_label(method: str, mutual_weight: float) -> str:
    """A method's label, marked when its peers trained independently (or with another weight)."""
    label = METHOD_LABELS[method]
    if mutual_weight == 1:
        return label
    return f"{label}, independent" if mutual_weight == 0 else f"{label}, KL weight {mutual_weight:g}"


def _cell(rows: list[dict], key: tuple, metric: str, member: str, digits: int = 2) -> str:
    for r in rows:
        if row_key(r) == text_key(key) and r["metric"] == metric and r["member"] == member:
            return format_mean_std(r["mean"], r["std"], digits)
    return "-"


def comparability_note(finished: list[Run]) -> str:
    """Says plainly whether the runs follow Table 1's protocol, and where they differ."""
    diffs: dict[str, tuple[set, object]] = {}
    for run in finished:
        for name, (ours, paper) in protocol_differences(run.config).items():
            diffs.setdefault(name, (set(), paper))[0].add(str(ours))
    if not finished:
        return "No finished run yet: nothing to compare with Table 1."
    if not diffs:
        return ("These runs follow Table 1's protocol (CIFAR-100, 2 x ResNet-32, 200 epochs, the "
                "DML paper's schedule). The paper reports one number per model; the seeds behind "
                "it and whether it is the final or the best epoch are not stated.")
    listed = "; ".join(f"{name} {', '.join(sorted(v))} (paper: {p})" for name, (v, p) in diffs.items())
    data = {run.config["data"] for run in finished}
    synthetic = " On synthetic data the numbers only show that the pipeline works." \
        if "synthetic" in data else ""
    return (f"**Not comparable with Table 1.** These runs differ from the paper's protocol in: "
            f"{listed}.{synthetic}")


def _setting(finished: list[Run]) -> str:
    if not finished:
        return "-"
    c, prov = finished[0].config, finished[0].provenance
    machine = machine_text(prov)
    profiles, epochs = (", ".join(str(v) for v in dict.fromkeys(r.config[name] for r in finished))
                        for name in ("profile", "epochs"))  # one protocol (load_runs), these may vary
    return (f"profile `{profiles}`, data `{c['data']}`, {c['peers']} x ResNet-{c['depth']} "
            f"(width {c['width']}), {epochs} epochs, batch {c['batch_size']}, lr {c['lr']}; "
            f"machine: {machine}; torch {prov.get('torch', '?')}; git {prov.get('git') or 'unknown'}")


def results_markdown(run_list: list[Run], title: str = "Results") -> str:
    """``results.md``: the setting, the comparability note, Table 1 beside ours, calibration."""
    finished = _ordered([r for r in run_list if r.finished])
    rows = summarise(finished)
    keys = list(dict.fromkeys(group_key(r) for r in finished))
    k = max([len(r.metrics[-1]["test_acc"]) for r in finished] or [2])
    peers = member_names(k)[:-1]
    seeds = {key: next(r["seeds"] for r in rows if row_key(r) == text_key(key)) for key in keys}
    header = (["method", "constants", "superclasses", "data", "epochs", "seeds"] + [f"{p} final" for p in peers]
              + [f"{p} best epoch" for p in peers] + ["ensemble final"]
              + [f"{p} train top-1" for p in peers] + ["paper model 1", "paper model 2"])
    body = []
    for key in keys:
        method, source = key[0], key[1]
        paper = (PAPER_TABLE1.get(method) if source == "cifar" and key[5] == paper_setting(method)
                 and key[6] == 1 else None)
        body.append([method_label(method, key[6]), setting_text(key[5]), source, key[2], str(key[4]),
                     seeds[key]]
                    + [_cell(rows, key, "final", p) for p in peers]
                    + [f"{_cell(rows, key, 'best', p)} (ep {_cell(rows, key, 'best_epoch', p, 0)})"
                       for p in peers]
                    + [_cell(rows, key, "final", "ensemble")]
                    + [_cell(rows, key, "train_acc", p, 1) for p in peers]
                    + ([f"{v:.2f}" for v in paper] if paper else ["-", "-"]))
    cifar_classes = all(r.config["data"] in ("cifar100", "synthetic") for r in finished)
    for method, paper in PAPER_TABLE1.items():  # the paper's rows we have no run for
        if cifar_classes and not any(key[0] == method and key[1] == "cifar" for key in keys):
            body.append([METHOD_LABELS[method], "-", "cifar", "-", "-", "not run"]
                        + ["-"] * (3 * len(peers) + 1) + [f"{v:.2f}" for v in paper])
    calib_header = (["method", "superclasses"] + [f"ECE {m} [%]" for m in member_names(k)]
                    + [f"errors in true superclass, {m} [%]" for m in member_names(k)]
                    + ["superclass top-1, ensemble [%]"])
    calib = [[method_label(key[0], key[6]), key[1]] + [_cell(rows, key, "ece", m) for m in member_names(k)]
             + [_cell(rows, key, "within_superclass_errors", m, 1) for m in member_names(k)]
             + [_cell(rows, key, "superclass_acc", "ensemble")] for key in keys]
    unfinished = [r.label for r in run_list if not r.finished]
    parts = [
        f"# {title}", "",
        f"Finished runs: {len(finished)}" + (f"; unfinished (left out): {', '.join(unfinished)}"
                                            if unfinished else "") + ".",
        f"Setting: {_setting(finished)}.", "",
        verdict_markdown(finished),
        comparability_note(finished), "",
        "## Top-1 accuracy on the test split [%], beside the paper's Table 1", "",
        _table(header, body), "",
        "*final*: after the last epoch. *best epoch*: the highest value over the evaluated epochs "
        "and the epoch it came from (chosen on the test split, so optimistic). *train top-1*: "
        "after the last epoch, on the un-augmented, unmixed training images (at most 10,000): "
        "whether the peers fit their data. Several seeds: mean ± "
        "sample standard deviation. *ensemble*: the peers' averaged probabilities. "
        f"Paper: {PAPER_CITATION}; one number per model, seeds and epoch choice not stated.", "",
        "## Calibration and superclass errors (after the last epoch)", "",
        _table(calib_header, calib), "",
        f"ECE: {ECE_BINS} equal-width confidence bins. {_superclass_note(finished)}", "",
    ]
    if finished:
        parts += dml_sections(finished) + time_section(finished)
    return "\n".join(parts)


def _superclass_note(finished: list[Run]) -> str:
    """What *errors in true superclass* counts, for the runs' dataset."""
    if not finished:
        return ""
    config = finished[0].config
    sc = reference_of(config)
    source = ("the dataset's own superclasses" if get_spec(config["data"]).has_own_superclasses
              else f"its WordNet grouping into {sc.k} ({', '.join(sc.superclass_names)})")
    return (f"*errors in true superclass*: the share of wrong predictions whose class lies in "
            f"the true class's superclass, {config['data']}'s reference superclasses being "
            f"{source} (errors spread uniformly would give about "
            f"{uniform_error_share(config):.0f} %).")


def results_csv(run_list: list[Run]) -> str:
    """``results.csv``: :func:`summarise`'s long table of finished runs."""
    rows = summarise(_ordered([r for r in run_list if r.finished]))
    columns = ["method", "setting", "superclasses", "data", "profile", "epochs", "seeds", "metric", "member",
               "mean", "std", "n", "paper", "mutual_weight"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: (("" if math.isnan(row[c]) else round(row[c], 4))
                             if isinstance(row[c], float) else row[c]) for c in columns})
    return buf.getvalue()


def write_results(run_root: str | Path, run_list: list[Run], title: str = "Results") -> tuple[Path, Path]:
    """Write ``results.md`` and ``results.csv`` into ``run_root`` (atomically); return their paths."""
    run_root = Path(run_root)
    md, csv_path = run_root / "results.md", run_root / "results.csv"
    atomic_write_text(md, results_markdown(run_list, title))
    atomic_write_text(csv_path, results_csv(run_list))
    return md, csv_path
