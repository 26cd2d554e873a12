"""The ``cpu`` profile's training on a CPU: the old path against the new one, side by side.

- *old path*: one run at a time in one process using every core (how notebook 04 trained the
  CPU main job's runs before ``--workers``);
- *new path*: one run per core, each process at one thread, all at once (how the runner trains
  them now, :mod:`sdml.training.pool`); its figure is the sum over the processes.

Both time the same two-peer ResNet-8 step of the ``cpu`` profile (``python -m sdml bench``, a
fresh process per point, so no thread pool carries over), interleaved old, new, old, new, ...
Then, for the typical reference implementation (``benchmarks/reference_dml.py``: a DataLoader
with PIL transforms, one optimiser per peer, a host sync per step), ``dml_bench.py`` times the
reference and sdml's step at the same model size in one process; it works on 32 x 32 RGB images
(the reference's transforms are CIFAR's), so that ratio is read beside, not multiplied into,
the old/new figures. The load average before each point says how quiet the machine was.

    python benchmarks/cpu_bench.py --json runs/cpu_bench.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bench_cmd(threads: int, steps: int, profile: str) -> list[str]:
    return [sys.executable, "-m", "sdml", "bench", "--profile", profile, "--device", "cpu",
            "--threads", str(threads), "--steps", str(steps)]


def run_points(commands: list[list[str]]) -> list[dict]:
    """Start every command at once and wait for all; their JSON lines."""
    procs = [subprocess.Popen(c, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for c in commands]
    out = []
    for p in procs:
        stdout, stderr = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(p.args)} failed: {stderr.strip().splitlines()[-1:]}")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="cpu", help="the profile whose step is timed")
    p.add_argument("--steps", type=int, default=40, help="timed steps per repeat of a point")
    p.add_argument("--repeats", type=int, default=3, help="old/new pairs, interleaved")
    p.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the typical reference implementation (dml_bench.py)")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    old, new = [], []
    for r in range(args.repeats):
        load = os.getloadavg()[0]
        o = run_points([bench_cmd(cores, args.steps, args.profile)])[0]
        n = run_points([bench_cmd(1, args.steps, args.profile) for _ in range(cores)])
        old.append(o["images_per_s"])
        new.append(sum(x["images_per_s"] for x in n))
        print(f"repeat {r + 1}: load {load:.2f} | old (1 process x {o['threads']} threads) "
              f"{old[-1]:.0f} images/s | new ({cores} processes x 1 thread) {new[-1]:.0f} "
              f"images/s ({' + '.join(str(round(x['images_per_s'])) for x in n)})", flush=True)
    result = {"profile": args.profile, "model": o["model"], "batch": o["batch"], "cores": cores,
              "torch": o["torch"], "old_images_per_s": old, "new_images_per_s": new,
              "old_median": statistics.median(old), "new_median": statistics.median(new),
              "ratio": statistics.median(new) / statistics.median(old)}
    print(f"{args.profile} step, {o['model']} x {o['peers']} peers, batch {o['batch']}: old "
          f"{result['old_median']:.0f}, new {result['new_median']:.0f} images/s (median of "
          f"{args.repeats}), new/old = {result['ratio']:.2f}")
    if args.reference:
        ref_json = REPO / "runs" / "cpu_bench_reference.json"
        ref_json.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "benchmarks/dml_bench.py", "--device", "cpu", "--depth",
                        "8", "--width", "8", "--threads", str(cores), "--modes", "reference",
                        "loop", "--no-sweep", "--json", str(ref_json)], cwd=REPO, check=True)
        result["reference_run"] = json.loads(ref_json.read_text())
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
