"""Accuracy as people see it: the official MNIST test set, drawn the way people send digits,
through POST /predict, must match the accuracy training measured on the tensors.

Each of the 10,000 test images becomes dark ink on white paper, enlarged to a random size,
placed at a random position on a 280x280 RGB canvas, saved as PNG, and POSTed in multipart
batches.  The service's preprocessing (the MNIST recipe) has to undo all of that.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service import create_app
from service.config import ServiceConfig
from service.manifest import read_manifest
from service.repository import version_numbers

REPO_ROOT = Path(__file__).resolve().parents[2]
DATASETS = Path(os.environ.get("MNIST_DATA_DIR") or REPO_ROOT.parent / "shared" / "datasets")
MNIST_RAW = DATASETS / "MNIST" / "raw"
MODELS = REPO_ROOT / "models"
IMAGE_MODEL = "mnist_mlp"
ACCURACY_METRIC = "test_accuracy"  # the key training writes into the manifest
TOLERANCE = 0.005  # 0.5 percentage points
CANVAS = 280
IMAGES_PER_REQUEST = 50


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's own format) -> numpy array, with numpy only."""
    data = path.read_bytes()
    dimensions = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dimensions))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dimensions).reshape(shape)


def as_people_send_it(digit: np.ndarray, rng: np.random.Generator) -> bytes:
    """Dark ink on white, 4x to 9x larger, at a random place on a 280x280 RGB canvas, as PNG."""
    size = int(rng.integers(28 * 4, 28 * 9 + 1))
    ink = Image.fromarray(255 - digit).resize((size, size), Image.Resampling.BILINEAR)
    canvas = Image.new("L", (CANVAS, CANVAS), 255)
    canvas.paste(ink, (int(rng.integers(0, CANVAS - size + 1)), int(rng.integers(0, CANVAS - size + 1))))
    buffer = io.BytesIO()
    canvas.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
@pytest.mark.skipif(not MNIST_RAW.is_dir(), reason=f"MNIST not found in {MNIST_RAW}")
@pytest.mark.skipif(not version_numbers(MODELS / IMAGE_MODEL), reason=f"no committed {IMAGE_MODEL} in {MODELS}")
def test_accuracy_through_predict_matches_the_manifest():
    images = read_idx(MNIST_RAW / "t10k-images-idx3-ubyte")
    labels = read_idx(MNIST_RAW / "t10k-labels-idx1-ubyte")
    client = create_app(ServiceConfig(model_repository=MODELS, refresh_interval=0, execution_providers="cpu")).test_client()
    served = client.get(f"/models/{IMAGE_MODEL}").get_json()
    manifest = read_manifest(MODELS / IMAGE_MODEL / str(served["served_version"]) / "manifest.json")
    expected = manifest.metrics[ACCURACY_METRIC]

    rng = np.random.default_rng(2024)
    correct = 0
    for start in range(0, len(images), IMAGES_PER_REQUEST):
        batch = range(start, min(start + IMAGES_PER_REQUEST, len(images)))
        files = {f"image{i}": (io.BytesIO(as_people_send_it(images[i], rng)), f"{i}.png") for i in batch}
        response = client.post(f"/predict?model={IMAGE_MODEL}", data=files, content_type="multipart/form-data")
        assert response.status_code == 200, response.get_data(as_text=True)
        predicted = [int(result["label"]) for result in response.get_json()["results"]]
        correct += int(np.sum(np.array(predicted) == labels[batch.start : batch.stop]))
    accuracy = correct / len(images)
    print(f"\n{IMAGE_MODEL} v{served['served_version']}: {accuracy:.4f} through /predict on rendered MNIST "
          f"test images; manifest {ACCURACY_METRIC} {expected:.4f}")
    assert abs(accuracy - expected) <= TOLERANCE
