"""Notebook 06's numbers over the runs of a profile: latent scores, projections and attention.

Each function takes runs read back by :func:`load_all` and returns plain tables (DataFrames) or
dicts for the plots in :mod:`sdml.notebooks.analysis_plots`. What depends on one run only is
cached in its folder, keyed by its checkpoint's digest and the settings: ``features.pt``
(:mod:`sdml.results.features`), ``projections.pt`` and ``attention.pt``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from sdml.data.batches import eval_batches
from sdml.io.readback import expect_tensor
from sdml.results import attention, latent
from sdml.results.cache import cached
from sdml.results.features import TrainedRun, load_trained, run_features
from sdml.results.metrics import mean_std
from sdml.results.summary import Run, group_label

PROJECTIONS = "projections.pt"
ATTENTION = "attention.pt"
RELATIONS = {True: "same superclass", False: "different superclasses"}


def _sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def limit_threads(threads: int) -> int:
    """Use ``threads`` CPU threads in torch and in scikit-learn's / numpy's pools; 0: the cores
    free now, as training picks them (:func:`sdml.training.threads.cpu_threads`): on a busy
    machine more threads than free cores wait on each other. Returns the number used."""
    from threadpoolctl import threadpool_limits

    from sdml.training.threads import cpu_threads

    n = cpu_threads(threads)
    torch.set_num_threads(n)
    threadpool_limits(limits=n)
    return n


def load_all(run_list: list[Run], data_dir: str | Path | None = None, device: str = "auto"
             ) -> list[TrainedRun]:
    """The finished runs of ``run_list`` with their peers and test split, ordered by method and
    seed; a dataset shared by several runs is loaded once."""
    from sdml.method.mixup import METHODS
    from sdml.training.train import resolve_device

    dev = resolve_device(device)
    datasets: dict = {}
    done = sorted((r for r in run_list if r.finished),
                  key=lambda r: (METHODS.index(r.config["method"]), r.label))
    if not done:
        raise ValueError("runs: none has finished; run notebook 04 to the end first")
    return [load_trained(r.path, data_dir, dev, datasets) for r in done]


def label(trained: TrainedRun) -> str:
    """The run's group in tables and legends (:func:`sdml.results.summary.group_label`)."""
    return group_label(trained.config.to_dict())


def representatives(trained: list[TrainedRun]) -> list[TrainedRun]:
    """One run per group (the lowest seed), for the pictures."""
    first: dict[str, TrainedRun] = {}
    for t in sorted(trained, key=lambda t: t.config.seed):
        first.setdefault(label(t), t)
    return [t for t in trained if first.get(label(t)) is t]


def test_images(trained: TrainedRun) -> torch.Tensor:
    """(N, C, H, W) the run's normalised test images, on its device."""
    return torch.cat([x for x, _, _ in eval_batches(trained.data, 1000)])


# ----------------------------------------------------------------------------- latent space

def latent_frame(trained: list[TrainedRun]):
    """Long DataFrame: run, group, seed, member (model k, pair), metric, value (test split)."""
    import pandas as pd

    rows = []
    for t in trained:
        feats = run_features(t)
        for member, f in latent.members(feats["features"]).items():
            for metric, value in latent.latent_metrics(f, feats["y"], t.superclasses.of).items():
                rows.append({"run": t.label, "group": label(t), "seed": t.config.seed,
                             "member": member, "metric": metric, "value": value})
    return pd.DataFrame(rows)


def spread_frame(frame, by=("group", "member", "metric"), value: str = "value"):
    """Mean, sample std and number of runs of ``value`` per ``by`` group, in first-seen order."""
    import pandas as pd

    rows = []
    for key, part in frame.groupby(list(by), sort=False):
        mean, std, n = mean_std(part[value].tolist())
        rows.append({**dict(zip(by, key)), "mean": mean, "std": std, "n": n})
    return pd.DataFrame(rows)


def projections(trained: list[TrainedRun], n_points: int = 600, seed: int = 0,
                kinds=latent.PROJECTIONS) -> list[dict]:
    """2D projections of each run's test features (peer 1 and the pair) on a class-balanced
    subsample of about ``n_points``; cached in the run's ``projections.pt``.

    Returns one dict per run: ``run``, ``group``, ``y`` (n,), ``superclass_of``, ``class_names``,
    ``points``: {member: {kind: (n, 2) tensor}}.
    """
    out = []
    for t in trained:
        feats = run_features(t)
        key = {**t.cache_key, "n_points": n_points, "seed": seed, "kinds": list(kinds),
               "sklearn": _sklearn_version()}

        def compute(feats=feats) -> dict:
            index = latent.balanced_subsample(feats["y"], n_points, torch.Generator().manual_seed(seed))
            chosen = {m: f[index] for m, f in latent.members(feats["features"]).items()
                      if m in ("model 1", "pair")}
            return {"index": index, "points": {m: {k: torch.from_numpy(latent.project(f, k, seed)).float()
                                                   for k in kinds} for m, f in chosen.items()}}

        value = cached(t.path / PROJECTIONS, key, compute,
                       lambda v: check_projections(v, len(feats["y"]), list(kinds)))
        out.append({"run": t.label, "group": label(t), "y": feats["y"][value["index"]],
                    "superclass_of": t.superclasses.of, "superclass_names": t.superclasses.superclass_names,
                    "class_names": t.class_names, "points": value["points"]})
    return out


# ----------------------------------------------------------------------------- attention

def examples(trained: list[TrainedRun], preferred=attention.PAPER_EXAMPLES,
             cams=attention.CAMS) -> list[dict]:
    """Each run's maps of the three example mixes (:func:`sdml.results.attention.example_pairs`
    with ``preferred``, chosen from the first run's classes and superclasses, so every run shows
    the same images)."""
    chosen = attention.example_pairs(trained[0].class_names, trained[0].superclasses.of, preferred)
    return [{"run": t.label, "group": label(t), "mean": t.data.mean.cpu(), "std": t.data.std.cpu(),
             "examples": attention.example_maps(t.peers, test_images(t), t.data.test_y,
                                                t.class_names, chosen, cams)}
            for t in trained]


def run_attention(t: TrainedRun, n_pairs: int = 64, seed: int = 0, lams=attention.SUMMARY_LAMS,
                  cams=attention.CAMS) -> dict:
    """One run's half-mix shares (:func:`sdml.results.attention.half_mix_shares`) for every peer
    on ``n_pairs`` test pairs drawn with ``seed``; cached in the run's ``attention.pt``."""
    key = {**t.cache_key, "n_pairs": n_pairs, "seed": seed, "lams": list(lams),
           "cams": list(cams), "n_test": int(t.data.test_y.shape[0])}

    def compute() -> dict:
        gen = torch.Generator().manual_seed(seed)
        i, j, same = attention.sample_pairs(t.data.test_y, t.superclasses.of, n_pairs, gen)
        a_left = torch.rand(len(i), generator=gen) < 0.5
        x = test_images(t)
        shares = torch.stack([attention.half_mix_shares(p, x, t.data.test_y, i, j, a_left, lams, cams)
                              for p in t.peers])  # (K, cams, L, 2, P)
        return {"shares": shares, "same": same}

    return cached(t.path / ATTENTION, key, compute,
                  lambda v: check_attention(v, len(t.peers), len(cams), len(lams)))


def check_projections(value, n_test: int, kinds: list[str]) -> None:
    """Raise ``ValueError`` unless ``value`` is what :func:`projections` caches: ``index`` (n,)
    test indices and ``points`` {member: {kind: (n, 2) finite floats}}."""
    if not isinstance(value, dict) or set(value) != {"index", "points"}:
        raise ValueError("not a dict of 'index' and 'points'")
    index = value["index"]
    expect_tensor(index, "index", (None,), floating=False)
    if len(index) and not bool(((index >= 0) & (index < n_test)).all()):
        raise ValueError(f"'index' holds indices outside 0..{n_test - 1}")
    points = value["points"]
    if not isinstance(points, dict) or not all(isinstance(m, dict) and sorted(m) == sorted(kinds)
                                               for m in points.values()):
        raise ValueError(f"'points' is not {{member: {{kind: points}}}} for the kinds {kinds}")
    for member, by_kind in points.items():
        for kind, p in by_kind.items():
            expect_tensor(p, f"points[{member}][{kind}]", (len(index), 2), floating=True, finite=True)


def check_attention(value, k: int, n_cams: int, n_lams: int) -> None:
    """Raise ``ValueError`` unless ``value`` is what :func:`run_attention` caches: ``shares``
    (K, cams, lams, 2, P) floats in [0, 1] (NaN where a map is all zero) and ``same`` (P,)
    booleans."""
    if not isinstance(value, dict) or set(value) != {"shares", "same"}:
        raise ValueError("not a dict of 'shares' and 'same'")
    shares, same = value["shares"], value["same"]
    expect_tensor(shares, "shares", (k, n_cams, n_lams, 2, None), floating=True)
    if not isinstance(same, torch.Tensor) or same.dtype != torch.bool or same.shape != shares.shape[-1:]:
        raise ValueError(f"'same' is not ({shares.shape[-1]},) booleans")
    if bool(((shares < 0) | (shares > 1)).any()):  # NaN compares false: it passes
        raise ValueError("'shares' holds values outside [0, 1]")


def attention_frame(trained: list[TrainedRun], n_pairs: int = 64, seed: int = 0,
                    lams=attention.SUMMARY_LAMS, cams=attention.CAMS):
    """Long DataFrame: run, group, seed, peer, cam, relation, weight (of the class in the mixed
    image), share (mean share of the class's map on its own half), n (pairs with a map)."""
    import pandas as pd

    rows = []
    for t in trained:
        value = run_attention(t, n_pairs, seed, lams, cams)
        shares, same = value["shares"], value["same"]
        for k in range(shares.shape[0]):
            for c, cam in enumerate(cams):
                for relation in (True, False):
                    pick = same == relation
                    if not pick.any():
                        continue
                    by_weight: dict[float, list] = {}
                    for li, lam in enumerate(lams):  # class a has weight lam, class b 1 - lam
                        for role, weight in ((0, lam), (1, 1 - lam)):
                            by_weight.setdefault(round(weight, 6), []).append(shares[k, c, li, role][pick])
                    for weight, parts in sorted(by_weight.items()):
                        s = torch.cat(parts)
                        s = s[~s.isnan()]
                        rows.append({"run": t.label, "group": label(t), "seed": t.config.seed,
                                     "peer": f"model {k + 1}", "cam": cam,
                                     "relation": RELATIONS[relation], "weight": weight,
                                     "share": float(s.mean()) if len(s) else float("nan"),
                                     "n": int(len(s))})
    return pd.DataFrame(rows)


def attention_spread(frame):
    """Per group, cam, relation and weight: mean, std and n over runs of the peers' mean share."""
    per_run = frame.groupby(["run", "group", "cam", "relation", "weight"], sort=False,
                            as_index=False)["share"].mean()
    return spread_frame(per_run, by=("group", "cam", "relation", "weight"), value="share")
