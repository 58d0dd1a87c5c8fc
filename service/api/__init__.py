"""The HTTP layer: Flask blueprints that parse requests into calls on the inference core.

Each blueprint reaches the shared objects through ``registry()`` and ``config()``; the request
hooks in ``observability`` give every response its request id, log line and metrics.
"""

from __future__ import annotations

from flask import Flask, current_app

from service.config import ServiceConfig
from service.registry import ModelRegistry

EXTENSION = "serving"


def registry() -> ModelRegistry:
    return current_app.extensions[EXTENSION]["registry"]


def config() -> ServiceConfig:
    return current_app.extensions[EXTENSION]["config"]


def register_blueprints(app: Flask, service_config: ServiceConfig) -> None:
    from service.api import admin, health, metrics, models, observability, openapi, page, predict, v2

    observability.register(app)
    app.register_blueprint(predict.blueprint)
    app.register_blueprint(models.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(v2.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.register_blueprint(page.blueprint)
    # No token, no admin endpoints at all: they answer 404 like any unknown path.
    if service_config.admin_token:
        app.register_blueprint(admin.blueprint)
