"""The checkpoints of a fused job (:mod:`sdml.training.multirun`), committed all or none.

Each run's new checkpoint is first written beside the old one (``checkpoint.next.pt``), then all
are swapped in; :func:`settle_checkpoints` finishes or undoes a commit that a kill interrupted.
Each run's checkpoint is in the single-run format of :func:`sdml.training.runs.save_checkpoint`, so a run
can be resumed alone.
"""
from __future__ import annotations

import os
from pathlib import Path

from sdml.training import runs
from sdml.models.fused import GroupedPeers, merge_optimizer_states, split_optimizer_state
from sdml.io.atomic import atomic_torch_save

#: A run's next checkpoint while a job commits one epoch (gone once the commit is done).
NEXT_CHECKPOINT = "checkpoint.next.pt"


def run_checkpoints(epoch: int, model: GroupedPeers, optimizer) -> list[dict]:
    """Each run's checkpoint in the format of :func:`sdml.training.runs.save_checkpoint` (fuse "grouped")."""
    k, peers = model.k, model.peer_state_dicts()
    opt = split_optimizer_state(optimizer.state_dict(), model.runs)
    return [{"epoch": epoch, "fuse": "grouped", "peers": peers[r * k:(r + 1) * k],
             "optimizer": opt[r]} for r in range(model.runs)]


def write_next(run_dir: Path, checkpoint: dict) -> None:
    atomic_torch_save(checkpoint, Path(run_dir) / NEXT_CHECKPOINT)


def promote(run_dir: Path) -> None:
    os.replace(Path(run_dir) / NEXT_CHECKPOINT, Path(run_dir) / runs.CHECKPOINT)


def save_runs(run_dirs: list[Path], epoch: int, model: GroupedPeers, optimizer) -> None:
    """Checkpoint every run after ``epoch`` epochs, all or none (see :func:`settle_checkpoints`)."""
    for run_dir, checkpoint in zip(run_dirs, run_checkpoints(epoch, model, optimizer)):
        write_next(run_dir, checkpoint)
    for run_dir in run_dirs:
        promote(run_dir)


def settle_checkpoints(run_dirs: list[Path]) -> None:
    """Finish a commit whose next checkpoints were all written (some may be swapped in already),
    or undo one that was cut while they were being written; then no next checkpoint is left."""
    done = [runs.load_checkpoint_epoch(d) for d in run_dirs]
    pending = [runs.read_checkpoint(Path(d) / NEXT_CHECKPOINT, mmap=True)["epoch"]
               if (Path(d) / NEXT_CHECKPOINT).exists() else None for d in run_dirs]
    top = max(done + [p for p in pending if p is not None])
    if all(e == top or (p == top and e + 1 == top) for e, p in zip(done, pending)):
        for d, e in zip(run_dirs, done):
            if e != top:
                promote(d)
    for d in run_dirs:
        (Path(d) / NEXT_CHECKPOINT).unlink(missing_ok=True)


def load_runs(run_dirs: list[Path], model: GroupedPeers, optimizer, device,
              states: list[dict] | None = None) -> int:
    """Restore the job from its runs' checkpoints (or their ``states`` already read and checked);
    returns the number of finished epochs."""
    if states is None:
        states = [runs.read_checkpoint(Path(d) / runs.CHECKPOINT, map_location=device)
                  for d in run_dirs]
    for d, state in zip(run_dirs, states):
        if state["fuse"] != "grouped":
            raise ValueError(f"fuse: {str(d)!r} holds a {state['fuse']!r} checkpoint; a fused job "
                             f"resumes grouped runs only (resume this run alone)")
    model.load_peer_state_dicts([peer for state in states for peer in state["peers"]])
    optimizer.load_state_dict(merge_optimizer_states([state["optimizer"] for state in states]))
    return int(states[0]["epoch"])
