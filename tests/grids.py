"""Grid positions shared by the model and loss tests."""

import torch


def grid_pos(*shape):
    """Row-major points of a tensor-product grid on [0, 1]^d, [1, N, d]."""
    axes = torch.meshgrid(*(torch.linspace(0, 1, n) for n in shape), indexing="ij")
    return torch.stack(axes, -1).reshape(1, -1, len(shape))
