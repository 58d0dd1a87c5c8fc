"""Per-request bookkeeping: request id, one JSON log line, and the request metrics.

An incoming ``X-Request-ID`` (printable, up to 128 characters) is kept, otherwise one is made;
it is echoed in the response and attached to every log line written during the request.
Views record the model they used in ``g.model``/``g.version`` so the log and the metrics can
say which model answered.
"""

from __future__ import annotations

import logging
import time
import uuid

from flask import Flask, Response, g, request

from service import logs, metrics

log = logging.getLogger("service.access")


def register(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_forget)


def _start() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if logs.ACCEPTABLE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.request_id_token = logs.request_id.set(g.request_id)
    g.started = time.perf_counter()


def _finish(response: Response) -> Response:
    # A request rejected before _start ran (e.g. by routing) still gets an id and a log line.
    if "started" not in g:
        _start()
    latency = time.perf_counter() - g.started
    # The URL rule, not the path, so that /models/<anything> cannot create unbounded series.
    endpoint = request.url_rule.rule if request.url_rule else "unmatched"
    model = g.get("model", "")
    metrics.REQUESTS.labels(endpoint=endpoint, model=model, status=str(response.status_code)).inc()
    metrics.REQUEST_LATENCY.labels(endpoint=endpoint).observe(latency)
    response.headers["X-Request-ID"] = g.request_id
    log.info(
        "%s %s %d",
        request.method,
        request.path,
        response.status_code,
        extra={
            "request_id": g.request_id,
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "latency_ms": round(latency * 1000, 2),
            "model": model or None,
            "version": g.get("version"),
            "images": g.get("images"),
        },
    )
    return response


def _forget(_error: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        logs.request_id.reset(token)
