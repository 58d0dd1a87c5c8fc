"""The seed notebooks' networks, as PyTorch modules that take a batch of rows (axis 0 is the batch)."""

from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """(x - mean) / std with constants stored in the module, so an exported graph does it itself."""

    def __init__(self, mean: torch.Tensor | float, std: torch.Tensor | float) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MnistMLP(nn.Module):
    """Seed 000's ``Neural``: Flatten, 784-512, ReLU, 512-256, ReLU, 256-10, returning logits.

    The seed ends the stack with Softmax; here the softmax is added only for export
    (``nn.Sequential(classifier, nn.Softmax(dim=1))``) so that training uses cross-entropy on logits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.stack = nn.Sequential(
            nn.Linear(784, 512),
            nn.ReLU(),
            nn.Linear(512, 256),
            nn.ReLU(),
            nn.Linear(256, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stack(self.flatten(x))


class SigmoidMLP(nn.Module):
    """Seed 002's ``MyModel``: 4-5-7-3 with sigmoid between layers and none on the output."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Linear(4, 5)
        self.layer2 = nn.Linear(5, 7)
        self.layer3 = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(torch.sigmoid(self.layer2(torch.sigmoid(self.layer1(x)))))


class ReLUTwoLayer(nn.Module):
    """Seed 003's 2-layer network: W1 (4x3), ReLU, W2 (4x4), no biases, initialised as the seed does."""

    def __init__(self) -> None:
        super().__init__()
        self.layer1 = nn.Linear(3, 4, bias=False)
        self.layer2 = nn.Linear(4, 4, bias=False)
        with torch.no_grad():
            self.layer1.weight.normal_()  # torch.randn((4, 3))
            self.layer2.weight.uniform_()  # torch.rand((4, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer2(torch.relu(self.layer1(x)))


class CubicNet(nn.Module):
    """Seed 004's ``Net`` with m = n = 20, p = 10: Linear 20-10 without bias, sigmoid, Linear 10-20."""

    def __init__(self, m: int = 20, p: int = 10, n: int = 20) -> None:
        super().__init__()
        self.w = nn.Linear(m, p, bias=False)
        self.a_b = nn.Linear(p, n, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.a_b(torch.sigmoid(self.w(x)))


def gaussian_linear(in_features: int, out_features: int, bias: bool) -> nn.Linear:
    """A Linear layer with N(0, 1) weights (and bias), like the seeds' ``torch.randn`` parameters."""
    layer = nn.Linear(in_features, out_features, bias=bias)
    with torch.no_grad():
        for parameter in layer.parameters():
            parameter.normal_()
    return layer


def fold_normalize(normalize: Normalize, linear: nn.Linear) -> nn.Linear:
    """One Linear layer computing ``linear(normalize(x))``, so the served graph takes raw inputs.

    W (x - mean) / std + b  =  (W / std) x + (b - (W / std) . mean)
    """
    folded = nn.Linear(linear.in_features, linear.out_features, bias=True)
    with torch.no_grad():
        weight = linear.weight / normalize.std
        folded.weight.copy_(weight)
        folded.bias.copy_(linear.bias - weight @ normalize.mean)
    return folded.to(linear.weight.device)
