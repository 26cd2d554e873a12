"""The benchmark harness, run at its smoke size on the CPU: what it reports, not how fast."""
import contextlib
import io
import json
import math
import sys
import warnings
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # benchmarks/ sits beside sdml/, outside the installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import dml_bench, report, runners  # noqa: E402


def closed_form_flops(depth: int, width: int, num_classes: int = 100, size: int = 32) -> int:
    """Forward + backward FLOPs of one CIFAR ResNet per image, counted by hand.

    Forward multiply-adds of every conv (C_in * C_out * 9 * H_out * W_out) and of the head;
    the backward pass computes a weight gradient and an input gradient of the same cost each,
    except the stem's input gradient (the images need none). One multiply-add = 2 FLOPs.
    """
    n = (depth - 2) // 6
    w1, w2, w3 = width, 2 * width, 4 * width
    hw1, hw2, hw3 = size * size, (size // 2) ** 2, (size // 4) ** 2
    stem = 9 * 3 * w1 * hw1
    macs = stem
    macs += 2 * n * 9 * w1 * w1 * hw1
    macs += (9 * w1 * w2 + (2 * n - 1) * 9 * w2 * w2) * hw2
    macs += (9 * w2 * w3 + (2 * n - 1) * 9 * w3 * w3) * hw3
    macs += w3 * num_classes
    return 2 * (3 * macs - stem)


def test_resnet32_flops_match_the_architecture():
    flops = report.flops_per_image(depth=32, width=16, batch=1)
    assert flops == closed_form_flops(32, 16)
    # the usual figure: ~69M multiply-adds forward, forward + backward ~ 3x forward
    assert flops == pytest.approx(0.069e9 * 2 * 3, rel=0.10)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The CLI at --tiny on the CPU, in-process: its JSON, its table, and what it left behind."""
    tmp = tmp_path_factory.mktemp("bench")
    out = tmp / "bench.json"
    rng, threads = torch.get_rng_state(), torch.get_num_threads()
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(io.StringIO()):
        rc = dml_bench.main(["--tiny", "--device", "cpu", "--data-dir", str(tmp / "data"),
                             "--json", str(out)])
    return {"rc": rc, "result": json.loads(out.read_text()), "table": text.getvalue(),
            "rng_same": torch.equal(rng, torch.get_rng_state()),
            "threads_same": threads == torch.get_num_threads()}


def positive_stats(stats: dict, repeats: int) -> None:
    values = [stats["median"], stats["min"], stats["max"], *stats["repeats"]]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert stats["min"] <= stats["median"] <= stats["max"] and len(stats["repeats"]) == repeats


def test_every_mode_is_measured_or_skipped_with_a_reason(tiny_run):
    r = tiny_run["result"]
    assert tiny_run["rc"] == 0
    assert list(r["modes"]) == [m.name for m in runners.MODES]
    for name, m in r["modes"].items():
        if m["status"] == "measured":
            positive_stats(m["images_per_s"], r["settings"]["repeats"])
        else:
            assert m["status"] == "skipped" and isinstance(m["reason"], str) and m["reason"]
    # on a CPU: eager modes run, the compiled ones say why they do not
    assert {n for n, m in r["modes"].items() if m["status"] == "measured"} == {
        "reference", "loop", "grouped"}
    assert "CUDA" in r["modes"]["compiled"]["reason"] and "CUDA" in r["modes"]["graphs"]["reason"]
    for name in r["modes"]:
        assert name in tiny_run["table"]
    assert "skipped" in tiny_run["table"]


def test_ratios_and_flops_follow_from_the_reported_numbers(tiny_run):
    r = tiny_run["result"]
    s, flops = r["settings"], r["flops"]
    assert flops["per_image"] == closed_form_flops(s["depth"], s["width"]) > 0
    assert flops["per_sample"] == s["peers"] * flops["per_image"]
    ref = r["modes"]["reference"]["images_per_s"]["median"]
    measured = {n: m for n, m in r["modes"].items() if m["status"] == "measured"}
    for name, m in measured.items():
        ips = m["images_per_s"]["median"]
        assert m["ratio"] == pytest.approx(ips / ref, rel=1e-12)
        assert m["ratio_of_max"] == pytest.approx(
            m["images_per_s"]["max"] / r["modes"]["reference"]["images_per_s"]["max"], rel=1e-12)
        assert m["tflops"] == pytest.approx(ips * s["peers"] * flops["per_image"] / 1e12, rel=1e-12)
        assert m["peak_share"] is None  # no known peak for a CPU
    assert r["device"]["peak_tflops"] is None and "unknown" in r["device"]["peak_source"]
    ours = {n: m for n, m in measured.items() if n != "reference"}
    assert r["best"] == max(ours, key=lambda n: ours[n]["images_per_s"]["median"])
    assert {"torch", "torchvision", "python", "numpy", "pillow"} <= set(r["versions"])


def test_sweeps_cover_k_and_batch_with_the_reference_at_the_main_k(tiny_run):
    r = tiny_run["result"]
    s, sw = r["settings"], r["sweeps"]
    assert [row["peers"] for row in sw["peers"]] == list(dml_bench.TINY["sweep_peers"])
    assert [row["batch"] for row in sw["batch"]] == list(dml_bench.TINY["sweep_batch"])
    for row in sw["peers"] + sw["batch"]:
        assert row["mode"] == r["best"]
        positive_stats(row["ours"]["images_per_s"],
                       s["repeats"] if row["source"] == "main" else sw["repeats"])
        if row["peers"] == s["peers"]:
            ref = row["reference"]["images_per_s"]["median"]
            assert row["ratio"] == pytest.approx(row["ours"]["images_per_s"]["median"] / ref)
        else:
            assert row["reference"] is None and row["ratio"] is None
        if (row["peers"], row["batch"]) == (s["peers"], s["batch"]):  # reused, not re-timed
            assert row["source"] == "main"
            assert row["ours"]["images_per_s"] == r["modes"][r["best"]]["images_per_s"]


def test_the_run_leaves_global_state_as_it_found_it(tiny_run):
    assert tiny_run["rng_same"] and tiny_run["threads_same"]


class FallsBackToEager:
    """A runner that asked for torch.compile and, like sdml's Stepper on failure, warned and
    went on eagerly."""

    wants_compile = True
    compiled = False

    def run(self, steps):
        warnings.warn("compile: torch.compile failed on this platform (Boom); running eagerly",
                      RuntimeWarning)


def test_a_compile_that_fell_back_is_skipped_not_timed_as_compiled():
    with pytest.warns(RuntimeWarning, match="Boom"):
        got = runners.measure({"compiled": FallsBackToEager()}, batch=4, steps=1, repeats=2,
                                warmup=0, device=torch.device("cpu"))
    assert got["compiled"]["status"] == "skipped" and "Boom" in got["compiled"]["reason"]
    assert "images_per_s" not in got["compiled"]


@pytest.mark.parametrize("field, value", [("peers", 1), ("batch", 1), ("steps", 0),
                                          ("modes", ("eager",)), ("method", "cutmix"),
                                          ("sweep_mode", "reference")])
def test_bad_options_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        dml_bench.BenchOptions(**{field: value}).validate()


class FallsBackWhileTimed:
    """Compiled through the warm-up, eager from the first timed repeat on."""

    wants_compile = True

    def __init__(self):
        self.compiled, self.calls = True, 0

    def run(self, steps):
        self.calls += 1
        self.compiled = self.calls == 1


def test_a_compile_that_fell_back_while_timed_is_skipped_too():
    got = runners.measure({"compiled": FallsBackWhileTimed()}, batch=4, steps=1, repeats=2,
                          warmup=0, device=torch.device("cpu"))
    assert got["compiled"]["status"] == "skipped" and "eager" in got["compiled"]["reason"]


class RaisesAfter:
    """A runner whose ``calls``-th run raises ``error`` (a compiled one unless told otherwise)."""

    compiled = True

    def __init__(self, calls, error, wants_compile=True):
        self.left, self.error, self.wants_compile = calls, error, wants_compile

    def run(self, steps):
        self.left -= 1
        if self.left == 0:
            raise self.error


class Eager:
    wants_compile = compiled = False

    def run(self, steps):
        pass


@pytest.mark.parametrize("calls", [1, 2], ids=["in-warm-up", "while-timed"])
def test_a_compiled_mode_that_raises_is_failed_and_the_others_are_timed(calls):
    bad = RaisesAfter(calls, RuntimeError("graph replay broke\nmore detail"))
    with pytest.warns(RuntimeWarning, match="graph replay broke"):
        got = runners.measure({"reference": Eager(), "graphs": bad}, batch=4, steps=1, repeats=2,
                              warmup=1, device=torch.device("cpu"))
    assert got["graphs"] == {"status": "failed", "error": "RuntimeError: graph replay broke"}
    assert got["reference"]["status"] == "measured"
    assert len(got["reference"]["images_per_s"]["repeats"]) == 2


def test_an_eager_mode_that_raises_stops_the_benchmark():
    with pytest.raises(RuntimeError, match="broken reference"):
        runners.measure({"reference": RaisesAfter(1, RuntimeError("broken reference"), False)},
                        batch=4, steps=1, repeats=1, warmup=1, device=torch.device("cpu"))


def test_the_table_shows_a_failed_mode_with_its_error(tiny_run):
    result = json.loads(json.dumps(tiny_run["result"]))
    result["modes"]["graphs"] = {"status": "failed", "error": "RuntimeError: graph replay broke",
                                 "fuse": "grouped", "compile": "graphs"}
    table = report.format_report(result)
    assert "failed" in table and "graphs: failed: RuntimeError: graph replay broke" in table
