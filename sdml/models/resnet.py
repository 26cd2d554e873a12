"""CIFAR ResNets (He et al., 2016) and K peer models held as one module, looped or fused.

``resnet_cifar`` builds the CIFAR variant of "Deep Residual Learning for Image Recognition"
(He, Zhang, Ren, Sun; CVPR 2016, section 4.2): a 3x3 stem conv, three stages of n basic blocks
with w, 2w, 4w channels (the first block of stages 2 and 3 halves the resolution), global average
pooling and a linear head; depth = 6n + 2. Shortcuts that change shape are either option "A"
(identity on a stride-2 subsample, extra channels filled with zeros: no parameters) or option "B"
(1x1 conv + BN projection).

Deep Mutual Learning trains K such peers side by side. ``LoopPeers`` holds K separate networks;
``GroupedPeers`` (in :mod:`sdml.models.fused`) holds them as one network of grouped convolutions
(fewer, larger kernels, meant for GPUs). Both give logits of shape (K, B, C) and export/import
each peer as a plain ``resnet_cifar`` state_dict, so a checkpoint does not depend on which one
trained it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

SHORTCUTS = ("A", "B")
FUSE_MODES = ("loop", "grouped")


def check_resnet_args(depth: int, num_classes: int, width: int, shortcut: str) -> int:
    """Validate the ResNet settings and return n, the number of blocks per stage."""
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth={depth!r}: allowed are integers 6n+2 >= 8 (8, 20, 32, 56, ...)")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r}: allowed is an integer >= 1")
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width={width!r}: allowed is an integer >= 1")
    if shortcut not in SHORTCUTS:
        raise ValueError(f"shortcut={shortcut!r}: allowed are {SHORTCUTS}")
    return (depth - 2) // 6


def check_in_channels(in_channels: int) -> None:
    if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels={in_channels!r}: allowed is an integer >= 1")


def check_k(k: int) -> None:
    """Validate the number of peers."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r}: allowed is an integer >= 1")


class PadShortcut(nn.Module):
    """Option-A shortcut: subsample by ``stride`` and append zero channels, per peer.

    Input channels are peer-major, ``groups`` peers of ``in_planes`` each; every peer's channels
    are padded from ``in_planes`` to ``planes`` (``groups=1`` is the plain single network).
    """

    def __init__(self, in_planes: int, planes: int, stride: int, groups: int = 1):
        super().__init__()
        self.in_planes, self.planes, self.stride, self.groups = in_planes, planes, stride, groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, G*Cin, H', W')
        b, _, h, w = x.shape
        # reshape, not view: a channels_last or strided input is not contiguous
        x = x.reshape(b, self.groups, self.in_planes, h, w)  # (B, G, Cin, H', W')
        x = F.pad(x, (0, 0, 0, 0, 0, self.planes - self.in_planes))  # (B, G, Cout, H', W')
        return x.reshape(b, self.groups * self.planes, h, w)  # (B, G*Cout, H', W')


class BasicBlock(nn.Module):
    """Two 3x3 conv + BN layers and a shortcut; ``groups`` peers side by side (peer-major)."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str, groups: int = 1):
        super().__init__()
        g = groups
        self.conv1 = nn.Conv2d(g * in_planes, g * planes, 3, stride, 1, bias=False, groups=g)
        self.bn1 = nn.BatchNorm2d(g * planes)
        self.conv2 = nn.Conv2d(g * planes, g * planes, 3, 1, 1, bias=False, groups=g)
        self.bn2 = nn.BatchNorm2d(g * planes)
        if stride == 1 and in_planes == planes:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_planes, planes, stride, g)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(g * in_planes, g * planes, 1, stride, bias=False, groups=g),
                nn.BatchNorm2d(g * planes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetTrunk(nn.Module):
    """Stem and three stages of a CIFAR ResNet for ``groups`` peers; the head is up to subclasses.

    The stem is one dense conv from the shared input (3 channels for colour images, 1 for
    grayscale) to ``groups * width`` channels;
    every later layer keeps the peers apart (grouped convs, per-channel BN).
    """

    def __init__(self, depth: int, width: int, shortcut: str, groups: int = 1,
                 num_classes: int = 1, in_channels: int = 3):
        super().__init__()
        n = check_resnet_args(depth, num_classes, width, shortcut)
        check_in_channels(in_channels)
        self.depth, self.width, self.shortcut, self.groups = depth, width, shortcut, groups
        self.in_channels = in_channels
        self.conv1 = nn.Conv2d(in_channels, groups * width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(groups * width)
        in_planes = width
        for stage, planes in enumerate((width, 2 * width, 4 * width)):
            blocks = []
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(BasicBlock(in_planes, planes, stride, shortcut, groups))
                in_planes = planes
            self.add_module(f"layer{stage + 1}", nn.Sequential(*blocks))
        self.feature_dim = 4 * width  # per peer

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features of all peers, peer-major: (B, C_in, H, W) -> (B, groups * 4w)."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return x.mean(dim=(2, 3))


class CifarResNet(ResNetTrunk):
    """One CIFAR ResNet; ``forward(x: (B, C_in, H, W)) -> logits (B, C)``."""

    def __init__(self, depth: int = 32, num_classes: int = 100, width: int = 16,
                 shortcut: str = "A", in_channels: int = 3):
        super().__init__(depth, width, shortcut, groups=1, num_classes=num_classes,
                         in_channels=in_channels)
        self.num_classes = num_classes
        self.fc = nn.Linear(self.feature_dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))  # (B, C)


def init_weights(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """He (Kaiming) normal init, fan-in, for convs; BN to (1, 0); linear heads U(+-1/sqrt(fan_in)).

    Fan-in of a grouped conv equals a single peer's, so the fused layout gets the same
    distribution as separate networks. Returns ``model``.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu",
                                        generator=generator)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / math.sqrt(m.in_features)
                nn.init.uniform_(m.weight, -bound, bound, generator=generator)
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    return model


def resnet_cifar(
    depth: int = 32,
    num_classes: int = 100,
    width: int = 16,
    shortcut: str = "A",
    generator: torch.Generator | None = None,
    in_channels: int = 3,
) -> CifarResNet:
    """Build a CIFAR ResNet of ``depth`` = 6n+2 layers, stage widths (w, 2w, 4w).

    Args:
        depth: 6n + 2 >= 8 (20, 32, 56, 110 are the paper's).
        num_classes: size of the linear head.
        width: channels of the first stage (16 in the paper).
        shortcut: "A" (zero-padding identity, parameter-free) or "B" (1x1 conv + BN projection).
        generator: random source for the initial weights (None: torch's global one, which then
            also feeds the layers' default init; with a generator the global state is untouched).
        in_channels: image channels (3 colour, 1 grayscale).
    """
    with torch.random.fork_rng(devices=[], enabled=generator is not None):
        net = CifarResNet(depth, num_classes, width, shortcut, in_channels)  # default init, overwritten below
    return init_weights(net, generator)


def clone_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached copies of every tensor, so later training does not change an export."""
    return {key: value.detach().clone() for key, value in state.items()}


def check_peer_states(states: list[dict[str, torch.Tensor]], k: int,
                      shapes: dict[str, tuple[int, ...]]) -> None:
    """Raise ValueError unless ``states`` is k state_dicts with exactly these keys and shapes."""
    if len(states) != k:
        raise ValueError(f"states: {len(states)} state_dicts, allowed is exactly k={k}")
    for i, state in enumerate(states):
        if set(state) != set(shapes):
            missing, extra = sorted(set(shapes) - set(state)), sorted(set(state) - set(shapes))
            raise ValueError(f"states[{i}]: keys differ from a peer's; "
                             f"missing {missing}, unexpected {extra}")
        for key, shape in shapes.items():
            if tuple(state[key].shape) != shape:
                raise ValueError(f"states[{i}][{key!r}]: shape {tuple(state[key].shape)}, "
                                 f"allowed is {shape}")


class LoopPeers(nn.Module):
    """K independent ``resnet_cifar`` networks; ``forward(x: (B, C_in, H, W)) -> logits (K, B, C)``."""

    def __init__(self, k: int, generator: torch.Generator | None = None, **resnet_kwargs):
        super().__init__()
        check_k(k)
        self.k = k
        self.peers = nn.ModuleList(
            resnet_cifar(**resnet_kwargs, generator=generator) for _ in range(k))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([peer(x) for peer in self.peers])  # (K, B, C)

    def peer_state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Each peer as a plain ``resnet_cifar`` state_dict (detached copies)."""
        return [clone_state_dict(peer.state_dict()) for peer in self.peers]

    def load_peer_state_dicts(self, states: list[dict[str, torch.Tensor]]) -> None:
        """Load K plain ``resnet_cifar`` state_dicts (same keys and shapes as a peer)."""
        shapes = {key: tuple(v.shape) for key, v in self.peers[0].state_dict().items()}
        check_peer_states(states, self.k, shapes)  # all checked before any peer changes
        for peer, state in zip(self.peers, states):
            peer.load_state_dict(state, strict=True)
