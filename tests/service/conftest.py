"""Fixtures: a model repository in tmp_path (see service_fixtures) and apps built on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from service_fixtures import IMAGE_MODEL, TABULAR_MODEL, digit_classifier, linear_model, write_version

from service import create_app
from service.config import ServiceConfig


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_version(root, IMAGE_MODEL, 1, digit_classifier())
    write_version(root, TABULAR_MODEL, 1, linear_model())
    return root


@pytest.fixture
def make_app(repository: Path) -> Iterator[Callable]:
    """Build apps on the fixture repository; polling is off unless asked for, and stopped after."""
    apps = []

    def build(**overrides):
        fields = {"model_repository": repository, "default_image_model": IMAGE_MODEL, "refresh_interval": 0} | overrides
        app = create_app(ServiceConfig(**fields))
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.extensions["serving"]["registry"].stop_polling()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()
