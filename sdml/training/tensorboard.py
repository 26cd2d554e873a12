"""Metrics as TensorBoard event files (``--tensorboard``), beside ``metrics.jsonl``.

Each epoch's row becomes scalars at step ``epoch``: a number under its own name, a per-peer list
as ``<name>/peer<k>`` (from 1). The writer is ``torch.utils.tensorboard``; the ``tensorboard``
package comes with the kit's ``tensorboard`` extra.
"""
from __future__ import annotations

from pathlib import Path

#: The subfolder of a run folder that holds its event files.
FOLDER = "tensorboard"
MISSING = ("tensorboard: the tensorboard package is not installed; install the kit's extra: "
           "pip install -e '.[tensorboard]'")


def scalars(row: dict) -> dict[str, float]:
    """The numeric metrics of one metrics row, flattened (``epoch`` is the step, not a scalar)."""
    out = {}
    for name, value in row.items():
        if name == "epoch" or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            out[name] = float(value)
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value):
            out.update({f"{name}/peer{k}": float(v) for k, v in enumerate(value, 1)})
    return out


class TensorBoardLog:
    """Writes each row it is called with into ``run_dir/tensorboard``; use as ``on_epoch``.

    A missing ``tensorboard`` package is said at once, in one line naming the extra; the folder
    is made only with the first row, after the run has claimed and checked its folder.
    """

    def __init__(self, run_dir: str | Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError(MISSING) from None
        self.folder, self.make, self.writer = Path(run_dir) / FOLDER, SummaryWriter, None

    def __call__(self, row: dict) -> None:
        if self.writer is None:
            self.writer = self.make(log_dir=str(self.folder))
        for name, value in scalars(row).items():
            self.writer.add_scalar(name, value, global_step=row["epoch"])
        self.writer.flush()  # a long run's curves appear as they come

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
