"""Readiness during a drain: the gunicorn worker (service.worker) flags it on SIGTERM."""

from __future__ import annotations

import threading

from service import lifecycle


def test_readiness_answers_503_draining_while_liveness_stays_200(client, monkeypatch):
    monkeypatch.setattr(lifecycle, "_draining", threading.Event())
    assert client.get("/readyz").status_code == 200
    lifecycle.begin_draining()
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["status"] == "draining"
    # A draining pod is not a dead one: liveness must not have it restarted.
    assert client.get("/healthz").status_code == 200


def test_v2_readiness_turns_false_while_draining_and_liveness_stays_true(client, monkeypatch):
    monkeypatch.setattr(lifecycle, "_draining", threading.Event())
    assert client.get("/v2/health/ready").status_code == 200
    lifecycle.begin_draining()
    ready = client.get("/v2/health/ready")
    assert ready.status_code == 400 and "draining" in ready.get_json()["error"]
    assert client.get("/v2/health/live").status_code == 200
