"""Calibrated probabilities: temperature scaling (Guo et al. 2017), its error measure and its plots.

A network trained with cross-entropy is usually over- or under-confident.  Dividing its logits by
one temperature T, fitted on held-out data (never the test set) to minimise the negative
log-likelihood, fixes most of it without changing any prediction.  ``fold_temperature`` puts
1/T into the last linear layer, so the exported graph is unchanged in shape and still ends in a
softmax whose probabilities are the calibrated ones.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

ECE_BINS = 15


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the NLL of softmax(logits / T) on these (held-out) examples."""
    logits, labels = logits.detach().double().cpu(), labels.cpu()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimiser.step(closure)
    return float(log_t.detach().exp())


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    return F.cross_entropy(logits.double() / temperature, labels).item()


def fold_temperature(linear: nn.Linear, temperature: float) -> nn.Linear:
    """A copy of ``linear`` whose outputs are divided by ``temperature``."""
    folded = nn.Linear(linear.in_features, linear.out_features, bias=linear.bias is not None)
    with torch.no_grad():
        folded.weight.copy_(linear.weight / temperature)
        if linear.bias is not None:
            folded.bias.copy_(linear.bias / temperature)
    return folded.to(linear.weight.device)


def _bins(confidence: np.ndarray, bins: int) -> np.ndarray:
    # Bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 goes to bin 0.
    return np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by their size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    which = _bins(confidence, bins)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(error)


def reliability_diagram(sets: dict[str, tuple[np.ndarray, np.ndarray]], title: str, bins: int = ECE_BINS) -> Figure:
    """Accuracy against confidence per bin, one line per (probabilities, labels) set, with its ECE."""
    figure = Figure(figsize=(6, 6))
    axes = figure.subplots()
    axes.plot([0, 1], [0, 1], color="grey", linestyle="dashed", label="perfectly calibrated")
    for name, (probabilities, labels) in sets.items():
        confidence = probabilities.max(axis=1)
        correct = probabilities.argmax(axis=1) == labels
        which = _bins(confidence, bins)
        used = [b for b in range(bins) if (which == b).any()]
        mean_confidence = [confidence[which == b].mean() for b in used]
        accuracy = [correct[which == b].mean() for b in used]
        ece = expected_calibration_error(probabilities, labels, bins)
        axes.plot(mean_confidence, accuracy, marker="o", label=f"{name} (ECE {ece:.2%}, n={len(labels):,})")
    axes.set(
        title=title, xlabel=f"confidence (mean of each of {bins} bins)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1)
    )
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left", fontsize=8)
    return figure


def accuracy_coverage(sets: dict[str, tuple[np.ndarray, np.ndarray]], threshold: float, title: str) -> Figure:
    """Accuracy of the answers kept against the share kept, keeping the most confident first."""
    figure = Figure(figsize=(6, 5))
    axes = figure.subplots()
    for name, (probabilities, labels) in sets.items():
        confidence = probabilities.max(axis=1)
        order = np.argsort(-confidence, kind="stable")
        correct = (probabilities.argmax(axis=1) == labels)[order]
        kept = np.arange(1, len(order) + 1)
        line = axes.plot(kept / len(order), np.cumsum(correct) / kept, label=name)
        at_threshold = int((confidence >= threshold).sum())
        if at_threshold:
            axes.plot(at_threshold / len(order), correct[:at_threshold].mean(), "o", color=line[0].get_color())
    axes.set(
        title=title, xlabel="share of pictures answered (most confident first)", ylabel="accuracy of those answered"
    )
    axes.annotate(
        f"dots: the verdict's 'digit' threshold ({threshold:.2f})", (0.02, 0.02), xycoords="axes fraction", fontsize=8
    )
    axes.grid(True, alpha=0.3)
    axes.legend(loc="lower left", bbox_to_anchor=(0, 0.08), fontsize=8)
    return figure
