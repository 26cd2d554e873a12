"""K peer CIFAR ResNets fused into one network of grouped layers.

Every tensor is peer-major: a layer with C channels per peer has K*C channels laid out as
[peer 0's C, peer 1's C, ...]. The stem is one dense conv from the shared input to K*w channels;
later convs have ``groups=K``, so no peer sees another's activations; BatchNorm2d over K*C
channels keeps per-channel statistics, which is exactly K separate BNs; the head is a batched
linear map with weight (K, C, 4w). The parameters are therefore the K plain networks' parameters
concatenated, and :meth:`GroupedPeers.peer_state_dicts` / :meth:`load_peer_state_dicts` convert
exactly to and from plain ``resnet_cifar`` state_dicts.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .models import ResNetTrunk, check_k, check_peer_states, clone_state_dict, resnet_cifar

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


class GroupedPeers(ResNetTrunk):
    """K CIFAR ResNets as one grouped network; ``forward(x: (B, 3, H, W)) -> logits (K, B, C)``.

    Initial weights are drawn as K plain ``resnet_cifar`` networks from ``generator`` in turn, so
    ``GroupedPeers`` and ``LoopPeers`` built from the same random state start identical.
    """

    def __init__(
        self,
        k: int,
        depth: int = 32,
        num_classes: int = 100,
        width: int = 16,
        shortcut: str = "A",
        generator: torch.Generator | None = None,
    ):
        check_k(k)
        # draw the peers first, in LoopPeers' order, so that even torch's global random state
        # gives both the same weights; the fused layers' own default init is then overwritten
        kwargs = dict(depth=depth, num_classes=num_classes, width=width, shortcut=shortcut)
        peers = [resnet_cifar(**kwargs, generator=generator).state_dict() for _ in range(k)]
        super().__init__(depth, width, shortcut, groups=k, num_classes=num_classes)
        self.k, self.num_classes = k, num_classes
        self.fc = GroupedLinear(k, self.feature_dim, num_classes)
        self.load_peer_state_dicts(peers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.features(x)  # (B, K*F)
        feats = feats.reshape(feats.shape[0], self.k, self.feature_dim)  # (B, K, F)
        return self.fc(feats)  # (K, B, C)

    def peer_state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Each peer as a plain ``resnet_cifar`` state_dict (detached copies)."""
        states: list[dict[str, torch.Tensor]] = [{} for _ in range(self.k)]
        for key, value in self.state_dict().items():
            if key in _HEAD_KEYS:
                parts = value.unbind(0)
            elif key.endswith(_SHARED_SUFFIX):
                parts = [value] * self.k
            else:
                parts = value.chunk(self.k, dim=0)
            for state, part in zip(states, parts):
                state[key] = part
        return [clone_state_dict(state) for state in states]

    def load_peer_state_dicts(self, states: list[dict[str, torch.Tensor]]) -> None:
        """Load K plain ``resnet_cifar`` state_dicts (strict: same keys and shapes as a peer).

        The fused BNs count batches once for all peers, so every peer must carry the same
        ``num_batches_tracked``.
        """
        own = self.state_dict()
        shapes = {key: tuple(part.shape) for key, part in self.peer_state_dicts()[0].items()}
        check_peer_states(states, self.k, shapes)
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
