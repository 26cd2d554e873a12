"""Training: the one validated config and its profiles, the epoch plan and step, the train loop,
several runs as one fused job, run folders, checkpoints and provenance, and the step benchmark.

Layer 5. May import every layer below: ``io``, ``hierarchy``, ``data``, ``method``, ``models``.
"""
