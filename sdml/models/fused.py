"""K peer CIFAR ResNets fused into one network of grouped layers; optionally R runs of K peers.

Every tensor is peer-major: a layer with C channels per peer has K*C channels laid out as
[peer 0's C, peer 1's C, ...]. The stem is one dense conv from the shared input to K*w channels;
later convs have ``groups=K``, so no peer sees another's activations; BatchNorm2d over K*C
channels keeps per-channel statistics, which is exactly K separate BNs; the head is a batched
linear map with weight (K, C, 4w). The parameters are therefore the K plain networks' parameters
concatenated, and :meth:`GroupedPeers.peer_state_dicts` / :meth:`load_peer_state_dicts` convert
exactly to and from plain ``resnet_cifar`` state_dicts.

``runs=R`` holds R independent DML runs of K peers each (P = R*K peers, run-major: run 0's K
peers, then run 1's, ...), so that several small runs fill one large GPU. Each run has its own
input: the stem (:class:`RunStem`) is a conv with ``groups=R`` from R*3 channels (run r's images
in channels 3r..3r+2) to P*w channels, whose weight has the same shape (P*w, 3, 3, 3) as the dense
stem; everything after it is the grouped layout with P peers. Every parameter and buffer of such
a network is then the R single-run networks' (``runs=1``) tensors concatenated on dim 0, which is
what :func:`split_runs` and :func:`merge_runs` use (also for optimiser state of the same shapes).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sdml.models.resnet import (ResNetTrunk, check_k, check_peer_states, clone_state_dict,
                                resnet_cifar)

_HEAD_KEYS = ("fc.weight", "fc.bias")  # stacked on a new peer axis; all else concatenated on dim 0
_SHARED_SUFFIX = "num_batches_tracked"  # one counter for the fused BN, copied to every peer


class GroupedLinear(nn.Module):
    """K independent linear maps: (B, K, I) -> (K, B, O) with weight (K, O, I) and bias (K, O)."""

    def __init__(self, k: int, in_features: int, out_features: int):
        super().__init__()
        self.in_features = in_features
        self.weight = nn.Parameter(torch.empty(k, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(k, out_features))
        bound = 1.0 / math.sqrt(in_features)  # as nn.Linear's default
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bki,koi->kbo", x, self.weight) + self.bias[:, None, :]  # (K, B, O)


class RunStem(nn.Conv2d):
    """The stem of R runs: stored as a 3x3 conv with ``groups=R`` from R*3 to R*K*w channels
    (weight (R*K*w, 3, 3, 3)), computed as R dense convs, run r's 3 input channels to its K*w.

    Each run's stem is then the very computation a single run's dense stem does; a grouped conv
    would round its weight gradient differently (by ~1e-7), which training amplifies.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = zip(x.chunk(self.groups, dim=1), self.weight.chunk(self.groups, dim=0))
        return torch.cat([F.conv2d(xr, wr, None, self.stride, self.padding, self.dilation)
                          for xr, wr in parts], dim=1)  # (B, R*K*w, H, W)


def check_runs(runs: int) -> None:
    """Validate the number of runs held in one network."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs={runs!r}: allowed is an integer >= 1")


class GroupedPeers(ResNetTrunk):
    """K CIFAR ResNets as one grouped network; ``forward(x: (B, 3, H, W)) -> logits (K, B, C)``.

    With ``runs=R`` it holds R runs of K peers: ``forward(x: (B, R*3, H, W)) -> (R*K, B, C)``,
    run-major. Initial weights are drawn as R*K plain ``resnet_cifar`` networks from
    ``generator`` in turn, so ``GroupedPeers`` and ``LoopPeers`` built from the same random state
    start identical.
    """

    def __init__(
        self,
        k: int,
        depth: int = 32,
        num_classes: int = 100,
        width: int = 16,
        shortcut: str = "A",
        generator: torch.Generator | None = None,
        runs: int = 1,
        in_channels: int = 3,
    ):
        check_k(k)
        check_runs(runs)
        p = runs * k
        # draw the peers first, in LoopPeers' order, so that even torch's global random state
        # gives both the same weights; the fused layers' own default init is then overwritten
        kwargs = dict(depth=depth, num_classes=num_classes, width=width, shortcut=shortcut,
                      in_channels=in_channels)
        peers = [resnet_cifar(**kwargs, generator=generator).state_dict() for _ in range(p)]
        # the fused layers' default init is overwritten below; with a generator it must not
        # consume torch's global random state either
        with torch.random.fork_rng(devices=[], enabled=generator is not None):
            super().__init__(depth, width, shortcut, groups=p, num_classes=num_classes,
                             in_channels=in_channels)
            if runs > 1:  # each run's own input channels feed that run's K stems only
                self.conv1 = RunStem(in_channels * runs, p * width, 3, 1, 1, bias=False,
                                     groups=runs)
            self.fc = GroupedLinear(p, self.feature_dim, num_classes)
        self.k, self.runs, self.n_peers, self.num_classes = k, runs, p, num_classes
        self.load_peer_state_dicts(peers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.in_channels
        if x.dim() != 4 or x.shape[1] != c * self.runs:
            raise ValueError(f"x: shape {tuple(x.shape)}; expected (B, {c * self.runs}, H, W), "
                             f"{c} channel(s) for each of the {self.runs} runs")
        feats = self.features(x)  # (B, P*F)
        feats = feats.reshape(feats.shape[0], self.n_peers, self.feature_dim)  # (B, P, F)
        return self.fc(feats)  # (P, B, C)

    def peer_state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Each peer as a plain ``resnet_cifar`` state_dict (detached copies), run-major."""
        p = self.n_peers
        states: list[dict[str, torch.Tensor]] = [{} for _ in range(p)]
        for key, value in self.state_dict().items():
            if key in _HEAD_KEYS:
                parts = value.unbind(0)
            elif key.endswith(_SHARED_SUFFIX):
                parts = [value] * p
            else:
                parts = value.chunk(p, dim=0)
            for state, part in zip(states, parts):
                state[key] = part
        return [clone_state_dict(state) for state in states]

    def load_peer_state_dicts(self, states: list[dict[str, torch.Tensor]]) -> None:
        """Load R*K plain ``resnet_cifar`` state_dicts (strict: same keys and shapes as a peer).

        The fused BNs count batches once for all peers, so every peer must carry the same
        ``num_batches_tracked``.
        """
        own = self.state_dict()
        shapes = {key: tuple(part.shape) for key, part in self.peer_state_dicts()[0].items()}
        check_peer_states(states, self.n_peers, shapes)
        fused: dict[str, torch.Tensor] = {}
        for key in own:
            parts = [state[key] for state in states]
            if key in _HEAD_KEYS:
                fused[key] = torch.stack(parts)
            elif key.endswith(_SHARED_SUFFIX):
                if any(int(p) != int(parts[0]) for p in parts):
                    raise ValueError(
                        f"states[*][{key!r}]: got {[int(p) for p in parts]}, "
                        "allowed is one value for all peers"
                    )
                fused[key] = parts[0]
            else:
                fused[key] = torch.cat(parts, dim=0)
        self.load_state_dict(fused, strict=True)


def split_runs(tensor: torch.Tensor, runs: int) -> list[torch.Tensor]:
    """Run r's part of a fused (R runs) parameter, buffer or optimiser state: dim-0 chunk r.

    Detached copies, so a saved part does not drag the whole fused storage along.
    """
    if tensor.dim() == 0 or tensor.shape[0] % runs:
        raise ValueError(f"tensor: shape {tuple(tensor.shape)}; dim 0 must split into runs={runs}")
    return [part.detach().clone() for part in tensor.chunk(runs, dim=0)]


def merge_runs(parts: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of :func:`split_runs`: the R single-run tensors concatenated on dim 0."""
    return torch.cat(parts, dim=0)


def split_optimizer_state(state: dict, runs: int) -> list[dict]:
    """An optimiser ``state_dict`` over a fused network of R runs -> R ``state_dict``\\ s, each
    over that run's own ``runs=1`` network (same parameter order; per-parameter state tensors
    shaped like their parameter, as SGD's momentum buffers, are split as the parameters are)."""
    out = [{"state": {}, "param_groups": [dict(g) for g in state["param_groups"]]}
           for _ in range(runs)]
    for index, entry in state["state"].items():
        split = {key: split_runs(value, runs) if isinstance(value, torch.Tensor) and value.dim()
                 else [value] * runs for key, value in entry.items()}
        for r in range(runs):
            out[r]["state"][index] = {key: parts[r] for key, parts in split.items()}
    return out


def merge_optimizer_states(states: list[dict]) -> dict:
    """Inverse of :func:`split_optimizer_state`: R single-run optimiser states -> the fused one.

    Hyperparameters (``param_groups``) are taken from the first run; the runs of one fused job
    share them.
    """
    indices = set(states[0]["state"])
    for r, state in enumerate(states):
        if set(state["state"]) != indices:
            raise ValueError(f"states[{r}]: optimiser state for parameters "
                             f"{sorted(state['state'])}, run 0 has {sorted(indices)}")
    merged = {}
    for index in sorted(indices):
        entry = {}
        for key, value in states[0]["state"][index].items():
            parts = [state["state"][index][key] for state in states]
            entry[key] = (merge_runs(parts) if isinstance(value, torch.Tensor) and value.dim()
                          else value)
        merged[index] = entry
    return {"state": merged, "param_groups": [dict(g) for g in states[0]["param_groups"]]}


class SharedInput(nn.Module):
    """Feeds one batch to every run of a ``GroupedPeers(runs=R)``: (B, 3, H, W) -> (R*K, B, C).

    For evaluation, where all runs see the same test images.
    """

    def __init__(self, model: GroupedPeers):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nhwc = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
        x = x.repeat(1, self.model.runs, 1, 1)  # (B, R*C_in, H, W)
        if nhwc:  # keep the memory format the caller chose for the convolutions
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)  # (R*K, B, C)
