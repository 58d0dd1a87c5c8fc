"""Calibration, synthetic non-digits and the verdict policy, from training to the service that loads it."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from service import create_app
from service.config import ServiceConfig
from service.manifest import MANIFEST_FILENAME, read_manifest
from training import calibration, data, nondigits
from training.pipeline import train_and_publish
from training.tasks import MnistTask, Settings

SMALL = dict(epochs=1, train_limit=3000, test_limit=200)


def png(picture: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, "PNG")
    return buffer.getvalue()


def test_the_fitted_temperature_undoes_overconfidence_and_lowers_the_nll():
    generator = torch.Generator().manual_seed(0)
    calibrated = torch.randn(4000, 10, generator=generator) * 2
    labels = torch.distributions.Categorical(logits=calibrated).sample()
    overconfident = calibrated * 3
    temperature = calibration.fit_temperature(overconfident, labels)
    assert temperature == pytest.approx(3, rel=0.1)
    assert calibration.nll(overconfident, labels, temperature) < calibration.nll(overconfident, labels)


def test_folding_the_temperature_divides_the_logits():
    linear = nn.Linear(5, 3)
    x = torch.randn(8, 5)
    with torch.no_grad():
        assert torch.allclose(calibration.fold_temperature(linear, 2.5)(x), linear(x) / 2.5, atol=1e-6)


def test_expected_calibration_error():
    labels = np.zeros(100, dtype=int)
    sure = np.tile([1.0, 0.0], (100, 1))
    assert calibration.expected_calibration_error(sure, labels) == 0.0
    labels[:20] = 1  # always sure of class 0, right 80% of the time
    assert calibration.expected_calibration_error(sure, labels) == pytest.approx(0.2)


def test_evaluation_kinds_of_nondigits_are_never_training_kinds():
    assert not set(nondigits.TRAINING_KINDS) & set(nondigits.EVALUATION_KINDS)
    for kind in [*nondigits.TRAINING_KINDS, *nondigits.EVALUATION_KINDS]:
        first, again = nondigits.draw(kind, np.random.default_rng(5)), nondigits.draw(kind, np.random.default_rng(5))
        assert np.array_equal(first, again), kind
        assert first.min() < 128 < first.max(), f"{kind}: no ink on the paper"


def test_handwriting_distortions_keep_pictures_in_range_and_change_them():
    torch.manual_seed(0)
    images = torch.zeros(64, 1, 28, 28)
    images[:, :, 6:22, 12:16] = 1.0
    distorted = data.HandwritingDistortions()(images)
    assert distorted.shape == images.shape
    assert distorted.min() >= 0 and distorted.max() <= 1
    assert (distorted - images).abs().amax(dim=(1, 2, 3)).min() > 0.1  # every picture moved


@pytest.fixture(scope="module")
def published(mnist_dir, tmp_path_factory):
    """A small mnist_mlp run, published to a fresh repository as the training command does."""
    repository = tmp_path_factory.mktemp("models")
    outcome = train_and_publish(
        MnistTask(), Settings(data_dir=mnist_dir, **SMALL), repository, keep=3, allow_below_bar=True
    )
    return repository, read_manifest(repository / "mnist_mlp" / str(outcome.version) / MANIFEST_FILENAME)


def test_the_temperature_is_fitted_on_held_out_images_and_improves_their_nll(published):
    _, manifest = published
    metrics = manifest.metrics
    assert metrics["heldout_nll"] < metrics["heldout_nll_uncalibrated"]
    assert manifest.verdict.temperature == metrics["temperature"] != 1.0
    assert "held out" in manifest.training.data and "MNIST training images" in manifest.verdict.chosen_on
    assert {"reliability.png", "accuracy_coverage.png"} <= set(manifest.plots)


def test_the_service_judges_with_the_thresholds_of_the_manifest_it_loads(published):
    repository, manifest = published
    app = create_app(ServiceConfig(model_repository=repository, refresh_interval=0, execution_providers="cpu"))
    client = app.test_client()
    loaded = client.get("/models/mnist_mlp").get_json()["manifest"]["verdict"]
    assert loaded == manifest.verdict.model_dump()
    rng = np.random.default_rng(0)
    pictures = [nondigits.draw(kind, rng) for kind in [*nondigits.EVALUATION_KINDS, *nondigits.TRAINING_KINDS]]
    files = {f"p{i}": (io.BytesIO(png(picture)), f"p{i}.png") for i, picture in enumerate(pictures)}
    results = client.post("/predict", data=files, content_type="multipart/form-data").get_json()["results"]
    for result in results:
        p = result["probability"]
        expected = (
            "digit"
            if p >= loaded["digit_at_least"]
            else "uncertain"
            if p >= loaded["not_a_digit_below"]
            else "not_a_digit"
        )
        assert result["verdict"] == expected
    app.extensions["serving"]["registry"].stop_polling()
