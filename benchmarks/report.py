"""What the benchmark counts and prints: FLOPs per image, device peaks, versions, the tables."""
from __future__ import annotations

import math
import platform
import statistics

import numpy as np
import PIL
import torch
from torch.utils.flop_counter import FlopCounterMode

from sdml.models.resnet import resnet_cifar

#: Dense bf16 tensor-core peaks in TFLOP/s, by a part of ``torch.cuda.get_device_name``; the
#: first match wins, so the more specific names come first.
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0),
                    ("H200", 989.0), ("A100", 312.0))


def flops_per_image(depth: int = 32, width: int = 16, shortcut: str = "A",
                    num_classes: int = 100, batch: int = 4) -> float:
    """FLOPs of one forward + backward of one ``resnet_cifar`` network, per image.

    Counted by ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matrix products,
    a multiply-add being 2 FLOPs; batch norm, ReLU and other element-wise work are not counted)
    on a batch of ``batch`` 32x32 images, divided by ``batch``. A K-peer training step costs K times
    this per training sample.
    """
    gen = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):  # layer constructors draw default weights globally
        model = resnet_cifar(depth, num_classes, width, shortcut, generator=gen)
    x = torch.randn(batch, 3, 32, 32, generator=gen)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x).sum().backward()
    return counter.get_total_flops() / batch


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's model name where the platform tells it."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def peak_tflops(device: torch.device) -> tuple[float | None, str]:
    """(dense bf16 peak in TFLOP/s, where it comes from); (None, why) when it is not known."""
    if device.type != "cuda":
        return None, "peak unknown for a CPU"
    name = torch.cuda.get_device_name(device)
    for part, peak in PEAK_BF16_TFLOPS:
        if part in name:
            return peak, f"dense bf16 peak of the {part} (vendor data sheet)"
    return None, f"peak unknown for {name!r}"


def versions() -> dict:
    """Versions of everything timed, plus the repository revision."""
    from sdml.training.runs import provenance

    info = provenance()
    info.update({"numpy": np.__version__, "pillow": PIL.__version__})
    if torch.cuda.is_available():
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def summarise(images_per_s: list[float]) -> dict:
    """Median, min and max over repeats, and the repeats themselves."""
    return {"median": statistics.median(images_per_s), "min": min(images_per_s),
            "max": max(images_per_s), "repeats": list(images_per_s)}


def achieved(images_per_s: float, peers: int, flops_image: float, peak: float | None) -> dict:
    """TFLOP/s achieved at ``images_per_s`` training samples/s, and the share of ``peak``."""
    tflops = images_per_s * peers * flops_image / 1e12
    return {"tflops": tflops, "peak_share": tflops / peak if peak else None}


# ----------------------------------------------------------------------------- text tables

def _num(value, spec: str = ".0f") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return format(value, spec)


def table(header: list[str], rows: list[list[str]]) -> str:
    """Plain text, columns aligned: text left, everything else right."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def modes_table(result: dict) -> str:
    header = ["mode", "img/s median", "min", "max", "TFLOP/s", "% peak", "x reference",
              "(of max)", "warm-up s", "compile s"]
    rows, notes = [], []
    for name, m in result["modes"].items():
        if m["status"] != "measured":
            rows.append([name] + [m["status"]] + ["-"] * 8)
            notes.append(f"  {name}: {m['status']}: {m.get('reason') or m.get('error')}")
            continue
        ips, share = m["images_per_s"], m["peak_share"]
        rows.append([name, _num(ips["median"]), _num(ips["min"]), _num(ips["max"]),
                     _num(m["tflops"], ".3f"), _num(share * 100 if share is not None else None, ".1f"),
                     _num(m["ratio"], ".2f"), _num(m["ratio_of_max"], ".2f"),
                     _num(m["warmup_s"], ".1f"),
                     _num(m.get("compile_s"), ".1f")])
    return "\n".join([table(header, rows), *notes])


def sweep_table(rows: list[dict], key: str) -> str:
    header = [{"peers": "K"}.get(key, key), "mode", "ours img/s", "min", "max",
              "reference img/s", "x reference", "(of max)"]
    out = []
    notes = []
    for r in rows:
        ref = r.get("reference")
        ref_ips = _num(ref["images_per_s"]["median"]) if ref else "-"
        if r["ours"]["status"] != "measured":
            ours = r["ours"]
            out.append([str(r[key]), r["mode"], ours["status"], "-", "-", ref_ips, "-", "-"])
            notes.append(f"  {key} {r[key]}: {ours['status']}: {ours.get('reason') or ours.get('error')}")
            continue
        ours = r["ours"]["images_per_s"]
        out.append([str(r[key]), r["mode"], _num(ours["median"]), _num(ours["min"]),
                    _num(ours["max"]), ref_ips, _num(r["ratio"], ".2f"),
                    _num(r["ratio_of_max"], ".2f")])
    return "\n".join([table(header, out), *notes])


def format_report(result: dict) -> str:
    """The whole report as plain text."""
    s, d, f = result["settings"], result["device"], result["flops"]
    lines = [
        f"DML training step: {s['peers']} x ResNet-{s['depth']} (width {s['width']}, shortcut "
        f"{s['shortcut']}), batch {s['batch']}, {s['method']}; {s['steps']} steps x "
        f"{s['repeats']} repeats after {s['warmup']} warm-up steps, modes interleaved",
        f"device: {d['type']} ({d['name']}); torch threads {d['threads']}, loader workers "
        f"{s['workers']}; torch {result['versions']['torch']}, torchvision "
        f"{result['versions']['torchvision']}",
        f"FLOPs per image: {f['per_image'] / 1e9:.3f} GFLOP ({f['counted']}); "
        f"x {s['peers']} peers = {f['per_sample'] / 1e9:.3f} GFLOP per training sample",
        f"peak: {_num(d['peak_tflops'], '.0f')} TFLOP/s ({d['peak_source']})",
        "images/s = training samples per second through the whole K-peer step "
        "(as `python -m sdml bench`); x reference = median / reference median, "
        "(of max) = fastest repeat / reference's fastest",
        "",
        modes_table(result),
    ]
    sweeps = result.get("sweeps") or {}
    if "skipped" in sweeps:
        lines += ["", f"sweeps skipped: {sweeps['skipped']}"]
    for key, title in (("peers", "throughput against K"), ("batch", "throughput against batch")):
        if sweeps.get(key):
            lines += ["", f"{title} ({sweeps['settings'][key]})", sweep_table(sweeps[key], key)]
    return "\n".join(lines)
