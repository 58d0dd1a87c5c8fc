"""The one training loop every task uses: epochs of batches, with progress bars and the loss per epoch.

A "batch source" is anything that can be iterated once per epoch and has a length: a list holding
the single full batch of a seed's tiny data set, or ``data.ShuffledBatches`` for MNIST.  For the
seed models one epoch is one gradient step on all their data, as in the notebooks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

import torch
from torch import nn
from tqdm import tqdm

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class BatchSource(Protocol):
    """(inputs, targets) pairs, iterated once per epoch, with a length."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...


def fit(
    model: nn.Module,
    batches: BatchSource,
    loss_function: LossFunction,
    optimiser: torch.optim.Optimizer,
    epochs: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    description: str = "",
) -> list[float]:
    """Train ``model`` in place for ``epochs``; returns the mean training loss of each epoch."""
    losses: list[float] = []
    # disable=None: bars on a terminal, silent when output goes to a file or a pipe.
    with tqdm(range(epochs), desc=description, unit="epoch", disable=None) as progress:
        for _ in progress:
            losses.append(train_epoch(model, batches, loss_function, optimiser, scheduler))
            progress.set_postfix(loss=f"{losses[-1]:.3g}", refresh=False)
    return losses


def train_epoch(
    model: nn.Module,
    batches: BatchSource,
    loss_function: LossFunction,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
) -> float:
    """One pass over ``batches``; returns the mean loss per example, as measured while training."""
    model.train()
    total_loss, examples = None, 0
    many_batches = len(batches) > 1
    for inputs, targets in tqdm(batches, unit="batch", leave=False, disable=None if many_batches else True):
        optimiser.zero_grad(set_to_none=True)
        loss = loss_function(model(inputs), targets)
        loss.backward()
        optimiser.step()
        if scheduler is not None:
            scheduler.step()
        # Accumulated on the device: calling .item() per batch would wait for a GPU every step.
        batch_loss = loss.detach() * len(inputs)
        total_loss = batch_loss if total_loss is None else total_loss + batch_loss
        examples += len(inputs)
    return total_loss.item() / examples
