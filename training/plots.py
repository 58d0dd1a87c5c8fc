"""The PNG reports written beside each model version.

Figures are built with matplotlib's object API on the Agg canvas (no pyplot, no display, no global
figure registry), so training runs headless and figures are freed as soon as they are saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

LOG_EPOCHS_ABOVE = 100


def save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100, bbox_inches="tight")


def loss_curve(training: Sequence[float], held_out: Sequence[float], title: str) -> Figure:
    """Loss per epoch: the training loss, and the held-out loss when there is one.

    The y axis is logarithmic when the loss falls through more than a decade; the x axis when the
    run is longer than ``LOG_EPOCHS_ABOVE`` epochs, since the seeds' full-batch fits do nearly all
    of their learning in the first few dozen steps and would otherwise show a long flat line.
    """
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    curves = [("training", training)] + ([("held-out", held_out)] if held_out else [])
    positive = np.concatenate([np.asarray(values, dtype=float) for _, values in curves])
    positive = positive[positive > 0]
    log_loss = positive.size > 0 and positive.max() > 10 * positive.min()
    for label, values in curves:
        values = np.asarray(values, dtype=float)
        if log_loss:
            values[values <= 0] = np.nan  # a loss of exactly 0 has no place on a log axis
        axes.plot(np.arange(1, len(values) + 1), values, label=label)
    if log_loss:
        axes.set_yscale("log")
    if len(training) > LOG_EPOCHS_ABOVE:
        axes.set_xscale("log")
    axes.set(title=title, xlabel="epoch", ylabel="mean loss per example")
    axes.legend(title=None if held_out else "no examples held out")
    axes.grid(True, alpha=0.3)
    return figure


def confusion_matrix(counts: np.ndarray, labels: Sequence[str], title: str) -> Figure:
    """``counts[i, j]``: how many images of class ``labels[i]`` were predicted as ``labels[j]``."""
    figure = Figure(figsize=(7, 6))
    axes = figure.subplots()
    image = axes.imshow(counts, cmap="Blues", norm="log" if counts.max() > 0 else None)
    figure.colorbar(image, ax=axes)
    axes.set(title=title, xlabel="predicted", ylabel="true", xticks=range(len(labels)), yticks=range(len(labels)))
    axes.set_xticklabels(labels)
    axes.set_yticklabels(labels)
    for (row, column), count in np.ndenumerate(counts):
        if count:
            dark = count > counts.max() ** 0.5
            axes.text(column, row, str(count), ha="center", va="center", fontsize=7, color="white" if dark else "black")
    return figure


def image_grid(images: np.ndarray, captions: Sequence[str], title: str, columns: int = 8) -> Figure:
    """Small grayscale images [N, H, W] with a caption under each."""
    rows = max(1, -(-len(images) // columns))
    figure = Figure(figsize=(columns * 1.2, rows * 1.4 + 0.5))
    figure.suptitle(title)
    for index, axes in enumerate(figure.subplots(rows, columns, squeeze=False).flat):
        axes.axis("off")
        if index < len(images):
            axes.imshow(images[index], cmap="gray", vmin=0, vmax=1)
            axes.set_title(captions[index], fontsize=8)
    return figure


def fitted_curve(x: np.ndarray, true: np.ndarray, fitted: np.ndarray, title: str) -> Figure:
    figure = Figure(figsize=(6, 6))
    axes = figure.subplots()
    axes.plot(x, true, "o", label="True function", fillstyle="none")
    axes.plot(x, fitted, label="NN after training")
    axes.set(title=title, xlabel="x", ylabel="y")
    axes.legend()
    return figure
