"""How superclasses shape a latent space: projections and cluster scores of penultimate features.

Pure functions of a feature matrix (N, F), its fine labels (N,) and a superclass id per class:

- silhouettes (Rousseeuw, 1987; ``sklearn.metrics.silhouette_score``, Euclidean): of the
  superclasses over all samples, and of the classes inside each superclass (the mean over
  superclasses with at least two classes present);
- the sibling ratio: the mean Euclidean distance between the centroids of two classes of one
  superclass, over the mean distance between centroids of classes of different superclasses
  (below 1: siblings sit closer than unrelated classes);
- 2D projections: PCA and t-SNE (van der Maaten and Hinton, 2008) from scikit-learn.

Every score is invariant to a global scale of the features, so methods whose features differ in
norm compare fairly.
"""
from __future__ import annotations

import math

import numpy as np
import torch

PROJECTIONS = ("pca", "tsne")
TSNE_ITERATIONS = 500  # half scikit-learn's default: the layout of a few hundred points settles
METRICS = ("superclass_silhouette", "within_superclass_silhouette", "sibling_ratio")
METRIC_LABELS = {
    "superclass_silhouette": "silhouette of superclasses",
    "within_superclass_silhouette": "silhouette of classes inside a superclass",
    "sibling_ratio": "sibling / non-sibling centroid distance",
}


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def class_centroids(features: torch.Tensor, y: torch.Tensor, num_classes: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature of each class present: ((C', F) float64 centroids, (C',) their labels)."""
    present = torch.unique(y)
    if int(present.max()) >= num_classes or int(present.min()) < 0:
        raise ValueError(f"y: labels {int(present.min())}..{int(present.max())}; allowed: "
                         f"0..{num_classes - 1} ({num_classes} classes)")
    feats = features.double()
    cents = torch.stack([feats[y == c].mean(0) for c in present.tolist()])
    return cents, present


def sibling_ratio(features: torch.Tensor, y: torch.Tensor, superclass_of: torch.Tensor) -> float:
    """mean ||mu_a - mu_b|| over sibling class pairs / the same mean over non-sibling pairs.

    NaN when there is no pair of one kind among the classes present.
    """
    cents, labels = class_centroids(features, y, len(superclass_of))
    dist = torch.cdist(cents, cents)  # (C', C')
    sc = superclass_of.to(labels.device)[labels]
    upper = torch.triu(torch.ones_like(dist, dtype=torch.bool), diagonal=1)
    same = (sc[:, None] == sc[None, :]) & upper
    other = (sc[:, None] != sc[None, :]) & upper
    if not same.any() or not other.any():
        return math.nan
    return float(dist[same].mean() / dist[other].mean())


def superclass_silhouette(features: torch.Tensor, y: torch.Tensor,
                          superclass_of: torch.Tensor) -> float:
    """Mean silhouette of the samples with their superclass as cluster label (NaN if < 2 present)."""
    from sklearn.metrics import silhouette_score

    labels = superclass_of.to(y.device)[y]
    if not 2 <= len(torch.unique(labels)) < len(labels):
        return math.nan
    return float(silhouette_score(_numpy(features), _numpy(labels)))


def within_superclass_silhouette(features: torch.Tensor, y: torch.Tensor,
                                 superclass_of: torch.Tensor) -> float:
    """Silhouette of the classes computed inside each superclass, averaged over the superclasses
    with at least two classes present (NaN if there is none)."""
    from sklearn.metrics import silhouette_score

    sc = superclass_of.to(y.device)[y]
    scores = []
    for s in torch.unique(sc).tolist():
        inside = sc == s
        classes = torch.unique(y[inside])
        if 2 <= len(classes) < int(inside.sum()):
            scores.append(silhouette_score(_numpy(features[inside]), _numpy(y[inside])))
    return float(np.mean(scores)) if scores else math.nan


def latent_metrics(features: torch.Tensor, y: torch.Tensor, superclass_of: torch.Tensor
                   ) -> dict[str, float]:
    """The three scores of :data:`METRICS` for one feature matrix."""
    return {"superclass_silhouette": superclass_silhouette(features, y, superclass_of),
            "within_superclass_silhouette": within_superclass_silhouette(features, y, superclass_of),
            "sibling_ratio": sibling_ratio(features, y, superclass_of)}


def members(features: torch.Tensor) -> dict[str, torch.Tensor]:
    """A run's (K, N, F) features as what is scored: each peer, and the peers' pair (their
    features concatenated, (N, K*F): the representation their ensemble reads)."""
    out = {f"model {k + 1}": features[k] for k in range(features.shape[0])}
    out["pair"] = features.permute(1, 0, 2).reshape(features.shape[1], -1)
    return out


def balanced_subsample(y: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of about ``n`` samples, an equal number per class present (at least one each),
    drawn without replacement with ``generator``; sorted."""
    classes = torch.unique(y)
    per = max(1, n // len(classes))
    picks = []
    for c in classes.tolist():
        where = torch.nonzero(y == c).flatten()
        order = torch.randperm(len(where), generator=generator)[:per]
        picks.append(where[order])
    return torch.cat(picks).sort().values


def project(features: torch.Tensor, how: str, seed: int = 0) -> np.ndarray:
    """(N, 2) projection of (N, F) features: ``pca`` or ``tsne`` (initialised by PCA, perplexity
    30 or less for few points, :data:`TSNE_ITERATIONS` steps), both from scikit-learn, random
    state ``seed``."""
    x = _numpy(features)
    if how == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(x)
    if how == "tsne":
        from sklearn.manifold import TSNE

        perplexity = min(30.0, max(2.0, (len(x) - 1) / 3))
        return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed,
                    learning_rate="auto", max_iter=TSNE_ITERATIONS).fit_transform(x)
    raise ValueError(f"projection: {how!r}; allowed: {', '.join(PROJECTIONS)}")
