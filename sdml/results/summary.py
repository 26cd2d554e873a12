"""Results of a profile's runs: the paper's Table 1 beside ours, calibration, superclass errors.

Reading (:func:`load_runs`) is kept apart from the computations, which are pure functions of
tensors and metric rows. :mod:`sdml.results.report` writes ``results.md`` and ``results.csv`` from them.

Definitions used throughout:

- *final*: the test top-1 after the last epoch; *best*: the highest test top-1 over all epochs
  (chosen on the test split itself, so optimistic). Table 1 of the paper does not say which.
- Several seeds: mean ± sample standard deviation (n - 1 in the denominator); one seed: the value.
- ECE (Guo et al., ICML 2017, "On Calibration of Modern Neural Networks"): with the confidence
  c_i = max_k p_ik and M equal-width bins B_m = ((m-1)/M, m/M],
  ``ECE = sum_m |B_m| / N * |acc(B_m) - conf(B_m)|``; M = 15.
- The peers' ensemble: the mean of the K peers' predicted probabilities.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from sdml.training import runs
from sdml.training.config import from_dict, make_config
from sdml.data.datasets import get_spec
from sdml.data.load import reference_superclasses
from sdml.results.metrics import (ECE_BINS, accuracy_per_superclass, ece, ensemble, mean_std,
                                  reliability_bins, within_superclass_error_share)
from sdml.method.mixup import TABLE1_METHODS
from sdml.training.runs import superclasses_name

PAPER_CITATION = ('Table 1 ("quantitative evaluation [%]", top-1 accuracy on the CIFAR-100 test '
                  'split, two ResNet-32 peers trained with DML) of the paper "mixup using '
                  'superclasses for Deep Mutual Learning"')
#: Table 1 of the paper: top-1 accuracy [%] of model 1 and model 2, by method.
PAPER_TABLE1: dict[str, tuple[float, float]] = dict(zip(TABLE1_METHODS, (
    (71.51, 71.46),  # none
    (71.37, 71.08),  # mixup
    (72.23, 71.93),  # superclass-choice
    (73.28, 73.01),  # superclass-beta
), strict=True))
METHOD_LABELS = {
    "none": "no mixup",
    "mixup": "mixup (alpha = 1.0)",
    "superclass-choice": "proposed, selection",
    "superclass-beta": "proposed, Beta distribution",
    "superclass-soft": "WordNet-soft Beta (not in the paper)",
}
#: Config fields that define the experiment of Table 1 (the others do not change what is computed).
PROTOCOL_FIELDS = ("data", "depth", "width", "shortcut", "peers", "epochs", "batch_size", "lr",
                   "momentum", "weight_decay", "milestones", "gamma", "augment",
                   "max_steps_per_epoch", "temperature")


# ----------------------------------------------------------------------------- reading runs

@dataclass(frozen=True)
class Run:
    """One run folder as read from disk."""

    path: Path
    config: dict          # Config.to_dict() of the run
    provenance: dict      # versions, git revision, device
    metrics: list[dict]   # rows of metrics.jsonl
    probs: torch.Tensor | None  # (K, N, C) float32 test probabilities after the last epoch
    y: torch.Tensor | None      # (N,) fine labels
    coarse: torch.Tensor | None  # (N,) the dataset's superclass labels
    class_names: tuple[str, ...] | None = None  # from config.json's superclass record, if any
    dataset: dict | None = None  # config.json's dataset identity (name, sizes, sha256), if any

    @property
    def finished(self) -> bool:
        return (self.probs is not None and bool(self.metrics)
                and self.metrics[-1]["epoch"] >= self.config["epochs"])

    @property
    def label(self) -> str:
        return self.path.name


def load_run(run_dir: str | Path) -> Run:
    """Read ``config.json``, ``metrics.jsonl`` and (when present) ``predictions.pt``."""
    run_dir = Path(run_dir)
    saved = runs.read_record(run_dir)  # a damaged file: one line naming it
    probs = y = coarse = None
    if (run_dir / runs.PREDICTIONS).is_file():
        pred = runs.read_predictions(run_dir)
        probs, y, coarse = pred["probs"].float(), pred["y"].long(), pred["coarse"].long()
    names = (saved.get("superclasses") or {}).get("classes")
    return Run(run_dir, saved["config"], saved.get("provenance", {}), runs.read_metrics(run_dir),
               probs, y, coarse, tuple(names) if names else None, saved.get("dataset"))


def load_runs(run_root: str | Path, methods=None) -> list[Run]:
    """Every run folder directly under ``run_root`` (a folder holding ``config.json``), by name;
    only those of ``methods`` when given."""
    run_root = Path(run_root)
    if not run_root.is_dir():
        raise ValueError(f"run_root: {str(run_root)!r} is not a folder; run notebook 04 first")
    found = [load_run(p) for p in sorted(run_root.iterdir()) if (p / runs.CONFIG).is_file()]
    found = [r for r in found if methods is None or r.config["method"] in methods]
    if not found:
        raise ValueError(f"run_root: no run folder under {str(run_root)!r}"
                         f"{' for methods ' + ', '.join(methods) if methods else ''}; run notebook 04 "
                         f"first (python -m sdml.notebooks run --only 04)")
    check_one_protocol(found, run_root)
    return found


#: What must be equal for runs to share one report: the protocol but the epochs run (a table
#: row says its epochs), the data's subset and generator, and the dataset's recorded identity.
SHARED_FIELDS = tuple(f for f in PROTOCOL_FIELDS if f != "epochs") + (
    "train_per_class", "test_per_class", "synthetic_train_per_class", "synthetic_test_per_class",
    "synthetic_seed")


def protocol_of(run: "Run") -> dict:
    """The fields a run shares with every run of its report (:data:`SHARED_FIELDS`, and the
    dataset's sha256 where ``config.json`` records it)."""
    out = {f: run.config.get(f) for f in SHARED_FIELDS}
    out["dataset sha256"] = (run.dataset or {}).get("sha256")
    return out


def check_one_protocol(run_list: list["Run"], run_root) -> None:
    """One report describes one protocol: raises ValueError naming the runs on each side of the
    first field in which the runs under ``run_root`` differ."""
    keys = [protocol_of(r) for r in run_list]
    for name in keys[0]:
        values = list(dict.fromkeys(str(k[name]) for k in keys))
        if name == "dataset sha256" and "None" in values:
            values.remove("None")  # a record from before identities were kept: nothing to compare
        if len(values) > 1:
            sides = "; ".join(
                f"{v[:12] if name == 'dataset sha256' else v}: "
                + ", ".join(r.label for r, k in zip(run_list, keys) if str(k[name]) == v)
                for v in values)
            raise ValueError(f"run_root: {str(run_root)!r} holds runs of different protocols, "
                             f"which one report would mix ({name} {sides}); allowed: one protocol "
                             f"per run root; move one set into its own folder and give that "
                             f"folder as --runs-root")


def _values(run_list: list[Run], name: str) -> str:
    return ", ".join(str(v) for v in dict.fromkeys(r.config[name] for r in run_list))


def runs_heading(run_list: list[Run]) -> str:
    """What a report's title says of its runs, read from them: ``profile smoke, data synthetic``."""
    return f"profile {_values(run_list, 'profile')}, data {_values(run_list, 'data')}"


def finished_runs(run_list: list[Run]) -> list[Run]:
    """The runs with every epoch and their predictions; ValueError if there is none."""
    done = [r for r in run_list if r.finished]
    if not done:
        raise ValueError(f"runs: none of {', '.join(r.label for r in run_list)} has finished; "
                         f"run notebook 04 to the end first")
    return done


def runs_frame(run_list: list[Run]):
    """DataFrame for display: one row per run with its method, seed, progress and last accuracy."""
    import pandas as pd

    return pd.DataFrame([{
        "run": r.label, "method": r.config["method"], "superclasses": superclass_source(r.config),
        "seed": r.config["seed"], "mutual weight": mutual_weight(r.config), "data": r.config["data"],
        "profile": r.config["profile"],
        "epochs done": r.metrics[-1]["epoch"] if r.metrics else 0, "epochs": r.config["epochs"],
        "finished": r.finished,
        "last test top-1 [%]": " / ".join(f"{a:.2f}" for a in r.metrics[-1]["test_acc"]) if r.metrics else "-",
    } for r in run_list]).set_index("run")


def superclass_source(config: dict) -> str:
    """A run's superclasses: ``cifar``, ``wordnet`` or a JSON mapping's file stem
    (:func:`sdml.training.runs.superclasses_name`)."""
    return superclasses_name(config["superclasses"])


def mix_setting(config: dict) -> tuple:
    """The method's own constants, (name, value) pairs, as :meth:`Config.mix_params` names them."""
    return tuple(sorted(from_dict(config).mix_params().items()))


def paper_setting(method: str) -> tuple:
    """The method's constants as the paper sets them."""
    return mix_setting(make_config("paper", method=method).to_dict())


def setting_text(setting: tuple) -> str:
    """A method's constants as text, e.g. ``same_alpha=8 diff_alpha=0.2`` (``-`` for none)."""
    return " ".join(f"{name}={value:g}" for name, value in setting) or "-"


def row_key(row: dict) -> tuple:
    """The group key of a :func:`summarise` row, as :func:`group_key` gives it (setting as text)."""
    return (row["method"], row["superclasses"], row["data"], row["profile"], row["epochs"],
            row["setting"], row["mutual_weight"])


def text_key(key: tuple) -> tuple:
    """:func:`group_key` with the constants as text, comparable with :func:`row_key`."""
    return (*key[:5], setting_text(key[5]), key[6])


def mutual_weight(config: dict) -> float:
    """The run's weight of the mutual (KL) term; run folders from before the field are DML's 1."""
    return float(config.get("mutual_weight", 1.0))


def group_key(run: "Run") -> tuple:
    """Runs that differ only in their seed (and execution details) share a group:
    (method, superclasses, data, profile, epochs run, the method's constants, mutual weight)."""
    c = run.config
    epochs = run.metrics[-1]["epoch"] if run.metrics else 0
    return (c["method"], superclass_source(c), c["data"], c["profile"], epochs, mix_setting(c),
            mutual_weight(c))


# ----------------------------------------------------------------------------- per run, per group

def reference_of(config: dict):
    """The reference superclasses of a run's dataset (its own, else its default WordNet
    grouping): what its superclass accuracies and errors are read against."""
    return reference_superclasses(get_spec(config["data"]))


def run_summary(run: Run, superclass_of: torch.Tensor | None = None) -> dict[str, list[float]]:
    """Per-run numbers, each a list over [peer 1, ..., peer K, ensemble].

    Accuracies and ECE in %, the error share in %, best epoch as an epoch number.
    """
    sc = reference_of(run.config).of if superclass_of is None else superclass_of
    evaluated = [r for r in run.metrics if "test_acc" in r]  # every eval_every-th epoch, the last
    accs = torch.tensor([r["test_acc"] + [r["ensemble_acc"]] for r in evaluated])  # (E, K+1)
    best, best_idx = accs.max(0).values, accs.argmax(0)  # argmax: the first epoch reaching the best
    out = {"final": accs[-1].tolist(), "best": best.tolist(),
           "best_epoch": [evaluated[i]["epoch"] for i in best_idx.tolist()],
           "superclass_acc": run.metrics[-1]["superclass_acc"] + [run.metrics[-1]["ensemble_superclass_acc"]]}
    if "train_acc" in run.metrics[-1]:  # runs recorded before training top-1 existed lack it
        out["train_acc"] = run.metrics[-1]["train_acc"] + [run.metrics[-1]["ensemble_train_acc"]]
    if run.probs is not None:
        members = list(run.probs) + [ensemble(run.probs)]  # K + 1 of (N, C)
        out["ece"] = [100 * ece(p, run.y) for p in members]
        out["within_superclass_errors"] = [100 * within_superclass_error_share(p.argmax(-1), run.y, sc)
                                           for p in members]
    return out


def member_names(k: int) -> list[str]:
    return [f"model {i + 1}" for i in range(k)] + ["ensemble"]


def summary_frame(run_dirs):
    """:func:`run_summary` of each run folder as one table indexed by (run, member)."""
    import pandas

    frames = {}
    for d in run_dirs:
        run = load_run(d)
        frames[run.label] = pandas.DataFrame(run_summary(run), index=member_names(run.config["peers"]))
    return pandas.concat(frames, names=["run", "member"])


def summarise(run_list: list[Run]) -> list[dict]:
    """Long table: one row per (group, metric, member) with mean, std, n over the group's seeds.

    Only finished runs are used. Columns: method, superclasses, data, profile, epochs, seeds,
    metric, member, mean, std, n, paper (Table 1's value where it has one).
    """
    groups: dict[tuple, list[Run]] = {}
    for run in run_list:
        if run.finished:
            groups.setdefault(group_key(run), []).append(run)
    rows = []
    for key, members in groups.items():
        method, source, data, profile, epochs, setting, weight = key
        sums = [run_summary(r) for r in members]
        k = min(len(s["final"]) for s in sums) - 1
        seeds = " ".join(str(r.config["seed"]) for r in sorted(members, key=lambda r: r.config["seed"]))
        for metric in [m for m in sums[0] if all(m in s for s in sums)]:  # old runs: no train_acc
            for i, member in enumerate(member_names(k)):
                j = i if member != "ensemble" else -1
                mean, std, n = mean_std([s[metric][j] for s in sums])
                paper = (PAPER_TABLE1[method][i] if metric in ("final", "best") and method in PAPER_TABLE1
                         and i < 2 and member != "ensemble" and source == "cifar" and weight == 1
                         and setting == paper_setting(method) else float("nan"))
                rows.append({"method": method, "setting": setting_text(setting),
                             "superclasses": source, "data": data,
                             "profile": profile, "epochs": epochs, "seeds": seeds, "metric": metric,
                             "member": member, "mean": mean, "std": std, "n": n, "paper": paper,
                             "mutual_weight": weight})
    return rows


def protocol_differences(config: dict) -> dict[str, tuple]:
    """Fields where a run's protocol differs from Table 1's: name -> (ours, paper's)."""
    paper = make_config("paper", method=config["method"]).to_dict()
    fields = PROTOCOL_FIELDS + tuple(name for name, _ in mix_setting(config))
    return {f: (config[f], paper[f]) for f in fields if config[f] != paper[f]}


def uniform_error_share(config: dict) -> float:
    """The share [%] of errors inside the true superclass if each class's errors spread
    uniformly over the other classes: mean over classes c of (|S(c)| - 1) / (C - 1)."""
    of = reference_of(config).of
    sizes = torch.bincount(of)[of].double()  # (C,) size of each class's superclass
    return float(100 * ((sizes - 1) / (len(of) - 1)).mean())


def group_label(config: dict) -> str:
    """A group's name in tables and legends: the method, plus the superclass source if not CIFAR's,
    plus ``independent`` (or the weight) when the peers did not learn with DML's KL weight 1."""
    source = superclass_source(config)
    label = config["method"] if source == "cifar" else f"{config['method']} ({source})"
    w = mutual_weight(config)
    return label if w == 1 else f"{label}, independent" if w == 0 else f"{label}, KL weight {w:g}"


def _ordered(run_list: list[Run]) -> list[Run]:
    from sdml.method.mixup import METHODS

    return sorted(run_list, key=lambda r: (METHODS.index(r.config["method"]),
                                           superclass_source(r.config), mutual_weight(r.config),
                                           r.config["seed"]))


def curves_frame(run_list: list[Run]):
    """Long DataFrame of learning curves: group, method, seed, epoch, member, test_acc,
    train_acc (top-1 on un-augmented training images), train_loss; accuracies are NaN on epochs
    that were not evaluated (``eval_every``) and train_acc on runs recorded without it."""
    import pandas as pd

    nan = float("nan")
    rows = []
    for run in _ordered(run_list):
        for m in run.metrics:
            k = len(m["train_loss"])
            test = m["test_acc"] + [m["ensemble_acc"]] if "test_acc" in m else [nan] * (k + 1)
            fit = m["train_acc"] + [m["ensemble_train_acc"]] if "train_acc" in m else [nan] * (k + 1)
            for i, member in enumerate(member_names(k)):
                rows.append({"group": group_label(run.config), "method": run.config["method"],
                             "seed": run.config["seed"], "epoch": m["epoch"], "member": member,
                             "test_acc": test[i], "train_acc": fit[i],
                             "train_loss": m["train_loss"][i] if i < k else nan})
    return pd.DataFrame(rows)


def superclass_accuracy_frame(run_list: list[Run]):
    """Long DataFrame: group, seed, member, superclass, accuracy [%] (finished runs, peers only)."""
    import pandas as pd

    rows = []
    for run in _ordered([r for r in run_list if r.finished]):
        names = reference_of(run.config).superclass_names
        for i, p in enumerate(run.probs):
            acc = accuracy_per_superclass(p.argmax(-1), run.y, run.coarse, len(names))
            rows += [{"group": group_label(run.config), "seed": run.config["seed"],
                      "member": f"model {i + 1}", "superclass": name, "accuracy": float(a)}
                     for name, a in zip(names, acc.tolist())]
    return pd.DataFrame(rows)


def reliability_by_group(run_list: list[Run], n_bins: int = ECE_BINS) -> dict[str, dict]:
    """Reliability bins per group, the peers' predictions of every seed pooled; adds ``ece``."""
    pooled: dict[str, tuple[list, list]] = {}
    for run in _ordered([r for r in run_list if r.finished]):
        probs, ys = pooled.setdefault(group_label(run.config), ([], []))
        probs += list(run.probs)
        ys += [run.y] * run.probs.shape[0]
    out = {}
    for label, (probs, ys) in pooled.items():
        p, y = torch.cat(probs), torch.cat(ys)
        out[label] = {**reliability_bins(p, y, n_bins), "ece": ece(p, y, n_bins)}
    return out
