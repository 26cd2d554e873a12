"""K peer networks as one module, looped or fused: the one place that knows both kinds."""
from __future__ import annotations

import torch
from torch import nn

from sdml.models.fused import GroupedPeers
from sdml.models.resnet import FUSE_MODES, LoopPeers


def build_peers(k: int, fuse: str = "loop", generator: torch.Generator | None = None,
                **resnet_kwargs) -> nn.Module:
    """K peer ResNets as one module: "loop" (separate networks) or "grouped" (fused layers).

    With the same ``generator`` state both give the same initial weights, so the choice changes
    speed only, not the result (up to float rounding).
    """
    if fuse == "loop":
        return LoopPeers(k, generator=generator, **resnet_kwargs)
    if fuse == "grouped":
        return GroupedPeers(k, generator=generator, **resnet_kwargs)
    raise ValueError(f"fuse={fuse!r}: allowed are {FUSE_MODES}")
