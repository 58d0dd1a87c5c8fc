"""GET /models, GET /models/<name>, POST /models/<name>/predict (JSON and .npy)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from service_fixtures import IMAGE_MODEL, LINEAR_BIAS, LINEAR_WEIGHT, TABULAR_MODEL, registry_of

LINEAR = f"/models/{TABULAR_MODEL}/predict"


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_json_batch_gives_the_model_outputs(client):
    inputs = [[1.0, 2.0, 3.0], [-0.5, 0.0, 4.25]]
    response = client.post(LINEAR, json={"inputs": inputs})
    assert response.status_code == 200
    body = response.get_json()
    assert body["model"] == TABULAR_MODEL and body["version"] == 1
    assert np.allclose(body["outputs"], np.array(inputs) @ LINEAR_WEIGHT + LINEAR_BIAS, atol=1e-5)


def test_a_single_unbatched_sample_is_answered_unbatched(client):
    body = client.post(LINEAR, json={"inputs": [1.0, 2.0, 3.0]}).get_json()
    assert np.allclose(body["outputs"], np.array([1.0, 2.0, 3.0]) @ LINEAR_WEIGHT + LINEAR_BIAS, atol=1e-5)
    assert np.array(body["outputs"]).shape == (2,)


def test_json_without_content_type_is_accepted(client):
    response = client.post(LINEAR, data=b'{"inputs": [[1, 2, 3]]}')
    assert response.status_code == 200


def test_npy_in_json_out(client):
    inputs = np.arange(12, dtype=np.float32).reshape(4, 3)
    response = client.post(LINEAR, data=npy(inputs), content_type="application/x-npy")
    assert response.status_code == 200
    assert np.allclose(response.get_json()["outputs"], inputs @ LINEAR_WEIGHT + LINEAR_BIAS, atol=1e-4)


def test_npy_in_npy_out(client):
    inputs = np.arange(12, dtype=np.float32).reshape(4, 3)
    response = client.post(
        LINEAR, data=npy(inputs), content_type="application/x-npy", headers={"Accept": "application/x-npy"}
    )
    assert response.mimetype == "application/x-npy"
    outputs = np.load(io.BytesIO(response.data), allow_pickle=False)
    assert outputs.dtype == np.float32 and outputs.shape == (4, 2)
    assert np.allclose(outputs, inputs @ LINEAR_WEIGHT + LINEAR_BIAS, atol=1e-4)


def test_uint8_images_are_pixels_scaled_to_unit_range(app, client):
    pixels = np.random.default_rng(0).integers(0, 256, size=(3, 1, 28, 28), dtype=np.uint8)
    response = client.post(f"/models/{IMAGE_MODEL}/predict", data=npy(pixels), content_type="application/x-npy")
    session = registry_of(app).get(IMAGE_MODEL).session
    expected = session.run(None, {"pixels": pixels.astype(np.float32) / 255})[0]
    assert np.allclose(response.get_json()["outputs"], expected, atol=1e-6)


def test_list_models(client):
    models = {m["name"]: m for m in client.get("/models").get_json()["models"]}
    assert set(models) == {IMAGE_MODEL, TABULAR_MODEL}
    digits = models[IMAGE_MODEL]
    assert digits["served_version"] == 1 and digits["versions_on_disk"] == [1]
    assert digits["provider"] == "CPUExecutionProvider" and digits["provider_fallback"] is False
    assert digits["accepts_images"] is True and models[TABULAR_MODEL]["accepts_images"] is False
    assert digits["load_errors"] == []


def test_describe_model(client):
    body = client.get(f"/models/{TABULAR_MODEL}").get_json()
    assert body["inputs"][0]["name"] == "x" and body["inputs"][0]["shape"] == [-1, 3]
    assert body["outputs"][0]["name"] == "y"
    assert body["manifest"]["name"] == TABULAR_MODEL and len(body["manifest"]["sha256"]) == 64
    assert body["providers"] == ["CPUExecutionProvider"]


@pytest.mark.parametrize("accept", ["application/json", "*/*", None])
def test_json_is_the_default_answer(client, accept):
    headers = {"Accept": accept} if accept else {}
    response = client.post(LINEAR, json={"inputs": [[1, 2, 3]]}, headers=headers)
    assert response.mimetype == "application/json"


def test_an_image_input_gets_pixels_in_the_range_its_manifest_declares(make_app, repository):
    """A graph that takes 0..255 (value_range [0, 255]) gets 0..255 from uint8 arrays and pictures alike."""
    from service_fixtures import digit_classifier, draw_digit, encode, manifest_fields, write_version

    from service.imaging import prepare

    name = "tiny_digits_raw"
    inputs = manifest_fields(name, 1)["inputs"]
    inputs[0]["image"]["value_range"] = [0, 255]
    write_version(repository, name, 1, digit_classifier(), inputs=inputs)
    app = make_app()
    client = app.test_client()
    model = registry_of(app).get(name)

    def served(pixels_0_255: np.ndarray) -> np.ndarray:
        return model.session.run(None, {"pixels": pixels_0_255.astype(np.float32)})[0]

    pixels = np.random.default_rng(1).integers(0, 256, size=(2, 1, 28, 28), dtype=np.uint8)
    answer = client.post(f"/models/{name}/predict", data=npy(pixels), content_type="application/x-npy")
    assert np.allclose(answer.get_json()["outputs"], served(pixels), atol=1e-5)
    floats = client.post(f"/models/{name}/predict", json={"inputs": pixels.astype(float).tolist()})
    assert floats.status_code == 200  # 0..255 is this model's range

    picture = encode(draw_digit("7"))
    result = client.post(f"/predict?model={name}", data=picture, content_type="image/png").get_json()
    expected = served(prepare(picture, model.manifest.image_input.image).reshape(1, 1, 28, 28) * 255)[0]
    assert np.allclose(list(result["probabilities"].values()), expected, atol=1e-5)
