"""Networks: CIFAR ResNets (``resnet``), K peers fused into grouped layers (``fused``), and
``peers``, which builds either kind.

Layer 4. May import the layers below (``io``, ``hierarchy``, ``data``, ``method``); in practice
only torch.
"""
