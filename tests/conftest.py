"""The one gunicorn that tests sharing it may read from but never change: the committed models,
served the way README.md says (``tests/live_server.py`` starts it)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from live_server import COMMITTED_MODELS, README_ADMIN_TOKEN, Server, gunicorn  # noqa: E402


@pytest.fixture(scope="session")
def live_server(tmp_path_factory) -> Iterator[Server]:
    """gunicorn with two workers on a copy of the committed models; tests must not add versions to it."""
    if not (COMMITTED_MODELS / "mnist_mlp").is_dir():
        pytest.skip(f"no committed models in {COMMITTED_MODELS}")
    workdir = tmp_path_factory.mktemp("live-server")
    repository = workdir / "models"
    shutil.copytree(COMMITTED_MODELS, repository, ignore=shutil.ignore_patterns(".tmp-*"))
    with gunicorn(repository, workdir, ADMIN_TOKEN=README_ADMIN_TOKEN) as server:
        yield server
