"""Seconds per MNIST training epoch: the project's loop, a bare in-memory loop, a per-sample DataLoader.

    python bench/train_epoch.py --data-dir ../shared/datasets [--epochs 5] [--batch-size 128]

All variants train the same network (mnist_mlp's Normalize + MLP) with AdamW on the 60,000 training
images in the same process.

- "project loop" is ``training.fit.train_epoch`` over ``training.data.ShuffledBatches``;
- "bare loop" is the least code that does the same work (slice a random permutation of the
  in-memory tensors, step); the ratio of the two is the project's overhead.  Their epochs
  alternate so that a change in machine load hits both alike; the fastest epoch of each is
  compared (load from other processes only ever adds time), the median is shown too;
- "project loop + augmentation + schedule" is what ``python -m training mnist_mlp`` runs per
  epoch (``data.RandomAffine`` distortions and a one-cycle schedule);
- "per-sample DataLoader" is the tutorial pipeline: torchvision's MNIST with ``ToTensor`` and
  ``DataLoader(batch_size, shuffle=True)``; it is slow, so it runs ``--loader-epochs`` (default 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import MNIST

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere without installing

from training import data, networks  # noqa: E402
from training.fit import train_epoch  # noqa: E402


def new_model_and_optimiser() -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = nn.Sequential(networks.Normalize(data.MNIST_MEAN, data.MNIST_STD), networks.MnistMLP())
    return model, torch.optim.AdamW(model.parameters(), lr=1e-3)


def bare_epoch(model: nn.Module, optimiser: torch.optim.Optimizer, images, labels, batch_size: int) -> None:
    model.train()
    order = torch.randperm(len(images))
    for start in range(0, len(images), batch_size):
        chosen = order[start : start + batch_size]
        optimiser.zero_grad(set_to_none=True)
        F.cross_entropy(model(images[chosen]), labels[chosen]).backward()
        optimiser.step()


def timed(epoch: Callable[[], object]) -> float:
    started = time.perf_counter()
    epoch()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MNIST_DATA_DIR", "data")))
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs of each in-memory loop")
    parser.add_argument("--loader-epochs", type=int, default=1, help="timed epochs of the DataLoader pipeline")
    parser.add_argument("--batch-size", type=int, default=128)
    arguments = parser.parse_args()
    size = arguments.batch_size

    train_set = data.load_mnist(arguments.data_dir, train=True)
    images, labels = train_set.images, train_set.labels

    bare_model, bare_optimiser = new_model_and_optimiser()
    project_model, project_optimiser = new_model_and_optimiser()
    batches = data.ShuffledBatches(images, labels, size)
    run_bare = lambda: bare_epoch(bare_model, bare_optimiser, images, labels, size)  # noqa: E731
    run_project = lambda: train_epoch(project_model, batches, F.cross_entropy, project_optimiser)  # noqa: E731
    run_bare(), run_project()  # warm-up: first-touch allocations, lazy initialisation
    bare, project = [], []
    for _ in range(arguments.epochs):
        bare.append(timed(run_bare))
        project.append(timed(run_project))

    augmented_model, augmented_optimiser = new_model_and_optimiser()
    augmented_batches = data.ShuffledBatches(images, labels, size, transform=data.RandomAffine())
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        augmented_optimiser, max_lr=2e-3, total_steps=(arguments.epochs + 1) * len(augmented_batches)
    )
    run_augmented = lambda: train_epoch(  # noqa: E731
        augmented_model, augmented_batches, F.cross_entropy, augmented_optimiser, scheduler
    )
    run_augmented()
    augmented = [timed(run_augmented) for _ in range(arguments.epochs)]

    loader_model, loader_optimiser = new_model_and_optimiser()
    dataset = MNIST(str(arguments.data_dir), train=True, transform=transforms.ToTensor())
    loader = DataLoader(dataset, batch_size=size, shuffle=True)
    run_loader = lambda: train_epoch(loader_model, loader, F.cross_entropy, loader_optimiser)  # noqa: E731
    loader_times = [timed(run_loader) for _ in range(arguments.loader_epochs)]

    bare_best = min(bare)
    rows = [
        ("bare in-memory loop", bare),
        ("project loop (training.fit.train_epoch)", project),
        ("project loop + augmentation + schedule", augmented),
        ("per-sample DataLoader (ToTensor)", loader_times),
    ]
    print(f"MNIST, 60,000 images, batch {size}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'pipeline':42} {'best s':>7} {'x bare':>7} {'median s':>9}  epochs timed")
    for name, seconds in rows:
        best = min(seconds)
        print(f"{name:42} {best:7.2f} {best / bare_best:7.2f} {statistics.median(seconds):9.2f}  {len(seconds)}")


if __name__ == "__main__":
    main()
