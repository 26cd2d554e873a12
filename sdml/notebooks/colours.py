"""Colours of the figures: one per superclass, told apart and readable as text on white."""
from __future__ import annotations

import numpy as np


def contrast_on_white(colour) -> float:
    """WCAG 2 contrast ratio of ``colour`` against white (1 to 21; 3 is readable for labels)."""
    from matplotlib.colors import to_rgb

    rgb = np.array(to_rgb(colour))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    return 1.05 / (float(linear @ [0.2126, 0.7152, 0.0722]) + 0.05)


def superclass_colours(n: int) -> list:
    """n distinct colours readable as text on white: colorcet's Glasbey set (colours chosen to be
    told apart), keeping those with a contrast of at least 3; beyond them, colours repeat."""
    import colorcet

    readable = [c for c in colorcet.glasbey_dark if contrast_on_white(c) >= 3.0]
    return [readable[i % len(readable)] for i in range(n)]
