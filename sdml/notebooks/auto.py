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
        "profile (200 epochs of 2 x ResNet-32) needs one, so the CPU study on real Fashion-MNIST "
        "instead (1,000 images, 2 x ResNet-8, 60 epochs, peers that fit their data)")
    return "cpu"


def resolve_data(data: str, profile: str) -> str:
    """``auto``: the profile's own dataset (paper: cifar100; cpu, quick, fashion: fashion-mnist;
    smoke, demo: synthetic)."""
    if data != "auto":
        return data
    from sdml.training.config import PROFILES

    return PROFILES[profile].get("data", "cifar100") if profile in PROFILES else "cifar100"


def default_folder(profile: str, data: str) -> str:
    """The runs' and figures' folder name: the profile's, with ``-<data>`` when the data is not the
    profile's own, so that one run root holds one dataset's runs (and one report describes them)."""
    return profile if data == resolve_data("auto", profile) else f"{profile}-{data}"
