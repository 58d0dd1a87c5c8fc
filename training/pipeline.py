"""From a task to a published model version: train, judge against the bar, export, write atomically.

A model that misses its bar is reported and not written (unless ``allow_below_bar``), so a bad run
never replaces a working model; any failure before the final rename leaves the repository as it was.
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy
import onnx
import onnxruntime
import torch
import torchvision

from service.manifest import MODEL_FILENAME, Manifest, Training, sha256_of
from training import plots, repository
from training.export import export_onnx
from training.tasks import Settings, Task, Trained

LOSS_PLOT = "loss.png"


@dataclass(frozen=True)
class Outcome:
    """One line of the run's summary."""

    name: str
    metric: str
    value: float
    bar: str  # e.g. ">= 0.985"
    met: bool
    seconds: float
    version: int | None  # the version written, None if nothing was written


def train_and_publish(
    task: Task, settings: Settings, repository_root: Path, keep: int, allow_below_bar: bool = False
) -> Outcome:
    started = time.perf_counter()
    trained = task.train(settings)
    seconds = time.perf_counter() - started
    met = task.bar.met_by(trained.metrics)
    version = None
    if met or allow_below_bar:
        version = publish(task, trained, settings, seconds, repository_root / task.name, keep)
    return Outcome(
        name=task.name,
        metric=task.bar.metric,
        value=trained.metrics[task.bar.metric],
        bar=f"{task.bar.op} {task.bar.threshold:g}",
        met=met,
        seconds=time.perf_counter() - started,
        version=version,
    )


def publish(task: Task, trained: Trained, settings: Settings, seconds: float, model_dir: Path, keep: int) -> int:
    """Export and write ``trained`` as the next version in ``model_dir``; returns the version number."""
    with repository.staging_folder(model_dir) as folder:
        export_onnx(trained.module, trained.example, folder / MODEL_FILENAME, task.input.name, task.output.name)
        figures = {LOSS_PLOT: plots.loss_curve(trained.losses, f"{task.name}: training loss"), **trained.figures}
        for filename, figure in figures.items():
            plots.save(figure, folder / filename)
        manifest = build_manifest(
            task,
            trained,
            settings,
            seconds,
            version=repository.next_version(model_dir),
            sha256=sha256_of(folder / MODEL_FILENAME),
            plots=list(figures),
        )
        version = repository.commit(folder, model_dir, manifest)
    repository.prune(model_dir, keep, protect=version)
    return version


def build_manifest(
    task: Task,
    trained: Trained,
    settings: Settings,
    seconds: float,
    version: int,
    sha256: str,
    plots: list[str],
) -> Manifest:
    return Manifest(
        name=task.name,
        version=version,
        seed_notebook=task.seed_notebook,
        description=trained.description,
        departures=list(task.departures),
        inputs=[task.input],
        outputs=[task.output],
        metrics=trained.metrics,
        bar=task.bar,
        training=Training(
            seed=settings.seed,
            epochs=trained.epochs,
            device=str(settings.device),
            seconds=round(seconds, 3),
            data=trained.data,
            hyperparameters=trained.hyperparameters,
        ),
        libraries=library_versions(),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        sha256=sha256,
        plots=plots,
        verdict=trained.verdict,
    )


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
    }
