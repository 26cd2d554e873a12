"""sdml: superclass-aware mixup for Deep Mutual Learning (a reproduction kit)."""

__version__ = "0.1.0"
