"""Command line: ``python -m sdml train | train-many | bench | hierarchy | wordnet | data``."""
from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from dataclasses import fields

from sdml.training.config import PROFILES, Config, make_config

_FIELD_LINE = re.compile(r"^\s+(\w+): [^=]+= .*?#\s*(.+)$")


def field_help() -> dict[str, str]:
    """Each config field's comment in ``config.py``: the one place fields are documented."""
    out = {}
    for line in inspect.getsource(Config).splitlines():
        m = _FIELD_LINE.match(line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; allowed: true, false")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--field`` option per config field; unset options keep the profile's value."""
    helps = field_help()
    parser.add_argument("--profile", default="paper", choices=sorted(PROFILES),
                        help="preset of the config: paper (Table 1), fashion (real data, GPU), "
                             "cpu (the CPU main job), smoke (seconds), demo (minutes)")
    for f in fields(Config):
        if f.name == "profile":
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        kind = {bool: _parse_bool, int: int, float: float, str: str}.get(type(default))
        if f.name == "milestones":
            parser.add_argument(flag, dest=f.name, type=int, nargs="*", default=None,
                                help=f"{helps.get(f.name, '')} (paper: {' '.join(map(str, default))})")
            continue
        parser.add_argument(flag, dest=f.name, type=kind, default=None,
                            help=f"{helps.get(f.name, '')} (paper: {default})")


def config_from_args(args: argparse.Namespace) -> Config:
    overrides = {f.name: getattr(args, f.name) for f in fields(Config) if f.name != "profile"}
    return make_config(args.profile, **overrides)


def add_many_arguments(parser) -> None:
    """The options of ``python -m sdml train-many`` beside the config options."""
    from sdml.method.mixup import METHODS, TABLE1_METHODS

    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(TABLE1_METHODS),
                        help="one run per method (default: the four of Table 1)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="one run per seed and method (default: --seed)")
    parser.add_argument("--out-root", required=True,
                        help="folder of the run folders <method>-<superclasses>-seed<seed>")
    parser.add_argument("--resume", action="store_true", help="continue the job from its runs' checkpoints")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar, summary lines only")


def main_many(args) -> list[list[dict]]:
    """``python -m sdml train-many``: the config options give every run's base config."""
    from sdml.training.multirun import plan_many, train_many

    if getattr(args, "method", None) is not None:
        raise ValueError(f"method: --method {args.method} is not used by train-many; "
                         f"give the runs' methods with --methods")
    base = config_from_args(args)
    cfgs, dirs = plan_many(base, args.methods, args.seeds or [base.seed], args.out_root)
    return train_many(cfgs, dirs, resume=args.resume, progress=not args.no_progress)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sdml", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train K peers with DML and (superclass) mixup",
                       description="Train (or resume) one DML run into a run folder.")
    p.add_argument("--out", required=True, help="run folder (config.json, metrics.jsonl, checkpoint.pt)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, summary lines only")
    add_config_options(p)

    p = sub.add_parser("train-many", help="train several DML runs as one fused job",
                       description="One run per method and seed, fused into one grouped network; "
                                   "each run gets its own folder <method>-<superclasses>-seed<seed> "
                                   "under --out-root.")
    add_many_arguments(p)
    add_config_options(p)

    p = sub.add_parser("bench", help="training-step throughput (one JSON line)",
                       description="Time the K-peer training step on random data; prints JSON.")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation)")
    add_config_options(p)

    p = sub.add_parser("hierarchy", help="derive superclasses from WordNet and compare with CIFAR-100's",
                       description="Cut the WordNet hierarchy of the 100 classes into k groups.")
    p.add_argument("--k", type=int, default=20, help="number of superclasses, 2..99")
    p.add_argument("--out", required=True, help="JSON mapping to write")
    p.add_argument("--tree-out", default=None, help="also write the hypernym tree as JSON")
    p.add_argument("--classes", default="cifar100", help="class set: cifar100 | cifar10 | fashion-mnist")
    p = sub.add_parser("wordnet", help="make WordNet 3.0 available to nltk (download or system copy)",
                       description="Find or fetch WordNet 3.0 for nltk and say where it came from.")
    p.add_argument("--cache-dir", default=None, help="nltk data folder (default: .cache/nltk_data)")

    p = sub.add_parser("data", help="get a dataset: fetch a real one or generate the synthetic one",
                       description="Find or fetch a real dataset and checksum it, or generate the synthetic archive.")
    add_config_options(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "train":
            from sdml.training.train import train

            cfg = config_from_args(args)
            train(cfg, args.out, resume=args.resume, progress=not args.no_progress)
        elif args.command == "train-many":
            main_many(args)
        elif args.command == "bench":
            from sdml.training.bench import bench_step

            cfg = config_from_args(args)
            print(json.dumps(bench_step(cfg, steps=args.steps, warmup=args.warmup)))
        elif args.command == "hierarchy":
            from sdml.hierarchy.wordnet import run_hierarchy

            from sdml.hierarchy.superclasses import load_mapping

            result = run_hierarchy(args.k, args.out, tree_out=args.tree_out, dataset=args.classes)
            mapping = load_mapping(args.out, args.classes)
            print(f"WordNet {result['wordnet_version']}, {args.classes}, k = {args.k}; wrote {args.out}")
            if "ari" in result:
                print(f"agreement with the dataset's own superclasses: adjusted Rand index "
                      f"{result['ari']:.4f}, normalised mutual information {result['nmi']:.4f}")
            for i, name in enumerate(mapping.superclass_names):
                print(f"  {i:>2} {name:<32} {', '.join(mapping.members(i))}")
        elif args.command == "wordnet":
            from sdml.hierarchy.wordnet import get_wordnet

            wn = get_wordnet(args.cache_dir)
            print(f"WordNet {wn.get_version()} ready at {wn.root}")
        elif args.command == "data":
            from sdml.data.load import dataset_for

            cfg = config_from_args(args)
            arrays = dataset_for(cfg)
            print(f"{cfg.data}: {len(arrays.train_y)} train and {len(arrays.test_y)} test images "
                  f"of {len(arrays.fine_names)} classes in {cfg.data_dir}")
    except (ValueError, FileNotFoundError) as err:
        print(f"sdml {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
