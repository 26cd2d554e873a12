"""Datasets and batches: archive readers (checksum first), the synthetic stand-in, and the
device-resident uint8 batches with whole-batch crop, flip and normalisation.

Layer 2. May import ``sdml.io`` and ``sdml.hierarchy``.
"""
