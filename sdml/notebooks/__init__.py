"""Notebook support: figures, the mixing-preview widget, the notebooks' parameters, and the
headless runner (``python -m sdml.notebooks run``).

Layer 7. May import ``results`` and every layer below it; nothing below imports it.
"""
