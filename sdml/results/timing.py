"""How long the runs took: training seconds, throughput and CPU threads per group of runs.

Read from ``metrics.jsonl`` (``train_seconds`` and ``steps`` of every epoch, ``threads`` where the
run recorded it) and the runs' configs; evaluation and start-up are not counted, so a run's wall
time is longer (the runner prints that per notebook).
"""
from __future__ import annotations

import math

from sdml.results.markdown import machine_text, table
from sdml.results.metrics import format_mean_std, mean_std
from sdml.results.summary import Run, _ordered, group_label


def run_time(run: Run) -> dict:
    """One run's training seconds over all its epochs, images per second over them, and the
    thread counts its epochs ran with (empty for runs recorded before threads were)."""
    seconds = sum(m["train_seconds"] for m in run.metrics)
    images = sum(m["steps"] for m in run.metrics) * run.config["batch_size"]
    threads = sorted({m["threads"] for m in run.metrics if "threads" in m})
    return {"seconds": seconds, "images_per_s": images / seconds if seconds > 0 else math.nan,
            "threads": threads}


def time_rows(finished: list[Run]) -> list[dict]:
    """Per group (in the tables' order) of the runs with timing: runs, mean ± sd of training
    seconds and images/s over its runs, and the thread counts used."""
    groups: dict[str, list[dict]] = {}
    for run in _ordered(finished):
        if not all("train_seconds" in m and "steps" in m for m in run.metrics):
            continue  # a run without timing (made outside the trainer): not counted
        groups.setdefault(group_label(run.config), []).append(run_time(run))
    rows = []
    for label, times in groups.items():
        sec, sec_sd, _ = mean_std([t["seconds"] for t in times])
        ips, ips_sd, _ = mean_std([t["images_per_s"] for t in times])
        threads = sorted({n for t in times for n in t["threads"]})
        rows.append({"group": label, "runs": len(times), "seconds": sec, "seconds_std": sec_sd,
                     "total_seconds": sum(t["seconds"] for t in times), "images_per_s": ips,
                     "images_per_s_std": ips_sd, "threads": threads})
    return rows


def time_section(finished: list[Run]) -> list[str]:
    """The Markdown lines of ``results.md``'s time section (none without timed runs)."""
    rows = time_rows(finished)
    if not rows:
        return []
    header = ["group", "runs", "training time per run [s]", "images/s", "CPU threads"]
    body = [[r["group"], str(r["runs"]), format_mean_std(r["seconds"], r["seconds_std"], 1),
             format_mean_std(r["images_per_s"], r["images_per_s_std"], 0),
             ", ".join(map(str, r["threads"])) or "not recorded"] for r in rows]
    total = sum(r["total_seconds"] for r in rows)
    return ["## Time", "", table(header, body), "",
            f"Training steps only, summed over each run's epochs (mean ± sd over the group's runs); "
            f"all {sum(r['runs'] for r in rows)} runs together: {total:.0f} s of training on "
            f"{machine_text(finished[0].provenance)}. Evaluation, data loading and notebook "
            f"start-up come on top (the runner prints each notebook's wall time).", ""]
