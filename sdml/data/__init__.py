"""Datasets and batches: one declaration per dataset (``spec``, listed in ``datasets``), its
reader (CIFAR python archives, Fashion-MNIST's idx files: checksum first), the synthetic stand-in,
and the device-resident uint8 batches with whole-batch crop, flip and normalisation.

Layer 2. May import ``sdml.io`` and ``sdml.hierarchy``. Inside: ``files`` < ``spec`` < ``idx``,
``cifar``, ``fashion_mnist``, ``synthetic`` < ``datasets`` < ``load``, ``batches``.
"""
