"""sdml's DML training step against a typically written one, in one process on one device.

Modes are interleaved (reference, loop, grouped, compiled, graphs, reference, ...) and repeated;
each repeat times ``steps`` training steps between two device synchronisations, so
images/s = steps * batch / seconds counts training samples through the whole K-peer step
(data, mixing, K forwards and backwards, the update), as ``python -m sdml bench`` does. Then the
best of sdml's modes is swept over K and batch size. Prints a table and writes JSON.

    python benchmarks/dml_bench.py --device auto --json runs/bench.json
    python benchmarks/dml_bench.py --tiny          # seconds on a CPU: the smoke size
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import math
import sys
from dataclasses import dataclass
from datetime import datetime, timezone

import torch

from sdml.data.batches import to_device
from sdml.data.load import load_dataset
from sdml.hierarchy.superclasses import FINE_NAMES
from sdml.io.atomic import atomic_write_json
from sdml.method.mixup import METHODS
from sdml.training.train import resolve_device

if __package__:
    from . import report
    from .reference_dml import default_workers
    from .runners import MODES, Mode, make_runner, measure
else:  # run as a script: python benchmarks/dml_bench.py
    import report
    from reference_dml import default_workers
    from runners import MODES, Mode, make_runner, measure


@dataclass
class BenchOptions:
    device: str = "auto"            # auto | cpu | cuda
    depth: int = 32                 # ResNet depth, 6n + 2
    width: int = 16                 # channels of the first stage
    shortcut: str = "A"             # A: zero-padding identity | B: 1x1 conv projection
    peers: int = 2                  # K
    batch: int = 64                 # training samples per step
    method: str = "superclass-beta"  # mixing method, the same for every mode
    steps: int | None = None        # timed steps per repeat (None: 100 on CUDA, 5 on a CPU)
    repeats: int | None = None      # repeats per mode (None: 5 on CUDA, 3 on a CPU)
    warmup: int | None = None       # untimed steps per mode first (None: 10 on CUDA, 1 on a CPU)
    modes: tuple[str, ...] = tuple(m.name for m in MODES)  # which to time
    sweep: bool = True              # throughput against K and batch
    sweep_mode: str | None = None   # the sdml mode swept (None: the fastest one measured)
    sweep_peers: tuple[int, ...] = (2, 4, 8)
    sweep_batch: tuple[int, ...] = (64, 128, 256)
    sweep_steps: int | None = None  # None: as ``steps``
    sweep_repeats: int | None = None  # None: as ``repeats``
    full: bool = False              # the reference at every sweep point, not only at K = peers
    workers: int | None = None      # reference loader workers (None: min(4, CPUs))
    threads: int = 0                # torch CPU threads, 0 = torch's default
    data_dir: str = "data"          # where the synthetic dataset is cached
    compile_on_cpu: bool = False    # also time the compiled modes on a CPU (minutes of compiling)
    seed: int = 0

    def validate(self) -> "BenchOptions":
        for name in ("peers", "batch"):
            if getattr(self, name) < 2:
                raise ValueError(f"{name}: {getattr(self, name)!r}; allowed: an integer >= 2")
        for name in ("steps", "repeats", "sweep_steps", "sweep_repeats"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name}: {value!r}; allowed: an integer >= 1")
        if self.warmup is not None and self.warmup < 0:
            raise ValueError(f"warmup: {self.warmup!r}; allowed: an integer >= 0")
        known = [m.name for m in MODES]
        for name in self.modes:
            if name not in known:
                raise ValueError(f"modes: {name!r} is not a mode; allowed: {', '.join(known)}")
        ours = [m.name for m in MODES if not m.reference]
        if self.sweep_mode is not None and self.sweep_mode not in ours:
            raise ValueError(f"sweep_mode: {self.sweep_mode!r}; allowed: {', '.join(ours)}")
        if self.method not in METHODS:
            raise ValueError(f"method: {self.method!r}; allowed: {', '.join(METHODS)}")
        if any(k < 2 for k in self.sweep_peers) or any(b < 2 for b in self.sweep_batch):
            raise ValueError(f"sweep_peers {self.sweep_peers}, sweep_batch {self.sweep_batch}: "
                             f"allowed are integers >= 2")
        return self


#: The smoke size: seconds on a CPU.
TINY = dict(depth=8, width=4, batch=16, steps=2, repeats=1, warmup=1, workers=0,
            threads=1, sweep_peers=(2, 3), sweep_batch=(8, 16))


def skip_reason(mode: Mode, device: torch.device, opts: BenchOptions) -> str | None:
    """Why ``mode`` cannot be timed here, or None when it can."""
    compiled = mode.compile in ("on", "graphs")
    if compiled and not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if mode.needs_cuda and device.type != "cuda" and not (compiled and opts.compile_on_cpu):
        return (f"needs a CUDA device, this run is on {device.type} (torch.compile on a CPU "
                f"spends minutes building C++ kernels; --compile-on-cpu times it anyway)")
    return None


def run_benchmark(opts: BenchOptions, log=print) -> dict:
    """Measure every mode, then the sweeps; returns the JSON-ready result."""
    opts.validate()
    threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        return _run(opts, log)
    finally:
        torch.set_num_threads(threads)  # in-process callers (tests) keep their setting


def _run(opts: BenchOptions, log) -> dict:
    device = resolve_device(opts.device)
    cuda = device.type == "cuda"
    steps = opts.steps or (100 if cuda else 5)
    repeats = opts.repeats or (5 if cuda else 3)
    warmup = opts.warmup if opts.warmup is not None else (10 if cuda else 1)
    sweep_steps, sweep_repeats = opts.sweep_steps or steps, opts.sweep_repeats or repeats
    workers = default_workers() if opts.workers is None else opts.workers

    # data: enough synthetic images that no timed call runs out of batches
    batches = [opts.batch, *(opts.sweep_batch if opts.sweep else ())]
    most = max(steps, sweep_steps, warmup, 3) * max(batches)  # compiled modes warm up >= 3 steps
    per_class = math.ceil(most / len(FINE_NAMES))
    per_class = per_class if per_class <= 10 else 50 * math.ceil(per_class / 50)  # few archives
    arrays = load_dataset("synthetic", opts.data_dir, synthetic=dict(
        n_train_per_class=per_class, n_test_per_class=1, seed=0))
    num_classes = len(arrays.fine_names)
    ctx = dict(arrays=arrays, data=to_device(arrays, device), num_classes=num_classes,
               device=device, workers=workers)

    flops_image = report.flops_per_image(opts.depth, opts.width, opts.shortcut, num_classes)
    peak, peak_source = report.peak_tflops(device)
    result = {
        "benchmark": "dml-training-step",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "device": {"type": device.type, "name": report.device_name(device),
                   "threads": torch.get_num_threads(), "peak_tflops": peak,
                   "peak_source": peak_source},
        "versions": report.versions(),
        "settings": {**dataclasses.asdict(opts), "steps": steps, "repeats": repeats,
                     "warmup": warmup, "sweep_steps": sweep_steps, "sweep_repeats": sweep_repeats,
                     "workers": workers, "train_images": int(arrays.train_x.shape[0]),
                     "num_classes": num_classes, "data": "synthetic"},
        "flops": {"per_image": flops_image, "per_sample": opts.peers * flops_image,
                  "counted": "one network's forward+backward, convs and linear layers, "
                             "2 FLOPs per multiply-add, FlopCounterMode"},
        "images_per_s": "training samples per second through the whole K-peer step",
    }

    result["modes"] = measure_modes(opts, ctx, steps, repeats, warmup, flops_image, peak, log)
    ours = {n: e for n, e in result["modes"].items()
            if e["status"] == "measured" and n != "reference"}
    result["best"] = max(ours, key=lambda n: ours[n]["images_per_s"]["median"]) if ours else None
    swept = opts.sweep_mode or result["best"]

    # sweeps over K and batch with the best mode (and the reference at the main K)
    result["sweeps"] = None
    if opts.sweep and swept in ours:
        result["sweeps"] = run_sweeps(opts, ctx, result, swept, sweep_steps, sweep_repeats,
                                      warmup, log)
    elif opts.sweep:
        result["sweeps"] = {"skipped": f"mode {swept!r} was not measured in this run"}
    return result


def measure_modes(opts, ctx, steps, repeats, warmup, flops_image, peak, log) -> dict:
    """Every mode asked for, in :data:`MODES` order: timed interleaved, or skipped with why."""
    modes = [m for m in MODES if m.name in opts.modes]
    out = {m.name: {"status": "skipped", "reason": r, "fuse": m.fuse, "compile": m.compile}
           for m in modes if (r := skip_reason(m, ctx["device"], opts))}
    runnable = [m for m in modes if m.name not in out]
    log(f"[bench] timing {', '.join(m.name for m in runnable)} on {ctx['device']} ...")
    runners = {m.name: make_runner(m, opts, opts.peers, opts.batch, ctx) for m in runnable}
    measured = measure(runners, opts.batch, steps, repeats, warmup, ctx["device"])
    del runners
    gc.collect()  # the reference's loader workers end here
    for m in runnable:
        out[m.name] = {"fuse": m.fuse, "compile": m.compile, **measured[m.name]}
    ref = out.get("reference", {}).get("images_per_s")
    for entry in out.values():
        if entry["status"] == "measured":
            ips = entry["images_per_s"]["median"]
            entry.update(report.achieved(ips, opts.peers, flops_image, peak))
            entry["ratio"] = ips / ref["median"] if ref else None
            # on a shared machine the fastest repeat is the least disturbed one
            entry["ratio_of_max"] = entry["images_per_s"]["max"] / ref["max"] if ref else None
    return {m.name: out[m.name] for m in modes}


def run_sweeps(opts, ctx, result, mode_name, steps, repeats, warmup, log) -> dict:
    """Throughput against K (at the main batch) and batch (at the main K) for one sdml mode;
    the reference at the main K only (every point with ``full``). The main point is reused."""
    best = next(m for m in MODES if m.name == mode_name)
    reference = next(m for m in MODES if m.reference)
    with_ref = "reference" in result["modes"] and result["modes"]["reference"]["status"] == "measured"
    sweeps = {"mode": best.name, "steps": steps, "repeats": repeats,
              "settings": {"peers": f"batch {opts.batch}, {best.name}",
                           "batch": f"K = {opts.peers}, {best.name}"}}
    for key, points in (("peers", [(k, opts.batch) for k in opts.sweep_peers]),
                        ("batch", [(opts.peers, b) for b in opts.sweep_batch])):
        rows = []
        for peers, batch in points:
            if (peers, batch) == (opts.peers, opts.batch):  # the main measurement is this point
                got = {"ours": dict(result["modes"][best.name])}
                if with_ref:
                    got["reference"] = dict(result["modes"]["reference"])
                rows.append(sweep_row(peers, batch, best.name, got, "main", result))
                continue
            log(f"[bench] sweep K={peers} batch={batch} ...")
            runners = {"ours": make_runner(best, opts, peers, batch, ctx)}
            if with_ref and (opts.full or peers == opts.peers):
                runners["reference"] = make_runner(reference, opts, peers, batch, ctx)
            got = measure(runners, batch, steps, repeats, warmup, ctx["device"])
            del runners
            gc.collect()
            rows.append(sweep_row(peers, batch, best.name, got, "sweep", result))
        sweeps[key] = rows
    return sweeps


def sweep_row(peers: int, batch: int, mode: str, got: dict, source: str, result: dict) -> dict:
    """One sweep point: our stats (with TFLOP/s), the reference's if timed, and their ratio."""
    ours, ref = got["ours"], got.get("reference")
    ratio = ratio_of_max = None
    if ours["status"] == "measured":
        ours.update(report.achieved(ours["images_per_s"]["median"], peers,
                                    result["flops"]["per_image"], result["device"]["peak_tflops"]))
        if ref:
            ratio = ours["images_per_s"]["median"] / ref["images_per_s"]["median"]
            ratio_of_max = ours["images_per_s"]["max"] / ref["images_per_s"]["max"]
    return {"peers": peers, "batch": batch, "mode": mode, "source": source, "ours": ours,
            "reference": ref, "ratio": ratio, "ratio_of_max": ratio_of_max}


def build_parser() -> argparse.ArgumentParser:
    d = BenchOptions()
    p = argparse.ArgumentParser(prog="python benchmarks/dml_bench.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=d.device, choices=["auto", "cpu", "cuda"])
    helps = {"depth": "ResNet depth, 6n + 2", "width": "channels of the first stage",
             "peers": "K, models trained together", "batch": "training samples per step",
             "steps": "timed steps per repeat (default: 100 on CUDA, 5 on a CPU)",
             "repeats": "repeats per mode (default: 5 on CUDA, 3 on a CPU)",
             "warmup": "untimed steps per mode first (default: 10 on CUDA, 1 on a CPU; "
                       "compiled modes at least 3)",
             "sweep_steps": "timed steps per sweep repeat (default: --steps)",
             "sweep_repeats": "repeats per sweep point (default: --repeats)",
             "workers": "reference DataLoader workers (default: min(4, CPUs))",
             "threads": "torch CPU threads (0: torch's default)", "seed": "weights and draws"}
    for name, text in helps.items():
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name), help=text)
    p.add_argument("--shortcut", default=d.shortcut, choices=["A", "B"])
    p.add_argument("--method", default=d.method, choices=list(METHODS))
    p.add_argument("--modes", nargs="+", default=list(d.modes), choices=[m.name for m in MODES])
    p.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=d.sweep,
                   help="throughput against K and batch size")
    p.add_argument("--sweep-peers", type=int, nargs="+", default=list(d.sweep_peers))
    p.add_argument("--sweep-batch", type=int, nargs="+", default=list(d.sweep_batch))
    p.add_argument("--sweep-mode", default=None, choices=[m.name for m in MODES if not m.reference],
                   help="the sdml mode swept (default: the fastest one measured)")
    p.add_argument("--full", action="store_true", help="the reference at every sweep point")
    p.add_argument("--data-dir", default=d.data_dir, help="synthetic dataset cache")
    p.add_argument("--compile-on-cpu", action="store_true", help="time the compiled modes on a CPU")
    p.add_argument("--tiny", action="store_true",
                   help="the smoke size, seconds on a CPU: " + ", ".join(f"{k}={v}" for k, v in TINY.items()))
    p.add_argument("--json", default=None, help="write the result here")
    return p


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(BenchOptions)}
    for name in ("modes", "sweep_peers", "sweep_batch"):
        values[name] = tuple(values[name])
    return BenchOptions(**values)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """``--tiny`` replaces the defaults with :data:`TINY`; options given explicitly still win."""
    parser = build_parser()
    if parser.parse_known_args(argv)[0].tiny:
        parser.set_defaults(**{k: list(v) if isinstance(v, tuple) else v for k, v in TINY.items()})
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        result = run_benchmark(options_from_args(args), log=lambda s: print(s, file=sys.stderr))
    except ValueError as err:
        print(f"dml_bench: error: {err}", file=sys.stderr)
        return 2
    print(report.format_report(result))
    if args.json:
        atomic_write_json(args.json, result)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
