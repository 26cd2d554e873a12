"""Where a process stands in a ``torchrun`` job: its rank, the world size and its device.

``torchrun`` (``python -m torch.distributed.run``) starts one process per rank and tells each
its place through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, and on a restart
``TORCHELASTIC_RESTART_COUNT``); the kit reads them here and nowhere else. Two uses build on this:
:mod:`sdml.training.spread` (the runs of a job divided among the ranks) and
:mod:`sdml.training.ddp` (one run data-parallel with ``DistributedDataParallel``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch

#: The variables torchrun sets for every worker; all three are needed to place a process.
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class SharedError(ValueError):
    """A bad-input error every rank raises alike (rank 0 found it and told the others): the
    command line prints it on rank 0 only, so the user reads it once."""


@dataclass(frozen=True)
class RankEnv:
    """A worker's place in a torchrun job."""

    rank: int        # 0..world_size-1, over all nodes
    world_size: int  # processes in the job, over all nodes
    local_rank: int  # 0..(processes on this node)-1: picks this node's GPU
    restarts: int    # how often torchrun restarted the workers after a failure (0 at first)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(env, name: str) -> int:
    text = env[name]
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} in the environment is not an integer; it is set by "
                         f"torchrun") from None
    if value < 0:
        raise ValueError(f"{name}: {value} in the environment; allowed: an integer >= 0")
    return value


def torchrun_env(env=None) -> RankEnv | None:
    """The worker's :class:`RankEnv` when started by torchrun, else None."""
    env = os.environ if env is None else env
    present = [name for name in TORCHRUN_VARS if name in env]
    if not present:
        return None
    if len(present) < len(TORCHRUN_VARS):
        missing = [name for name in TORCHRUN_VARS if name not in env]
        raise ValueError(f"{missing[0]}: not set although {present[0]} is; start the command with "
                         f"torchrun, which sets {', '.join(TORCHRUN_VARS)}")
    rank, world, local = (_env_int(env, name) for name in TORCHRUN_VARS)
    if world < 1 or rank >= world:
        raise ValueError(f"RANK: {rank} with WORLD_SIZE {world}; allowed: 0..WORLD_SIZE-1")
    restarts = _env_int(env, "TORCHELASTIC_RESTART_COUNT") if "TORCHELASTIC_RESTART_COUNT" in env else 0
    return RankEnv(rank, world, local, restarts)


def require_torchrun(what: str, env=None) -> RankEnv:
    """The torchrun environment ``what`` needs; a one-line error without one."""
    found = torchrun_env(env)
    if found is None:
        raise ValueError(f"{what}: needs the environment torchrun sets ({', '.join(TORCHRUN_VARS)}); "
                         f"start it as: torchrun --nproc_per_node N -m sdml ...")
    return found


def share(n_runs: int, rank: int, world_size: int) -> list[int]:
    """The runs of rank ``rank``: every ``world_size``-th run, starting at ``rank``.

    Round robin keeps the shares within one run of each other, and rank 0's share is never the
    smallest, so rank 0 (which reports the job) is among the last to finish.
    """
    return list(range(rank, n_runs, world_size))


def rank_device(device_name: str, local_rank: int) -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` when the config asks for CUDA (or ``auto`` finds
    it), else the CPU. On CUDA it also becomes the current device, so that a plain ``"cuda"``
    in the library means this rank's GPU."""
    from sdml.training.train import resolve_device

    device = resolve_device(device_name)
    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise ValueError(f"LOCAL_RANK: {local_rank} but this node has {count} CUDA device(s); "
                         f"allowed: --nproc_per_node at most {count}")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_group(device: torch.device, timeout_s: float = 1800.0) -> bool:
    """Join torchrun's process group (``env://``): NCCL between GPUs, gloo on the CPU.

    Returns whether this call created it (False: the caller's group is used, and kept), for
    :func:`leave_group`. A process should create the group once: creating it again after
    destroying it, under one torchrun store, hung at times on the CPU (gloo).
    """
    import torch.distributed as dist

    if dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                            device_id=device if device.type == "cuda" else None)
    return True


def leave_group(created: bool = True) -> None:
    """Destroy the process group if :func:`init_group` created it."""
    import torch.distributed as dist

    if created and dist.is_initialized():
        dist.destroy_process_group()


def agree(error: str | None) -> None:
    """Every rank learns every rank's verdict; an error becomes a :class:`SharedError` on all
    ranks (the first rank's, printed once), so that no rank goes on alone or waits for one that
    stopped."""
    import torch.distributed as dist

    errors = [None] * dist.get_world_size()
    dist.all_gather_object(errors, error)
    found = [e for e in errors if e is not None]
    if found:
        raise SharedError(found[0])
