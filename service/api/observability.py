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

# Set on the WSGI environ by _bookkeeping, read by _finish.
REQUEST_ID = "service.request_id"
STARTED = "service.started"


def register(app: Flask) -> None:
    app.wsgi_app = _bookkeeping(app.wsgi_app)
    app.after_request(_finish)


def _bookkeeping(wsgi_app):
    """The request id, bound around the whole request: a plain WSGI wrapper costs less than a
    before_request and a teardown_request hook, and covers requests that routing rejects."""

    def application(environ, start_response):
        incoming = environ.get("HTTP_X_REQUEST_ID", "")
        acceptable = logs.ACCEPTABLE_REQUEST_ID.match(incoming)
        current = environ[REQUEST_ID] = incoming if acceptable else logs.new_request_id()
        environ[STARTED] = time.perf_counter()
        token = logs.request_id.set(current)
        try:
            return wsgi_app(environ, start_response)
        finally:
            logs.request_id.reset(token)

    return application


def _finish(response: Response) -> Response:
    current = request._get_current_object()
    environ = current.environ
    latency = time.perf_counter() - environ[STARTED]
    context = g._get_current_object()
    # The URL rule, not the path, so that /models/<anything> cannot create unbounded series.
    rule = current.url_rule
    endpoint = rule.rule if rule else "unmatched"
    model = context.get("model", "")
    status = response.status_code
    metrics.labelled(metrics.REQUESTS, endpoint, model, status).inc()
    metrics.labelled(metrics.REQUEST_LATENCY, endpoint).observe(latency)
    request_id = environ[REQUEST_ID]
    response.headers["X-Request-ID"] = request_id
    if log.isEnabledFor(logging.INFO):
        method, path = current.method, current.path
        log.info(
            "%s %s %d",
            method,
            path,
            status,
            extra={
                "request_id": request_id,
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
