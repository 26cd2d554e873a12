"""Command line: ``python -m sdml train | train-many | bench | hierarchy | wordnet | data``."""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields

from sdml.io.failures import EXIT_CODES_HELP, OneLineParser, describe_failure, parse_command_line
from sdml.training.config import PROFILES, Config, make_config

def field_help() -> dict[str, str]:
    """Each config field's help, kept beside the field in its metadata (``config.py``)."""
    return {f.name: f.metadata.get("help", "") for f in fields(Config)}


def help_profile(argv: list[str] | None, auto: bool) -> str:
    """The profile whose values ``--help`` shows: the one ``--profile`` names, else what the
    command would use (``auto``: as ``make reproduce`` picks it here, silently)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    named = None
    for i, arg in enumerate(argv):
        if arg == "--profile" and i + 1 < len(argv):
            named = argv[i + 1]
        elif arg.startswith("--profile="):
            named = arg.partition("=")[2]
    if named in PROFILES:
        return named
    if auto and ("-h" in argv or "--help" in argv):
        from sdml.notebooks.plan import resolve_profile

        return resolve_profile("auto", log=lambda line: None)
    return "paper"


def _shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return " ".join(map(str, value)) if isinstance(value, (tuple, list)) else str(value)


def add_config_options(parser: argparse.ArgumentParser, auto: bool = False,
                       shown: str = "paper") -> None:
    """One ``--field`` option per config field; unset options keep the profile's value. Each
    help ends with the value of profile ``shown`` (the one the command will use), and the
    paper's where it differs. Boolean fields are switches: ``--augment`` / ``--no-augment``.

    With ``auto``, ``--profile`` defaults to ``auto``: chosen as ``make reproduce`` does.
    """
    helps = field_help()
    presets = ("paper (Table 1), fashion (real data, GPU), cpu (the CPU main job), smoke (seconds), "
               "demo (minutes)")
    if auto:
        parser.add_argument("--profile", default=None, choices=["auto", *sorted(PROFILES)],
                            help=f"preset of the config: {presets}, auto (default: paper with a "
                                 f"CUDA GPU, else cpu, as make reproduce chooses; said on stderr; "
                                 f"here: {shown})")
    else:
        parser.add_argument("--profile", default="paper", choices=sorted(PROFILES),
                            help=f"preset of the config: {presets}")
    values = make_config(shown).to_dict()
    paper = make_config("paper").to_dict()
    for f in fields(Config):
        if f.name == "profile":
            continue
        flag = "--" + f.name.replace("_", "-")
        value = f"{shown}: {_shown(values[f.name])}"
        if shown != "paper" and values[f.name] != paper[f.name]:
            value += f"; paper: {_shown(paper[f.name])}"
        text = f"{helps[f.name]} ({value})"
        if f.name == "milestones":
            parser.add_argument(flag, dest=f.name, type=int, nargs="*", default=None, help=text)
        elif isinstance(f.default, bool):
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=text)
        else:
            parser.add_argument(flag, dest=f.name, type=type(f.default), default=None, help=text)


def config_from_args(args: argparse.Namespace) -> Config:
    """The config of a command: the profile (``auto`` resolved) with the options given, or with
    ``train --config``, the recorded run's config with the options given."""
    _path_option(args.data_dir, "data_dir")
    overrides = {f.name: getattr(args, f.name) for f in fields(Config) if f.name != "profile"}
    recorded = getattr(args, "config", None)
    if recorded is not None:
        from sdml.training.config import from_dict
        from sdml.training.runs import read_config_file

        if args.profile is not None:
            raise ValueError(f"profile: --profile {args.profile} with --config {recorded}; the "
                             f"recorded config holds its profile; allowed: one of the two")
        base = read_config_file(_path_option(recorded, "config")).to_dict()
        given = {k: v for k, v in overrides.items() if v is not None}
        if isinstance(given.get("milestones"), list):
            given["milestones"] = tuple(given["milestones"])
        return from_dict({**base, **given})
    profile = args.profile or "auto"
    if profile == "auto":
        from sdml.notebooks.plan import resolve_profile

        profile = resolve_profile("auto", log=lambda line: print(line, file=sys.stderr))
    return make_config(profile, **overrides)


def add_many_arguments(parser) -> None:
    """The options of ``python -m sdml train-many`` beside the config options."""
    from sdml.method.mixup import METHODS, TABLE1_METHODS

    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(TABLE1_METHODS),
                        help="one run per method (default: the four of Table 1)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="one run per seed and method (default: --seed)")
    parser.add_argument("--independent", nargs="+", choices=METHODS, default=[], metavar="METHOD",
                        help="also train these methods with mutual_weight 0 (independent peers, "
                             "the DML paper's control), in the same fused job")
    parser.add_argument("--out-root", required=True,
                        help="folder of the run folders <method>-<superclasses>-seed<seed>")
    parser.add_argument("--resume", action=argparse.BooleanOptionalAction, default=False,
                        help="continue the job from its runs' checkpoints")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                        help="a progress bar per run (--no-progress: summary lines only)")
    parser.add_argument("--summary-wait", type=float, default=3600.0,
                        help="under torchrun: seconds rank 0 waits, after its own runs, for the "
                             "other ranks before it reports the job")


def hierarchy_k() -> dict[str, int]:
    """Each class set's default number of WordNet superclasses: that of its first dataset."""
    from sdml.data.datasets import SPECS

    out: dict[str, int] = {}
    for spec in SPECS.values():
        out.setdefault(spec.classes, spec.wordnet_k)
    return out


def main_many(args):
    """``python -m sdml train-many``: the config options give every run's base config. Under
    torchrun the runs are spread over the ranks (returns the job's summary), else trained as one
    fused job (returns each run's metric rows)."""
    from sdml.training.distributed import torchrun_env
    from sdml.training.multirun import plan_many, train_many
    from sdml.training.resume import run_folder

    run_folder(args.out_root, "out_root")
    if getattr(args, "method", None) is not None:
        raise ValueError(f"method: --method {args.method} is not used by train-many; "
                         f"give the runs' methods with --methods")
    base = config_from_args(args)
    if base.ddp:
        raise ValueError("ddp: train-many trains whole runs (under torchrun: spread over the "
                         "ranks); data-parallel training of one run is `sdml train --ddp`")
    cfgs, dirs = plan_many(base, args.methods, args.seeds or [base.seed], args.out_root,
                           independent=args.independent)
    env = torchrun_env()
    if env is not None:
        from sdml.training.spread import spread_many

        if not args.summary_wait >= 0:
            raise ValueError(f"summary_wait: {args.summary_wait}; allowed: seconds >= 0")
        return spread_many(cfgs, dirs, args.out_root, env, resume=args.resume,
                           progress=args.progress, wait_s=args.summary_wait)
    return train_many(cfgs, dirs, resume=args.resume, progress=args.progress)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; ``argv`` only picks the profile whose values ``--help`` shows."""
    parser = OneLineParser(prog="python -m sdml", description=__doc__, epilog=EXIT_CODES_HELP,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error (also: SDML_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", required=True)

    shown = help_profile(argv, auto=True)
    p = sub.add_parser("train", help="train K peers with DML and (superclass) mixup",
                       description=f"Train (or resume) one DML run into a run folder. In brackets: "
                                   f"the values of profile {shown}, which this command uses.")
    p.add_argument("--out", required=True, help="run folder (config.json, metrics.jsonl, checkpoint.pt)")
    p.add_argument("--config", default=None, metavar="CONFIG_JSON",
                   help="re-run a recorded run: its config.json (or its folder); options given "
                        "beside it override its values")
    p.add_argument("--resume", action=argparse.BooleanOptionalAction, default=False,
                   help="continue the run in --out from its checkpoint")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True,
                   help="a progress bar (--no-progress: summary lines only)")
    p.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=False,
                   help="also write the metrics as TensorBoard event files into <out>/tensorboard "
                        "(needs the tensorboard extra)")
    add_config_options(p, auto=True, shown=shown)

    p = sub.add_parser("train-many", help="train several DML runs as one fused job",
                       description="One run per method and seed, fused into one grouped network; "
                                   "each run gets its own folder <method>-<superclasses>-seed<seed> "
                                   "under --out-root.")
    add_many_arguments(p)
    add_config_options(p, auto=True, shown=shown)

    p = sub.add_parser("bench", help="training-step throughput (one JSON line)",
                       description="Time the K-peer training step on random data; prints JSON.")
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=5, help="untimed steps first (compilation)")
    add_config_options(p, shown=help_profile(argv, auto=False))

    p = sub.add_parser("hierarchy", help="derive superclasses from WordNet and compare with CIFAR-100's",
                       description="Cut the WordNet hierarchy of the 100 classes into k groups.")
    p.add_argument("--k", type=int, default=None,
                   help="number of superclasses, 2..classes - 1 (default: the dataset's own k: "
                        + ", ".join(f"{c} {k}" for c, k in hierarchy_k().items()) + ")")
    p.add_argument("--out", required=True, help="JSON mapping to write")
    p.add_argument("--tree-out", default=None, help="also write the hypernym tree as JSON")
    p.add_argument("--classes", default="cifar100", choices=list(hierarchy_k()), help="class set")
    p = sub.add_parser("wordnet", help="make WordNet 3.0 available to nltk (download or system copy)",
                       description="Find or fetch WordNet 3.0 for nltk and say where it came from.")
    p.add_argument("--cache-dir", default=None, help="nltk data folder (default: .cache/nltk_data)")

    p = sub.add_parser("data", help="get a dataset: fetch a real one or generate the synthetic one",
                       description="Find or fetch a real dataset and checksum it, or generate the synthetic archive.")
    add_config_options(p, shown=help_profile(argv, auto=False))
    for p in sub.choices.values():
        p.epilog, p.formatter_class = EXIT_CODES_HELP, argparse.RawDescriptionHelpFormatter
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error (also: SDML_DEBUG=1)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; every failure is one line on stderr and an exit code (``--help``'s
    epilog lists them); ``--debug`` or ``SDML_DEBUG=1`` shows the traceback instead."""
    argv, args = parse_command_line(build_parser(argv), argv, "python -m sdml")
    if args is None:
        return 2
    try:
        return run_command(args) or 0
    except (Exception, KeyboardInterrupt) as err:
        if args.debug or os.environ.get("SDML_DEBUG") == "1":
            raise
        from sdml.training.distributed import SharedError

        code, message = describe_failure(err, args.command, argv, started=run_started(args))
        if not isinstance(err, SharedError) or os.environ.get("RANK", "0") == "0":
            print(f"sdml {args.command}: error: {message}", file=sys.stderr)  # once per job
        return code


def run_started(args) -> bool:
    """Whether the command's run folder (or one of a job's) holds a run that --resume continues."""
    from pathlib import Path

    if args.command == "train" and str(args.out).strip():
        return (Path(args.out) / "config.json").is_file()
    if args.command == "train-many" and str(args.out_root).strip() and Path(args.out_root).is_dir():
        return any((d / "config.json").is_file() for d in Path(args.out_root).iterdir())
    return False


def _path_option(value, field: str):
    if value is not None and not str(value).strip():
        raise ValueError(f"{field}: {value!r} is empty; allowed: a path")
    return value


def run_command(args) -> int:
    if args.command == "train":
        from sdml.training.distributed import torchrun_env
        from sdml.training.train import train

        cfg = config_from_args(args)
        env = torchrun_env()
        if env is not None and env.world_size > 1 and not cfg.ddp:
            raise ValueError(f"ddp: false under torchrun with {env.world_size} ranks, which "
                             f"would all train this run into one folder; pass --ddp, or "
                             f"spread several runs with train-many")
        board = None
        if args.tensorboard:
            if cfg.ddp:
                raise ValueError("tensorboard: not written by a --ddp run; allowed: --tensorboard "
                                 "without --ddp")
            from sdml.training.tensorboard import TensorBoardLog

            board = TensorBoardLog(args.out)  # a missing extra is said here, before training
        if cfg.ddp:
            from sdml.training.ddp import train_ddp

            train_ddp(cfg, args.out, resume=args.resume, progress=args.progress)
        else:
            try:
                train(cfg, args.out, resume=args.resume, progress=args.progress, on_epoch=board)
            finally:
                if board is not None:
                    board.close()
    elif args.command == "train-many":
        done = main_many(args)
        if not getattr(done, "ok", True):  # a run of a job spread over ranks did not finish
            return 1
    elif args.command == "bench":
        from sdml.training.bench import bench_step

        cfg = config_from_args(args)
        print(json.dumps(bench_step(cfg, steps=args.steps, warmup=args.warmup)))
    elif args.command == "hierarchy":
        from sdml.hierarchy.classes import class_names
        from sdml.hierarchy.superclasses import load_mapping
        from sdml.hierarchy.wordnet import run_hierarchy

        _path_option(args.out, "out")
        _path_option(args.tree_out, "tree_out")
        k = hierarchy_k()[args.classes] if args.k is None else args.k
        top = min(99, len(class_names(args.classes)) - 1)
        if not 2 <= k <= top:
            raise ValueError(f"k: {k}; allowed: an integer 2..{top} for {args.classes}")
        result = run_hierarchy(k, args.out, tree_out=args.tree_out, dataset=args.classes)
        mapping = load_mapping(args.out, args.classes)
        print(f"WordNet {result['wordnet_version']}, {args.classes}, k = {k}; wrote {args.out}")
        if "ari" in result:
            print(f"agreement with the dataset's own superclasses: adjusted Rand index "
                  f"{result['ari']:.4f}, normalised mutual information {result['nmi']:.4f}")
        for i, name in enumerate(mapping.superclass_names):
            print(f"  {i:>2} {name:<32} {', '.join(mapping.members(i))}")
    elif args.command == "wordnet":
        from sdml.hierarchy.wordnet import get_wordnet

        wn = get_wordnet(_path_option(args.cache_dir, "cache_dir"))
        print(f"WordNet {wn.get_version()} ready at {wn.root}")
    elif args.command == "data":
        from sdml.data.load import dataset_for

        cfg = config_from_args(args)
        arrays = dataset_for(cfg)
        print(f"{cfg.data}: {len(arrays.train_y)} train and {len(arrays.test_y)} test images "
              f"of {len(arrays.fine_names)} classes in {cfg.data_dir}")
