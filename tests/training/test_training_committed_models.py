"""The default models committed in models/: complete, consistent, and as good as their manifests say."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from service.manifest import MANIFEST_FILENAME, MODEL_FILENAME, read_manifest, sha256_of
from service.repository import version_numbers
from training.data import load_mnist
from training.tasks import TASKS

COMMITTED = Path(__file__).resolve().parents[2] / "models"


def newest(name):
    versions = version_numbers(COMMITTED / name)
    assert versions, f"no committed version of {name} in {COMMITTED}"
    return COMMITTED / name / str(versions[-1])


@pytest.mark.parametrize("name", list(TASKS))
def test_committed_model_is_complete_and_meets_its_bar(name):
    folder = newest(name)
    manifest = read_manifest(folder / MANIFEST_FILENAME)
    assert manifest.name == name and str(manifest.version) == folder.name
    assert manifest.sha256 == sha256_of(folder / MODEL_FILENAME)
    assert manifest.bar == TASKS[name].bar and manifest.bar.met_by(manifest.metrics)
    assert all((folder / plot).is_file() for plot in manifest.plots)
    assert [spec.name for spec in manifest.inputs] == [
        node.name for node in onnxruntime.InferenceSession(str(folder / MODEL_FILENAME)).get_inputs()
    ]


@pytest.mark.slow
def test_committed_mnist_model_reaches_its_recorded_accuracy_on_the_official_test_set(mnist_dir):
    folder = newest("mnist_mlp")
    manifest = read_manifest(folder / MANIFEST_FILENAME)
    test_set = load_mnist(mnist_dir, train=False)
    session = onnxruntime.InferenceSession(str(folder / MODEL_FILENAME), providers=["CPUExecutionProvider"])

    (probabilities,) = session.run(None, {"pixels": test_set.images.numpy()})
    accuracy = float(np.mean(probabilities.argmax(axis=1) == test_set.labels.numpy()))

    assert len(test_set) == 10_000
    assert accuracy >= 0.985
    # Same graph, same images: at most a near-tie decided differently by onnxruntime and PyTorch.
    assert accuracy == pytest.approx(manifest.metrics["test_accuracy"], abs=2e-4)
