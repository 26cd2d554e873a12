"""Markdown pieces shared by the reports (``results.md``, ``analysis.md``)."""
from __future__ import annotations


def table(header: list[str], body: list[list[str]]) -> str:
    """A pipe table: one header row, its rule, one line per row of ``body``."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in body])


def machine_text(provenance: dict) -> str:
    """The machine a run's provenance names: its GPU, else the CPU's platform."""
    return provenance.get("gpu") or f"CPU only ({provenance.get('platform', 'unknown platform')})"
