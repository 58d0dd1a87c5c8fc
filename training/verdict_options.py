"""Which "not a digit" detector to use: the options measured side by side, on a smaller training run.

    python -m training.verdict_options --data-dir ../shared/datasets [--train-limit 20000 --epochs 6]

Each detector gives every picture a score (higher: more like a digit).  The threshold is the one
that keeps 99% of held-out MNIST training digits drawn as people send them (the rule the verdict
uses); the table gives, at that threshold, the share refused of the non-digits of kinds training
never saw and of the training kinds (other pictures), and the share kept of the UCI digits of other
writers, with the AUROC of digits (held-out) against unseen non-digits.  Detectors:
- ``msp``: the calibrated maximum probability of the network trained on MNIST alone (no non-digits, no blends);
- ``msp+oe``, ``energy+oe``: the same network trained with outlier exposure on synthetic
  non-digits, scored by its maximum probability or by its energy, logsumexp of the logits
  (Liu et al. 2020);
- ``energy``: the energy of the network trained on MNIST alone;
- ``statistics``: cheap statistics of the prepared 28x28 picture (ink share, mean ink, spread of
  the ink, width/height, strokes), as a distance from those of held-out digits;
- ``autoencoder``: the reconstruction error of a 784-256-32-256-784 autoencoder trained on MNIST.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training import data, evaluate
from training.tasks import MnistTask, Settings

ACCEPTANCE = 0.99


def auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(score of a positive > score of a negative), ties counted half (all pairs: the sets are small)."""
    greater = (positive[:, None] > negative[None, :]).mean()
    ties = (positive[:, None] == negative[None, :]).mean()
    return float(greater + ties / 2)


def statistics(images: np.ndarray) -> np.ndarray:
    """Per picture: ink share, mean ink, ink spread (rows, columns), aspect of the ink box, strokes."""
    rows = []
    for image in images:
        ink = image > 0.3
        share = ink.mean()
        ys, xs = np.nonzero(ink)
        if len(ys) == 0:
            rows.append([0, 0, 0, 0, 0, 0])
            continue
        aspect = (xs.max() - xs.min() + 1) / (ys.max() - ys.min() + 1)
        rows.append([share, image[ink].mean(), ys.std(), xs.std(), aspect, _components(ink)])
    return np.array(rows, dtype=np.float64)


def _components(ink: np.ndarray) -> int:
    """Connected groups of ink pixels (8-neighbourhood), by flood fill."""
    seen = np.zeros_like(ink)
    count = 0
    for start in zip(*np.nonzero(ink), strict=True):
        if seen[start]:
            continue
        count += 1
        stack = [start]
        seen[start] = True
        while stack:
            y, x = stack.pop()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < ink.shape[0] and 0 <= nx < ink.shape[1] and ink[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
    return count


class Autoencoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encode = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 32), nn.ReLU())
        self.decode = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 784), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x)).view_as(x)


def train_autoencoder(images: torch.Tensor, epochs: int) -> Autoencoder:
    model = Autoencoder()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = data.ShuffledBatches(images, images, 128, data.HandwritingDistortions())
    for _ in range(epochs):
        for inputs, _ in batches:
            optimiser.zero_grad()
            F.mse_loss(model(inputs), inputs).backward()
            optimiser.step()
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.verdict_options", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=Path(os.environ.get("MNIST_DATA_DIR", "data")))
    parser.add_argument("--train-limit", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--pictures", type=int, default=1500, help="pictures of each evaluation set")
    arguments = parser.parse_args(argv)
    settings = Settings(
        data_dir=arguments.data_dir, epochs=arguments.epochs, train_limit=arguments.train_limit, test_limit=1000
    )
    spec = MnistTask.input.image

    everything = data.load_mnist(arguments.data_dir, train=True, limit=arguments.train_limit)
    held = len(everything) // 10  # the images MnistTask holds out
    held_digits = (everything.images[-held:, 0] * 255).round().byte().numpy()
    sets = {
        "held-out digits": evaluate.sent_like_people("held", held_digits, everything.labels[-held:].numpy(), seed=1),
        "unseen non-digits": evaluate.nondigit_evaluation().head(arguments.pictures),
        "training-kind non-digits": evaluate.nondigit_training(arguments.pictures, seed=999),
        "UCI digits": evaluate.uci_digits().head(arguments.pictures),
    }
    prepared = {name: evaluate.prepared(pictures, spec)[0] for name, pictures in sets.items()}

    scores: dict[str, dict[str, np.ndarray]] = {}
    for tag, task in [("", MnistTask(nondigit_share=0.0, outlier_weight=0.0, blend_share=0.0)), ("+oe", MnistTask())]:
        print(f"training the classifier{tag or ' without outlier exposure'} ...", file=sys.stderr)
        served = task.train(settings).module
        classifier = served[0]
        for name, images in prepared.items():
            with torch.no_grad():
                logits = classifier(torch.from_numpy(images).unsqueeze(1))
            scores.setdefault(f"msp{tag}", {})[name] = logits.softmax(dim=1).amax(dim=1).numpy()
            scores.setdefault(f"energy{tag}", {})[name] = torch.logsumexp(logits, dim=1).numpy()

    reference = statistics(prepared["held-out digits"])
    mean, spread = reference.mean(axis=0), reference.std(axis=0) + 1e-6
    scores["statistics"] = {
        name: -np.abs((statistics(images) - mean) / spread).max(axis=1) for name, images in prepared.items()
    }

    print("training the autoencoder ...", file=sys.stderr)
    autoencoder = train_autoencoder(everything.images[:-held], arguments.epochs)
    with torch.no_grad():
        scores["autoencoder"] = {
            name: -F.mse_loss(
                autoencoder(torch.from_numpy(x).unsqueeze(1)), torch.from_numpy(x).unsqueeze(1), reduction="none"
            )
            .mean(dim=(1, 2, 3))
            .numpy()
            for name, x in prepared.items()
        }

    print(
        "| detector | unseen non-digits refused | training-kind non-digits refused | UCI digits kept | AUROC held-out digits vs unseen non-digits |"
    )
    print("| --- | --- | --- | --- | --- |")
    for detector, by_set in scores.items():
        threshold = np.quantile(by_set["held-out digits"], 1 - ACCEPTANCE)
        refused = {name: float((values < threshold).mean()) for name, values in by_set.items()}
        area = auroc(by_set["held-out digits"], by_set["unseen non-digits"])
        print(
            f"| {detector} | {refused['unseen non-digits']:.1%} | {refused['training-kind non-digits']:.1%} | "
            f"{1 - refused['UCI digits']:.1%} | {area:.3f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
