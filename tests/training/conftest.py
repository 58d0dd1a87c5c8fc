"""Shared fixtures for the training tests: where the repository and the shared MNIST copy are."""

from __future__ import annotations

from pathlib import Path

import os

import pytest

from training.tasks import TASKS, Settings, Trained

REPO_ROOT = Path(__file__).resolve().parents[2]
# The full official MNIST: $MNIST_DATA_DIR (as for the training command), else the copy kept next
# to the repository (../shared/datasets/MNIST/raw).
SHARED_DATASETS = Path(os.environ.get("MNIST_DATA_DIR") or REPO_ROOT / ".." / "shared" / "datasets")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    if not (SHARED_DATASETS / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
        pytest.skip(f"MNIST is not at {SHARED_DATASETS.resolve()}/MNIST/raw (set MNIST_DATA_DIR to a folder holding MNIST/raw)")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def trained_projection() -> Trained:
    """A cheap, fully trained model (well under a second) for the export and repository tests."""
    return TASKS["linear_projection"].train(Settings())
