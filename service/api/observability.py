"""Per-request bookkeeping: request id, one JSON log line, and the request metrics.

An incoming ``X-Request-ID`` (printable, up to 128 characters) is kept, otherwise one is made;
it is echoed in the response and attached to every log line written during the request.
Views record the model they used in ``g.model``/``g.version`` so the log and the metrics can
say which model answered.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from service import logs, metrics

log = logging.getLogger("service.access")

def register(app: Flask) -> None:
    app.before_request(_start)
    app.after_request(_finish)
    app.teardown_request(_forget)


def _start() -> None:
    context = g._get_current_object()
    incoming = request.environ.get("HTTP_X_REQUEST_ID", "")
    context.request_id = incoming if logs.ACCEPTABLE_REQUEST_ID.match(incoming) else logs.new_request_id()
    context.request_id_token = logs.request_id.set(context.request_id)
    context.started = time.perf_counter()


def _finish(response: Response) -> Response:
    context = g._get_current_object()
    # A request rejected before _start ran (e.g. by routing) still gets an id and a log line.
    if "started" not in context:
        _start()
    latency = time.perf_counter() - context.started
    current = request._get_current_object()
    # The URL rule, not the path, so that /models/<anything> cannot create unbounded series.
    rule = current.url_rule
    endpoint = rule.rule if rule else "unmatched"
    model = context.get("model", "")
    status = response.status_code
    metrics.labelled(metrics.REQUESTS, endpoint, model, status).inc()
    metrics.labelled(metrics.REQUEST_LATENCY, endpoint).observe(latency)
    response.headers["X-Request-ID"] = context.request_id
    if log.isEnabledFor(logging.INFO):
        method, path = current.method, current.path
        log.info(
            "%s %s %d",
            method,
            path,
            status,
            extra={
                "request_id": context.request_id,
                "method": method,
                "path": path,
                "status": status,
                "latency_ms": round(latency * 1000, 2),
                "model": model or None,
                "version": context.get("version"),
                "images": context.get("images"),
            },
        )
    return response


def _forget(_error: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        logs.request_id.reset(token)
