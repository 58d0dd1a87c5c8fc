"""From a task to a published model version: check, train, judge, export, write atomically.

``preflight`` checks everything a run needs (each task's data, a writable repository) before any
training starts, so a run that cannot finish changes nothing.  A trained candidate is then judged
twice: against its bar, and against the version the service serves now (the newest valid one, the
"champion") on the bar's metric.  A candidate that misses its bar (unless ``allow_below_bar``) or
is worse than the champion (unless ``allow_worse``) is reported and not written, so a run never
silently replaces what users get with something worse.  Any failure before the final rename
leaves the repository as it was.
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

from service.manifest import MODEL_FILENAME, Bar, Manifest, Training, sha256_of
from service.repository import InvalidVersion, read_version, version_numbers
from training import plots, repository
from training.data import DatasetNotFound
from training.export import export_onnx
from training.tasks import Settings, Task, Trained

LOSS_PLOT = "loss.png"
# A candidate is "worse" than the champion when it is further from the bar's good side by more
# than this fraction of the bar's threshold: smaller differences are noise of the metric (for
# mnist_mlp about 10 of 10,000 test images; for the seeds' exact fits, float rounding).
CHAMPION_MARGIN = 1e-3


@dataclass(frozen=True)
class Champion:
    """The version the service serves now (the newest valid one) and its value of the bar's metric."""

    version: int
    value: float | None  # None when its manifest does not record the metric


@dataclass(frozen=True)
class Outcome:
    """One line of the run's summary."""

    name: str
    metric: str
    value: float
    bar: str  # e.g. ">= 0.985"
    met: bool
    champion: Champion | None
    worse: bool  # than the champion, on the bar's metric
    seconds: float
    version: int | None  # the version written, None if nothing was written

    @property
    def result(self) -> str:
        problems = ([] if self.met else ["MISSED"]) + (
            [f"worse than served v{self.champion.version}"] if self.worse and self.champion else []
        )
        if not problems:
            return f"met, version {self.version}"
        if self.version is not None:
            return f"{', '.join(problems)}, written anyway as version {self.version}"
        return f"{'REFUSED: ' if self.met else ''}{', '.join(problems)}, not written"

    @property
    def refusal(self) -> str | None:
        """Why a candidate that met its bar was not written: the message for the user."""
        if self.version is not None or not self.met or not self.worse or self.champion is None:
            return None
        return (
            f"{self.name}: {self.metric} {self.value:.6g} is worse than {self.champion.value:.6g} of version "
            f"{self.champion.version}, the version being served; not written (--allow-worse writes it anyway)"
        )


def preflight(tasks: list[Task], settings: Settings, repository_root: Path) -> list[str]:
    """Everything that would stop the run, before it trains anything; empty when all is in place."""
    problems = []
    for task in tasks:
        try:
            task.preflight(settings)
        except DatasetNotFound as error:
            problems.append(f"{task.name}: {error}")
        unwritable = repository.writable_problem(repository_root / task.name)
        if unwritable:
            problems.append(unwritable)  # names the folder; said once for all models it concerns
    return list(dict.fromkeys(problems))


def champion_of(model_dir: Path, metric: str) -> Champion | None:
    """The newest version whose manifest is valid and whose model matches it: what the service serves."""
    for version in reversed(version_numbers(model_dir)):
        try:
            manifest = read_version(model_dir, version).manifest
        except InvalidVersion:
            continue
        return Champion(version, manifest.metrics.get(metric))
    return None


def is_worse(bar: Bar, candidate: float, champion: float) -> bool:
    margin = CHAMPION_MARGIN * abs(bar.threshold)
    if bar.op in ("<", "<="):
        return candidate > champion + margin
    return candidate < champion - margin


def train_and_publish(
    task: Task,
    settings: Settings,
    repository_root: Path,
    keep: int | None = None,
    allow_below_bar: bool = False,
    allow_worse: bool = False,
) -> Outcome:
    started = time.perf_counter()
    trained = task.train(settings)
    seconds = time.perf_counter() - started
    value = trained.metrics[task.bar.metric]
    met = task.bar.met_by(trained.metrics)
    model_dir = repository_root / task.name
    champion = champion_of(model_dir, task.bar.metric)
    worse = champion is not None and champion.value is not None and is_worse(task.bar, value, champion.value)
    version = None
    if (met or allow_below_bar) and (not worse or allow_worse):
        version = publish(task, trained, settings, seconds, model_dir, keep)
    return Outcome(
        name=task.name,
        metric=task.bar.metric,
        value=value,
        bar=f"{task.bar.op} {task.bar.threshold:g}",
        met=met,
        champion=champion,
        worse=worse,
        seconds=time.perf_counter() - started,
        version=version,
    )


def publish(
    task: Task, trained: Trained, settings: Settings, seconds: float, model_dir: Path, keep: int | None = None
) -> int:
    """Export and write ``trained`` as the next version in ``model_dir``; returns the version number."""
    with repository.staging_folder(model_dir) as folder:
        export_onnx(trained.module, trained.example, folder / MODEL_FILENAME, task.input.name, task.output.name)
        loss_plot = plots.loss_curve(trained.losses, trained.held_out_losses, f"{task.name}: loss per epoch")
        figures = {LOSS_PLOT: loss_plot, **trained.figures}
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
    if keep is not None:
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
