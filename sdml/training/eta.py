"""How long is left: a run's or a plan's remaining time, from the units (epochs) measured so far.

The estimate assumes the remaining units take as long as the finished ones did on average; it is
said as an ETA beside each epoch's line, for the run (:func:`sdml.training.train.train`) and, in
the notebook runner, for every training run of the plan (:class:`PlanClock`).
"""
from __future__ import annotations

import time


def remaining_seconds(elapsed_s: float, done: int, total: int) -> float | None:
    """Seconds left for ``total - done`` more units at the mean pace of the ``done`` ones
    (``elapsed_s`` in all); ``None`` before the first unit has finished."""
    if done <= 0:
        return None
    return max(total - done, 0) * elapsed_s / done


def duration_text(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m} min {s:02d} s"
    h, m = divmod(m, 60)
    return f"{h} h {m:02d} min"


def eta_note(what: str, elapsed_s: float, done: int, total: int) -> str:
    """`` | ETA <what> 3 min 05 s`` while units remain, else ``""``."""
    left = remaining_seconds(elapsed_s, done, total)
    if left is None or done >= total:
        return ""
    return f" | ETA {what} {duration_text(left)}"


class PlanClock:
    """The ETA of a plan's training: ``total`` run-epochs, timed from the first one's start."""

    def __init__(self, total: int, clock=time.perf_counter):
        self.total, self.done, self.clock, self.start = total, 0, clock, None

    def begin(self) -> None:
        """Training is about to start (the first call counts; later ones are ignored)."""
        if self.start is None:
            self.start = self.clock()

    def tick(self) -> str:
        """One more run-epoch finished; returns the plan's ETA note."""
        self.begin()
        self.done += 1
        return eta_note("plan", self.clock() - self.start, self.done, self.total)
