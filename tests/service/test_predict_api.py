"""POST /predict through Flask's test client: every way people send images, one answer shape."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image
from service_fixtures import IMAGE_MODEL, TABULAR_MODEL, digit_classifier, draw_digit, encode, registry_of, write_version

from service.imaging import prepare


@pytest.fixture
def seven() -> bytes:
    return encode(draw_digit("7", mode="RGB"))


@pytest.fixture
def one() -> bytes:
    return encode(draw_digit("1"), "JPEG")


def expected_probabilities(app, image: bytes) -> np.ndarray:
    """What the served session says about the prepared image: the HTTP path must agree."""
    model = registry_of(app).get(IMAGE_MODEL)
    spec = model.manifest.image_input
    pixels = prepare(image, spec.image).reshape(1, 1, 28, 28)
    return model.session.run(None, {"pixels": pixels})[0][0]


def check_result(result: dict, probabilities: np.ndarray) -> None:
    assert set(result) == {"label", "probability", "probabilities", "model", "version"}
    assert result["model"] == IMAGE_MODEL and result["version"] == 1
    assert list(result["probabilities"]) == [str(digit) for digit in range(10)]
    assert np.allclose(list(result["probabilities"].values()), probabilities, atol=1e-6)
    assert result["label"] == str(int(np.argmax(probabilities)))
    assert result["probability"] == pytest.approx(float(probabilities.max()), abs=1e-6)


def test_raw_png_body_gives_one_result(app, client, seven):
    response = client.post("/predict", data=seven, content_type="image/png")
    assert response.status_code == 200
    check_result(response.get_json(), expected_probabilities(app, seven))


@pytest.mark.parametrize("content_type", ["image/jpeg", "image/anything", "application/octet-stream", None])
def test_raw_body_content_types(app, client, one, content_type):
    response = client.post("/predict", data=one, content_type=content_type)
    assert response.status_code == 200, response.get_json()
    check_result(response.get_json(), expected_probabilities(app, one))


def test_multipart_with_several_files_answers_in_order(app, client, seven, one):
    form = {
        "file": [(io.BytesIO(seven), "seven.png"), (io.BytesIO(one), "one.jpg")],
        "another_field_name": (io.BytesIO(seven), "again.png"),
    }
    response = client.post("/predict", data=form, content_type="multipart/form-data")
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert len(results) == 3
    for result, image in zip(results, [seven, one, seven]):
        check_result(result, expected_probabilities(app, image))


def test_multipart_with_one_file_gives_one_result(app, client, seven):
    response = client.post("/predict", data={"image": (io.BytesIO(seven), "x.png")})
    check_result(response.get_json(), expected_probabilities(app, seven))


def test_json_base64_images_with_data_url(app, client, seven, one):
    encoded_one = "data:image/jpeg;base64," + base64.b64encode(one).decode()
    response = client.post(
        "/predict", json={"image": base64.b64encode(seven).decode(), "images": [encoded_one, encoded_one]}
    )
    assert response.status_code == 200
    results = response.get_json()["results"]
    assert [r["label"] for r in results] == [
        str(int(np.argmax(expected_probabilities(app, image)))) for image in (seven, one, one)
    ]


def test_json_without_content_type_is_accepted(app, client, seven):
    body = ('{"image": "%s"}' % base64.b64encode(seven).decode()).encode()
    response = client.post("/predict", data=body)  # no Content-Type, like tritonclient
    check_result(response.get_json(), expected_probabilities(app, seven))


def test_model_chosen_by_query_or_field(make_app, repository, seven):
    write_version(repository, "tiny_digits_b", 1, digit_classifier(seed=5))
    client = make_app().test_client()
    by_query = client.post("/predict?model=tiny_digits_b", data=seven, content_type="image/png").get_json()
    by_field = client.post("/predict", data={"model": "tiny_digits_b", "f": (io.BytesIO(seven), "a.png")}).get_json()
    by_json = client.post(
        "/predict", json={"model": "tiny_digits_b", "image": base64.b64encode(seven).decode()}
    ).get_json()
    default = client.post("/predict", data=seven, content_type="image/png").get_json()
    assert by_query["model"] == by_field["model"] == by_json["model"] == "tiny_digits_b"
    assert by_query["probabilities"] == by_field["probabilities"] == by_json["probabilities"]
    assert default["model"] == IMAGE_MODEL and default["probabilities"] != by_query["probabilities"]


def test_a_model_without_image_input_is_a_4xx_that_says_so(client, seven):
    response = client.post(f"/predict?model={TABULAR_MODEL}", data=seven, content_type="image/png")
    assert response.status_code == 422
    assert response.get_json()["error"]["code"] == "not_an_image_model"
    assert "does not take images" in response.get_json()["error"]["message"]


def test_an_mnist_style_28x28_image_is_classified_as_is(app, client):
    pixels = np.zeros((28, 28), dtype=np.uint8)
    pixels[6:22, 12:16] = 255  # a light "1" on black, already model-ready
    image = encode(Image.fromarray(pixels))
    model = registry_of(app).get(IMAGE_MODEL)
    direct = model.session.run(None, {"pixels": (pixels / 255).astype(np.float32).reshape(1, 1, 28, 28)})[0][0]
    check_result(client.post("/predict", data=image, content_type="image/png").get_json(), direct)
