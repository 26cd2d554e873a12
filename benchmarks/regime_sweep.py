"""The regime sweep behind the ``study`` profile: which small CPU protocol puts DML in the paper's
regime on real Fashion-MNIST, and where mixing starts to pay.

The paper's regime has two parts: the no-mixup DML peers fit their training subset (top-1 on
their own un-augmented, unmixed training images >= 95 % at the end), and the schedule has
converged (the lr schedule runs to its end; the peers' test top-1 moves by less than 0.5 points
over the last 10 % of epochs, mean over seeds). Each setting below is a set of config overrides
on the ``quick`` profile (the old 5-minute CPU protocol); every setting trains no mixup, plain
mixup and superclass-beta under DML on each seed, one run per process at one thread, as many
processes as ``--workers``.

Runs live in ``<out>/<setting>/<method>-s<seed>`` and resume, so rerunning a row continues or
reuses its runs (``--fresh`` trains them again into a new folder). The table gives, per setting
and method, the peers' final training and test top-1 (mean +- sd over seeds), the convergence
figure and the training seconds (training steps only, summed over the setting's runs, each at
one thread; the wall time of the sweep is printed separately).

    python benchmarks/regime_sweep.py --settings e40 e80 --seeds 0 1 --workers 2 \\
        --table benchmarks/regime_sweep.md --json benchmarks/regime_sweep.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ("none", "mixup", "superclass-beta")

#: The swept settings: overrides of the ``quick`` profile (the old 5-minute CPU protocol). Every
#: setting tests on 5,000 images (500 per class) and evaluates 10 times (every tenth of its
#: epochs, so the last 10 % of epochs hold two evaluations for the convergence figure). Schedules cut the lr 10x at 50 % and 75 %
#: of training, as the DML protocol does at 60 and 120 of 200 epochs (its third cut at 180 is
#: left out: at 1/1000 of the initial lr it changes nothing on these models).
BASE = dict(train_per_class=100, test_per_class=500, eval_batch_size=1000, threads=1, lr=0.1,
            augment=False)


def _schedule(epochs: int, **kw) -> dict:
    return dict(BASE, epochs=epochs, milestones=(epochs // 2, (3 * epochs) // 4),
                eval_every=max(1, epochs // 10), **kw)


SETTINGS: dict[str, dict] = {
    # the old main job's augmentation (crop + flip), longer
    "aug-e60": _schedule(60, augment=True),
    # without augmentation the peers fit far sooner; mixing is then the only regulariser
    "e10": _schedule(10),
    "e20": _schedule(20),
    "e40": _schedule(40),
    "e60": _schedule(60),
    "e80": _schedule(80),
    # twice the steps per image: batch 32 with the lr scaled linearly
    "b32-e20": _schedule(20, batch_size=32, lr=0.05),
    "b32-e40": _schedule(40, batch_size=32, lr=0.05),
    # half the images
    "n50-e80": _schedule(80, train_per_class=50),
    # a wider model
    "w16-e40": _schedule(40, width=16),
}


def train_one(job: tuple[dict, str]) -> tuple[str, float]:
    """Train (or resume) one run in a fresh process; returns its folder and wall seconds."""
    overrides, run_dir = job
    import torch

    from sdml.training.config import make_config
    from sdml.training.train import train

    torch.set_num_threads(overrides.get("threads", 1))
    cfg = make_config("quick", **overrides)
    t0 = time.perf_counter()
    train(cfg, run_dir, resume=True, progress=False, log=lambda *_: None)
    return run_dir, time.perf_counter() - t0


def summarise(name: str, overrides: dict, out: Path, seeds: list[int]) -> dict:
    """One table row per method of a setting, from its run folders."""
    from sdml.results.verdict import last_tenth_change
    from sdml.training.runs import read_metrics

    epochs = overrides["epochs"]
    row = {"setting": name, "overrides": {k: v for k, v in overrides.items() if k != "threads"},
           "seeds": seeds, "methods": {}}
    for method in METHODS:
        fit, test, moves, seconds = [], [], [], 0.0
        for seed in seeds:
            rows = read_metrics(out / name / f"{method}-s{seed}")
            if not rows or rows[-1]["epoch"] != epochs:
                continue
            fit.append(statistics.fmean(rows[-1]["train_acc"]))
            test.append(statistics.fmean(rows[-1]["test_acc"]))
            move = last_tenth_change(rows, epochs)
            if move is not None:
                moves.append(move)
            seconds += sum(r["train_seconds"] for r in rows)
        row["methods"][method] = {
            "n": len(test), "train_top1": fit, "test_top1": test,
            "last_tenth_move": statistics.fmean(moves) if moves else None,
            "train_seconds": seconds}
    return row


def mean_sd(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.fmean(values):.2f} ± {statistics.stdev(values):.2f}"


def table(rows: list[dict], machine: str) -> str:
    """The sweep as Markdown: one line per setting and method, then the regime and seed rule."""
    from sdml.results.sweep import in_regime, seed_rule

    lines = [f"Machine: {machine}.", "",
             "| setting | overrides of `quick` | method | seeds | train top-1 [%] | test top-1 [%] | "
             "last-10 % move [pt] | train s | regime |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        o = row["overrides"]
        desc = (f"{o.get('train_per_class')}/class, w{o.get('width', 8)}, b{o.get('batch_size', 64)}, "
                f"{o['epochs']} ep (lr {o.get('lr')} cut at {', '.join(map(str, o['milestones']))}), "
                f"{'crop+flip' if o.get('augment', True) else 'no augmentation'}")
        regime = "yes" if in_regime(row) else "no"
        for method, m in row["methods"].items():
            move = "-" if m["last_tenth_move"] is None else f"{m['last_tenth_move']:.2f}"
            lines.append(f"| {row['setting']} | {desc} | {method} | {m['n']} | "
                         f"{mean_sd(m['train_top1'])} | {mean_sd(m['test_top1'])} | {move} | "
                         f"{m['train_seconds']:.0f} | {regime if method == 'none' else ''} |")
    lines += ["", "*train top-1*, *test top-1*: the peers' mean after the last epoch (training "
              "top-1 on the un-augmented, unmixed training images), mean ± sd over seeds. "
              "*last-10 % move*: the largest change of the peers' mean test top-1 between the "
              "evaluations in the last 10 % of epochs (mean over seeds). *train s*: seconds in "
              "training steps, summed over the setting's seeds, one thread per run (while other "
              "work may have shared the machine). *regime*: no mixup at >= 95 % training top-1 and "
              "a move under 0.5 points."]
    try:
        rule = seed_rule(rows)
        lines += ["", f"Seed rule: the pooled sd of paired differences (each method minus no "
                  f"mixup, seed by seed, over every setting) is {rule['sd']:.2f} points with "
                  f"{rule['df']} degrees of freedom; a paired t-test then detects the paper's "
                  f"1.8 points at p < 0.05 with 80 % power from {rule['seeds']} seeds "
                  f"(sdml.results.power.seeds_for_effect, at least 3)."]
    except ValueError as err:
        lines += ["", f"Seed rule: {err}."]
    return "\n".join(lines) + "\n"


def machine_text() -> str:
    import torch

    model, flags = platform.processor() or "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", "unknown CPU", platform.processor()):
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return (f"{model}, {os.cpu_count()} cores, {'native bf16: ' + ', '.join(native) if native else 'no native bf16'}"
            f", torch {torch.__version__}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="runs trained at once, one process at one thread each")
    p.add_argument("--out", default="runs/sweep", help="root of the sweep's run folders")
    p.add_argument("--table", default=None, help="write the Markdown table here")
    p.add_argument("--json", default=None, help="write the rows here")
    p.add_argument("--figure", default=None,
                   help="draw test and training top-1 against training length into this PNG")
    p.add_argument("--no-train", action="store_true",
                   help="train nothing: summarise the runs already in --out")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error(f"--workers: {args.workers}; allowed: an integer >= 1")
    out = Path(args.out)
    jobs = [(dict(SETTINGS[s], method=m, seed=seed), str(out / s / f"{m}-s{seed}"))
            for s in args.settings for seed in args.seeds for m in args.methods]
    t0 = time.perf_counter()
    from sdml.training.pool import die_with_parent  # a killed sweep leaves no run training

    if not args.no_train:
        with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn"),
                                 initializer=die_with_parent) as pool:
            for run_dir, seconds in pool.map(train_one, jobs):
                print(f"{run_dir}: {seconds:.0f} s", flush=True)
    wall = time.perf_counter() - t0
    rows = [summarise(s, SETTINGS[s], out, args.seeds) for s in args.settings]
    machine = machine_text()
    text = table(rows, machine)
    print(text)
    print(f"sweep wall time {wall:.0f} s over {args.workers} process(es); {machine}")
    if args.table:
        Path(args.table).write_text(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "rows": rows}, indent=1) + "\n")
    if args.figure:
        from sdml.notebooks.plots import mixing_pays
        from sdml.results.sweep import length_series

        mixing_pays(length_series(rows)).savefig(args.figure, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())
