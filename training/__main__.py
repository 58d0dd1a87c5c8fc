"""Train the seed models and publish them to the model repository.

    python -m training                      # all seven models into ./models (or $MODEL_REPOSITORY)
    python -m training mnist_mlp --epochs 5 --data-dir /path/with/MNIST/raw
    train-models --models sigmoid_mlp cubic_approximator --repository /tmp/models

Before training anything the run checks what it needs (each model's data, a writable repository)
and stops with the list of problems if something is missing, so a failed run changes nothing.

Exit status: 0 when every chosen model was trained and written; 1 when anything was missing before
the start, or a model failed (missed its bar, was worse than the version being served, failed its
export check), with the reason in the summary; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from training.data import DatasetNotFound
from training.export import ParityError
from training.pipeline import Outcome, preflight, train_and_publish
from training.tasks import TASKS, Settings

# Failures that belong in the summary; anything else is a bug and should show its traceback.
EXPECTED_FAILURES = (DatasetNotFound, ParityError)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train the seed notebooks' models, export them to ONNX and write them as new versions "
        "of the model repository.",
    )
    parser.add_argument("names", nargs="*", metavar="MODEL", help=f"models to train (default: all): {', '.join(TASKS)}")
    parser.add_argument("--models", nargs="+", default=[], metavar="MODEL", help="same as the positional names")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MNIST_DATA_DIR", "data")),
        help="folder containing MNIST/raw (default: $MNIST_DATA_DIR, else ./data)",
    )
    parser.add_argument("--download", action="store_true", help="let torchvision download MNIST if it is missing")
    parser.add_argument(
        "--epochs",
        type=_positive,
        help="override every chosen model's number of epochs (the small models stop sooner once converged)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--device", default="auto", help="torch device, e.g. cpu or cuda:0 (default: CUDA if available)")
    parser.add_argument(
        "--repository",
        type=Path,
        default=Path(os.environ.get("MODEL_REPOSITORY", "models")),
        help="model repository to write into (default: $MODEL_REPOSITORY, else ./models)",
    )
    parser.add_argument(
        "--keep",
        type=_positive,
        metavar="N",
        help="delete all but the newest N versions of each model trained, except versions git tracks "
        "(default: keep every version)",
    )
    parser.add_argument("--train-limit", type=_positive, metavar="N", help="train on the first N MNIST images only")
    parser.add_argument("--test-limit", type=_positive, metavar="N", help="evaluate on the first N MNIST test images only")
    parser.add_argument(
        "--allow-below-bar",
        action="store_true",
        help="write a model even if it misses its bar (for smoke runs on small data)",
    )
    parser.add_argument(
        "--allow-worse",
        action="store_true",
        help="write a model even if it is worse on its bar's metric than the version being served",
    )
    arguments = parser.parse_args(argv)
    chosen = list(dict.fromkeys(arguments.names + arguments.models)) or list(TASKS)
    unknown = [name for name in chosen if name not in TASKS]
    if unknown:
        parser.error(f"unknown model(s): {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    arguments.chosen = chosen
    if arguments.device == "auto":
        arguments.device = "cuda" if torch.cuda.is_available() else "cpu"
    elif arguments.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {arguments.device}: CUDA is not available here (torch {torch.__version__})")
    return arguments


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    settings = Settings(
        data_dir=arguments.data_dir,
        download=arguments.download,
        epochs=arguments.epochs,
        seed=arguments.seed,
        device=arguments.device,
        train_limit=arguments.train_limit,
        test_limit=arguments.test_limit,
    )
    problems = preflight([TASKS[name] for name in arguments.chosen], settings, arguments.repository)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        print("Nothing was trained and the repository is unchanged.", file=sys.stderr)
        return 1
    print(f"Training {', '.join(arguments.chosen)} on {settings.device}; repository {arguments.repository.resolve()}")
    outcomes: list[Outcome] = []
    failed: list[str] = []
    for name in arguments.chosen:
        try:
            outcomes.append(
                train_and_publish(
                    TASKS[name], settings, arguments.repository, arguments.keep,
                    allow_below_bar=arguments.allow_below_bar, allow_worse=arguments.allow_worse,
                )  # fmt: skip
            )
            if outcomes[-1].refusal:
                print(f"error: {outcomes[-1].refusal}", file=sys.stderr)
        except EXPECTED_FAILURES as error:
            failed.append(name)
            print(f"error: {name}: {error}", file=sys.stderr)
    print_summary(outcomes, failed)
    written = all(outcome.version is not None for outcome in outcomes)
    return 0 if written and not failed else 1


def print_summary(outcomes: list[Outcome], failed: list[str]) -> None:
    rows = [("model", "metric", "value", "bar", "served before", "result", "seconds")]
    for outcome in outcomes:
        champion = outcome.champion
        served = "-" if champion is None else f"v{champion.version}: {_number(champion.value)}"
        rows.append(
            (outcome.name, outcome.metric, _number(outcome.value), outcome.bar, served, outcome.result,
             f"{outcome.seconds:.1f}")
        )  # fmt: skip
    rows += [(name, "-", "-", "-", "-", "FAILED, not written (see error above)", "-") for name in failed]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    print()
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            print("  ".join("-" * width for width in widths))


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


if __name__ == "__main__":
    sys.exit(main())
