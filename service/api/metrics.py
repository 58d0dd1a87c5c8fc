"""GET /metrics: Prometheus exposition, merged across gunicorn workers (see service.metrics)."""

from __future__ import annotations

from flask import Blueprint, Response

from service.metrics import render

blueprint = Blueprint("metrics", __name__)


@blueprint.get("/metrics")
def scrape():
    body, content_type = render()
    return Response(body, content_type=content_type)
