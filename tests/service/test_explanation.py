"""What the model saw and why: ``?include=input,explanation`` on POST /predict, and the occlusion map.

The map's arithmetic is checked on a model whose answer is known by construction; its meaning
(highest on the digit's ink, zero far from it) on the committed mnist_mlp through HTTP.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from service_fixtures import draw_digit, encode

from service import create_app
from service.config import ServiceConfig
from service.explanation import PATCH_FRACTION, occlusion_map
from service.imaging import prepare
from service.manifest import read_manifest

COMMITTED_MODELS = Path(__file__).resolve().parents[2] / "models"
IMAGE_MODEL = "mnist_mlp"


def picture_of(data_url: str) -> np.ndarray:
    header, _, encoded = data_url.partition(",")
    assert header == "data:image/png;base64"
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    assert image.mode == "L"
    return np.asarray(image, dtype=np.float32) / 255.0


def dilate(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Every pixel within ``pixels`` (rows and columns, diagonals included) of a True one."""
    grown = mask.copy()
    for _ in range(pixels):
        padded = np.pad(grown, 1)
        grown = np.max([padded[r : r + mask.shape[0], c : c + mask.shape[1]] for r in range(3) for c in range(3)], axis=0)
    return grown


def test_the_map_is_the_drop_in_the_answers_log_odds_where_each_patch_is_covered():
    # A "model" whose log-odds for label 0 are the ink inside one square: covering ink there
    # lowers the answer, ink elsewhere does not matter.
    picture = np.zeros((28, 28), dtype=np.float32)
    picture[5:23, 6:9] = 1.0  # a stroke inside the square
    picture[5:23, 20:23] = 1.0  # a stroke outside it
    square = np.zeros((28, 28), dtype=bool)
    square[4:24, 4:12] = True

    def probabilities_of(batch: np.ndarray) -> np.ndarray:
        evidence = (batch * square).sum(axis=(1, 2)) / 10
        return np.stack([1 / (1 + np.exp(-evidence)), 1 / (1 + np.exp(evidence))], axis=1)

    explanation = occlusion_map(picture, 0, probabilities_of)
    assert explanation.shape == picture.shape
    assert explanation[5:23, 6:9].min() > 0
    assert np.allclose(explanation[:, 14:], 0)  # the other stroke and the empty paper: no effect
    # Pixel (14, 7) is covered by four 4x4 patches (stride 2): rows 12-15 or 14-17, columns 4-7
    # (2 ink columns) or 6-9 (3): drops of 0.8, 0.8, 1.2 and 1.2 log-odds, 1.0 on average.
    assert round(28 * PATCH_FRACTION) == 4
    assert explanation[14, 7] == pytest.approx(1.0, abs=1e-5)


@pytest.fixture(scope="module")
def committed_client():
    if not (COMMITTED_MODELS / IMAGE_MODEL).is_dir():
        pytest.skip(f"no committed {IMAGE_MODEL}")
    app = create_app(ServiceConfig(model_repository=COMMITTED_MODELS, refresh_interval=0))
    yield app.test_client()
    app.extensions["serving"]["registry"].stop_polling()


@pytest.fixture(scope="module")
def image_spec(committed_client):
    return read_manifest(next((COMMITTED_MODELS / IMAGE_MODEL).glob("*/manifest.json"))).image_input.image


@pytest.mark.parametrize("digit", ["1", "7", "0", "4"])
def test_the_explanation_is_highest_on_the_digits_ink(committed_client, image_spec, digit):
    png = encode(draw_digit(digit))
    response = committed_client.post("/predict?include=input,explanation", data=png, content_type="image/png")
    assert response.status_code == 200, response.get_json()
    result = response.get_json()
    seen = picture_of(result["input"])
    explanation = np.array(result["explanation"])
    assert explanation.shape == seen.shape == (28, 28)
    ink = seen > 0.3
    top = np.unravel_index(np.argmax(explanation), explanation.shape)
    assert dilate(ink, 1)[top], f"the strongest pixel {top} is not on the ink:\n{np.round(explanation, 1)}"
    assert explanation[ink].mean() > 0
    # A patch that covers no ink at all changes nothing (4 px patches: 3 px or more from any ink,
    # counting ink too faint to show in the 8-bit PNG).
    any_ink = prepare(png, image_spec) > 0
    far_from_ink = ~dilate(any_ink, round(28 * PATCH_FRACTION) - 1)
    assert far_from_ink.sum() > 100
    assert np.abs(explanation[far_from_ink]).max() < 1e-3


def test_the_input_is_the_prepared_picture(committed_client, image_spec):
    seven = encode(draw_digit("7", mode="RGB"))
    result = committed_client.post("/predict?include=input", data=seven, content_type="image/png").get_json()
    assert "explanation" not in result
    assert np.abs(picture_of(result["input"]) - prepare(seven, image_spec)).max() <= 0.5 / 255 + 1e-6


@pytest.mark.parametrize(
    "send",
    [
        lambda client, png: client.post("/predict?include=explanation&include=input", data=png, content_type="image/png"),
        lambda client, png: client.post(
            "/predict", data={"a": (io.BytesIO(png), "a.png"), "b": (io.BytesIO(png), "b.png"), "include": "input,explanation"}
        ),
        lambda client, png: client.post(
            "/predict", json={"images": [base64.b64encode(png).decode()] * 2, "include": ["input", "explanation"]}
        ),
    ],
    ids=["query", "form", "json"],
)
def test_every_result_carries_what_was_asked_for(client, send):
    response = send(client, encode(draw_digit("4")))
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    for result in body.get("results", [body]):
        assert picture_of(result["input"]).shape == (28, 28)
        assert np.array(result["explanation"]).shape == (28, 28)


@pytest.mark.parametrize(
    "send",
    [
        lambda client, png: client.post("/predict?include=input,saliency", data=png, content_type="image/png"),
        lambda client, png: client.post("/predict", json={"image": base64.b64encode(png).decode(), "include": ["why"]}),
    ],
    ids=["query", "json"],
)
def test_an_unknown_include_option_names_the_allowed_ones(client, send):
    response = send(client, encode(draw_digit("7")))
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_input"
    assert "input" in error["message"] and "explanation" in error["message"]


def test_include_must_be_strings_in_json(client):
    png = base64.b64encode(encode(draw_digit("7"))).decode()
    response = client.post("/predict", json={"image": png, "include": {"input": True}})
    assert response.status_code == 400
    assert "include" in response.get_json()["error"]["message"]
