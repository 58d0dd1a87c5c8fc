"""The one training loop every task uses: epochs of batches, with progress and the loss per epoch.

A "batch source" is anything that can be iterated once per epoch and has a length: a list holding
the single full batch of a seed's tiny data set, or ``data.ShuffledBatches`` for MNIST.  For the
seed models one epoch is one gradient step on all their data, as in the notebooks.

Progress: bars on a terminal; elsewhere (CI, ``docker logs``, ``kubectl logs``) a plain line per
epoch, at most one a second, so a long run never goes quiet.  A task may hand ``fit`` a
``HeldOut`` set, whose loss is then measured after every epoch, and a ``Convergence`` rule that
ends training once the loss has stopped falling.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import torch
from torch import nn
from tqdm import tqdm

LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

# Without a terminal, progress lines come at most this often (and always for the last epoch).
PLAIN_PROGRESS_SECONDS = 1.0


class BatchSource(Protocol):
    """(inputs, targets) pairs, iterated once per epoch, with a length."""

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...

    def __len__(self) -> int: ...


@dataclass
class HeldOut:
    """Examples kept out of training; ``fit`` appends their mean loss to ``losses`` after each epoch."""

    inputs: torch.Tensor
    targets: torch.Tensor
    chunk_size: int = 2000
    losses: list[float] = field(default_factory=list)

    def measure(self, model: nn.Module, loss_function: LossFunction) -> float:
        model.eval()
        total = 0.0
        with torch.no_grad():
            for inputs, targets in zip(self.inputs.split(self.chunk_size), self.targets.split(self.chunk_size)):
                total += loss_function(model(inputs), targets).item() * len(inputs)
        self.losses.append(total / len(self.inputs))
        return self.losses[-1]


@dataclass(frozen=True)
class Convergence:
    """Stop once the loss fell by less than ``relative_change`` over the last ``window`` epochs, or hit 0.

    For the seeds' full-batch fits, which reach the optimum long before their step budget: the
    steps after it change nothing but fill the loss plot with a flat line.
    """

    window: int = 50
    relative_change: float = 1e-6

    def reached(self, losses: list[float]) -> bool:
        if losses and losses[-1] == 0.0:
            return True
        if len(losses) <= self.window:
            return False
        # The best loss, not the last: momentum makes the loss oscillate on its way down.
        best_before = min(losses[: -self.window])
        return best_before - min(losses[-self.window :]) <= self.relative_change * best_before


def fit(
    model: nn.Module,
    batches: BatchSource,
    loss_function: LossFunction,
    optimiser: torch.optim.Optimizer,
    epochs: int,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    description: str = "",
    held_out: HeldOut | None = None,
    convergence: Convergence | None = None,
) -> list[float]:
    """Train ``model`` in place for up to ``epochs``; returns the mean training loss of each epoch."""
    losses: list[float] = []
    bars = sys.stderr.isatty()
    started = last_line = time.monotonic()
    with tqdm(range(1, epochs + 1), desc=description, unit="epoch", disable=not bars) as progress:
        for epoch in progress:
            losses.append(train_epoch(model, batches, loss_function, optimiser, scheduler, bars))
            status = f"loss {losses[-1]:.4g}"
            if held_out is not None:
                status += f", held-out loss {held_out.measure(model, loss_function):.4g}"
            converged = convergence is not None and convergence.reached(losses)
            if bars:
                progress.set_postfix_str(status, refresh=False)
            elif epoch in (1, epochs) or converged or time.monotonic() - last_line >= PLAIN_PROGRESS_SECONDS:
                last_line = time.monotonic()
                ending = ", converged" if converged and epoch < epochs else ""
                print(f"{description}: epoch {epoch}/{epochs}, {status}, {last_line - started:.0f} s{ending}",
                      file=sys.stderr, flush=True)
            if converged:
                break
    return losses


def train_epoch(
    model: nn.Module,
    batches: BatchSource,
    loss_function: LossFunction,
    optimiser: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    bars: bool = False,
) -> float:
    """One pass over ``batches``; returns the mean loss per example, as measured while training."""
    model.train()
    total_loss, examples = None, 0
    many_batches = len(batches) > 1
    for inputs, targets in tqdm(batches, unit="batch", leave=False, disable=not (bars and many_batches)):
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
