"""Random weights for the PyTorch reference networks the converter tests build."""

import math

import torch
from torch import nn


def randomize(module: nn.Module, seed: int = 0) -> nn.Module:
    """``module`` in eval mode with random weights (fan-in scaled), biases, BatchNorm affines and running statistics
    and PReLU slopes, so that every tensor of the state dict matters. Leaf modules of other kinds with a
    ``weight`` parameter (e.g. rosinality's EqualLinear, scaled at run time) get unit normal weights."""
    generator = torch.Generator().manual_seed(seed)

    def fill(tensor, low, high):
        tensor.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)

    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                fill(m.weight, 0.5, 1.5), fill(m.bias, -0.1, 0.1)
                fill(m.running_mean, -0.1, 0.1), fill(m.running_var, 0.5, 1.5)
                m.num_batches_tracked.fill_(7)
            elif isinstance(m, nn.PReLU):
                fill(m.weight, 0.0, 0.5)
            elif isinstance(m, nn.Conv2d | nn.Linear):
                bound = math.sqrt(3.0 / m.weight[0].numel())
                fill(m.weight, -bound, bound)
            elif isinstance(getattr(m, "weight", None), nn.Parameter) and not list(m.children()):
                m.weight.copy_(torch.randn(m.weight.shape, generator=generator))
            else:
                continue
            if getattr(m, "bias", None) is not None and not isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                fill(m.bias, -0.1, 0.1)
    return module.eval()
