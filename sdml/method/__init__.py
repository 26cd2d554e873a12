"""The paper's method as pure functions: mixing ratios (mixup and the superclass variants),
mixed images and targets, and the DML losses. Tensors in, tensors out, explicit generators.

Layer 3. May import ``sdml.io``, ``sdml.hierarchy`` and ``sdml.data``.
"""
