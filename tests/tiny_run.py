"""A tiny training run for the fault tests: its command line, and comparing two run folders."""
import hashlib
import json
import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
#: Seconds-long training on a 400-image synthetic split (2 steps an epoch; smoke: milestone 2).
TINY = ["--profile", "smoke", "--depth", "8", "--width", "4", "--batch-size", "32", "--lr", "0.05",
        "--synthetic-train-per-class", "4", "--synthetic-test-per-class", "2",
        "--max-steps-per-epoch", "2", "--eval-batch-size", "200", "--threads", "1", "--no-progress"]
#: Timings differ between two runs of the same config; everything else must not.
TIMING = ("train_seconds", "images_per_s", "threads")


def tiny_config(tmp_path, **overrides):
    """The same tiny run as a validated config (``smoke`` with :data:`TINY`'s sizes), data under
    ``tmp_path/data``; ``overrides`` win."""
    from sdml.training.config import make_config

    base = dict(data="synthetic", data_dir=str(tmp_path / "data"), depth=8, width=4, epochs=3,
                batch_size=32, lr=0.05, synthetic_train_per_class=4,
                synthetic_test_per_class=2, max_steps_per_epoch=3, eval_batch_size=200, threads=1)
    return make_config("smoke", **{**base, **overrides})


def train_argv(out, data_dir, epochs: int = 3, *extra) -> list[str]:
    return ["train", "--out", str(out), "--data-dir", str(data_dir), "--epochs", str(epochs),
            *TINY, *extra]


def subprocess_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def python() -> str:
    return sys.executable


def checksums(root) -> dict[str, str]:
    """sha256 of every file under ``root`` (relative path -> digest)."""
    root = Path(root)
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_run(a, b) -> None:
    """Two run folders hold the same training: checkpoint and predictions tensor by tensor, the
    metrics row by row (timings aside), the same config."""
    a, b = Path(a), Path(b)
    ca = torch.load(a / "checkpoint.pt", weights_only=True)
    cb = torch.load(b / "checkpoint.pt", weights_only=True)
    assert ca["epoch"] == cb["epoch"] and ca["fuse"] == cb["fuse"]
    for pa, pb in zip(ca["peers"], cb["peers"], strict=True):
        assert pa.keys() == pb.keys()
        for key in pa:
            assert torch.equal(pa[key], pb[key]), key
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key]["momentum_buffer"], sb[key]["momentum_buffer"]), key
    pa, pb = (torch.load(d / "predictions.pt", weights_only=True) for d in (a, b))
    for key in ("probs", "y", "coarse"):
        assert torch.equal(pa[key], pb[key]), key
    rows = [[{k: v for k, v in json.loads(line).items() if k not in TIMING}
             for line in (d / "metrics.jsonl").read_text().splitlines()] for d in (a, b)]
    assert rows[0] == rows[1]
    assert [r["epoch"] for r in rows[0]] == list(range(1, ca["epoch"] + 1))
    config = [json.loads((d / "config.json").read_text())["config"] for d in (a, b)]
    assert config[0] == config[1]
    assert not [p.name for d in (a, b) for p in d.iterdir() if p.name.endswith(".tmp")]
