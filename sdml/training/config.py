"""The one validated training config, and its named profiles.

Defaults are the paper profile: two ResNet-32 peers trained with DML on CIFAR-100 under the DML
paper's protocol. ``smoke`` and ``demo`` are small presets for CPUs on synthetic data, ``cpu`` the
CPU main job on real Fashion-MNIST (in the paper's regime of peers that fit their data), ``quick``
the old 5-minute CPU protocol, ``fashion`` a real-data protocol for a GPU. Every field can be
overridden; :meth:`Config.validate` raises ``ValueError`` naming the field, the value and what is
allowed.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields

from sdml.data.datasets import DATASETS, SPECS
from sdml.method.losses import check_mutual_weight
from sdml.method.mixup import DEFAULTS, METHODS

DEVICES = ("auto", "cpu", "cuda", "mps")
FUSE = ("auto", "loop", "grouped")
COMPILE = ("auto", "off", "on", "graphs")
SHORTCUTS = ("A", "B")


def _field(default, help: str):
    """A config field whose ``help`` (units included) is what ``--help`` shows for its option."""
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    # --- data
    data: str = _field("cifar100", "cifar100 | cifar10 | fashion-mnist | synthetic")
    data_dir: str = _field("data", "folder of the archives / idx files / synthetic data")
    download: bool = _field(True, "fetch a real dataset's files when they are missing")
    train_per_class: int = _field(0, "train on the first n images of each class; 0 = all")
    test_per_class: int = _field(0, "test on the first n images of each class; 0 = all")
    synthetic_train_per_class: int = _field(500, "images per class in the synthetic train split")
    synthetic_test_per_class: int = _field(100, "images per class in the synthetic test split")
    synthetic_seed: int = _field(0, "the synthetic dataset's own seed (not the run's)")
    augment: bool = _field(True, "random crop (the dataset's zero padding) + horizontal flip")
    # --- superclasses
    superclasses: str = _field("auto", "auto (own, else wordnet) | cifar | wordnet | JSON path")
    wordnet_k: int = _field(0, "WordNet groups; 0 = the dataset's default k")
    # --- mixing
    method: str = _field("superclass-beta", "none | mixup | superclass-choice | superclass-beta | "
                                            "superclass-soft")
    alpha: float = _field(1.0, "plain mixup: lam ~ Beta(alpha, alpha)")
    same_ratio: float = _field(0.5, "superclass-choice, same superclass: lam")
    diff_ratio: float = _field(0.9, "superclass-choice, different: lam = diff_ratio or 1 - diff_ratio")
    same_alpha: float = _field(8.0, "superclass-beta/soft, same superclass: Beta(same_alpha, same_alpha)")
    diff_alpha: float = _field(0.2, "superclass-beta/soft, different: Beta(diff_alpha, diff_alpha)")
    # --- model
    depth: int = _field(32, "CIFAR ResNet depth, 6n + 2")
    width: int = _field(16, "channels of the first stage (then x2, x4)")
    shortcut: str = _field("A", "A: zero-padding identity | B: 1x1 conv projection")
    peers: int = _field(2, "K models trained together")
    temperature: float = _field(1.0, "softmax temperature of the KL term")
    mutual_weight: float = _field(1.0, "weight of the mutual (KL) term: 1 = DML, 0 = independent peers "
                                       "(cross entropy only; peers = 1 allowed)")
    # --- optimisation
    epochs: int = _field(200, "passes over the train split")
    batch_size: int = _field(64, "samples per step; all peers see the same mixed batch")
    lr: float = _field(0.1, "initial learning rate")
    momentum: float = _field(0.9, "Nesterov momentum")
    weight_decay: float = _field(5e-4, "L2 penalty of SGD, on all parameters")
    milestones: tuple[int, ...] = _field((60, 120, 180), "epochs where lr is multiplied by gamma")
    gamma: float = _field(0.1, "lr factor at each milestone")
    eval_batch_size: int = _field(1000, "test samples per forward pass")
    eval_every: int = _field(1, "evaluate (test split, training top-1) every n epochs and at the "
                                "last; the other epochs record training loss only")
    max_steps_per_epoch: int = _field(0, "0 = the whole train split each epoch")
    # --- execution
    seed: int = _field(0, "the run seed: weights, shuffling, augmentation, mixing")
    device: str = _field("auto", "auto | cpu | cuda | mps")
    fuse: str = _field("auto", "loop | grouped | auto (grouped on CUDA, loop on CPU)")
    compile: str = _field("auto", "on | graphs | off | auto (on for CUDA); graphs: on, plus CUDA graphs "
                                  "(mode reduce-overhead) where they hold")
    threads: int = _field(0, "CPU threads for torch; 0 = auto (free cores, <= 8)")
    ddp: bool = _field(False, "one run data-parallel over torchrun's ranks: each takes batch_size / world "
                              "size samples (DistributedDataParallel)")
    sync_bn: bool = _field(False, "with ddp on CUDA: BatchNorm over the global batch (SyncBatchNorm); off: "
                                  "each rank's own slice")
    profile: str = _field("paper", "the preset these values started from (provenance)")

    def __post_init__(self):
        # "auto" and 0 become the dataset's defaults here, so a saved config, a run folder's
        # name and the results all name the superclasses actually used
        spec = SPECS.get(self.data) if isinstance(self.data, str) else None
        if spec is not None and self.superclasses == "auto":
            self.superclasses = spec.superclasses
        if spec is not None and self.wordnet_k == 0:
            self.wordnet_k = spec.wordnet_k

    def mix_params(self) -> dict:
        """The parameters :func:`sdml.method.mixup.sample_ratios` takes for this config's method: the
        fields named like the method's entries in :data:`sdml.method.mixup.DEFAULTS`."""
        return {name: getattr(self, name) for name in DEFAULTS[self.method]}

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d

    def validate(self) -> "Config":
        """Raise ValueError naming the first bad field; return self when all are valid."""
        _choice("data", self.data, DATASETS)
        _choice("method", self.method, METHODS)
        _choice("device", self.device, DEVICES)
        _choice("fuse", self.fuse, FUSE)
        _choice("compile", self.compile, COMPILE)
        _choice("shortcut", self.shortcut, SHORTCUTS)
        for name in ("ddp", "sync_bn"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: {getattr(self, name)!r}; allowed: true, false")
        if self.sync_bn and not self.ddp:
            raise ValueError("sync_bn: true without ddp; allowed: sync_bn with ddp only")
        if not isinstance(self.superclasses, str) or not self.superclasses:
            raise ValueError(f"superclasses: {self.superclasses!r}; allowed: auto, cifar, wordnet or a JSON path")
        if self.superclasses not in ("cifar", "wordnet") and not self.superclasses.endswith(".json"):
            raise ValueError(f"superclasses: {self.superclasses!r}; allowed: auto, cifar, wordnet or "
                             f"a path to a JSON mapping ending in .json")
        spec = SPECS[self.data]
        if self.superclasses == "cifar" and not spec.has_own_superclasses:
            raise ValueError(f"superclasses: 'cifar' means the dataset's own superclasses, and "
                             f"{self.data} has none; allowed: auto, wordnet or a JSON mapping")
        _int("wordnet_k", self.wordnet_k, 2, min(99, spec.num_classes - 1))
        _int("train_per_class", self.train_per_class, 0)
        _int("test_per_class", self.test_per_class, 0)
        if (isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 8
                or (self.depth - 2) % 6):
            raise ValueError(f"depth: {self.depth!r}; allowed: 6n + 2 with n >= 1 (8, 20, 32, 56, 110)")
        _int("width", self.width, 1)
        _int("peers", self.peers, 1)
        _int("epochs", self.epochs, 1, 100_000)  # a bound, so that a typo cannot fill the memory
        _int("batch_size", self.batch_size, 2)
        _int("eval_batch_size", self.eval_batch_size, 1)
        _int("eval_every", self.eval_every, 1, 100_000)
        _int("max_steps_per_epoch", self.max_steps_per_epoch, 0)
        _int("synthetic_train_per_class", self.synthetic_train_per_class, 1)
        _int("synthetic_test_per_class", self.synthetic_test_per_class, 1)
        _int("threads", self.threads, 0)
        _int("seed", self.seed, 0)
        _int("synthetic_seed", self.synthetic_seed, 0)
        for name in ("alpha", "same_alpha", "diff_alpha", "lr", "temperature", "gamma"):
            _positive(name, getattr(self, name))
        for name in ("same_ratio", "diff_ratio", "momentum"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{name}: {value!r}; allowed: a number in [0, 1]")
        if (isinstance(self.weight_decay, bool) or not isinstance(self.weight_decay, (int, float))
                or not math.isfinite(self.weight_decay) or self.weight_decay < 0):
            raise ValueError(f"weight_decay: {self.weight_decay!r}; allowed: a number >= 0")
        check_mutual_weight(self.mutual_weight, self.peers)
        ms = self.milestones
        if (not isinstance(ms, (tuple, list))
                or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in ms)
                or list(ms) != sorted(set(ms))):
            raise ValueError(f"milestones: {self.milestones!r}; allowed: increasing epochs >= 1")
        return self


def _choice(name: str, value, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: {value!r} is not allowed; allowed: {', '.join(allowed)}")


def _int(name: str, value, lo: int, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name}: {value!r}; allowed: an integer {span}")


def _positive(name: str, value) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0
            or not math.isfinite(value)):
        raise ValueError(f"{name}: {value!r}; allowed: a positive finite number")


#: Named presets: overrides of the paper defaults.
PROFILES: dict[str, dict] = {
    # Table 1's protocol: ResNet-32 x 2, CIFAR-100, 200 epochs, batch 64.
    "paper": {},
    # Seconds on a CPU: a tiny ResNet-8 on a small synthetic split.
    "smoke": dict(data="synthetic", depth=8, width=8, epochs=3, batch_size=64, lr=0.05,
                  milestones=(2,), synthetic_train_per_class=40, synthetic_test_per_class=10,
                  train_per_class=300, test_per_class=100, eval_batch_size=500),
    # A few minutes on a CPU: ResNet-8 on a larger synthetic split.
    "demo": dict(data="synthetic", depth=8, width=16, epochs=8, batch_size=64, lr=0.05,
                 milestones=(5, 7), synthetic_train_per_class=100, synthetic_test_per_class=20,
                 eval_batch_size=500),
    # The CPU main job (what `make reproduce` runs without a GPU), in the paper's regime: the
    # no-mixup peers fit their training images (>= 95 % training top-1) and the schedule runs to
    # its end. Real Fashion-MNIST, a fixed balanced subset (1,000 train / 5,000 test images),
    # ResNet-8 x 2 of width 8, no augmentation (mixing is then the only regulariser), 60 epochs
    # of batch 64 with lr 0.1 cut 10x at 30 and 45, evaluated every 6 epochs. Chosen from the
    # sweep in benchmarks/regime_sweep.py (table: benchmarks/regime_sweep.md); its seeds come
    # from notebooks.plan.DEFAULT_SEEDS.
    "cpu": dict(data="fashion-mnist", depth=8, width=8, epochs=60, batch_size=64, lr=0.1,
                milestones=(30, 45), train_per_class=100, test_per_class=500, eval_batch_size=1000,
                eval_every=6, augment=False, superclasses="wordnet", wordnet_k=3),
    # The old 5-minute CPU protocol: 4,000 train / 2,000 test images, crop + flip, 5 epochs. Its
    # peers do not fit their data (about 75 % top-1), so it shows the pipeline, not the method.
    "quick": dict(data="fashion-mnist", depth=8, width=8, epochs=5, batch_size=64, lr=0.05,
                  milestones=(3, 4), train_per_class=400, test_per_class=200, eval_batch_size=500,
                  superclasses="wordnet", wordnet_k=3),
    # Real data on a GPU: the whole of Fashion-MNIST, ResNet-20 x 2, 60 epochs of batch 128 with
    # lr 0.1 cut 10x at epochs 30 and 45 (cosine-free step protocol; converged by epoch ~50).
    "fashion": dict(data="fashion-mnist", depth=20, width=16, epochs=60, batch_size=128, lr=0.1,
                    milestones=(30, 45), eval_batch_size=1000, superclasses="wordnet",
                    wordnet_k=3),
}


def field_names() -> tuple[str, ...]:
    return tuple(f.name for f in fields(Config))


def make_config(profile: str = "paper", **overrides) -> Config:
    """The named profile with ``overrides`` applied, validated."""
    _choice("profile", profile, tuple(PROFILES))
    unknown = sorted(set(overrides) - set(field_names()))
    if unknown:
        raise ValueError(f"{unknown[0]}: not a config field; allowed: {', '.join(field_names())}")
    values = {**PROFILES[profile], **{k: v for k, v in overrides.items() if v is not None}}
    if isinstance(values.get("milestones"), list):
        values["milestones"] = tuple(values["milestones"])
    values["profile"] = profile
    cfg = Config(**values).validate()
    if overrides.get("milestones") is not None and any(m > cfg.epochs for m in cfg.milestones):
        # a profile's own milestones past a shorter --epochs are inert; ones asked for are a slip
        raise ValueError(f"milestones: {list(cfg.milestones)} goes beyond the last epoch "
                         f"({cfg.epochs}), so the lr would never drop there; allowed: epochs "
                         f"1..{cfg.epochs}")
    return cfg


def from_dict(d: dict) -> Config:
    """Rebuild a config saved with :meth:`Config.to_dict` (for resuming runs)."""
    unknown = sorted(set(d) - set(field_names()))
    if unknown:
        raise ValueError(f"{unknown[0]}: not a config field; allowed: {', '.join(field_names())}")
    d = dict(d)
    if isinstance(d.get("milestones"), list):
        d["milestones"] = tuple(d["milestones"])
    return Config(**d).validate()
