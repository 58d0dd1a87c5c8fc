"""The command line end to end, as a user runs it: python -m training ... --repository <folder>."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.manifest import MANIFEST_FILENAME, read_manifest
from service.repository import version_numbers

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_cli(*arguments, env=None):
    return subprocess.run(
        [sys.executable, "-m", "training", *map(str, arguments)],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_tiny_run_of_mnist_and_a_seed_model_writes_both(mnist_dir, tmp_path):
    result = run_cli(
        "mnist_mlp", "--models", "sigmoid_mlp",
        "--data-dir", mnist_dir, "--epochs", "1", "--train-limit", "512", "--test-limit", "256",
        "--allow-below-bar", "--repository", tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("mnist_mlp", "sigmoid_mlp"):
        assert version_numbers(tmp_path / name) == [1]
        manifest = read_manifest(tmp_path / name / "1" / MANIFEST_FILENAME)
        assert manifest.training.epochs == 1
        assert name in result.stdout  # the summary table
    mnist = read_manifest(tmp_path / "mnist_mlp" / "1" / MANIFEST_FILENAME)
    assert mnist.metrics["test_images"] == 256
    assert set(mnist.plots) == {"loss.png", "confusion_matrix.png", "misclassified.png", "reliability.png", "accuracy_coverage.png"}
    assert mnist.verdict is not None
    assert "MISSED, written anyway as version 1" in result.stdout  # 512 images do not make 99%


def test_data_dir_defaults_to_the_environment_variable(mnist_dir, tmp_path):
    result = run_cli(
        "mnist_mlp", "--epochs", "1", "--train-limit", "256", "--test-limit", "64", "--allow-below-bar",
        "--repository", tmp_path, env={"MNIST_DATA_DIR": str(mnist_dir)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert version_numbers(tmp_path / "mnist_mlp") == [1]


def test_missing_dataset_is_a_message_not_a_traceback(tmp_path):
    result = run_cli("mnist_mlp", "--data-dir", tmp_path / "empty", "--repository", tmp_path / "models")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "MNIST was not found" in result.stderr
    assert "--data-dir" in result.stderr and "--download" in result.stderr
    assert "FAILED, not written" in result.stdout
    assert not (tmp_path / "models" / "mnist_mlp").exists() or version_numbers(tmp_path / "models" / "mnist_mlp") == []


def test_a_model_below_its_bar_fails_the_run_and_is_not_written(tmp_path):
    result = run_cli("linear_projection", "--epochs", "1", "--repository", tmp_path)
    assert result.returncode == 1
    assert "MISSED, not written" in result.stdout
    assert version_numbers(tmp_path / "linear_projection") == []


def test_unknown_model_is_a_usage_error(tmp_path):
    result = run_cli("no_such_model", "--repository", tmp_path)
    assert result.returncode == 2
    assert "unknown model(s): no_such_model" in result.stderr
    assert list(tmp_path.iterdir()) == []
