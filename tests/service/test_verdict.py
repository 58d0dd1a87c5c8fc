"""The verdict on every picture POSTed to /predict: digit, uncertain or not_a_digit, with a reason.

Against the committed mnist_mlp (whose manifest has a verdict section) with real pictures, and
against fixture models whose manifests set the thresholds, so that the decision is seen to come
from the manifest the service loaded.
"""

from __future__ import annotations

import io
import itertools
import os
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from PIL import Image, ImageDraw, ImageFont
from service_fixtures import IMAGE_MODEL, digit_classifier, draw_digit, encode, write_version

from service import create_app
from service.config import ServiceConfig
from service.manifest import Verdict
from service.repository import version_numbers

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = REPO_ROOT / "models"
MNIST_RAW = Path(os.environ.get("MNIST_DATA_DIR") or REPO_ROOT.parent / "shared" / "datasets") / "MNIST" / "raw"
VERDICTS = {"digit", "uncertain", "not_a_digit"}

needs_committed_model = pytest.mark.skipif(
    not version_numbers(COMMITTED / "mnist_mlp"), reason=f"no committed mnist_mlp in {COMMITTED}"
)
needs_mnist = pytest.mark.skipif(not MNIST_RAW.is_dir(), reason=f"MNIST not found in {MNIST_RAW}")


def read_idx(path: Path) -> np.ndarray:
    data = path.read_bytes()
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(data[3]))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * data[3]).reshape(shape)


@pytest.fixture(scope="module")
def committed():
    app = create_app(ServiceConfig(model_repository=COMMITTED, refresh_interval=0, execution_providers="cpu"))
    yield app.test_client()
    app.extensions["serving"]["registry"].stop_polling()


@pytest.fixture(scope="module")
def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    return read_idx(MNIST_RAW / "t10k-images-idx3-ubyte"), read_idx(MNIST_RAW / "t10k-labels-idx1-ubyte")


def ask(client, picture: bytes, model: str = "mnist_mlp") -> dict:
    response = client.post(f"/predict?model={model}", data=picture, content_type="image/png")
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def on_paper(ink: np.ndarray) -> bytes:
    """A light-on-dark uint8 picture as dark ink on white paper, enlarged to 200x200, as PNG."""
    return encode(Image.fromarray(255 - ink).resize((200, 200), Image.Resampling.BILINEAR))


def letter(text: str = "K") -> bytes:
    image = Image.new("L", (200, 200), 255)
    fonts = sorted(Path("/usr/share/fonts").rglob("DejaVuSans.ttf"))
    font = ImageFont.truetype(str(fonts[0]), 140) if fonts else ImageFont.load_default(size=140)
    ImageDraw.Draw(image).text((100, 100), text, fill=0, font=font, anchor="mm")
    return encode(image)


def scribble() -> bytes:
    rng = np.random.default_rng(3)
    image = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(image).line([tuple(p) for p in rng.uniform(30, 170, (14, 2))], fill=0, width=9, joint="curve")
    return encode(image)


def noise() -> bytes:
    return encode(Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200), dtype=np.uint8)))


@needs_committed_model
@needs_mnist
def test_a_real_test_digit_is_a_digit(committed, mnist_test):
    images, labels = mnist_test
    for index in range(5):  # 7 2 1 0 4, as sent (28x28) and drawn on paper
        for picture in (encode(Image.fromarray(images[index])), on_paper(images[index])):
            result = ask(committed, picture)
            assert result["verdict"] == "digit", result["reason"]
            assert result["label"] == str(labels[index])
            assert result["label"] in result["reason"]


@needs_committed_model
@pytest.mark.parametrize("picture", [noise, letter, scribble], ids=["noise", "a letter", "a scribble"])
def test_what_is_not_a_digit_is_said_to_be_not_a_digit(committed, picture):
    result = ask(committed, picture())
    assert result["verdict"] == "not_a_digit", (result["probability"], result["reason"])
    assert "not look like any digit" in result["reason"]
    # The answer is still there for who wants it, with its (low) calibrated probability.
    assert result["label"] in result["probabilities"] and result["probability"] < 0.5


@needs_committed_model
@needs_mnist
def test_blends_of_two_different_digits_are_mostly_no_confident_digit(committed, mnist_test):
    images, labels = mnist_test
    first = {digit: images[np.flatnonzero(labels == digit)[0]] for digit in range(10)}
    pairs = list(itertools.combinations(range(10), 2))
    verdicts = []
    for a, b in pairs:
        blend = ((first[a].astype(np.float32) + first[b]) / 2).round().astype(np.uint8)
        verdicts.append(ask(committed, on_paper(blend))["verdict"])
    # Some blends do read as one digit (a 1 over a 7 is a 7); most must not get a confident answer.
    refused = sum(verdict in {"uncertain", "not_a_digit"} for verdict in verdicts)
    assert refused >= 0.6 * len(pairs), dict(zip(pairs, verdicts, strict=True))


@needs_committed_model
def test_the_numbers_endpoint_has_no_verdict(committed):
    response = committed.post("/models/mnist_mlp/predict", json={"inputs": np.zeros((1, 1, 28, 28)).tolist()})
    assert response.status_code == 200
    assert set(response.get_json()) == {"model", "version", "outputs"}


@needs_committed_model
def test_a_blank_picture_is_still_422_no_ink(committed):
    response = committed.post("/predict", data=encode(Image.new("RGB", (200, 200), "white")), content_type="image/png")
    assert response.status_code == 422 and response.get_json()["error"]["code"] == "no_ink"


# --- fixture models: the thresholds are the manifest's ---------------------------------------


def policy(digit_at_least: float, not_a_digit_below: float) -> dict:
    return Verdict(
        method="max_probability",
        digit_at_least=digit_at_least,
        not_a_digit_below=not_a_digit_below,
        temperature=1.0,
        chosen_on="a test",
    ).model_dump()


@pytest.mark.parametrize(
    ("thresholds", "expected"),
    [((1e-6, 1e-6), "digit"), ((1.0, 0.0), "uncertain"), ((1.0, 1.0), "not_a_digit")],
    ids=["every answer confident", "nothing confident, something fits", "nothing fits"],
)
def test_the_verdict_follows_the_thresholds_in_the_manifest(tmp_path, thresholds, expected):
    root = tmp_path / "models"
    write_version(root, IMAGE_MODEL, 1, digit_classifier(), verdict=policy(*thresholds))
    app = create_app(ServiceConfig(model_repository=root, default_image_model=IMAGE_MODEL, refresh_interval=0))
    client = app.test_client()
    files = {"a": (io.BytesIO(encode(draw_digit("7"))), "a.png"), "b": (io.BytesIO(encode(draw_digit("0"))), "b.png")}
    results = client.post("/predict", data=files, content_type="multipart/form-data").get_json()["results"]
    assert [result["verdict"] for result in results] == [expected, expected]
    assert all(result["reason"] for result in results)
    served = client.get(f"/models/{IMAGE_MODEL}").get_json()
    assert served["manifest"]["verdict"]["digit_at_least"] == thresholds[0]


def test_a_model_without_a_verdict_section_answers_without_the_field(client):
    result = client.post("/predict", data=encode(draw_digit("7")), content_type="image/png").get_json()
    assert "verdict" not in result and "reason" not in result
    assert set(result) == {"label", "probability", "probabilities", "model", "version"}


def test_thresholds_out_of_order_are_an_invalid_manifest():
    with pytest.raises(ValidationError, match="must not exceed"):
        policy(digit_at_least=0.5, not_a_digit_below=0.9)
