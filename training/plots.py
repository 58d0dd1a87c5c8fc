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


def save(figure: Figure, path: Path) -> None:
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100, bbox_inches="tight")


def loss_curve(losses: Sequence[float], title: str) -> Figure:
    figure = Figure(figsize=(6, 4))
    axes = figure.subplots()
    values = np.asarray(losses, dtype=float)
    # Log scale shows the many decades a loss falls through; a loss of exactly 0 has no place on it.
    values[values <= 0] = np.nan
    axes.plot(np.arange(1, len(values) + 1), values)
    axes.set_yscale("log")
    axes.set(title=title, xlabel="epoch", ylabel="training loss")
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
