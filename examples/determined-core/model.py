"""The digits data and model every stage trains: scikit-learn's bundled 8x8 digits, an MLP."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import nn

torch.set_num_threads(1)


def data(rank: int = 0, size: int = 1) -> tuple[torch.Tensor, ...]:
    """(train x, train y, validation x, validation y); training rows sharded by rank."""
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    y = torch.tensor(digits.target, dtype=torch.long)
    split = int(len(x) * 0.8)
    return x[:split][rank::size], y[:split][rank::size], x[split:], y[split:]


def make_model(width: int = 32) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, 10))


def batch(x: torch.Tensor, y: torch.Tensor, step: int, size: int) -> tuple[torch.Tensor, ...]:
    """The step-th batch of a fixed order, so that a resumed run sees what an unbroken one does."""
    start = (step * size) % max(1, len(x) - size)
    return x[start:start + size], y[start:start + size]


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    with torch.no_grad():
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y).item()
        accuracy = (logits.argmax(1) == y).float().mean().item()
    return {"validation_loss": loss, "accuracy": accuracy}
