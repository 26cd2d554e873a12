"""CPU threads against a busy machine: the training step of the ``cpu`` profile at 1 thread,
at one thread per core and at ``threads = 0`` (the kit's rule, sdml.training.threads), first on
the machine as it is, then with one core held by a spinning process.

Each point is its own process (``python -m sdml bench``), so thread pools never carry over.
The spinner is this script's child and is stopped by its process id. The figures are only as
quiet as the machine: the script prints the load average before each case.

    python benchmarks/threads_bench.py --json runs/threads.json
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPIN = "while True: pass"


def bench(threads: int, profile: str, steps: int) -> dict:
    """One ``python -m sdml bench`` point in a fresh process; its JSON line."""
    out = subprocess.run([sys.executable, "-m", "sdml", "bench", "--profile", profile,
                          "--threads", str(threads), "--steps", str(steps), "--device", "cpu"],
                         cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_case(name: str, threads_list, profile: str, steps: int) -> list[dict]:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"-- {name} (load average {load:.2f} over the last minute)", flush=True)
    rows = []
    for threads in threads_list:
        r = bench(threads, profile, steps)
        label = "auto" if threads == 0 else str(threads)
        print(f"   threads {label:>4} (torch used {r['threads']}): "
              f"{r['images_per_s']:.0f} images/s (min {r['images_per_s_min']:.0f}, "
              f"max {r['images_per_s_max']:.0f})", flush=True)
        rows.append({"case": name, "threads": label, "used": r["threads"], "load": load,
                     "images_per_s": r["images_per_s"], "min": r["images_per_s_min"],
                     "max": r["images_per_s_max"]})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="cpu", help="config profile whose model is timed")
    p.add_argument("--steps", type=int, default=20, help="timed steps per repeat")
    p.add_argument("--json", default=None, help="write the rows here")
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    threads_list = sorted({1, cores}) + [0]
    rows = run_case("as it is", threads_list, args.profile, args.steps)
    spinner = subprocess.Popen([sys.executable, "-c", SPIN])
    try:
        time.sleep(1.0)  # let the scheduler see the spinner before the rule measures
        rows += run_case("one core held by a spinning process", threads_list, args.profile,
                         args.steps)
    finally:
        spinner.kill()
        spinner.wait()
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
