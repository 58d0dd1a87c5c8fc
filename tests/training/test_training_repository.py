"""Publishing a model: complete manifests, new versions appear whole or not at all, old ones are pruned."""

from __future__ import annotations

import json
import subprocess

import pytest

from service.manifest import MANIFEST_FILENAME, MODEL_FILENAME, read_manifest, sha256_of
from service.repository import version_numbers
from training import pipeline, repository
from training.export import ParityError
from training.tasks import TASKS, Settings

TASK = TASKS["linear_projection"]


def _publish(trained, root, keep=None):
    return pipeline.publish(TASK, trained, Settings(), 1.5, root / TASK.name, keep)


def _snapshot(model_dir):
    """Every file under model_dir with its bytes, to prove that nothing changed."""
    return {str(p.relative_to(model_dir)): p.read_bytes() for p in sorted(model_dir.rglob("*")) if p.is_file()}


def test_manifest_is_complete_and_valid(trained_projection, tmp_path):
    version = _publish(trained_projection, tmp_path)
    folder = tmp_path / TASK.name / str(version)
    manifest = read_manifest(folder / MANIFEST_FILENAME)

    assert (manifest.name, manifest.version) == (TASK.name, version) == ("linear_projection", 1)
    assert manifest.sha256 == sha256_of(folder / MODEL_FILENAME)
    assert manifest.seed_notebook == "003_de57b1e83d64812d.txt"
    assert manifest.departures == list(TASK.departures)
    assert manifest.inputs[0].name == "x" and manifest.inputs[0].shape == [-1, 3]
    assert manifest.outputs[0].name == "y" and manifest.outputs[0].shape == [-1, 4]
    assert manifest.metrics == trained_projection.metrics
    assert manifest.bar.met_by(manifest.metrics)
    assert manifest.training.epochs == trained_projection.epochs <= TASK.epochs and manifest.training.seed == 0
    assert manifest.training.hyperparameters["learning_rate"] == TASK.learning_rate
    assert {"torch", "torchvision", "onnx", "onnxruntime", "numpy", "python"} <= set(manifest.libraries)
    assert manifest.created.endswith("+00:00")
    assert manifest.plots == ["loss.png"]
    assert sorted(p.name for p in folder.iterdir()) == ["loss.png", "manifest.json", "model.onnx"]
    assert (folder / "loss.png").read_bytes().startswith(b"\x89PNG")
    assert folder.stat().st_mode & 0o055 == 0o055  # readable by a service running as another user


def test_versions_increment(trained_projection, tmp_path):
    assert [_publish(trained_projection, tmp_path) for _ in range(3)] == [1, 2, 3]
    assert version_numbers(tmp_path / TASK.name) == [1, 2, 3]
    for version in (1, 2, 3):
        assert read_manifest(tmp_path / TASK.name / str(version) / MANIFEST_FILENAME).version == version


def test_pruning_keeps_the_newest_n(tmp_path):
    model_dir = tmp_path / "m"
    for version in (1, 2, 3, 4):
        (model_dir / str(version)).mkdir(parents=True)
    assert repository.prune(model_dir, keep=2, protect=4) == [1, 2]
    assert version_numbers(model_dir) == [3, 4]
    assert [p.name for p in model_dir.iterdir() if not p.name.isdigit()] == []


def test_publishing_keeps_every_version_unless_asked_to_prune(trained_projection, tmp_path):
    for _ in range(2):
        _publish(trained_projection, tmp_path)
    assert version_numbers(tmp_path / TASK.name) == [1, 2]
    _publish(trained_projection, tmp_path, keep=1)
    assert version_numbers(tmp_path / TASK.name) == [3]


def test_pruning_never_deletes_versions_git_tracks(tmp_path):
    model_dir = tmp_path / "repo" / "models" / "m"
    for version in (1, 2, 3, 4):
        (model_dir / str(version)).mkdir(parents=True)
        (model_dir / str(version) / "manifest.json").write_text("{}")
    git = ["git", "-C", str(tmp_path / "repo"), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "models/m/1"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "the committed version"], check=True)

    assert repository.prune(model_dir, keep=1, protect=4) == [2, 3]
    assert version_numbers(model_dir) == [1, 4]
    status = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True, check=True)
    assert " D " not in status.stdout  # the checkout lost nothing


def test_pruning_never_deletes_the_version_just_written(tmp_path):
    model_dir = tmp_path / "m"
    for version in (1, 2, 3):
        (model_dir / str(version)).mkdir(parents=True)
    assert repository.prune(model_dir, keep=1, protect=2) == [1]
    assert version_numbers(model_dir) == [2, 3]


@pytest.mark.parametrize(
    "broken_step", ["training.pipeline.export_onnx", "training.pipeline.plots.save", "training.repository._fsync_tree"]
)
def test_a_failed_publish_changes_nothing(trained_projection, tmp_path, monkeypatch, broken_step):
    _publish(trained_projection, tmp_path)
    model_dir = tmp_path / TASK.name
    before = _snapshot(model_dir)

    def fail(*args, **kwargs):
        raise ParityError("simulated failure")

    monkeypatch.setattr(broken_step, fail)
    with pytest.raises(ParityError, match="simulated"):
        _publish(trained_projection, tmp_path)

    assert _snapshot(model_dir) == before
    assert [p.name for p in model_dir.iterdir()] == ["1"]  # no new version, no .tmp- folder left


def test_an_interrupted_publish_leaves_no_staging_folder(trained_projection, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("training.pipeline.plots.save", interrupt)
    with pytest.raises(KeyboardInterrupt):
        _publish(trained_projection, tmp_path)
    assert list((tmp_path / TASK.name).iterdir()) == []


def test_commit_takes_the_next_number_when_another_writer_got_there_first(trained_projection, tmp_path, monkeypatch):
    model_dir = tmp_path / TASK.name
    real_rename = repository.os.rename

    def rename_after_a_rival(source, target):
        # A concurrent run publishes version 1 between our choice of that number and our rename.
        if target.name == "1" and not target.exists():
            target.mkdir()
            (target / "rival").write_text("theirs")
        return real_rename(source, target)

    monkeypatch.setattr(repository.os, "rename", rename_after_a_rival)
    version = _publish(trained_projection, tmp_path)

    assert version == 2
    assert (model_dir / "1" / "rival").read_text() == "theirs"
    assert read_manifest(model_dir / "2" / MANIFEST_FILENAME).version == 2


def test_model_below_its_bar_is_not_written_unless_allowed(tmp_path):
    outcome = pipeline.train_and_publish(TASK, Settings(epochs=1), tmp_path)
    assert not outcome.met and outcome.version is None
    assert not (tmp_path / TASK.name).exists() or version_numbers(tmp_path / TASK.name) == []

    outcome = pipeline.train_and_publish(TASK, Settings(epochs=1), tmp_path, allow_below_bar=True)
    assert not outcome.met and outcome.version == 1
    manifest = json.loads((tmp_path / TASK.name / "1" / MANIFEST_FILENAME).read_text())
    assert manifest["metrics"]["mse"] >= TASK.bar.threshold
