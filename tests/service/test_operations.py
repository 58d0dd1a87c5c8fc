"""What operators rely on: health, metrics, request ids and JSON logs, the admin endpoint."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from service_fixtures import IMAGE_MODEL, TABULAR_MODEL, draw_digit, encode, linear_model, metric_value, write_version

from service.logs import JsonFormatter

PNG = encode(draw_digit("7"))


def test_healthz_and_readyz(client):
    assert client.get("/healthz").get_json() == {"status": "alive"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {"status": "ready", "models": {IMAGE_MODEL: 1, TABULAR_MODEL: 1}}



def test_metrics_count_requests_images_and_versions(client):
    before = client.get("/metrics").get_data(as_text=True)
    client.post("/predict", data=PNG, content_type="image/png")
    client.post("/predict?model=nope", data=PNG, content_type="image/png")
    text = client.get("/metrics").get_data(as_text=True)

    def delta(name, **labels):
        return metric_value(text, name, **labels) - metric_value(before, name, **labels)

    assert delta("serving_requests_total", endpoint="/predict", model=IMAGE_MODEL, status="200") == 1
    assert delta("serving_requests_total", endpoint="/predict", model="", status="404") == 1
    assert delta("serving_images_per_request_count") == 1
    assert delta("serving_inference_duration_seconds_count", model=IMAGE_MODEL) == 1
    assert delta("serving_request_duration_seconds_count", endpoint="/predict") == 2
    assert metric_value(text, "serving_model_version", model=IMAGE_MODEL) == 1


def test_an_incoming_request_id_is_kept_and_one_is_made_otherwise(client):
    assert client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    made = client.get("/healthz").headers["X-Request-ID"]
    assert len(made) == 32
    # Unprintable or huge ids are replaced, not echoed.
    assert client.get("/healthz", headers={"X-Request-ID": "x" * 500}).headers["X-Request-ID"] != "x" * 500


def test_each_request_is_logged_as_one_json_line(client, caplog):
    with caplog.at_level(logging.INFO, logger="service.access"):
        client.post("/predict", data=PNG, content_type="image/png", headers={"X-Request-ID": "req-42"})
    records = [record for record in caplog.records if record.name == "service.access"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["request_id"] == "req-42"
    assert line["method"] == "POST" and line["path"] == "/predict" and line["status"] == 200
    assert line["model"] == IMAGE_MODEL and line["version"] == 1 and line["images"] == 1
    assert line["latency_ms"] > 0 and line["level"] == "INFO"


def test_admin_endpoints_do_not_exist_without_a_token(client):
    assert client.post("/admin/refresh").status_code == 404
    assert client.post("/admin/refresh", headers={"Authorization": "Bearer "}).status_code == 404


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", "Bearer", "Basic s3cret-token", "bearer s3cret-token-and-more"]
)
def test_admin_refresh_needs_the_token(make_app, authorization):
    client = make_app(admin_token="s3cret-token").test_client()
    headers = {"Authorization": authorization} if authorization else {}
    response = client.post("/admin/refresh", headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_admin_refresh_with_the_token_loads_new_versions(make_app, repository):
    client = make_app(admin_token="s3cret-token").test_client()
    write_version(repository, TABULAR_MODEL, 2, linear_model(bias=np.ones(2, np.float32)))
    response = client.post("/admin/refresh", headers={"Authorization": "Bearer s3cret-token"})
    assert response.status_code == 200
    assert response.get_json() == {"models": {IMAGE_MODEL: 1, TABULAR_MODEL: 2}}
    assert client.get("/admin/refresh", headers={"Authorization": "Bearer s3cret-token"}).status_code == 405


def test_debug_is_off_and_upload_limits_are_on(app):
    assert app.debug is False
    assert app.config["MAX_CONTENT_LENGTH"] == 20 * 1024 * 1024
    assert app.config["MAX_FORM_MEMORY_SIZE"] == 500_000
