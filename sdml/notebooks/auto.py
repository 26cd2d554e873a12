"""``auto`` resolved as ``make reproduce`` resolves it: the profile for this machine, the data for
the profile. The runner, the command line and the notebooks' parameters all resolve it here."""
from __future__ import annotations


def resolve_profile(profile: str, log=print) -> str:
    """``auto``: ``paper`` when a CUDA GPU is present, else ``cpu``; says which and why."""
    if profile != "auto":
        return profile
    import torch

    if torch.cuda.is_available():
        log(f"[sdml] profile auto -> paper: CUDA GPU found ({torch.cuda.get_device_name(0)}); "
            f"Table 1's protocol (2 x ResNet-32, CIFAR-100, 200 epochs)")
        return "paper"
    log("[sdml] profile auto -> cpu: no CUDA GPU (torch.cuda.is_available() is False); the paper "
        "profile (200 epochs of 2 x ResNet-32) needs one, so a small CPU run on real Fashion-MNIST "
        "(a balanced subset, 2 x ResNet-8) instead")
    return "cpu"


def resolve_data(data: str, profile: str) -> str:
    """``auto``: the profile's own dataset (paper: cifar100; cpu, fashion: fashion-mnist; smoke,
    demo: synthetic)."""
    if data != "auto":
        return data
    from sdml.training.config import PROFILES

    return PROFILES[profile].get("data", "cifar100") if profile in PROFILES else "cifar100"
