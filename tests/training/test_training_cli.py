"""The command line end to end, as a user runs it: python -m training ... --repository <folder>.

One test runs the real ``python -m training`` process; the others call its ``main(argv)`` in this
process, which is the same code without paying for a fresh interpreter and torch import each time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service.manifest import MANIFEST_FILENAME, read_manifest
from service.repository import version_numbers
from training.__main__ import main

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = REPO_ROOT / "models"


def run_cli(*arguments, env=None):
    return subprocess.run(
        [sys.executable, "-m", "training", *map(str, arguments)],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def run_main(capsys, *arguments) -> tuple[int, str, str]:
    code = main([str(argument) for argument in arguments])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def committed_copy(tmp_path) -> Path:
    """A copy of the committed repository: a run into it meets the versions users are served now."""
    copy = tmp_path / "models"
    shutil.copytree(COMMITTED, copy)
    return copy


@pytest.mark.slow
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
    assert set(mnist.plots) == {
        "loss.png", "confusion_matrix.png", "misclassified.png", "reliability.png", "accuracy_coverage.png"
    }
    assert mnist.verdict is not None
    assert "MISSED, written anyway as version 1" in result.stdout  # 512 images do not make 99%
    # Output is not a terminal here: a plain progress line per epoch instead of bars.
    assert "mnist_mlp: epoch 1/1, loss " in result.stderr


def test_data_dir_defaults_to_the_environment_variable(mnist_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MNIST_DATA_DIR", str(mnist_dir))
    code, _, err = run_main(
        capsys, "mnist_mlp", "--epochs", "1", "--train-limit", "256", "--test-limit", "64", "--allow-below-bar",
        "--repository", tmp_path,
    )  # fmt: skip
    assert code == 0, err
    assert version_numbers(tmp_path / "mnist_mlp") == [1]


def test_missing_dataset_stops_the_run_before_anything_is_trained(tmp_path, capsys):
    repository = tmp_path / "models"
    code, out, err = run_main(capsys, "--data-dir", tmp_path / "empty", "--repository", repository)
    assert code == 1
    assert "MNIST was not found" in err and "--data-dir" in err and "--download" in err
    assert "Nothing was trained and the repository is unchanged." in err
    assert "Training" not in out and "epoch" not in err  # not one model was trained
    assert not repository.exists()  # not even the six small models, which need no data


def test_an_unwritable_repository_stops_the_run_before_anything_is_trained(tmp_path, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = run_main(capsys, "sigmoid_mlp", "relu_2layer", "--repository", tmp_path / "a-file" / "models")
    assert code == 1
    assert err.count(f"error: cannot write the model repository: {tmp_path / 'a-file'} is a file, not a folder") == 1
    assert "epoch" not in err


def test_a_model_below_its_bar_fails_the_run_and_is_not_written(tmp_path, capsys):
    code, out, _ = run_main(capsys, "linear_projection", "--epochs", "1", "--repository", tmp_path)
    assert code == 1
    assert "MISSED, not written" in out
    assert version_numbers(tmp_path / "linear_projection") == []


def test_a_candidate_worse_than_the_served_version_is_refused(committed_copy, capsys):
    before = snapshot(committed_copy)
    served = version_numbers(committed_copy / "linear_system")[-1]
    # 400 of its 1,000 steps: within the bar (max_abs_error < 1e-3), but far worse than what is served.
    code, out, err = run_main(capsys, "linear_system", "--epochs", "400", "--repository", committed_copy)
    assert code == 1
    assert f"REFUSED: worse than served v{served}, not written" in out
    assert "error: linear_system: max_abs_error" in err and "--allow-worse" in err
    assert snapshot(committed_copy) == before

    code, out, _ = run_main(
        capsys, "linear_system", "--epochs", "400", "--allow-worse", "--repository", committed_copy
    )
    assert code == 0
    assert f"worse than served v{served}, written anyway as version {served + 1}" in out
    assert version_numbers(committed_copy / "linear_system")[-1] == served + 1


def test_a_candidate_as_good_as_the_served_version_is_published(committed_copy, capsys):
    served = {name: version_numbers(committed_copy / name)[-1] for name in ("sigmoid_mlp", "relu_2layer")}
    code, out, _ = run_main(capsys, *served, "--repository", committed_copy)
    assert code == 0, out
    for name, version in served.items():
        row = next(line for line in out.splitlines() if line.startswith(name))
        assert f"v{version}: 0" in row  # the served version's metric, beside the candidate's
        assert f"met, version {version + 1}" in row


def test_progress_is_a_plain_line_per_epoch_when_output_is_not_a_terminal(tmp_path, capsys):
    code, _, err = run_main(capsys, "linear_projection", "--repository", tmp_path)
    assert code == 0
    lines = [line for line in err.splitlines() if line.startswith("linear_projection: epoch ")]
    assert lines[0].startswith("linear_projection: epoch 1/300, loss ")
    assert lines[-1].endswith(", converged")  # the seeds' fits stop once the loss has stopped falling


def test_unknown_model_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["no_such_model", "--repository", str(tmp_path)])
    assert raised.value.code == 2
    assert "unknown model(s): no_such_model" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
